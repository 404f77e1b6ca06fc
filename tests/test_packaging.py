"""The two distributions declare what they import, say which Python they are tested on, and ship what they claim."""
from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# distribution -> (its pyproject, the source folders whose imports it must declare)
DISTRIBUTIONS = {
    "scalinglab": (ROOT / "pyproject.toml", [ROOT / "src" / "scalinglab", ROOT / "scripts"]),
    "scalinglaws": (ROOT / "analysis" / "pyproject.toml", [ROOT / "analysis" / "scalinglaws"]),
}
ANALYSIS_ALLOWED = {"numpy", "scipy", "pandas", "pyarrow", "matplotlib", "rich", "markdown-it-py"}


def _project(dist: str) -> dict:
    return tomllib.loads(DISTRIBUTIONS[dist][0].read_text())["project"]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared(dist: str) -> set[str]:
    project = _project(dist)
    reqs = list(project["dependencies"]) + [r for extra in project.get("optional-dependencies", {}).values()
                                            for r in extra]
    return {_norm(re.match(r"[A-Za-z0-9_.-]+", r).group(0)) for r in reqs}


def _third_party_imports(folders: list[Path]) -> dict[str, Path]:
    """Top-level module name -> one file importing it, for every non-stdlib, non-local import."""
    local = {"scalinglab", "scalinglaws", "__future__"}
    found = {}
    for folder in folders:
        for file in folder.rglob("*.py"):
            for node in ast.walk(ast.parse(file.read_text())):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in local:
                        found.setdefault(top, file)
    return found


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_every_imported_package_is_declared(dist):
    modules = packages_distributions()
    missing = []
    for top, file in sorted(_third_party_imports(DISTRIBUTIONS[dist][1]).items()):
        providers = {_norm(d) for d in modules.get(top, [top])}
        if not providers & _declared(dist):
            missing.append(f"{top} ({file.relative_to(ROOT)}; distribution {sorted(providers)})")
    assert not missing, f"{dist} imports packages its pyproject does not declare: {missing}"


def test_analysis_depends_only_on_its_light_stack_and_scalinglab_on_it():
    assert _declared("scalinglaws") - {"pytest"} <= ANALYSIS_ALLOWED
    assert "scalinglaws" in _declared("scalinglab")
    root = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert root["tool"]["setuptools"]["packages"]["find"]["where"] == ["src"], "analysis/ is its own distribution"


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_requires_python_is_what_is_tested(dist):
    """constraints.txt is tested on 3.11 (its pins do not resolve on 3.10)."""
    assert "Python 3.11" in (ROOT / "constraints.txt").read_text()
    assert _project(dist)["requires-python"] == ">=3.11"


@pytest.mark.parametrize("dist", sorted(DISTRIBUTIONS))
def test_license_is_an_spdx_string_and_py_typed_exists(dist):
    pyproject, _ = DISTRIBUTIONS[dist]
    assert _project(dist)["license"] == "MIT"
    data = tomllib.loads(pyproject.read_text())["tool"]["setuptools"].get("package-data", {})
    for package, files in data.items():
        base = pyproject.parent / ("src" if dist == "scalinglab" else "") / package
        for name in files:
            assert list(base.glob(name)), f"{pyproject.name} declares {package}/{name}, which does not exist"


def test_every_pinned_requirement_has_a_pin():
    pins = {_norm(line.split("==")[0]) for line in (ROOT / "constraints.txt").read_text().splitlines()
            if "==" in line and not line.startswith("#")}
    declared = (_declared("scalinglab") | _declared("scalinglaws")) - {"scalinglaws"}
    assert declared <= pins, f"declared without an exact pin in constraints.txt: {sorted(declared - pins)}"
