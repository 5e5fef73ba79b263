"""``sims.host.allocator``: glibc's settings for long CPU runs, their switch, and where they are recorded."""

import ctypes.util
import sys

import pytest

from sims.host import allocator

from sims.cli import app as cli
from sims.cli import process
from sims.core.provenance import provenance


def test_bad_setting_refused_with_the_variable_named():
    with pytest.raises(ValueError, match=allocator.ENV):
        allocator.tune({allocator.ENV: "fast"})


def test_system_keeps_the_defaults_and_says_so():
    assert allocator.tune({allocator.ENV: "system"}) == f"system ({allocator.ENV}=system)" == allocator.state()


@pytest.mark.skipif(not sys.platform.startswith("linux") or "libc.so" not in str(ctypes.util.find_library("c")),
                    reason="the tuned settings are glibc's (Linux)")
def test_tuned_on_glibc():
    assert allocator.tune({}) == "glibc: no mmap, trim above 2 GiB" == allocator.state()


def test_recorded_in_provenance():
    allocator.tune({allocator.ENV: "system"})
    assert provenance("float64")["allocator"] == allocator.state()


def test_cli_exits_2_before_any_work(monkeypatch, capsys):
    monkeypatch.setenv(allocator.ENV, "fast")
    with pytest.raises(SystemExit) as e:
        cli.main(["list"])
    assert e.value.code == process.EXIT_USAGE == 2
    assert allocator.ENV in capsys.readouterr().err
