"""A fresh virtualenv that sees none of this checkout: the project's wheels installed into it, the other packages
borrowed (read-only, offline) from the current environment.

    python scripts/isolated_venv.py DIR             # scalinglab + scalinglaws wheels; every package visible
    python scripts/isolated_venv.py DIR --analysis  # only scalinglaws and what it depends on (no torch)

The borrowed packages come through a .pth file, so nothing is downloaded and torch stays the local build. With
--analysis only the dependency closure of scalinglaws (and pytest's, to run its tests) is linked into a folder of
its own, so `import torch` fails in that venv. Prints the venv's python.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import sysconfig
import tomllib
import venv
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheels(out: Path, analysis_only: bool = False) -> list[Path]:
    """Wheels of analysis/ (and of the root project) built offline with this environment's setuptools."""
    sources = [ROOT / "analysis"] + ([] if analysis_only else [ROOT])
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    *map(str, sources)], check=True, cwd=out)
    wheels = sorted(out.glob("*.whl"))
    if len(wheels) != len(sources):
        raise RuntimeError(f"pip wheel built {[w.name for w in wheels]} from {[str(s) for s in sources]}")
    return wheels


def _closure(names: list[str]) -> set[str]:
    """Distributions `names` need, recursively (extras and other platforms' requirements left out)."""
    seen, todo = set(), list(names)
    while todo:
        name = re.sub(r"[-_.]+", "-", todo.pop()).lower()
        if name in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.add(name)
        for req in dist.requires or []:
            if "extra ==" in req or "sys_platform == \"win32\"" in req:
                continue
            todo.append(re.match(r"[A-Za-z0-9_.-]+", req).group(0))
    return seen


def _link_distributions(names: set[str], folder: Path) -> None:
    """Symlink each distribution's top-level files and its .dist-info into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        dist = metadata.distribution(name)
        base = Path(dist.locate_file(""))
        tops = {Path(str(f)).parts[0] for f in dist.files or [] if not str(f).startswith("..")}
        for top in tops:
            target = folder / top
            if (base / top).exists() and not target.exists() and top != "__pycache__":
                target.symlink_to(base / top)


def make_venv(directory: Path, wheels: list[Path], analysis_only: bool = False) -> Path:
    """Create the venv, install `wheels` (no dependencies, no index) and make the borrowed packages visible."""
    venv.EnvBuilder(with_pip=True, clear=True).create(directory)
    python = directory / "bin" / "python"
    purelib = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                                  capture_output=True, text=True, check=True).stdout.strip())
    if analysis_only:
        borrowed = directory / "borrowed"
        project = tomllib.loads((ROOT / "analysis" / "pyproject.toml").read_text())["project"]
        deps = [re.match(r"[A-Za-z0-9_.-]+", r).group(0) for r in project["dependencies"]]
        _link_distributions(_closure(deps + ["pytest"]) - {"torch", "scalinglab", "scalinglaws"}, borrowed)
        visible = [borrowed]
    else:
        visible = sorted({Path(sysconfig.get_paths()[k]) for k in ("purelib", "platlib")})
    # Install first: with the borrowed folders visible, pip would take an editable install there as "satisfied".
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    *map(str, wheels)], check=True, cwd=directory)
    (purelib / "_borrowed.pth").write_text("".join(f"{p}\n" for p in visible))
    return python


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("--analysis", action="store_true", help="only scalinglaws and its dependencies (no torch)")
    args = parser.parse_args()
    wheelhouse = args.directory.with_name(args.directory.name + "-wheels")
    print(make_venv(args.directory.resolve(), build_wheels(wheelhouse.resolve(), args.analysis), args.analysis))
