"""Demo step: `make dedupe` on the demo dataset (the sample has exact and near copies on purpose)."""
from __future__ import annotations

from .dedupe import dedupe


def run(ctx) -> str:
    with ctx.data.lock("dedupe"):
        result = dedupe(ctx.data, progress=not ctx.quick)
    ctx.notes["dedupe"] = result.report
    for conflict in result.plan.conflicts:
        print(f"conflict: {conflict.duplicate} vs {conflict.keeper}: {conflict.why}")
    print(f"review page: {result.page}")
    return (f"{result.report['groups']} groups, {result.report['quarantined']} files quarantined, "
            f"{len(result.plan.conflicts)} conflicts")
