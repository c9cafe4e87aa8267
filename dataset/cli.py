"""What every stage's thin CLI shares: the --data argument, error printing, exit codes."""
from __future__ import annotations

import argparse
import sys
from typing import Callable

from .errors import MasksetError
from .layout import Dataset


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--data", default="data", help="the dataset folder (make's DATA=, default: data)")
    return p


def dataset_from(args) -> Dataset:
    return Dataset.at(args.data)


def run(main: Callable[[list[str] | None], int], argv=None) -> int:
    """Call a stage's main; a MasksetError becomes one clear line on stderr and exit code 2."""
    try:
        return main(argv) or 0
    except MasksetError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted: everything finished so far is saved; run the same command to go on.",
              file=sys.stderr)
        return 130
