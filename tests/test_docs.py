"""The user documentation stays true and short.

- Every ```python block of docs/api.md runs, top to bottom, in an empty folder (one namespace for
  the page, so later blocks use names of earlier ones, as a reader would in one session).
- README.md is a user guide of at most 300 lines.
- README.md and docs/*.md speak of the software, not of how it was developed (CHANGELOG.md is
  the place for history).
- Relative links in README.md and docs/*.md point to files that exist.
"""
from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
README_MAX_LINES = 300
DEVELOPMENT_TALK = re.compile(
    r"this session|this morning|issue [0-9]|commit [0-9a-f]{7}|\(ours\)", re.IGNORECASE)
FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"\]\(([^)\s]+)\)")


def code_blocks(path: Path, language: str) -> list[tuple[int, str]]:
    """(line number of the opening fence, code) of every ```language block of `path`."""
    text = path.read_text()
    return [(text.count("\n", 0, m.start()) + 1, m.group(2)) for m in FENCE.finditer(text)
            if m.group(1) == language]


def test_api_page_has_python_blocks() -> None:
    assert len(code_blocks(ROOT / "docs" / "api.md", "python")) >= 5


def test_api_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each block is executed as a reader would run it: in a fresh folder, in order, in one
    module (a real module, so that classes defined on the page have an import path)."""
    page = ROOT / "docs" / "api.md"
    monkeypatch.chdir(tmp_path)
    name = "osmotic_docs_api_page"
    module = types.ModuleType(name)
    module.__file__ = str(tmp_path / f"{name}.py")
    monkeypatch.setitem(sys.modules, name, module)
    for line, code in code_blocks(page, "python"):
        try:
            exec(compile(code, f"{page.name}:{line}", "exec"), module.__dict__)  # noqa: S102
        except Exception as e:  # noqa: BLE001 - name the block that failed
            pytest.fail(f"docs/api.md, the python block at line {line} failed: "
                        f"{type(e).__name__}: {e}")


def test_readme_is_short() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES})"


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_no_development_talk(path: Path) -> None:
    found = [f"{path.name}:{n}: {line.strip()}"
             for n, line in enumerate(path.read_text().splitlines(), 1)
             if DEVELOPMENT_TALK.search(line)]
    assert not found, "\n".join(found)


@pytest.mark.parametrize("path", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_exist(path: Path) -> None:
    broken = []
    for target in LINK.findall(path.read_text()):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue  # a web address or an anchor on the same page
        if not (path.parent / target.split("#")[0]).exists():
            broken.append(target)
    assert not broken, f"{path.name}: links to missing files: {broken}"
