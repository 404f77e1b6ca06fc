"""A report replaces its text and figures together: they are written into a temporary folder that takes the report
folder's place in one step, so a report killed at any moment leaves the previous one whole."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from scalinglaws import _files
from scalinglaws._files import replaced_together

REPO = Path(__file__).resolve().parents[2]
TABLE = REPO / "tests" / "fixtures" / "analysis" / "sweep.csv"


def snapshot(folder: Path) -> dict:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def previous(folder: Path) -> dict:
    folder.mkdir(parents=True)
    for name, text in {"report.md": "old text", "report.html": "<p>old</p>", "fig.png": "old figure",
                       "notes.txt": "a file of someone else's"}.items():
        (folder / name).write_text(text)
    return snapshot(folder)


KILLED_INSIDE = """
import os, signal, sys
from pathlib import Path
from scalinglaws._files import replaced_together, write_text
with replaced_together(sys.argv[1], owned_by=("report.md", "report.html")) as out:
    write_text(Path(out) / "fig.png", "new figure")
    write_text(Path(out) / "report.md", "new text")
    os.kill(os.getpid(), signal.SIGKILL)  # before the html: the new report is half written
"""


@pytest.mark.parametrize("exchange", [True, False], ids=["renameat2", "two-renames"])
def test_killed_inside_leaves_the_previous_report_whole_and_the_next_one_replaces_it_all(tmp_path, exchange,
                                                                                        monkeypatch):
    folder = tmp_path / "out"
    before = previous(folder)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "analysis"), os.environ.get("PYTHONPATH", "")]))
    killed = subprocess.run([sys.executable, "-c", KILLED_INSIDE, str(folder)], env=env, timeout=60)
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(folder) == before
    assert [p.name for p in tmp_path.iterdir() if p.name != "out"]  # the killed one's temporary folder
    if not exchange:
        monkeypatch.setattr(_files, "_exchange", lambda a, b: False)
    with replaced_together(folder, owned_by=("report.md", "report.html")) as out:
        for name, text in {"report.md": "new text", "report.html": "<p>new</p>", "fig.png": "new figure"}.items():
            (out / name).write_text(text)
        assert snapshot(folder) == before  # nothing shows before the swap
    assert snapshot(folder) == {"report.md": b"new text", "report.html": b"<p>new</p>", "fig.png": b"new figure",
                                "notes.txt": b"a file of someone else's"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temporary folder left, the killed one's included


def test_a_kill_between_the_two_renames_is_undone_by_the_next_report(tmp_path):
    folder = tmp_path / "out"
    before = previous(folder)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    os.rename(folder, tmp_path / f".tmp-out.old.{dead.pid}")  # where the fallback's first rename puts it
    with replaced_together(folder, owned_by=("report.md", "report.html")) as out:
        (out / "report.md").write_text("new text")
    assert snapshot(folder) == {**before, "report.md": b"new text"}
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_an_error_inside_changes_nothing(tmp_path):
    folder = tmp_path / "out"
    before = previous(folder)
    with pytest.raises(RuntimeError):
        with replaced_together(folder, owned_by=("report.md",)) as out:
            (out / "report.md").write_text("half")
            raise RuntimeError("a section failed")
    assert snapshot(folder) == before and [p.name for p in tmp_path.iterdir()] == ["out"]


def test_a_folder_holding_other_things_is_never_swapped_whole(tmp_path, monkeypatch):
    """The working directory (or a folder above it, or above the runs being read) gets the files one by one."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep.txt").write_text("mine")
    with replaced_together(tmp_path, owned_by=("report.md",)) as out:
        assert out.parent == tmp_path
        (out / "report.md").write_text("new text")
    assert (tmp_path / "report.md").read_text() == "new text" and (tmp_path / "keep.txt").read_text() == "mine"
    assert Path.cwd() == tmp_path and not list(tmp_path.glob(".tmp-*"))


@pytest.mark.slow  # two reports, about 30 s
def test_a_report_killed_while_writing_leaves_the_previous_report_whole(tmp_path):
    out = tmp_path / "out"
    args = [str(TABLE), "--out", str(out), "--bootstrap", "0", "--grid", "small", "--quiet"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "analysis"), os.environ.get("PYTHONPATH", "")]))
    first = subprocess.run([sys.executable, "-m", "scalinglaws", "report", *args], env=env, capture_output=True,
                           text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-2000:]
    before = snapshot(out)
    assert len([n for n in before if n.endswith(".png")]) >= 3
    kill_at_html = ("import os, signal, sys; from scalinglaws import report; "
                    "report.render_html = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL); "
                    "from scalinglaws.cli import main; sys.exit(main(['report', *sys.argv[1:]]))")
    killed = subprocess.run([sys.executable, "-c", kill_at_html, *args, "--title", "Another title"], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert snapshot(out) == before  # figures, fits.json and the markdown the killed report wrote are not there
