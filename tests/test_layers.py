"""The house stays standing: imports point down the layers declared in pyproject.toml, no mode
imports another, and no module imports itself round a cycle."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx

REPO = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    """import-linter on the package under `root`/src with `root`/pyproject.toml's contracts."""
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, check=False)


def test_the_contracts_hold() -> None:
    proc = lint_imports(REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_an_upward_import_breaks_the_layers(tmp_path: Path) -> None:
    """The contracts catch what they are for: settings (the lowest layer) importing the CLI."""
    shutil.copytree(REPO / "src" / "osmotic", tmp_path / "src" / "osmotic",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    settings = tmp_path / "src" / "osmotic" / "settings.py"
    settings.write_text(settings.read_text() + "\nfrom osmotic.cli import main  # noqa: E402\n")
    proc = lint_imports(tmp_path)
    assert proc.returncode != 0
    assert "osmotic.settings -> osmotic.cli" in proc.stdout


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("osmotic")
    edges = nx.DiGraph((m, n) for m in graph.modules
                       for n in graph.find_modules_directly_imported_by(m))
    assert list(nx.simple_cycles(edges)) == []
