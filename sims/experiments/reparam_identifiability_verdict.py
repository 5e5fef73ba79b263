"""Verdict of "reparam-identifiability": the statistics the claims and the figure share.

Every number of a verdict row comes from :func:`modulus_curve`, :func:`approach_curve` or
:func:`power_curve`; ``figures/reparam_identifiability.py`` plots the same functions of the
same stored cells.  Rules (module docstring of :mod:`sims.experiments.reparam_identifiability`):

- modulus, shared: every location-error bin holds a positive smallest ratio (``||f_G - f*||``
  above ``ZERO ||f*||``) and the OLS slope of log(bin minimum) against log(rho) lies within
  ``0 +- SLOPE_TOL``; deterministic, so pass or fail.
- modulus, non-shared: every bin holds a configuration with ``||f_G - f*|| <= ZERO ||f*||``, and
  the approach slope (ratio against key separation) lies within ``1 +- SLOPE_TOL``.
- two-point: slope of the rejection rate against log10(n) with a 95% percentile bootstrap CI
  (replications resampled at each n); flat when the whole CI lies in ``[-tol, tol]`` and the
  power at the largest n is below 0.95 (Wilson upper bound); not flat when the CI lies outside;
  otherwise undecided, with the replications that would decide it.
"""

from __future__ import annotations

import numpy as np

from sims.core.experiment import VerdictRow

__all__ = ["modulus_curve", "approach_curve", "power_curve", "flat_status", "verdict"]


def _m():
    from sims.experiments import reparam_identifiability as m  # the constants live with the cells
    return m


def _one(results, **match):
    rows = [a for c, a in results if all(c.get(k) == v for k, v in match.items())]
    return rows[0] if rows else None


def modulus_curve(results, structure: str, variant: str = "standard"):
    """Smallest modulus per location-error bin: dict ``rho`` (bin centres), ``minimum`` (NaN for an
    empty bin), ``zero`` (bin holds ``||f_G - f*|| <= ZERO ||f*||``), ``count``, ``slope`` (OLS of
    log minimum on log rho over the bins; None if a bin is empty or zero); None without the cell."""
    m = _m()
    a = _one(results, kind="modulus", structure=structure, variant=variant)
    if a is None:
        return None
    edges = m.BIN_EDGES
    loc, ratio, dist = (np.asarray(a[k], float) for k in ("location_error", "ratio", "distance"))
    floor = m.ZERO * float(a["f_norm"])
    keep = np.asarray(a["source"]) < 3  # the approach family is not part of the binned search
    minimum, zero, count = [], [], []
    for lo, hi in zip(edges[:-1], edges[1:]):
        # sweeps sit on the centres; a tiny relative margin keeps them in their bin
        sel = keep & (loc >= lo * (1 - 1e-9)) & (loc < hi * (1 - 1e-9))
        count.append(int(sel.sum()))
        minimum.append(float(ratio[sel].min()) if sel.any() else np.nan)
        zero.append(bool(sel.any() and dist[sel].min() <= floor))
    minimum, zero = np.array(minimum), np.array(zero)
    ok = np.isfinite(minimum) & ~zero
    slope = float(np.polyfit(np.log(m.RHO), np.log(minimum), 1)[0]) if ok.all() else None
    return {"rho": m.RHO, "minimum": minimum, "zero": zero, "count": np.array(count), "slope": slope}


def approach_curve(results):
    """Non-shared ratio along keys -> equal at a fixed value separation: ``eps``, ``ratio``, ``slope``."""
    a = _one(results, kind="modulus", structure="nonshared", variant="standard")
    if a is None:
        return None
    sel = np.asarray(a["source"]) == 3
    eps, ratio = np.asarray(a["approach_eps"], float), np.asarray(a["ratio"], float)[sel]
    return {"eps": eps, "ratio": ratio, "slope": float(np.polyfit(np.log(eps), np.log(ratio), 1)[0])}


def _wilson(k, n, z=1.96):
    p = k / n
    den = 1 + z * z / n
    mid = (p + z * z / (2 * n)) / den
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / den
    return mid - half, mid + half


def power_curve(results, structure: str, scaling: str, *, draws: int = 2000, seed: int = 0):
    """Two-point power against n: ``n``, ``power``, ``low``/``high`` (Wilson 95%), ``exact`` (mean
    conditional power), ``size`` (rejection rate under H0), ``signal`` (mean Delta), ``h``, ``reps``,
    ``slope`` (per decade of n) with its bootstrap ``slope_low``/``slope_high``; None if < 2 n."""
    rows = sorted(((c["n"], a) for c, a in results
                   if c.get("kind") == "two_point" and c["structure"] == structure and c["scaling"] == scaling),
                  key=lambda r: r[0])
    if len(rows) < 2:
        return None
    ns = np.array([n for n, _ in rows], float)
    rej = [np.asarray(a["reject"], float) for _, a in rows]
    power = np.array([r.mean() for r in rej])
    lo, hi = zip(*(_wilson(r.sum(), r.size) for r in rej))
    x = np.log10(ns)
    rng = np.random.default_rng(seed)
    boot = np.stack([r[rng.integers(0, r.size, (draws, r.size))].mean(axis=1) for r in rej], axis=1)
    bs = np.polyfit(x, boot.T, 1)[0]
    q = np.quantile(bs, [0.025, 0.975])
    return {"n": ns, "power": power, "low": np.array(lo), "high": np.array(hi),
            "exact": np.array([np.mean(a["exact_power"]) for _, a in rows]),
            "size": np.array([np.mean(a["reject_null"]) for _, a in rows]),
            "signal": np.array([np.mean(a["signal"]) for _, a in rows]),
            "h": np.array([float(a["h"]) for _, a in rows]), "reps": int(min(r.size for r in rej)),
            "slope": float(np.polyfit(x, power, 1)[0]), "slope_low": float(q[0]), "slope_high": float(q[1])}


def flat_status(pc, tol: float) -> tuple[str, str]:
    """``("pass" | "fail" | "undecided", reason)`` for "the power stays flat" (module docstring)."""
    lo, hi, s = pc["slope_low"], pc["slope_high"], pc["slope"]
    if pc["low"][-1] >= 0.95 or lo > tol or hi < -tol:
        return "fail", "told apart: power rises (or falls) beyond the tolerance"
    if -tol <= lo and hi <= tol and pc["high"][-1] < 0.95:
        return "pass", "flat within the tolerance and below 0.95 at the largest n"
    half = (hi - lo) / 2
    need = int(np.ceil(pc["reps"] * (half / max(tol - abs(s), 0.01)) ** 2))
    return "undecided", (f"the slope CI [{lo:.3f}, {hi:.3f}] straddles +-{tol:g}; about {need} replications "
                         f"per n would decide it")


def _modulus_rows(results):
    m = _m()
    rows = []
    for s in m.SHARED_STRUCTURES:
        mc = modulus_curve(results, s)
        if mc is not None:
            rows.append(_bounded_row(f"modulus {s}: ||f_G - f*|| / D bounded below near G*", mc))
    mc, ap = modulus_curve(results, "nonshared"), approach_curve(results)
    if mc is not None:
        rows.append(_zero_row("modulus nonshared: 0 on the equal-key manifold, -> 0 like the key separation", mc, ap))
    mc = modulus_curve(results, "shared_linear", "broken")
    if mc is not None:
        r = _bounded_row("control: broken sharing (W1 e_2 = 0) is not bounded below", mc)
        rows.append(VerdictRow(r.claim, "fails 'bounded below'", r.measured, r.failed, r.detail))
    mc = modulus_curve(results, "shared_linear")
    if mc is not None:
        r = _zero_row("control: shared_linear has no equal-key manifold", mc, None)
        rows.append(VerdictRow(r.claim, "fails 'modulus 0 in every bin'", r.measured, r.failed, r.detail))
    return rows


def _span(mc):
    return f"rho {mc['rho'][0]:.2g}..{mc['rho'][-1]:.2g}, {len(mc['rho'])} bins, {int(mc['count'].sum())} configs"


def _bounded_row(claim, mc):
    tol = _m().SLOPE_TOL
    pred = f"min > 0 in every bin, slope 0 +- {tol:g}"
    if mc["slope"] is None:
        bad = int(np.sum(mc["zero"] | ~np.isfinite(mc["minimum"])))
        return VerdictRow(claim, pred, f"0 (to rounding) in {bad} of {len(mc['rho'])} bins", False, _span(mc))
    lo, hi = np.nanmin(mc["minimum"]), np.nanmax(mc["minimum"])
    return VerdictRow(claim, pred, f"slope {mc['slope']:.3f}; min {lo:.3g} .. {hi:.3g}", abs(mc["slope"]) <= tol,
                      _span(mc))


def _zero_row(claim, mc, ap):
    tol = _m().SLOPE_TOL
    pred = f"||f_G - f*|| <= 1e-12 ||f*|| in every bin; approach slope 1 +- {tol:g}"
    zeros = int(mc["zero"].sum())
    measured = f"0 in {zeros} of {len(mc['rho'])} bins"
    ok = zeros == len(mc["rho"])
    if ap is not None:
        measured += f"; approach slope {ap['slope']:.3f}"
        ok = ok and abs(ap["slope"] - 1) <= tol
        detail = f"ratio {ap['ratio'][-1]:.3g} -> {ap['ratio'][0]:.3g} as key separation {ap['eps'][-1]:.0e} -> " \
                 f"{ap['eps'][0]:.0e}; " + _span(mc)
    else:
        detail = f"smallest ratio {np.nanmin(mc['minimum']):.3g}; " + _span(mc)
    return VerdictRow(claim, pred, measured, bool(ok), detail)


def _two_point_rows(cfg, results):
    m = _m()
    tol = getattr(cfg, "tolerance", m.SLOPE_TOL)
    rows = []
    for s, scaling, control in m.CASES:
        pc = power_curve(results, s, scaling)
        if pc is None:
            continue
        what = {"half": "keys ~ n^-1/2 apart, values fixed", "quarter": "separation ~ n^-1/4",
                "fixed": "fixed separation"}[scaling]
        if s == "nonshared" and scaling == "quarter":
            what = "keys ~ n^-1/4 apart, values fixed"
        measured = (f"slope/decade {pc['slope']:.3f} [{pc['slope_low']:.3f}, {pc['slope_high']:.3f}]; power "
                    f"{pc['power'][0]:.2f} -> {pc['power'][-1]:.2f}")
        detail = (f"n = {', '.join(f'{n:.0f}' for n in pc['n'])}; {pc['reps']} reps; exact power "
                  f"{pc['exact'][0]:.2f} -> {pc['exact'][-1]:.2f}; size {pc['size'].max():.3f}; h "
                  f"{pc['h'][0]:.3g} -> {pc['h'][-1]:.3g}")
        status, reason = flat_status(pc, tol)
        if not control:
            claim = f"two-point {s} ({what}): not told apart at any n"
            pred = f"power flat: |slope/decade| <= {tol:g}, < 0.95"
            if status == "undecided":
                rows.append(VerdictRow.undecided(claim, pred, measured, f"{reason}; {detail}"))
            else:
                rows.append(VerdictRow(claim, pred, measured, status == "pass", f"{reason}; {detail}"))
        else:
            claim = f"control: two-point {s} ({what}) is told apart"
            pred = "power not flat (fails the flat rule)"
            if status == "undecided":
                rows.append(VerdictRow.undecided(claim, pred, measured, f"{reason}; {detail}"))
            else:
                rows.append(VerdictRow(claim, pred, measured, status == "fail", f"{reason}; {detail}"))
    return rows


def verdict(cfg, results) -> list:
    """Rows for the modulus and two-point claims present in ``results`` (other kinds are ignored)."""
    mine = [(c, a) for c, a in results if c.get("kind") in _m().KINDS]
    return _modulus_rows(mine) + _two_point_rows(cfg, mine)
