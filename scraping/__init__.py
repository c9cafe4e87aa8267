"""maskset's scraper: Bing result pages -> checked, unique images in a dataset (issue 3).

feeder (bing.py: requests paging or Selenium scrolling) -> parser (parse.py) -> downloader
(download.py) -> checks (checks.py) -> store (store.py); pipeline.py wires them, cli.py is `make scrape`.
"""
