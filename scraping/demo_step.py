"""`make demo` step: scrape a fake Bing on 127.0.0.1 that serves rendered sample scenes."""
from __future__ import annotations

from urllib.parse import quote

from dataset.sample import make_sample

from .fakebing import FakeBing
from .pipeline import ScrapeOptions, scrape

QUERY = "people wearing face masks"


def run(ctx) -> str:
    site = ctx.work / "fake-bing-site"
    # scenes plus one exact and one near copy (make_sample), and one more exact copy below
    images = make_sample(site, count=4 if ctx.quick else 10, duplicates=1, annotate=False, prefix="web")
    with FakeBing(page_size=5) as fake:
        for rank, path in enumerate(images):
            route = f"/photos/{rank}/{quote(path.name)}"
            fake.add_route(route, body=path.read_bytes())
            fake.add_result(fake.url(route) + f"?w=320&h=240&rank={rank}", title=f"{QUERY} {rank}",
                            purl=f"https://example.org/gallery?item={rank}&ref=demo")
        mirror = fake.add_route("/mirror/first.jpg", body=images[0].read_bytes())
        fake.add_result(mirror, title="the first photo, on another site")
        summary = scrape(ctx.data, ScrapeOptions(query=QUERY, limit=100, engine="requests",
                                                 bing_url=fake.base), progress=not ctx.quick)
    ctx.notes["scrape"] = {"results": summary.results, "accepted": summary.accepted,
                           "duplicates": summary.duplicates, "files": summary.files}
    print(summary.text())
    return (f"{summary.results} results, {summary.accepted} images saved, {summary.duplicates} "
            f"duplicates, {sum(summary.rejected.values())} rejected (fake Bing on 127.0.0.1)")
