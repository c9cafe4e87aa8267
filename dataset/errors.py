"""The one error type every stage raises for bad input: the CLI prints it and exits non-zero."""


class MasksetError(Exception):
    """A user-facing error. The message names the file (and field) and says how to fix it."""

    exit_code = 2
