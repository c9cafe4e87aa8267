"""The one list of what the machine needs beyond .venv, and the check (and install) of it.

Every program or shared library that a stage or a test runs is listed here, with the Debian
package that provides it. `make check-system` reports what is missing; `make test` runs
`--require test --install`, which installs what is missing when it can (as root, or through
sudo without a password), printing the exact command first, and otherwise prints the command
and stops. `.ci/run` installs `--apt-packages` from this same list. tests/test_system_list.py
fails when any code runs a program this list does not know.

`make demo` needs none of it.
"""
from __future__ import annotations

import argparse
import ctypes.util
import glob
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Need:
    package: str            # the Debian package
    provides: tuple         # commands (on PATH) or shared libraries (lib*.so.N) it gives
    why: str                # which stage or test runs it


# Programs: run by a stage or a test (the GUI tests' screenshots use Pillow, not a program).
PROGRAMS = [
    Need("chromium", ("chromium",), "scrape ENGINE=selenium, the page screenshot tests"),
    Need("chromium-driver", ("chromedriver",), "scrape ENGINE=selenium"),
    Need("xvfb", ("Xvfb",), "annotate on a headless machine, the GUI and live-window tests"),
    Need("xdotool", ("xdotool",), "the GUI tests drive labelImg's window with it"),
    Need("util-linux", ("unshare",), "the read-only and full-disk dataset tests (a private mount namespace)"),
]
# Shared libraries Qt's xcb platform plugin (labelImg) loads: (Debian package, library file).
LIBRARIES = [Need(package, (library,), "labelImg (Qt xcb)") for package, library in (
    ("libxkbcommon-x11-0", "libxkbcommon-x11.so.0"), ("libxcb-icccm4", "libxcb-icccm.so.4"),
    ("libxcb-image0", "libxcb-image.so.0"), ("libxcb-keysyms1", "libxcb-keysyms.so.1"),
    ("libxcb-randr0", "libxcb-randr.so.0"), ("libxcb-render-util0", "libxcb-render-util.so.0"),
    ("libxcb-shape0", "libxcb-shape.so.0"), ("libxcb-xinerama0", "libxcb-xinerama.so.0"),
    ("libxcb-xfixes0", "libxcb-xfixes.so.0"), ("libxcb-cursor0", "libxcb-cursor.so.0"),
    ("libgl1", "libGL.so.1"), ("libfontconfig1", "libfontconfig.so.1"), ("libdbus-1-3", "libdbus-1.so.3"),
)]
NEEDS = PROGRAMS + LIBRARIES
APT_PACKAGES = [need.package for need in NEEDS]
# The programs code may run: what tests/test_system_list.py checks every subprocess call against.
KNOWN_PROGRAMS = {command for need in PROGRAMS for command in need.provides} | {
    "make",  # the tests run stages as a user does; .ci/run installs make
    "bash",  # the Makefile's SHELL and scripts/setup.sh (Debian's essential bash package)
    "cp", "sync",  # coreutils (Debian-essential): bench_import's baseline is a plain `cp -r` + `sync`
}

INSTALLERS = {"apt-get", "sudo"}  # what this script itself runs to install the list


def _has_library(filename: str) -> bool:
    patterns = [f"/usr/lib/*/{filename}", f"/usr/lib/{filename}", f"/lib/*/{filename}"]
    return any(glob.glob(p) for p in patterns) or bool(ctypes.util.find_library(filename.split(".so")[0][3:]))


def _present(item: str) -> bool:
    return _has_library(item) if ".so" in item else shutil.which(item) is not None


def missing() -> list[Need]:
    return [need for need in NEEDS if not all(_present(item) for item in need.provides)]


def install_command(packages: list[str]) -> list[list[str]]:
    """The apt-get commands that install `packages` (with sudo when not root)."""
    sudo = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return [sudo + ["apt-get", "update", "-qq"],
            sudo + ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages]]


def can_install() -> bool:
    if not shutil.which("apt-get"):
        return False
    if os.geteuid() == 0:
        return True
    return shutil.which("sudo") is not None and subprocess.run(
        ["sudo", "-n", "true"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def tensorflow_devices() -> str:
    """One line: TensorFlow's build and the devices it sees (training, evaluation and detection
    run on the first GPU when there is one; `make train DEVICES=all` uses every one)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        import tensorflow as tf
    except ImportError as error:
        return f"check-system: TensorFlow cannot be imported ({error}); run `make setup`."
    cuda = tf.test.is_built_with_cuda()
    seen = []
    for device in tf.config.list_physical_devices():
        name = device.name.replace("/physical_device:", "")
        if device.device_type == "GPU":
            try:
                name += f" ({tf.config.experimental.get_device_details(device).get('device_name', '?')})"
            except (RuntimeError, ValueError):
                pass
        seen.append(name)
    line = (f"check-system: TensorFlow {tf.__version__} ({'CUDA' if cuda else 'CPU'} build) sees: "
            f"{', '.join(seen) or 'no device'}")
    gpus = [d for d in seen if d.startswith("GPU")]
    if gpus:
        line += f"; training, evaluation and detection run on {gpus[0].split(' ')[0]}"
    elif cuda:
        line += (". The CUDA build sees no GPU: is an NVIDIA driver >= 525 (CUDA 12.2) loaded? "
                 "`nvidia-smi` should list the card")
    else:
        line += ". `make setup GPU=1` installs the CUDA build, for a machine with an NVIDIA GPU"
    return line


def _shown(command: list[str]) -> str:
    return " ".join(command)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require", choices=["test"], help="exit 1 when something is still missing")
    parser.add_argument("--install", action="store_true",
                        help="install what is missing when possible (root, or sudo without a password)")
    parser.add_argument("--apt-packages", action="store_true", help="print the whole package list and exit")
    parser.add_argument("--devices", action="store_true", help="also say which devices TensorFlow sees")
    args = parser.parse_args(argv)
    if args.apt_packages:
        print(" ".join(APT_PACKAGES))
        return 0
    if args.devices:
        print(tensorflow_devices(), flush=True)
    absent = missing()
    if not absent:
        print("check-system: all system packages present")
        return 0
    err = sys.stderr
    print("check-system: missing Debian packages:", file=err)
    for need in absent:
        print(f"  {need.package:22s} needed by {need.why}", file=err)
    commands = install_command([need.package for need in absent])
    if args.install and can_install():
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for command in commands:
            print(f"check-system: running: {_shown(command)}", file=err, flush=True)
            if subprocess.run(command, env=env).returncode != 0:
                print(f"error: `{_shown(command)}` failed; run it by hand, then retry.", file=err)
                return 1
        absent = missing()
        if not absent:
            print("check-system: installed; all system packages present")
            return 0
        print("error: still missing after the install: " + " ".join(n.package for n in absent), file=err)
        return 1
    packages = " ".join(need.package for need in absent)
    manual = f"sudo apt-get update && sudo apt-get install -y {packages}"
    print(f"install them with:\n  {manual}", file=err)
    if args.require:
        why = "" if not args.install else " (this user cannot install: not root, and sudo asks for a password)"
        print(f"error: `make {args.require}` needs these packages{why}.", file=err)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
