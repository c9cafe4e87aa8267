"""maskset's annotation stages: `make annotate` (annotate.py, labelImg through launcher.py, which
makes labelImg 1.8.6 work on Python 3.10+) and `make prelabel` (prelabel.py: machine drafts)."""
