"""export/dedupe.html: every duplicate group as thumbnails, the keeper marked, distances shown.

Thumbnails (with the VOC boxes drawn, so conflicting labels are visible at a glance) are decoded
at reduced size and go to export/dedupe-thumbs/ (derived files, not fsynced one by one); the
page links them relatively, so the export folder can be zipped and sent.
"""
from __future__ import annotations

from pathlib import Path

from . import atomic, hashcache, html, images

THUMB = 200


def _make_thumbnails(task) -> None:
    """In a worker: (image, boxes, thumbnail file) each."""
    for source, boxes, target in task:
        atomic.write_bytes(target, images.thumbnail(source, THUMB, boxes), durable=False)


def _figure(member, tone: str, badge: str, conflict: str | None) -> str:
    boxes = ("not annotated" if not member.annotated else
             "VOC unreadable" if member.objects is None else
             f"{len(member.objects)} box{'es' if len(member.objects) != 1 else ''}" + (" (draft)" if member.draft else ""))
    note = f"<br><b>conflict:</b> {html.esc(conflict)}" if conflict else ""
    src = f"dedupe-thumbs/{member.file}.jpg"
    image = html.Raw(f'<img loading="lazy" src="{html.esc(src)}" alt="{html.esc(member.file)}">')
    caption = (f"{badge} <code>{html.esc(member.file)}</code><br>{member.width}x{member.height}, "
               f"{member.size / 1024:.0f} KB, {boxes}{note}")
    return html.figure(image, caption, "bad" if conflict else tone, href=src)


def write_page(dataset, the_plan, dry_run: bool, progress: bool = True) -> Path:
    thumbs = dataset.export / "dedupe-thumbs"
    members = [m for g in the_plan.groups for m in [g.keeper, *g.kept, *(d.member for d in g.duplicates)]]
    colours: dict[str, str] = {}
    for m in members:  # fix colours before the threads run, so they are the same on every run
        for o in m.objects or []:
            colours.setdefault(o.name, images.COLOURS[len(colours) % len(images.COLOURS)])

    thumbs.mkdir(parents=True, exist_ok=True)
    work = [(dataset.images / m.file, [(o.xmin, o.ymin, o.xmax, o.ymax, colours[o.name]) for o in m.objects or []],
             thumbs / (m.file + ".jpg")) for m in members]
    tasks = [work[k:k + 16] for k in range(0, len(work), 16)]
    for _ in hashcache.run_tasks(_make_thumbnails, tasks, progress, "thumbnails", [len(t) for t in tasks]):
        pass

    conflicts = {c.duplicate: c.why for c in the_plan.conflicts}
    parts = []
    # Conflicting groups first: they need a person; the rest is for a glance.
    ordered = sorted(the_plan.groups, key=lambda g: not any(d.member.file in conflicts for d in g.duplicates))
    anchor = {}
    for number, group in enumerate(ordered, 1):
        anchor.update({d.member.file: number for d in group.duplicates})
        figures = [_figure(group.keeper, "good", html.badge("KEEP", "good"), None)]
        figures += [_figure(m, "other", html.badge("kept by curator", "other"), None) for m in group.kept]
        for dup in group.duplicates:
            kind = "exact" if dup.reason == "exact-duplicate" else "near"
            badge = html.badge(f"{kind} d={dup.distance}", "" if kind == "exact" else "info")
            if dup.of != group.keeper.file:
                badge += f" of <code>{html.esc(dup.of)}</code>"
            figures.append(_figure(dup.member, "", badge, conflicts.get(dup.member.file)))
        flag = " (conflict)" if any(d.member.file in conflicts for d in group.duplicates) else ""
        parts.append(html.section(f"g{number}", f"group {number}: {1 + len(group.kept) + len(group.duplicates)} "
                                                f"images{flag}", html.figures(figures), css="group"))

    moves = the_plan.moves
    exact = sum(d.reason == "exact-duplicate" for d in moves)
    head = (f'<p>{the_plan.images} images, {len(the_plan.groups)} groups, '
            f"{len(moves)} duplicates ({exact} exact, {len(moves) - exact} near), "
            f"{len(the_plan.conflicts)} conflicts; pHash threshold {the_plan.threshold}, "
            f"dHash threshold {the_plan.dhash_threshold}. "
            f"Green: the copy kept (annotated first, then the larger picture inside any frame, not "
            f"upscaled, then the better JPEG quality, then the larger file); d = pHash bits from it.</p>")
    if dry_run:
        head += ('<p class="banner">Dry run: nothing has been moved. Run <code>make dedupe</code> '
                 'to quarantine the duplicates.</p>')
    else:
        head += ("<p>Duplicates are in <code>quarantine/duplicates/</code> (log.jsonl there); "
                 "<code>make restore</code> puts them back.</p>")
    if the_plan.conflicts:
        items = "".join(f"<li><a href=\"#g{anchor[c.duplicate]}\">group {anchor[c.duplicate]}</a>: "
                        f"<code>{html.esc(c.duplicate)}</code> vs keeper "
                        f"<code>{html.esc(c.keeper)}</code>: {html.esc(c.why)}</li>"
                        for c in the_plan.conflicts)
        head += (f'<div class="alert"><b>{len(the_plan.conflicts)} conflicts</b>: annotated copies '
                 f"of one picture that disagree; one of each pair is a labelling mistake.<ul>{items}</ul></div>")
    if not the_plan.groups:
        parts.append("<p>No duplicates found.</p>")
    page = html.page("maskset dedupe", head + "".join(parts), subtitle=f"Duplicates in {dataset.root}")
    return atomic.write_text(dataset.export / "dedupe.html", page)
