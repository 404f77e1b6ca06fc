"""Every file the analysis writes is readable by teammates (mode from the umask, not mkstemp's 0600)."""
from __future__ import annotations

import os
import stat

import matplotlib.pyplot as plt
import pytest

from scalinglaws._files import atomic_write, write_text
from scalinglaws.laws import PUBLISHED, save_law
from scalinglaws.plots import save_figure


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_files_get_the_umask_mode(tmp_path, umask_022):
    assert mode(write_text(tmp_path / "report.md", "# r\n")) == 0o644
    assert mode(save_law(PUBLISHED["chinchilla"], tmp_path / "fit.json")) == 0o644
    assert mode(save_figure(plt.figure(), tmp_path / "fig.png")) == 0o644
    os.umask(0o077)
    assert mode(write_text(tmp_path / "private.md", "x")) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "fit.json", "private.md", "report.md"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_text(tmp_path / "report.md", "old")

    def dies(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic_write(target, dies)
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["report.md"]
