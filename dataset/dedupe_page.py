"""export/dedupe.html: every duplicate group as thumbnails, the keeper marked, distances shown.

Thumbnails (with the VOC boxes drawn, so conflicting labels are visible at a glance) go to
export/dedupe-thumbs/; the page links them relatively, so the export folder can be zipped and sent.
"""
from __future__ import annotations

import html
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from . import atomic

THUMB = 200
COLOURS = ["#2ca02c", "#d62728", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b"]

CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;background:#fafafa;color:#222}
h1{margin:0 0 .3em}.summary{margin:.3em 0 1em;color:#444}
.dry{background:#fff3cd;padding:.5em 1em;border:1px solid #e0c060;display:inline-block}
.group{background:#fff;border:1px solid #ddd;border-radius:6px;margin:0 0 1em;padding:.6em}
.group h3{margin:0 0 .4em;font-size:1em}.members{display:flex;flex-wrap:wrap;gap:.6em}
figure{margin:0;width:%dpx;font-size:.8em;border:3px solid #ccc;border-radius:4px;padding:3px;background:#fff}
figure.keeper{border-color:#2ca02c}figure.conflict{border-color:#d62728}
figure img{width:100%%;height:auto;display:block}
.badge{display:inline-block;padding:0 .4em;border-radius:3px;color:#fff;font-weight:bold}
.keep{background:#2ca02c}.exact{background:#555}.near{background:#1f77b4}.kept{background:#9467bd}
.conflicts{background:#fdecea;border:1px solid #d62728;padding:.5em 1em;margin-bottom:1em}
code{font-size:.95em}
""" % THUMB


def _thumbnail(dataset, member, colours: dict[str, str]) -> bytes:
    with Image.open(dataset.images / member.file) as image:
        image.draft("RGB", (THUMB, THUMB))  # boxes stay in stored pixels, as labelImg draws them
        drafted = image.size
        image = image.convert("RGB")
        scale_x = drafted[0] / max(member.width, 1)
        scale_y = drafted[1] / max(member.height, 1)
        image.thumbnail((THUMB, THUMB))
        scale_x *= image.width / drafted[0]
        scale_y *= image.height / drafted[1]
        if member.objects:
            draw = ImageDraw.Draw(image)
            for obj in member.objects:
                colour = colours.setdefault(obj.name, COLOURS[len(colours) % len(COLOURS)])
                draw.rectangle([obj.xmin * scale_x, obj.ymin * scale_y, obj.xmax * scale_x,
                                obj.ymax * scale_y], outline=colour, width=2)
        out = io.BytesIO()
        image.save(out, "JPEG", quality=80)
        return out.getvalue()


def _figure(member, role: str, badge: str, thumb_src: str, conflict: str | None) -> str:
    classes = role + (" conflict" if conflict else "")
    boxes = ("not annotated" if not member.annotated else
             "VOC unreadable" if member.objects is None else
             f"{len(member.objects)} box{'es' if len(member.objects) != 1 else ''}" + (" (draft)" if member.draft else ""))
    note = f"<br><b>conflict:</b> {html.escape(conflict)}" if conflict else ""
    return (f'<figure class="{classes}"><a href="{thumb_src}"><img loading="lazy" src="{thumb_src}" '
            f'alt="{html.escape(member.file)}"></a><figcaption>{badge} <code>{html.escape(member.file)}'
            f'</code><br>{member.width}x{member.height}, {member.size / 1024:.0f} KB, {boxes}{note}'
            f'</figcaption></figure>')


def write_page(dataset, the_plan, dry_run: bool, progress: bool = True) -> Path:
    thumbs = dataset.export / "dedupe-thumbs"
    members = [m for g in the_plan.groups for m in [g.keeper, *g.kept, *(d.member for d in g.duplicates)]]
    colours: dict[str, str] = {}
    for m in members:  # fix colours before the threads run, so they are the same on every run
        for o in m.objects or []:
            colours.setdefault(o.name, COLOURS[len(colours) % len(COLOURS)])

    def make(member):
        atomic.write_bytes(thumbs / (member.file + ".jpg"), _thumbnail(dataset, member, colours))

    with ThreadPoolExecutor(max_workers=2) as pool:
        list(tqdm(pool.map(make, members), total=len(members), desc="thumbnails", unit="img",
                  disable=not progress))

    conflicts = {c.duplicate: c.why for c in the_plan.conflicts}
    src = lambda m: f"dedupe-thumbs/{html.escape(m.file)}.jpg"  # noqa: E731
    parts = []
    # Conflicting groups first: they need a person; the rest is for a glance.
    ordered = sorted(the_plan.groups, key=lambda g: not any(d.member.file in conflicts for d in g.duplicates))
    anchor = {}
    for number, group in enumerate(ordered, 1):
        anchor.update({d.member.file: number for d in group.duplicates})
        figures = [_figure(group.keeper, "keeper", '<span class="badge keep">KEEP</span>',
                           src(group.keeper), None)]
        figures += [_figure(m, "kept", '<span class="badge kept">kept by curator</span>', src(m), None)
                    for m in group.kept]
        for dup in group.duplicates:
            kind = "exact" if dup.reason == "exact-duplicate" else "near"
            badge = f'<span class="badge {kind}">{kind} d={dup.distance}</span>'
            if dup.of != group.keeper.file:
                badge += f" of <code>{html.escape(dup.of)}</code>"
            figures.append(_figure(dup.member, "dup", badge, src(dup.member), conflicts.get(dup.member.file)))
        flag = " (conflict)" if any(d.member.file in conflicts for d in group.duplicates) else ""
        parts.append(f'<div class="group" id="g{number}"><h3>group {number}: '
                     f'{1 + len(group.kept) + len(group.duplicates)} images{flag}</h3>'
                     f'<div class="members">{"".join(figures)}</div></div>')

    moves = the_plan.moves
    exact = sum(d.reason == "exact-duplicate" for d in moves)
    head = (f"<h1>Duplicates in <code>{html.escape(str(dataset.root))}</code></h1>"
            f'<p class="summary">{the_plan.images} images, {len(the_plan.groups)} groups, '
            f"{len(moves)} duplicates ({exact} exact, {len(moves) - exact} near), "
            f"{len(the_plan.conflicts)} conflicts; pHash threshold {the_plan.threshold}, "
            f"dHash threshold {the_plan.dhash_threshold}. "
            f"Green: the copy kept (annotated first, then larger, then larger file); d = pHash "
            f"bits from it.</p>")
    if dry_run:
        head += ('<p class="dry">Dry run: nothing has been moved. Run <code>make dedupe</code> '
                 'to quarantine the duplicates.</p>')
    else:
        head += ("<p>Duplicates are in <code>quarantine/duplicates/</code> (log.jsonl there); "
                 "<code>make restore</code> puts them back.</p>")
    if the_plan.conflicts:
        items = "".join(f"<li><a href=\"#g{anchor[c.duplicate]}\">group {anchor[c.duplicate]}</a>: "
                        f"<code>{html.escape(c.duplicate)}</code> vs keeper "
                        f"<code>{html.escape(c.keeper)}</code>: {html.escape(c.why)}</li>"
                        for c in the_plan.conflicts)
        head += (f'<div class="conflicts"><b>{len(the_plan.conflicts)} conflicts</b>: annotated copies '
                 f"of one picture that disagree; one of each pair is a labelling mistake.<ul>{items}</ul></div>")
    if not the_plan.groups:
        parts.append("<p>No duplicates found.</p>")
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>maskset dedupe</title>'
            f"<style>{CSS}</style></head><body>{head}{''.join(parts)}</body></html>\n")
    return atomic.write_text(dataset.export / "dedupe.html", page)
