"""A disk that fills up during a run (issue 23): exit 4 and one line naming the path and the
remedy, only whole cells left behind, and a rerun that resumes to the numbers of a clean run.

The real case mounts a small tmpfs (``mount -t tmpfs -o size=64k``; skipped where mounting is not
permitted) and grows it afterwards (``remount,size=``), so the finished cells stay; the injected
case makes the write layer's ``fsync`` fail with ``ENOSPC`` after a few files, on any machine.
"""

from __future__ import annotations

import errno
import os
import subprocess

import numpy as np
import pytest

import sims_toy  # noqa: F401  (registers "toy")
from cli_runner import invoke
from sims.core import cellfile

ARGS = ("run", "toy", "--n", "2000", "--x", "0", "--x", "1", "--x", "2", "--x", "3", "--seeds", "3", "-q")


def _cells(out):
    folder = out / "toy" / "cells"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def _check_whole_cells(out):
    files = _cells(out)
    assert all(f.suffix == ".npz" and not f.name.startswith(".") for f in files), files  # no temp file left
    for f in files:
        assert cellfile.cell_done(f, f.stem), f
    return files


def _check_one_line(r, where):
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert r.exit_code == 4, r.output
    assert len(lines) == 1 and lines[0].startswith("error: cannot write "), r.output
    assert str(where) in lines[0] and "--out" in lines[0] and "rerun" in lines[0], r.output
    assert "Traceback" not in r.output
    return lines[0]


def _same_as_clean_run(out, tmp_path):
    ref = tmp_path / "reference"
    assert invoke(*ARGS, "--out", ref).exit_code == 0
    got, want = _cells(out), _cells(ref)
    assert [f.name for f in got] == [f.name for f in want]
    for a, b in zip(got, want):
        xa, xb = cellfile.read_cell(a)[0], cellfile.read_cell(b)[0]
        assert all(np.array_equal(xa[k], xb[k]) for k in xb)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    try:
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True,
                       capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here (needs root); the injected ENOSPC test covers the message")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True, timeout=30)


def test_a_full_tmpfs_ends_with_one_line_and_resumes(small_disk, tmp_path):
    out = small_disk / "results"
    r = invoke(*ARGS, "--out", out)
    line = _check_one_line(r, out / "toy")
    assert "No space left on device" in line and "free some space" in line
    partial = _check_whole_cells(out)
    assert 0 < len(partial) < 12  # it did fill up during the run
    subprocess.run(["mount", "-o", "remount,size=4m", str(small_disk)], check=True, capture_output=True, timeout=30)
    assert _cells(out) == partial  # the finished cells survived the remount
    r = invoke(*ARGS, "--out", out)
    assert r.exit_code == 0, r.output
    assert len(_check_whole_cells(out)) == 12
    _same_as_clean_run(out, tmp_path)


def test_injected_enospc_ends_with_one_line_and_resumes(tmp_path, monkeypatch):
    out = tmp_path / "results"
    real, calls = os.fsync, [0]

    def fsync(fd):
        if os.path.isdir(f"/proc/self/fd/{fd}") is False and (out / "toy" / "cells").is_dir():
            calls[0] += 1
            if calls[0] > 4:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    r = invoke(*ARGS, "--out", out)
    monkeypatch.setattr(os, "fsync", real)
    line = _check_one_line(r, out)  # the failing fsync may be a cell's, a claim's or a folder's: a path under --out
    assert "free some space" in line
    assert len(_check_whole_cells(out)) >= 1  # which write hits the full disk depends on the store's fsyncs
    r = invoke(*ARGS, "--out", out, "--debug")
    assert r.exit_code == 0, r.output
    _same_as_clean_run(out, tmp_path)


def test_debug_shows_the_traceback(tmp_path, monkeypatch):
    out = tmp_path / "results"

    def fail(*args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr(cellfile, "write_cell", lambda path, *a, **k: fail())
    r = invoke(*ARGS, "--out", out, "--debug")
    assert r.exit_code == 4 and "Traceback" in r.output and "read-only" in r.output, r.output
