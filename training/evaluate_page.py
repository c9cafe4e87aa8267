"""<run>/evaluation-errors.html: the images where the model errs most (missed objects, false
alarms, swapped classes), boxes drawn, with the evaluation's confusion matrix; built from the HTML
kit (dataset/html.py) like every other page, thumbnails from dataset/images.py, embedded so the
page is one file.
"""
from __future__ import annotations

from pathlib import Path

from dataset import atomic, html, images

PER_KIND = 12     # images shown for each kind of error
THUMB = 300
FOUND, MISSED, SWAPPED, FALSE_ALARM = "#2ca02c", "#ff7f0e", "#9467bd", "#d62728"
KINDS = (("missed", "Most missed objects", "objects in the image the model did not find"),
         ("false_alarms", "Most false alarms", "detections where there is no object"),
         ("swapped", "Most swapped classes", "objects found but given the other class"))


def confusion_table(confusion: dict) -> str:
    """The confusion matrix as a table: true classes down, detected classes across, missed objects
    in the last column and false alarms in the last row."""
    names = confusion["classes"]
    rows = [[name, *row, missed] for name, row, missed in zip(names, confusion["matrix"], confusion["missed"])]
    rows.append(["background (false alarms)", *confusion["false_alarms"], ""])
    return html.table(["true \\ detected", *names, "missed"], rows)


def _boxes(record: dict) -> list[tuple]:
    drawn = [(*box, FOUND) for box, _ in record["found"]]
    drawn += [(*box, MISSED) for box, _ in record["missed"]]
    for box, _, detected, _, _ in record["swapped"]:
        drawn += [(*box, SWAPPED), (*detected, SWAPPED)]
    drawn += [(*box, FALSE_ALARM) for box, _, _ in record["false_alarms"]]
    return drawn


def _caption(path: str, record: dict) -> str:
    parts = [f"<code>{html.esc(Path(path).name)}</code>"]
    if record["missed"]:
        parts.append("missed: " + html.esc(", ".join(name for _, name in record["missed"])))
    if record["swapped"]:
        parts.append("swapped: " + html.esc(", ".join(f"{true} as {detected} ({score:.2f})"
                                                       for _, true, _, detected, score in record["swapped"])))
    if record["false_alarms"]:
        parts.append("false alarms: " + html.esc(", ".join(f"{name} ({score:.2f})"
                                                            for _, name, score in record["false_alarms"])))
    return "<br>".join(parts)


def _figure(path: str, record: dict) -> str:
    try:
        picture = html.jpeg_data(images.thumbnail(path, THUMB, _boxes(record)), Path(path).name)
    except (images.NotAnImage, OSError) as error:
        picture = html.esc(f"(cannot show: {error})")
    return html.figure(picture, _caption(path, record))


def render(summary: dict, per_image: list[dict], image_paths: list[str]) -> str:
    errors = summary.get("errors") or {}
    at = summary.get("at") or {}
    cards = html.cards(
        html.card(f"images ({summary.get('part') or 'scored'})", summary.get("images", len(per_image))),
        html.card("missed objects", errors.get("missed", 0), "warn" if errors.get("missed") else "good"),
        html.card("false alarms", errors.get("false_alarms", 0), "warn" if errors.get("false_alarms") else "good"),
        html.card("swapped classes", errors.get("swapped", 0), "bad" if errors.get("swapped") else "good"),
        html.card(f"F1 at score {at.get('score', 0.5):g}", f"{at.get('f1', 0):.3f}"))
    legend = (f'Boxes: <b style="color:{FOUND}">found</b>, <b style="color:{MISSED}">missed</b>, '
              f'<b style="color:{SWAPPED}">swapped (the object and the detection that gave it the other '
              f'class)</b>, <b style="color:{FALSE_ALARM}">false alarm</b>. Counted at score >= '
              f"{at.get('score', 0.5):g} and IoU {summary.get('iou', 0.5)}.")
    body = ""
    for note in summary.get("warnings") or []:
        body += f'<p class="warn">{html.esc(note)}</p>'
    if summary.get("confusion"):
        body += html.section("confusion", "Confusion matrix", confusion_table(summary["confusion"]),
                             "Rows: the true class; columns: what the model detected.")
    for key, title, what in KINDS:
        ranked = sorted((i for i, record in enumerate(per_image) if record[key]),
                        key=lambda i: (-len(per_image[i][key]), str(image_paths[i])))[:PER_KIND]
        content = (html.figures([_figure(image_paths[i], per_image[i]) for i in ranked]) if ranked
                   else "<p>None.</p>")
        body += html.section(key, title, content, f"The images with the most {html.esc(what)}. {legend}")
    where = f"{summary.get('run', '')}: the {summary.get('part') or ''} part ({summary.get('csv', '')})"
    return html.page("maskset evaluation errors", cards + body, subtitle=where,
                     nav=[("confusion", "Confusion"), *[(k, t) for k, t, _ in KINDS]])


def write_errors_page(path: Path, summary: dict, per_image: list[dict], image_paths: list[str]) -> Path:
    return atomic.write_text(path, render(summary, per_image, image_paths))
