"""A second tiny experiment, "toy-twin" (the toy's cells under another name), for the tests that
run two experiments side by side (``sims reproduce --jobs 2``).  Its ``run`` lives here, so a
child process that imports this module (the module of ``run``) finds it registered.

``TOY_TWIN_CRASH=1`` in the environment makes every cell raise (a crash inside a child).
"""

from __future__ import annotations

import dataclasses
import os

import sims_toy
from sims.core.experiment import REGISTRY, register


def run(cell, *, key):
    if os.environ.get("TOY_TWIN_CRASH"):
        raise RuntimeError("toy-twin crashed on purpose (TOY_TWIN_CRASH)")
    return sims_toy.run(cell, key=key)


TWIN = dataclasses.replace(sims_toy.TOY, name="toy-twin", run=run, run_batch=None, batch_key=None,
                           summary="The toy experiment under a second name (tests of side-by-side runs).")

if REGISTRY.get("toy-twin") is not TWIN:
    REGISTRY.pop("toy-twin", None)
    register(TWIN)
