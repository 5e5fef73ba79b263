"""Experiment "reparam-identifiability": the modulus, minimised, and what the two-point test restates.

Where a fixed-truth rate cannot separate shared from non-shared prompts (docs/reparam_model.md,
section 10), the inverse bound itself can, on the fixed problem of :mod:`sims.experiments.reparam_problem`
(``d = 2``, ``N = 2``, ``L* = 2``, inputs uniform on ``[-1, 1]^4``):

- ``kind = "modulus"`` (deterministic): ``||f_G - f*||_{L2(mu)} / D(G, G*)``
  (:mod:`theory.moe.identifiability`) over over-specified ``G`` -- true atom 0 or 1 split
  symmetrically along a grid of directions, plus random configurations -- in half-decade bins of
  the location error ``rho`` from 1e-4 to 10^-1.5 (the local regime).  The search's best distinct
  configurations are then polished by local minimisation (:mod:`theory.moe.modulus_polish`) on
  the set ``S``: ``L* + 1`` atoms, the split pair's weight share in ``SHARE = [0.05, 0.95]``,
  every cell's location error within the bin; the best minimiser's shape is carried to every bin
  and polished there.  Claims, on the minimised values: for each shared structure
  (``shared_linear``, ``shared_tanh``, ``prompt``) the modulus is bounded below on ``S``: the
  smallest minimised value above ``FLOOR`` and flat in rho (log-log slope within 0 +- 0.1); for
  ``nonshared`` it is 0 (``||f_G - f*|| <= 1e-12 ||f*||``) in every bin, on the equal-key
  manifold, and approaching that manifold it falls like the key separation (slope 1 +- 0.1).
  Controls: the broken sharing (``shared_linear`` with ``W1 e_2 = 0``) and the non-shared
  structure polished from its non-manifold starts must fail "bounded below" (the minimiser
  reaches 0); ``shared_linear`` must fail the non-shared claim.
- ``kind = "two_point"`` (deterministic, not a claim): the least-favourable pair ``G1`` = atom 0
  split (:mod:`theory.moe.two_point`), scaled with n (non-shared keys ``~ n^{-1/2}`` apart with
  values ``t`` apart; shared ``p'`` separation ``~ n^{-1/4}``; controls: the shared pair at a
  fixed separation, the non-shared keys ``~ n^{-1/4}``).  The best test's power is exactly
  ``Phi(sqrt(n) ||f1 - f0|| / noise - z)``, computed, not simulated; with the exponent ``k`` of
  ``||f1 - f0|| ~ h^k`` in the separation it is the modulus restated (k = 1 for the non-shared
  keys, 2 for the shared pairs), so it adds no verdict rows (docs/reparam_model.md, section 9).

The verdict helpers of :mod:`sims.experiments.reparam_identifiability_verdict` (``modulus_curve``,
``approach_curve``, ``power_curve``) are what ``figures/reparam_identifiability.py`` plots, so the
figure shows the verdict's numbers.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sims.core.checks import SCALE, Count, Interval, check_ranges
from sims.core.experiment import Experiment, register
from sims.experiments.common import option as _f
from sims.experiments.reparam_identifiability_verdict import verdict
from sims.experiments.reparam_problem import BIN_EDGES, N_TOKENS, RHO, SHARE, problem
from theory.moe.identifiability import location_width, modulus, random_configurations, split_configurations
from theory.moe.modulus_polish import polish_modulus, rescale_configuration
from theory.moe.model import STRUCTURES, Reparam
from theory.moe.two_point import exact_power, separation_for_signal, split_pair

__all__ = ["KINDS", "CASES", "IdentifiabilityConfig", "cells", "quick_cells", "run", "verdict", "EXPERIMENT",
           "ModulusConfig", "MODULUS_EXPERIMENT"]

KINDS = ("modulus", "two_point")
QUICK_N, FULL_N = (300, 3000, 30000), (1000, 3162, 10000, 31623, 100000)
# (structure, scaling, control): least-favourable pairs, then the controls that must be told apart.
CASES = (("nonshared", "half", False), ("shared_linear", "quarter", False), ("shared_tanh", "quarter", False),
         ("prompt", "quarter", False), ("shared_linear", "fixed", True), ("nonshared", "quarter", True))
EXPONENT = {"half": 0.5, "quarter": 0.25, "fixed": 0.0}


@dataclasses.dataclass(frozen=True)
class IdentifiabilityConfig:
    """Options of ``sims run reparam-identifiability``: which parts, sample sizes, search and polish sizes."""

    quick: bool = _f(False, "Quick sizes: 2 polished starts per structure (else 6); two-point n = 300, 3000, 30000.")
    parts: tuple[str, ...] = _f(KINDS, "Which experiments: modulus (deterministic) and/or two_point.", choices=KINDS)
    n_mc: int = _f(1024, "Inputs drawn from mu for the L2(mu) norms.", Count(ge=16))
    angles: int = _f(60, "Split directions on the half circle (shared; non-shared: a 4 x 4 x 5 grid).", Count(ge=2))
    random: int = _f(256, "Random configuration shapes, each tried at 15 scales 10^-4.5 .. 10^-1.", Count(ge=2))
    polish: int = _f(0, "Starts polished by local minimisation (the lowest distinct sampled ratios); 0 = 2 (quick) "
                        "or 6.", Count(ge=0))
    n: tuple[int, ...] = _f((), "Two-point sample sizes; empty = 300, 3e3, 3e4 (quick) or 5 points 1e3..1e5.",
                            Count(ge=10))
    noise: float = _f(0.01, "Noise sd of the two-point data (only n / noise^2 matters: n_eff = n (0.1/noise)^2).",
                       SCALE)
    signal: float = _f(2.0, "Signal Delta of each pair at the smallest n (power 0.64 at level 0.05).",
                        SCALE)
    value_separation: float = _f(0.5, "Non-shared pair: half the distance of the two values (fixed, O(1)).",
                                  SCALE)
    alpha: float = _f(0.05, "Level of the two-point test.", Interval(gt=0, lt=0.5))

    def __post_init__(self):
        check_ranges(self)
        if not self.parts or any(p not in KINDS for p in self.parts):
            raise ValueError(f"parts must be a non-empty subset of {KINDS}, got {self.parts}")
        if "two_point" in self.parts and len(self.grid()) < 2:
            raise ValueError(f"the two-point verdict fits a slope in n: give >= 2 distinct n, got {self.n}")

    def grid(self):
        return tuple(sorted({int(n) for n in self.n})) or (QUICK_N if self.quick else FULL_N)


def cells(cfg: IdentifiabilityConfig) -> list[dict]:
    """The modulus cells (one per structure and variant) and the two-point cells (one per case and n)."""
    out = []
    if "modulus" in cfg.parts:
        common = {"kind": "modulus", "n_mc": cfg.n_mc, "angles": cfg.angles, "random": cfg.random,
                  "polish": cfg.polish or (2 if cfg.quick else 6), "seed": 0}
        out += [{**common, "structure": s, "variant": "standard"} for s in STRUCTURES]
        out += [{**common, "structure": "shared_linear", "variant": "broken"}]
    if "two_point" in cfg.parts:
        ns = cfg.grid()
        common = {"kind": "two_point", "n0": ns[0], "noise": cfg.noise, "signal": cfg.signal,
                  "t": cfg.value_separation, "alpha": cfg.alpha, "n_mc": cfg.n_mc, "seed": 0}
        out += [{**common, "structure": s, "scaling": sc, "n": n} for s, sc, _ in CASES for n in ns]
    return out


def quick_cells(cfg) -> list[dict]:
    """The cells ``sims run reparam --quick`` adds (hook of :mod:`sims.experiments.reparam`)."""
    return cells(IdentifiabilityConfig(quick=True)) if getattr(cfg, "quick", False) else []


def _problem(structure, variant="standard"):
    frozen, reparam, truth = problem(structure, jnp.float64)
    if variant == "broken":  # keys blind to p'_2: W1 e_2 = 0 (a sharing that is shared in name only)
        reparam = Reparam(reparam.W1.at[:, 1].set(0.0), reparam.W2)
    return frozen, reparam, truth


def _inputs(n_mc):
    # Fixed inputs (not the cell key): every cell of a structure sees the same mu-sample.
    return jax.random.uniform(jax.random.key(20261202), (int(n_mc), 2 * N_TOKENS), jnp.float64, -1.0, 1.0)


def _directions(structure, q, angles):
    if structure != "nonshared":
        a = np.linspace(0.0, np.pi, int(angles), endpoint=False)
        return np.stack([np.cos(a), np.sin(a)], axis=1) if q == 2 else np.eye(q)
    u = np.linspace(0.0, np.pi, 4, endpoint=False)
    circ = np.stack([np.cos(u), np.sin(u)], axis=1)
    mix = [(np.cos(p), np.sin(p)) for p in np.linspace(0, np.pi / 2, 5)[:-1]] + [(0.0, 1.0)]
    return np.array([np.r_[ck * k, cv * v] for ck, cv in mix for k in circ for v in circ])  # (0, 1): equal keys


SCALES = 10.0 ** np.arange(-4.5, -0.99, 0.25)  # scales of the random search (the bins' range and beyond)
APPROACH_EPS = np.logspace(-7, -2, 11)  # key half-separation, at value half-separation 0.1


def _search(cell, key):
    """The sampled search: ``(problem, X, configs, source, atom, n_sweep_directions)``."""
    s = cell["structure"]
    frozen, reparam, truth = _problem(s, cell["variant"])
    X = _inputs(cell["n_mc"])
    q = location_width(s, d=2, reparam=reparam)
    U = _directions(s, q, cell["angles"])
    d1 = np.concatenate([r * U for r in RHO])
    sweep = [split_configurations(truth, structure=s, atom=atom, delta1=d1, delta2=-d1,
                                  frac=np.full(len(d1), 0.5), d=2) for atom in (0, 1)]
    # Random search with common shapes: the same random configurations (scale-free shapes) at every
    # scale, so the bin minima differ by the function, not by the luck of the draw.
    k0, k1 = jax.random.split(key)
    pairs = [(r, atom, k) for r in SCALES for atom, k in ((0, k0), (1, k1))]
    rand = [random_configurations(truth, structure=s, key=k, count=cell["random"] // 2, rho_min=r, rho_max=r, d=2,
                                  atom=atom) for r, atom, k in pairs]
    parts = [*sweep, *rand]
    atoms = [np.zeros(len(d1), int), np.ones(len(d1), int)] + [np.full(len(p["b"]), a) for p, (_, a, _) in
                                                             zip(rand, pairs)]
    if s == "nonshared":  # the approach to the equal-key manifold: keys eps apart, values 0.1 apart
        e1 = np.array([1.0, 0.0])
        ap = np.array([np.r_[e * e1, 0.1 * e1] for e in APPROACH_EPS])
        parts.append(split_configurations(truth, structure=s, atom=0, delta1=ap, delta2=-ap,
                                          frac=np.full(len(ap), 0.5), d=2))
        atoms.append(np.zeros(len(ap), int))
    configs = {k: jnp.concatenate([p[k] for p in parts]) for k in truth}
    n_sweep, n_rand = 2 * len(d1), sum(len(p["b"]) for p in rand)
    source = np.repeat(np.array([0, 1, 2, 3]), [n_sweep // 2, n_sweep // 2, n_rand, len(configs["b"]) - n_sweep - n_rand])
    equal_keys = np.zeros(len(source), bool)
    if s == "nonshared":
        equal_keys[:n_sweep] = np.tile(np.linalg.norm(d1[:, :2], axis=1) == 0, 2)
    return (frozen, reparam, truth), X, configs, source, np.concatenate(atoms), equal_keys


def _polish_starts(m, source, equal_keys, count):
    """Indices of the ``count`` lowest sampled ratios with distinct values (to 0.1%: the same
    shape at another scale, or the sweep's ``u`` and ``-u``, counts once) and their bins.  The
    approach family and, for the non-shared structure, the exact zeros of the equal-key manifold
    are left out: polishing starts from where the search did not already reach 0."""
    loc, ratio = np.asarray(m.location_error), np.asarray(m.ratio)
    binned = np.searchsorted(BIN_EDGES * (1 - 1e-9), loc, side="right") - 1
    sel = np.flatnonzero((source < 3) & ~equal_keys & (binned >= 0) & (binned < len(RHO)))
    sel = sel[np.argsort(ratio[sel], kind="stable")]
    _, first = np.unique(np.round(np.log(ratio[sel]), 3), return_index=True)
    best = sel[np.sort(first)[:count]]
    return best, binned[best]


def _polish(s, problem, X, configs, m, source, atom, equal_keys, count):
    """Polish the ``count`` best distinct starts of the search (each in its bin), then carry the
    best minimiser's shape to every bin (:func:`rescale_configuration`) and polish it there too:
    per bin the same basin, so the bins differ by the function, not by where the minimiser stopped."""
    frozen, reparam, truth = problem
    idx, bins = _polish_starts(m, source, equal_keys, count)
    kw = {"structure": s, "X": X, "reparam": reparam, "share": SHARE}
    pol = [(j, polish_modulus(frozen, truth, {k: v[idx[bins == j]] for k, v in configs.items()}, atom=atom[idx[bins == j]],
                              rho=(BIN_EDGES[j], BIN_EDGES[j + 1]), **kw)) for j in np.unique(bins)]
    j0, p0 = min(pol, key=lambda jp: float(np.min(jp[1].ratio)))
    i0 = int(np.argmin(p0.ratio))
    a0 = int(atom[idx[bins == j0]][i0])
    shape = {k: v[i0] for k, v in p0.configs.items()}
    for j in range(len(RHO)):
        moved = rescale_configuration(shape, truth, structure=s, atom=a0, factor=RHO[j] / RHO[j0])
        pol.append((j, polish_modulus(frozen, truth, {k: v[None] for k, v in moved.items()}, atom=a0,
                                      rho=(BIN_EDGES[j], BIN_EDGES[j + 1]), **kw)))
    cat = lambda name: np.concatenate([getattr(p, name) for _, p in pol])  # noqa: E731
    return {"polish_bin": np.concatenate([np.full(len(p.ratio), j) for j, p in pol]),
            "polish_carried": np.concatenate([np.full(len(p.ratio), k >= len(pol) - len(RHO)) for k, (_, p) in
                                              enumerate(pol)]),
            "polish_start": cat("start_ratio"), "polish_ratio": cat("ratio"), "polish_distance": cat("distance"),
            "polish_merged_error": cat("merged_error"), "polish_share": cat("share"), "polish_moved": cat("moved"),
            "polish_iterations": cat("iterations")}


def _run_modulus(cell, key):
    s = cell["structure"]
    (frozen, reparam, truth), X, configs, source, atom, equal_keys = _search(cell, key)
    m = jax.device_get(modulus(frozen, truth, configs, structure=s, X=X, reparam=reparam))
    out = {
        "ratio": np.asarray(m.ratio), "distance": np.asarray(m.distance), "voronoi": np.asarray(m.voronoi),
        "location_error": np.asarray(m.location_error), "f_norm": np.asarray(m.f_norm),
        "source": source, "equal_keys": equal_keys,
        "approach_eps": APPROACH_EPS if s == "nonshared" else np.zeros(0),
    }
    if int(cell.get("polish", 0)):
        out.update(_polish(s, (frozen, reparam, truth), X, configs, m, source, atom, equal_keys, int(cell["polish"])))
    return out


def _direction(structure, frozen, reparam, truth, X):
    """Shared structures: the split direction of smallest modulus (at rho = 1e-2); None for nonshared."""
    if structure == "nonshared":
        return None
    U = _directions(structure, 2, 60)
    c = split_configurations(truth, structure=structure, atom=0, delta1=1e-2 * U, delta2=-1e-2 * U,
                             frac=np.full(len(U), 0.5), d=2)
    return U[int(np.argmin(modulus(frozen, truth, c, structure=structure, X=X, reparam=reparam).ratio))]


H_GRID = np.logspace(-4, -1.5, 11)  # separations at which the exponent of ||f1 - f0|| in h is read


def _run_two_point(cell, key):
    del key  # deterministic: the power is a closed form of ||f1 - f0||
    s = cell["structure"]
    frozen, reparam, truth = _problem(s)
    X = _inputs(cell["n_mc"])
    u = _direction(s, frozen, reparam, truth, X)
    h0 = separation_for_signal(frozen, truth, structure=s, reparam=reparam, X=X, n=cell["n0"], noise=cell["noise"],
                               signal=cell["signal"], t=cell["t"], u=u)
    h = h0 * (cell["n0"] / cell["n"]) ** EXPONENT[cell["scaling"]]
    hs = np.r_[h, H_GRID]
    dist = np.asarray(modulus(frozen, truth, split_pair(truth, hs, structure=s, d=2, t=cell["t"], u=u), structure=s,
                              X=X, reparam=reparam).distance)
    return {"h": np.asarray(h), "h0": np.asarray(h0), "distance": dist[0],
            "power": exact_power(dist[0], cell["n"], noise=cell["noise"], alpha=cell["alpha"]),
            "h_grid": H_GRID, "distance_grid": dist[1:]}


def run(cell, *, key):
    """The arrays of one modulus or two-point cell."""
    if cell["kind"] == "modulus":
        return _run_modulus(cell, key)
    if cell["kind"] == "two_point":
        return _run_two_point(cell, key)
    raise ValueError(f"unknown cell kind {cell['kind']!r}; known: {KINDS}")


def estimate_bytes(cell) -> int:
    if cell["kind"] == "modulus":
        return 64 * int(cell["n_mc"]) * 8 * 16 + (64 << 20)
    return 64 * int(cell["n_mc"]) * 8 * 16 + (16 << 20)


EXPERIMENT = register(Experiment(
    name="reparam-identifiability",
    summary="Prefix MoE: identifiability modulus (minimised) and the two-point power it implies, shared vs non-shared.",
    config=IdentifiabilityConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("parts", "n"),
    examples=("sims run reparam-identifiability --quick",
              "sims run reparam-identifiability --parts modulus"),
))


@dataclasses.dataclass(frozen=True)
class ModulusConfig(IdentifiabilityConfig):
    """:class:`IdentifiabilityConfig` with the deterministic modulus alone (``sims run reparam-modulus``)."""

    parts: tuple[str, ...] = _f(("modulus",), "Which experiments: modulus (deterministic) and/or two_point.",
                                choices=KINDS)


#: ``sims run reparam-modulus``: the identifiability modulus alone, deterministic, in seconds.
MODULUS_EXPERIMENT = register(dataclasses.replace(
    EXPERIMENT, name="reparam-modulus", config=ModulusConfig,
    summary="Prefix MoE: the identifiability modulus ||f_G - f*|| / D(G, G*) alone (deterministic, seconds).",
    examples=("sims run reparam-modulus", "sims run reparam-modulus --random 1024"),
))
