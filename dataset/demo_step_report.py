"""The demo's last step (see demo.py): the report of the demo dataset, its runs included."""
from __future__ import annotations

from .report import summary_text, write_report


def run(ctx) -> str:
    page, report = write_report(ctx.data, ctx.runs, progress=False)
    print(summary_text(report))
    ctx.notes["report"] = page
    images, classes = report.numbers["images"], report.numbers["classes"]
    per_class = ", ".join(f"{name} {count}" for name, count in classes["boxes"].items())
    latest = next((r for r in report.numbers["runs"] if isinstance(r.get("mAP"), (int, float))), None)
    m_ap = f", val mAP {latest['mAP']:.3f}" if latest else ""
    return (f"{page}: {images['total']} images ({images['annotated']} annotated, {images['pending']} pending, "
            f"{images['quarantined']['total']} quarantined), {classes['total_boxes']} boxes ({per_class}), "
            f"{report.numbers['validation']['errors']} validation errors{m_ap}")
