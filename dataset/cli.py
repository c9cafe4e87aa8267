"""The `maskset` command: one subcommand per stage, thin over the cores.

    maskset split --data data --val 0.2 --test 0.1
    maskset --make split          # what `make split VAL=0.2 TEST=0.1` runs

Each package declares its commands in its `commands.py` as `COMMANDS = [Command(...)]`: the
make variables it takes (each one an option), whether it needs an existing dataset, and which
lock it holds. This module owns what every command shares: parsing, reading make variables from
the environment (so values never pass through a shell), the dataset check and lock, printing
the result's summary, logging, and exit codes. Cores return results and never print.
"""
from __future__ import annotations

import argparse
import importlib
import keyword
import logging
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Callable

# Before numpy loads: the stages run their parallel work in worker processes
# (dataset/hashcache.py), and OpenBLAS's own threads on top of those only spin (make dedupe on
# the bench's 1,400 images: 9.8 s -> 8.5 s, system time 4.5 s -> 2 s). A user's setting wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from .errors import DatasetLocked, MasksetError  # noqa: E402

log = logging.getLogger(__name__)

# The modules whose COMMANDS make up `maskset` (docs/design.md lists what each owns).
COMMAND_MODULES = ("dataset.commands", "scraping.commands", "annotation.commands",
                   "training.commands", "demo")

TRUE_WORDS = {"1", "yes", "true", "on", "y"}
FALSE_WORDS = {"0", "no", "false", "off", "n", ""}


def yes_no(text: str | bool, name: str = "value") -> bool:
    """1/0, yes/no, true/false, on/off."""
    if isinstance(text, bool):
        return text
    word = str(text).strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise MasksetError(f"{name}={text!r}: expected 1 or 0 (yes/no, true/false).")


@dataclass(frozen=True)
class Var:
    """One make variable of a command: `VAL=0.2` is `--val 0.2`.

    type: str, int, float, bool (a switch: `FIX=1` is `--fix`), or yes_no (an explicit 1/0).
    help: the text, or a function giving it (called only when that command's options are shown,
    so a default held by a heavy module costs nothing to the other commands)."""
    name: str
    help: str | Callable[[], str]
    type: Callable = str
    default: Any = None
    choices: tuple | None = None
    many: bool = False        # several values (space-separated in the make variable)
    metavar: str | None = None

    @property
    def option(self) -> str:
        return "--" + self.name.lower().replace("_", "-")

    @property
    def dest(self) -> str:
        name = self.name.lower()
        return name + "_" if keyword.iskeyword(name) else name  # CLASS= is args.class_

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        text = self.help() if callable(self.help) else self.help
        if self.type is bool:
            parser.add_argument(self.option, dest=self.dest, action="store_true", help=text)
            return
        convert = self.type
        if self.type is yes_no:
            convert = lambda text, name=self.name: yes_no(text, name)  # noqa: E731
        parser.add_argument(self.option, dest=self.dest, type=convert, default=self.default,
                            choices=self.choices, nargs="*" if self.many else None,
                            metavar=self.metavar, help=text)

    def from_environment(self, environ) -> list[str]:
        """The argv words for this variable as make passed it (an exported variable), or []."""
        value = environ.get(self.name)
        if value is None or not value.strip():
            return []
        if self.type is bool:
            return [self.option] if yes_no(value, self.name) else []
        if self.many:
            return [self.option, *value.split()]
        return [self.option, value.strip()]


DATA = Var("DATA", "the dataset folder (default: data)", default="data")


@dataclass(frozen=True)
class Command:
    """One stage. run(dataset, args) -> a Result (dataset is None when data == "none").

    data: "existing" (the stage needs a dataset: a typo in DATA= is an error), "create" (import,
    scrape: made if missing), "optional" (training: a run may name its own data) or "none". lock: "write", "read" (a shared lock; works on a
    read-only dataset), "snapshot" (read, or go on with a warning while a writer holds it) or
    None, or a function of the parsed arguments giving one of them. precheck(args) runs before
    the dataset is touched (a bad SRC= must not leave an empty DATA behind)."""
    name: str
    help: str
    run: Callable
    vars: tuple = ()
    data: str = "existing"
    lock: str | Callable | None = "write"
    precheck: Callable | None = None

    def variables(self) -> tuple:
        return ((DATA,) if self.data != "none" else ()) + tuple(self.vars)


@dataclass
class Registry:
    commands: dict[str, Command] = field(default_factory=dict)

    @classmethod
    def load(cls, until: str | None = None) -> "Registry":
        """Every package's commands; with `until`, only the modules up to the one declaring that
        command (`maskset validate` need not import the scraper's or the trainer's modules)."""
        registry = cls()
        for module_name in COMMAND_MODULES:
            for command in importlib.import_module(module_name).COMMANDS:
                if command.name in registry.commands:
                    raise RuntimeError(f"two commands named {command.name}")
                registry.commands[command.name] = command
            if until is not None and until in registry.commands:
                break
        return registry


def build_parser(registry: Registry, only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="maskset", description=__doc__.splitlines()[0])
    parser.add_argument("--make", action="store_true",
                        help="read the stage's options from make variables in the environment")
    parser.add_argument("--make-help", action="store_true", help="list every make target and variable")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in registry.commands.values():
        if only is not None and command.name != only:
            continue
        p = sub.add_parser(command.name, help=command.help, description=command.help)
        for var in command.variables():
            var.add_to(p)
    return parser


def make_help(registry: Registry) -> str:
    lines = ["maskset: make setup | demo | test | bench   (make <target> VAR=value ...)"]
    for command in registry.commands.values():
        names = " ".join(f"{v.name}=" for v in command.variables() if v.name != "DATA")
        lines.append(f"  {command.name:16s} {command.help}")
        if names:
            lines.append(f"  {'':16s}   {names}")
    lines.append("  every stage with a dataset takes DATA=<folder> (default data)")
    return "\n".join(lines)


class _Format(logging.Formatter):
    def format(self, record):
        message = record.getMessage()
        return f"{record.levelname.lower()}: {message}" if record.levelno >= logging.WARNING else message


def configure_logging() -> None:
    """Warnings (and errors) to stderr as `warning: ...`; info to stdout."""
    root = logging.getLogger()
    if getattr(root, "_maskset", False):
        return
    warn = logging.StreamHandler(sys.stderr)
    warn.setLevel(logging.WARNING)
    warn.setFormatter(_Format())
    info = logging.StreamHandler(sys.stdout)
    info.setLevel(logging.INFO)
    info.addFilter(lambda record: record.levelno < logging.WARNING)
    info.setFormatter(_Format())
    root.handlers[:] = [warn, info]
    root.setLevel(logging.INFO)
    root._maskset = True  # type: ignore[attr-defined]
    for noisy in ("tensorflow", "absl", "h5py", "matplotlib", "PIL", "urllib3", "selenium"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _dataset_for(command: Command, args):
    if command.data == "none":
        return None
    from .layout import Dataset
    dataset = Dataset.at(args.data)
    return dataset.require() if command.data == "existing" else dataset


def execute(command: Command, args):
    """Check the dataset, take the command's lock, run it: the Result."""
    if command.precheck is not None:
        command.precheck(args)
    dataset = _dataset_for(command, args)
    lock = command.lock(args) if callable(command.lock) else command.lock
    if dataset is None or lock is None:
        return command.run(dataset, args)
    if lock in ("read", "snapshot"):
        try:
            with dataset.reading(command.name):
                return command.run(dataset, args)
        except DatasetLocked as busy:
            if lock == "read":
                raise
            log.warning("%s The %s is a snapshot taken while it writes.", busy, command.name)
            return command.run(dataset, args)
    made = not dataset.root.exists()
    try:
        with dataset.lock(command.name):
            return command.run(dataset, args)
    except BaseException:
        if made:
            _remove_if_only_ours(dataset)
        raise


def _remove_if_only_ours(dataset) -> None:
    """A dataset folder this run made, holding nothing but its own empty folders and lock file,
    goes again: a refused import must not leave an empty DATA behind."""
    root = dataset.root
    leftovers = [p for p in root.rglob("*") if p.is_file() and p != dataset.lock_file] if root.is_dir() else []
    if root.is_dir() and not leftovers:
        for folder in sorted((p for p in root.rglob("*") if p.is_dir()), reverse=True):
            folder.rmdir()
        dataset.lock_file.unlink(missing_ok=True)
        root.rmdir()


def call(name: str, data=None, **values):
    """Run a command from Python (the demo, tests) as the CLI would, without parsing:
    `call("split", dataset, val=0.25)`. Unset options take their defaults."""
    command = Registry.load().commands[name]
    namespace = argparse.Namespace(**{v.dest: (False if v.type is bool else v.default)
                                      for v in command.variables()})
    if data is not None:
        namespace.data = str(getattr(data, "root", data))
    for key, value in values.items():
        if not hasattr(namespace, key):
            raise TypeError(f"{name} takes no option {key!r}")
        setattr(namespace, key, value)
    return execute(command, namespace)


def main(argv=None, environ=None) -> int:
    configure_logging()
    environ = os.environ if environ is None else environ
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        named = argv[1] if argv[:1] == ["--make"] and len(argv) == 2 else (argv[0] if argv else None)
        registry = Registry.load(until=named)
        if named not in registry.commands:  # --help, --make-help, a typo: every command
            named, registry = None, Registry.load()
        parser = build_parser(registry, only=named)
        if argv[:1] == ["--make-help"]:
            print(make_help(registry))
            return 0
        if argv[:1] == ["--make"] and len(argv) == 2 and argv[1] in registry.commands:
            command = registry.commands[argv[1]]
            argv = [argv[1]] + [word for var in command.variables() for word in var.from_environment(environ)]
        args = parser.parse_args(argv)
        if not args.command:
            parser.print_help()
            return 2
        command = registry.commands[args.command]
        result = execute(command, args)
    except MasksetError as error:
        done = getattr(error, "result", None)
        if done is not None:
            print(done.summary(), flush=True)  # what was saved before the error, then the error
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("interrupted: everything finished so far is saved; run the same command to go on.",
              file=sys.stderr)
        return 130
    except OSError as error:  # a full disk, a file vanished under us ...
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot write or read{where}: {error.strerror or error}. Free some disk space (or "
              f"check the folder's permissions), then run the same command again: finished work is "
              f"kept and an interrupted change is completed.", file=sys.stderr)
        return 2
    text = result.summary() if result is not None else ""
    if text:
        print(text, flush=True)
    return getattr(result, "exit_code", 0) or 0


if __name__ == "__main__":
    raise SystemExit(main())
