"""The repository's own documentation stays true to its code: every module listed, every named file present."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = [ROOT / "src" / "scalinglab", ROOT / "analysis" / "scalinglaws"]
MAX_MODULE_LINES = 450


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in package.glob("*.py") if p.name not in ("__init__.py",
                                                                                            "__main__.py"))


def layout_section() -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("## Layout")
    return readme[start:readme.index("\n## ", start + 1)]


def listed_modules() -> list[str]:
    """'package/module.py' for each module line of the Layout block (indented under its package's line)."""
    listed, package = [], None
    for line in layout_section().splitlines():
        if re.match(r"^(src/scalinglab|analysis/scalinglaws)/\s", line):
            package = line.split("/")[1]
        elif not line.startswith(" "):
            package = None
        elif package and (match := re.match(r"^\s+(\w+\.py)\s", line)):
            listed.append(f"{package}/{match.group(1)}")
    return listed


def test_the_readme_layout_lists_every_module_once():
    listed = listed_modules()
    assert len(listed) == len(set(listed)), [name for name in listed if listed.count(name) > 1]
    present = {f"{p.parent.name}/{p.name}" for p in modules()}
    assert not present - set(listed), f"README.md's Layout section does not list {sorted(present - set(listed))}"
    assert not set(listed) - present, f"README.md's Layout section lists missing modules {sorted(set(listed) - present)}"


@pytest.mark.parametrize("path", modules(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_no_module_is_over_the_size_limit(path):
    assert len(path.read_text().splitlines()) <= MAX_MODULE_LINES


def named_repo_files() -> set[str]:
    """Repository paths like docs/X.md, scripts/x.py or tests/x.py named in the docs, the code or the sweep files."""
    texts = [ROOT / "README.md", ROOT / "analysis" / "README.md", *(ROOT / "docs").glob("*.md"),
             *(p for package in PACKAGES for p in package.rglob("*.py")),
             *(ROOT / "src" / "scalinglab").rglob("*.yaml")]
    pattern = re.compile(r"(?<![\w/.])((?:docs|scripts|tests|results)/[\w./-]*\w)")
    return {match for text in texts for match in pattern.findall(text.read_text())}


def test_every_file_the_docs_and_code_name_exists():
    missing = sorted(name for name in named_repo_files() if not (ROOT / name).exists())
    assert not missing, missing
