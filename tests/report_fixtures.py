"""Small synthetic stored runs for the report tests: manifests written through the store, with
verdict rows made by the real row builders (rates with their controls, one-sided, exact), no
experiment run.  ``write_runs(out)`` returns the run ids; its rows pass, fail and stay undecided."""

from __future__ import annotations

import numpy as np

from sims.core import store
from sims.core.verdicts import bound_row, exact_row, rate_row

MS = [100, 400, 1600, 6400]


def _seeded(slope: float, noise: float, seeds: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [[m ** slope * np.exp(noise * rng.standard_normal()) for _ in range(seeds)] for m in MS]


def rows_paper1():
    return [
        rate_row("1", "||H(0) - H*|| ~ m^-1/2", MS, _seeded(-0.5, 0.01), predicted=-0.5,
                 quantity="log-log slope of the kernel error in m", controls=("c1",)),
        rate_row("c1", "control: wrong H* does not converge", MS, _seeded(0.0, 0.01, seed=1), predicted=-0.5,
                 quantity="log-log slope of the distance to a wrong limit", control_of="1"),
        rate_row("2", "rows move ~ m^-1/2", MS, _seeded(-0.5, 0.6, seeds=2, seed=2), predicted=-0.5,
                 quantity="log-log slope of the row movement in m"),
        bound_row("3", "lambda_min(H(0)) >= lambda/2", 0.8, 0.7, 0.9, bound=0.5, relation=">=",
                  quantity="lambda_min(H(0)) / lambda", tol_why="claim 2's constant"),
    ]


def rows_paper2():
    return [
        exact_row("1", "two-point test separates the structures", 0.2, target=1.0, tol=0.1, relation="within",
                  quantity="power of the test", tol_why="a stated tolerance"),
        rate_row("2", "shared prompts: error ~ n^-1/2", MS, _seeded(-0.5, 0.01, seed=3), predicted=-0.5,
                 quantity="log-log slope of the estimation error in n", controls=("c2",)),
        rate_row("c2", "control: n^-1/4 is rejected", MS, _seeded(-0.5, 0.01, seed=3), predicted=-0.25,
                 quantity="log-log slope of the estimation error in n", control_of="2"),
    ]


def write_runs(out, *, drop_row: bool = False) -> list[str]:
    """Two stored runs ("kernel", paper 1; "reparam", paper 2) under ``out``; their run ids."""
    ids = []
    for exp, rows in (("kernel", rows_paper1()), ("reparam", rows_paper2())):
        rid = store.run_id(exp, {"synthetic": True}, "float64")
        rows = rows[:-1] if drop_row else rows
        store.write_manifest(out, exp, rid, {
            "run_id": rid, "experiment": exp, "summary": "synthetic", "precision": "float64",
            "config": {"synthetic": True}, "cells": [], "counts": {"cells": 0, "computed": 0, "reused": 0},
            "verdict": [r.as_dict() for r in rows], "passed": not any(r.failed for r in rows),
            "undecided": sum(r.status == "undecided" for r in rows),
            "provenance": {"git": {"revision": "0" * 40, "dirty": False}, "versions": {"jax": "test"},
                           "device": {"platform": "cpu", "kind": "cpu", "count": 1}, "dtype": "float64"},
            "started": "2026-12-03T00:00:00+00:00", "finished": "2026-12-03T00:00:01+00:00", "elapsed_s": 1.0,
        })
        ids.append(rid)
    return ids
