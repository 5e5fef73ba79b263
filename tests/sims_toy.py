"""A tiny experiment for the sims tests; importing this module registers it as "toy".

Each cell draws ``n`` normal samples shifted by ``x``; the claim is that their mean is within
``tol`` of ``x``.  ``CALLS`` records every cell id computed, so tests can see what was skipped.
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp

from sims.core import cellfile, store
from sims.core.checks import COUNT, DRAWS, Count, Interval
from sims.core.experiment import REGISTRY, Experiment, VerdictRow, register

CALLS: list[dict] = []
SLEEP_PER_BATCH = [0.0]  # seconds slept per run / run_batch call (the kill tests set it)


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    x: tuple[float, ...] = dataclasses.field(default=(0.0, 1.0), metadata={"help": "Shift of the samples.",
                                                                        "within": Interval()})
    n: tuple[int, ...] = dataclasses.field(default=(8,), metadata={"help": "Samples per cell.", "within": COUNT})
    seeds: int = dataclasses.field(default=2, metadata={"help": "Seeds per (x, n).", "within": DRAWS})
    scale: float = dataclasses.field(default=1.0, metadata={"help": "Standard deviation.", "within": Interval()})
    mode: str = dataclasses.field(default="mean", metadata={"help": "Summary statistic.", "choices": ("mean", "sum")})
    noisy: bool = dataclasses.field(default=True, metadata={"help": "Add the noise."})
    tol: float = dataclasses.field(default=10.0, metadata={"help": "Allowed |mean - x|.", "within": Interval()})
    mem: int = dataclasses.field(default=1000, metadata={"help": "Claimed bytes per cell.",
                                                         "within": Count(le=10**30)})

    def __post_init__(self):
        # A rule written as code on purpose (``scale`` declares every finite number): the tests
        # check that a config's own ValueError reaches the user as exit 2.
        if self.scale < 0:
            raise ValueError(f"scale must be >= 0, got {self.scale}")


def cells(cfg: ToyConfig) -> list[dict]:
    return [
        {"x": x, "n": n, "seed": s, "scale": cfg.scale, "mode": cfg.mode, "noisy": cfg.noisy, "mem": cfg.mem}
        for x in cfg.x
        for n in cfg.n
        for s in range(cfg.seeds)
    ]


def _draw(cell, key):
    z = jax.random.normal(key, (cell["n"],), dtype=jnp.dtype(cell["dtype"]))
    return cell["x"] + (cell["scale"] * z if cell["noisy"] else 0 * z)


def _finish(cell, samples):
    stat = jnp.mean(samples) if cell["mode"] == "mean" else jnp.sum(samples)
    return {"samples": samples, "stat": stat}


def run(cell, *, key):
    CALLS.append(cell)
    time.sleep(SLEEP_PER_BATCH[0])
    return _finish(cell, _draw(cell, key))


def run_batch(cells, *, keys):
    CALLS.extend(cells)
    time.sleep(SLEEP_PER_BATCH[0])
    samples = jax.vmap(lambda k: _draw(cells[0], k))(keys)
    return [_finish(c, samples[i]) for i, c in enumerate(cells)]


def batch_key(cell):
    return {k: v for k, v in cell.items() if k != "seed"}


def verdict(cfg: ToyConfig, results) -> list[VerdictRow]:
    worst = max(abs(float(arr["samples"].mean()) - cell["x"]) for cell, arr in results)
    dtypes = sorted({str(arr["samples"].dtype) for _, arr in results})
    want = sorted({cell["dtype"] for cell, _ in results})
    return [
        VerdictRow("mean near x", f"|mean - x| < {cfg.tol:g}", f"{worst:.3g}", worst < cfg.tol),
        VerdictRow("dtype", ",".join(want), ",".join(dtypes), dtypes == want),
    ]


def estimate_bytes(cell) -> int:
    return int(cell["mem"])


TOY = Experiment(
    name="toy",
    summary="Toy experiment for the sims tests: shifted normal samples.",
    config=ToyConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    sweep_fields=("x", "n"),
    run_batch=run_batch,
    batch_key=batch_key,
    estimate_bytes=estimate_bytes,
    examples=("sims run toy --x 0 --x 1 --seeds 3",),
)

if REGISTRY.get("toy") is not TOY:
    REGISTRY.pop("toy", None)
    register(TOY)


def cell_file_arrays(out, cell_id):
    return cellfile.read_cell(store.cell_path(out, "toy", cell_id))[0]
