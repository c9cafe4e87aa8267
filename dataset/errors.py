"""The error types every stage raises for bad input: the CLI prints one line and exits non-zero.

Every message names the file (and line or field) and says how to fix it (docs/design.md,
"Errors").
"""


class MasksetError(Exception):
    """A user-facing error. The message names the file (and field) and says how to fix it."""

    exit_code = 2


class DatasetMissing(MasksetError):
    """DATA= names no dataset (a typo, or a stage run before import/scrape made one)."""


class DatasetLocked(MasksetError):
    """Another stage holds the dataset's lock."""


class UnsafePath(MasksetError):
    """A path from the manifest, a VOC file or SRC that leaves the folder it must stay in, or a
    symbolic link maskset will not read or write through."""
