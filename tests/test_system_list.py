"""The one list of system packages (scripts/check_system.py) knows every program the code runs.

A program that a stage, a test or a bench runs but the list does not install passes on a machine
where someone installed it by hand and fails on a fresh one (ImageMagick's `import` did exactly
that). So every subprocess call and every shutil.which() with a literal program name is read
from the source, and each name must be one the list provides.
"""
from __future__ import annotations

import ast
import runpy
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SYSTEM = runpy.run_path(str(REPO / "scripts" / "check_system.py"))
SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "which", "execvp", "execv", "spawnlp"}
SPAWNING_MODULES = {"subprocess", "shutil", "os"}
PYTHON_PROGRAMS = {"sys.executable", "PY", "python", "python3"}  # the venv's own interpreter


def _first_word(node):
    """The program a spawn call names, when it is a literal (or a tuple/list starting with one)."""
    if isinstance(node, (ast.List, ast.Tuple)) and node.elts:
        node = node.elts[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value.split()[0] if node.value.strip() else None
    return None


def programs_run(path: Path) -> set[tuple[str, int]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and node.args and isinstance(node.func, ast.Attribute):
            module = getattr(node.func.value, "id", "")
            if node.func.attr in SPAWNERS and module in SPAWNING_MODULES:
                word = _first_word(node.args[0])
                if word:
                    found.add((word, node.lineno))
        # a module's list of required tools, e.g. REQUIRED_PROGRAMS = ("Xvfb", "xdotool")
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "REQUIRED_PROGRAMS" for t in node.targets):
            if isinstance(node.value, (ast.Tuple, ast.List)):
                found |= {(e.value, node.lineno) for e in node.value.elts if isinstance(e, ast.Constant)}
    return found


def python_files():
    for folder in ("scraping", "annotation", "dataset", "training", "tests", "bench", "scripts"):
        yield from sorted((REPO / folder).rglob("*.py"))
    yield from sorted(REPO.glob("*.py"))


def test_every_program_the_code_runs_is_in_the_one_list():
    known = SYSTEM["KNOWN_PROGRAMS"]
    unknown = []
    for path in python_files():
        allowed = known | (SYSTEM["INSTALLERS"] if path.name == "check_system.py" else set())
        for word, line in sorted(programs_run(path)):
            if word not in allowed and word not in PYTHON_PROGRAMS and not word.startswith(("/", "-")):
                unknown.append(f"{path.relative_to(REPO)}:{line}: runs {word!r}")
    assert not unknown, ("programs the code runs that scripts/check_system.py does not install "
                         "(add them to its list, or stop needing them):\n" + "\n".join(unknown))


def test_the_check_finds_a_program_missing_from_the_list(tmp_path):
    # the check itself must be able to fail: ImageMagick's screenshot call, as tests/gui.py had it
    sample = tmp_path / "gui.py"
    sample.write_text('import subprocess\nsubprocess.run(["import", "-window", "root", "x.png"])\n'
                      'REQUIRED_PROGRAMS = ("Xvfb", "convert")\n')
    words = {word for word, _ in programs_run(sample)}
    assert {"import", "convert", "Xvfb"} <= words
    assert "import" not in SYSTEM["KNOWN_PROGRAMS"] and "convert" not in SYSTEM["KNOWN_PROGRAMS"]


def test_ci_installs_the_same_list_and_runs_the_readme_test_command():
    ci = (REPO / ".ci" / "run").read_text()
    assert "check_system.py" in ci and "make test" in ci.splitlines()[-1]
    readme = (REPO / "README.md").read_text()
    assert "make test" in readme and "make demo" in readme
    assert set(SYSTEM["APT_PACKAGES"]) == {need.package for need in SYSTEM["NEEDS"]}
