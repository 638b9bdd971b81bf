"""Layers: simulators/ <- agents/ <- scenarios/; nothing lower imports anything higher."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HIGHER = {"simulators": ("agents", "scenarios"), "agents": ("scenarios",)}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module


@pytest.mark.parametrize("layer", sorted(HIGHER))
def test_no_module_imports_a_higher_layer(layer):
    bad = [f"{path.relative_to(ROOT)} imports {name}"
           for path in sorted((ROOT / layer).rglob("*.py"))
           for name in _imports(path) if name.split(".")[0] in HIGHER[layer]]
    assert not bad, bad


def test_training_environment_loads_no_mosaik():
    code = ("import sys, agents.env, agents.marl.train; "
            "print(sorted({m.split('.')[0] for m in sys.modules if m.startswith(('mosaik', 'scenarios'))}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
