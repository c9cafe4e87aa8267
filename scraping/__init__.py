"""maskset's scraper: Bing result pages -> checked, unique images in a dataset.

feeder (bing.py: requests paging or Selenium scrolling) -> parser (parse.py) -> downloader
(download.py) -> checks (checks.py) -> store (store.py); pipeline.py wires them, commands.py is
`make scrape`.
"""
