"""The benchmarks are not run by the suite (they take an hour and want an idle machine), so a
refactor can break them silently: bench_report once imported a function that had moved. Every
name a bench script imports from maskset's own packages must exist."""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OWN = ("dataset", "training", "scraping", "annotation", "demo")


@pytest.mark.parametrize("script", sorted(p.name for p in (REPO / "bench").glob("*.py")))
def test_every_name_a_bench_imports_from_maskset_exists(script):
    tree = ast.parse((REPO / "bench" / script).read_text(encoding="utf-8"))
    missing = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in OWN:
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"line {node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] in OWN:
                    importlib.import_module(alias.name)
    assert not missing, f"bench/{script} imports names that do not exist: {missing}"
