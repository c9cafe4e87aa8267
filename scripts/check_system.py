"""Check the Debian packages maskset's stages need and say exactly what to install.

`--require test` exits 1 when anything the test suite needs is missing; without it this only
warns (the demo and most stages need none of them).
"""
from __future__ import annotations

import argparse
import ctypes.util
import glob
import shutil
import sys

# (Debian package, how to detect it, which stage needs it)
COMMANDS = [
    ("chromium", ["chromium", "chromium-browser"], "scrape ENGINE=selenium, report screenshot test"),
    ("chromium-driver", ["chromedriver"], "scrape ENGINE=selenium"),
    ("xvfb", ["Xvfb"], "annotate on a headless machine, the GUI tests"),
    ("xdotool", ["xdotool"], "the GUI tests"),
]
LIBRARIES = [  # (Debian package, shared library file name) needed by Qt's xcb platform plugin
    ("libxkbcommon-x11-0", "libxkbcommon-x11.so.0"), ("libxcb-icccm4", "libxcb-icccm.so.4"),
    ("libxcb-image0", "libxcb-image.so.0"), ("libxcb-keysyms1", "libxcb-keysyms.so.1"),
    ("libxcb-randr0", "libxcb-randr.so.0"), ("libxcb-render-util0", "libxcb-render-util.so.0"),
    ("libxcb-shape0", "libxcb-shape.so.0"), ("libxcb-xinerama0", "libxcb-xinerama.so.0"),
    ("libxcb-xfixes0", "libxcb-xfixes.so.0"), ("libxcb-cursor0", "libxcb-cursor.so.0"),
    ("libgl1", "libGL.so.1"), ("libfontconfig1", "libfontconfig.so.1"), ("libdbus-1-3", "libdbus-1.so.3"),
]
APT_PACKAGES = [name for name, *_ in COMMANDS] + [name for name, _ in LIBRARIES]


def _has_library(filename: str) -> bool:
    patterns = [f"/usr/lib/*/{filename}", f"/usr/lib/{filename}", f"/lib/*/{filename}"]
    return any(glob.glob(p) for p in patterns) or bool(ctypes.util.find_library(filename.split(".so")[0][3:]))


def missing_packages() -> list[tuple[str, str]]:
    missing = [(pkg, need) for pkg, cmds, need in COMMANDS if not any(shutil.which(c) for c in cmds)]
    missing += [(pkg, "labelImg (Qt xcb)") for pkg, lib in LIBRARIES if not _has_library(lib)]
    return missing


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--require", choices=["test"], help="fail when something is missing")
    args = parser.parse_args(argv)
    missing = missing_packages()
    if not missing:
        print("check-system: all system packages present")
        return 0
    stream = sys.stderr
    print("check-system: missing Debian packages:", file=stream)
    for pkg, need in missing:
        print(f"  {pkg:22s} needed by {need}", file=stream)
    print("install them with:\n  sudo apt-get update && sudo apt-get install -y "
          + " ".join(pkg for pkg, _ in missing), file=stream)
    if args.require:
        print(f"error: `make {args.require}` needs these packages.", file=stream)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
