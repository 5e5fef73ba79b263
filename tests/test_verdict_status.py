"""VerdictRow's three states (pass, fail, undecided) and what they mean for a run's exit code."""

from __future__ import annotations

import dataclasses
import json

import pytest

import sims_toy
from cli_runner import invoke
from sims.core.experiment import REGISTRY, VerdictRow


def test_status_is_derived_and_checked():
    assert VerdictRow("c", "p", "m", True).status == "pass"
    assert VerdictRow("c", "p", "m", False).status == "fail" and VerdictRow("c", "p", "m", False).failed
    u = VerdictRow.undecided("c", "p", "m", "interval too wide; needs n >= 1e6")
    assert u.status == "undecided" and u.passed is False and not u.failed
    assert u.as_dict()["status"] == "undecided" and VerdictRow(**u.as_dict()) == u
    with pytest.raises(ValueError, match="contradicts"):
        VerdictRow("c", "p", "m", True, status="undecided")
    with pytest.raises(ValueError, match="contradicts"):
        VerdictRow("c", "p", "m", False, status="pass")
    with pytest.raises(ValueError, match="status must be"):
        VerdictRow("c", "p", "m", False, status="maybe")


def _toy_with(monkeypatch, extra_row):
    def verdict(cfg, results):
        return sims_toy.verdict(cfg, results) + [extra_row]

    monkeypatch.setitem(REGISTRY, "toy", dataclasses.replace(sims_toy.TOY, verdict=verdict))


def test_undecided_row_exits_0_and_is_stored(tmp_path, monkeypatch):
    _toy_with(monkeypatch, VerdictRow.undecided("slow claim", "slope -1/4", "-0.2 [-0.9, 0.5]", "needs 64 reps"))
    r = invoke("run", "toy", "--out", tmp_path, "--seeds", "1", "-q")
    assert r.exit_code == 0, r.output
    assert "UNDECIDED" in r.stdout and "1 undecided" in r.stdout
    m = json.loads(next((tmp_path / "toy" / "runs").iterdir()).read_text())
    assert m["passed"] is True and m["undecided"] == 1
    assert [row["status"] for row in m["verdict"]] == ["pass", "pass", "undecided"]


def test_a_failed_row_still_exits_1_beside_undecided_ones(tmp_path, monkeypatch):
    _toy_with(monkeypatch, VerdictRow.undecided("slow claim", "slope -1/4", "-0.2 [-0.9, 0.5]", "needs 64 reps"))
    r = invoke("run", "toy", "--out", tmp_path, "--seeds", "1", "--tol", "0", "-q")
    assert r.exit_code == 1, r.output
    m = json.loads(next((tmp_path / "toy" / "runs").iterdir()).read_text())
    assert m["passed"] is False and m["undecided"] == 1
