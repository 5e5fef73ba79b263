"""Trained NTK-Attention summaries: paper 1, section 4.4, rebuilt correctly (spec section 4).

Setup (paper-scale defaults): d = 64, L = 128, m in {2, 4, ..., 2^18}; frozen ``W_Q, W_K, W_V``
shared by every m (from ``data_seed``); a prefix ``P ~ N(0, I)`` (m x d) per cell; ``Z`` and
``k`` trained with Adam (lr 1e-3) for ``steps`` steps, each on a fresh ``X ~ N(0, I)`` (L x d),
to match ``PrefixAttn(X, P)`` (:func:`theory.ntk_attn.train.train_summary`), initialised
``N(0, init_std^2)`` independently of P as in the paper; validation MSE over ``val_size``
fresh inputs, for the ``elu`` features (paper) and degree-g ``taylor`` features, beside the
error of the exact summary of the same features (``Z = sum_r phi(k_r) v_r^T``).

Weight scale.  With ``W ~ N(0, 1)`` entries, ``q = W_Q^T x`` has entries of variance d, so the
logit ``<q, k>/sqrt(d)`` has standard deviation about d = 64 and its maximum over a batch is
near 350: the softmax is one-hot and no summary with bounded features can follow it.  Here
``W_Q, W_K, W_V ~ N(0, weight_scale^2 / d)``, which makes the logit standard deviation
``weight_scale^2`` (default 1: logits O(1), maxima about 4 to 6 over L m pairs; the measured
maximum over the validation draws is recorded as ``max_logit``).

Corrections to the public script (``ntk-attn-error/ntk_attn_error.py``), which does not run as
published (the shapes of ``sum_phi_k`` do not broadcast and it back-propagates the whole
squared-error matrix, not its mean):

- it feeds ``[P; X]`` to the exact block as well as to the target, so the prefix is counted
  twice: its objective is minimised by ``Z = k = 0`` with zero loss, whatever P is.  Here the
  exact block holds the input tokens only, as in NTK-Attention's definition.  Each cell
  evaluates the public objective at ``Z = k = 0`` (``public_loss_zero``, zero to rounding) and
  at the exact summary (``public_loss_exact``, positive) to show it.
- the loss is the mean squared error (``mean`` over L x d_v), and validation MSE is reported
  unscaled (the script divides by ``QK.max()`` under a condition on a whole matrix).

``scale`` (default 1, the paper) trains ``(Z, k) = scale (Z', k')``: the exact summary grows
linearly in m while Adam moves each parameter by about lr per step, so at large m the paper's
setup cannot reach it within ``steps`` steps (measured: at d = 16, L = 32, 4000 steps, the
trained ``||Z||`` stays near 15-30 while the exact one is ~14000 at m = 8192, and the trained
MSE tends to that of attention without the prefix).  ``scale_by_m`` (scale of order m) is the
remedy; it changes nothing in the function class, only Adam's step size in summary space.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from sims.core.checks import COUNT, DRAWS, SCALE, SEED, Interval, check_ranges
from sims.core.experiment import Experiment, VerdictRow, register
from sims.core.verdicts import cell_ids, exact_row
from sims.experiments.common import cell_dtype, check_choices, option as _f
from theory.ntk_attn.feature_maps import features_unchecked, feature_dim
from theory.ntk_attn.ntk_attention import prefix_summary
from theory.ntk_attn.bounds import prefix_logit_max
from theory import stats
from theory.ntk_attn.train import init_summary_params, params_from_summary, train_summary, validation_mse

FEATURES = ("elu", "taylor")


@dataclasses.dataclass(frozen=True)
class NTKAttentionTrainConfig:
    m: tuple[int, ...] = _f(tuple(2**i for i in range(1, 19)), "Prefix lengths (paper: 2, 4, ..., 2^18).", COUNT)
    feature: tuple[str, ...] = _f(FEATURES, "Feature maps to train.", choices=FEATURES)
    g: int = _f(2, "Taylor degree (r = C(d + g, g)).", COUNT)
    d: int = _f(64, "Token dimension d = d_k = d_v.", COUNT)
    L: int = _f(128, "Input tokens.", COUNT)
    steps: int = _f(40_000, "Adam steps (paper: 40000), one fresh X each.", COUNT)
    val_size: int = _f(8_000, "Validation inputs (paper: 8000).", COUNT)
    lr: float = _f(1e-3, "Adam learning rate.", Interval(gt=0, le=10))
    weight_scale: float = _f(1.0, "Frozen weights ~ N(0, weight_scale^2/d): logit std ~ weight_scale^2.",
                             Interval(gt=0, le=100))
    init_std: float = _f(1.0, "elu: initial Z, k ~ N(0, init_std^2) (paper: 1).", Interval(ge=0, le=1e3))
    init_std_taylor: float = _f(0.0, "taylor: initial Z, k ~ N(0, init_std_taylor^2) (0: the empty summary).",
                                Interval(ge=0, le=1e3))
    scale: float = _f(1.0, "Train (Z, k) = scale * params (1 = paper).", SCALE)
    scale_by_m: bool = _f(False, "Multiply scale by m (the exact summary grows like m).")
    batch_size: int = _f(1, "Inputs X per Adam step (paper: 1).", COUNT)
    data_seed: int = _f(0, "Seed of the frozen weights, shared by all m.", SEED)
    seeds: int = _f(1, "Draws per (m, feature).", DRAWS)

    def __post_init__(self):
        check_ranges(self)
        check_choices("feature", self.feature, FEATURES)


def cells(cfg: NTKAttentionTrainConfig) -> list[dict]:
    fixed = {k: getattr(cfg, k) for k in ("g", "d", "L", "steps", "val_size", "lr", "weight_scale", "batch_size",
                                          "data_seed")}
    return [{"m": int(m), "feature": f, **fixed, "init_std": cfg.init_std if f == "elu" else cfg.init_std_taylor,
             "scale": cfg.scale * (int(m) if cfg.scale_by_m else 1), "seed": s}
            for f in cfg.feature for m in sorted(set(cfg.m)) for s in range(cfg.seeds)]


def _weights(cell, dtype):
    d, s = cell["d"], cell["weight_scale"]
    keys = jax.random.split(jax.random.key(cell["data_seed"]), 3)
    return [s / math.sqrt(d) * jax.random.normal(k, (d, d), dtype) for k in keys]


@jax.jit
def public_objective(X, P, W_Q, W_K, W_V, Z, k):
    """The public script's loss for one X: queries and exact block over ``[P; X]``, ELU features,
    ``|k|`` in the normaliser, stabilised with the exact block's row maximum (as published)."""
    XX = jnp.concatenate([P, X])
    Q, K, V = XX @ W_Q, XX @ W_K, XX @ W_V
    d = Q.shape[1]
    target = jax.nn.softmax(Q @ K.T / math.sqrt(d), axis=1) @ V
    A = Q @ K.T / math.sqrt(d)
    mx = jnp.max(A, axis=1, keepdims=True)
    A = jnp.exp(A - mx)
    phi_q = features_unchecked(Q, "elu", None)
    D = A.sum(1, keepdims=True) + (phi_q @ jnp.abs(k))[:, None] / jnp.exp(mx)
    pred = (A @ V + (phi_q @ Z) / jnp.exp(mx)) / D
    return jnp.mean((pred - target) ** 2)


def run(cell, *, key):
    dtype = jnp.dtype(cell.get("dtype", "float64"))
    W_Q, W_K, W_V = _weights(cell, dtype)
    k_P, k_train, k_val, k_pub = jax.random.split(key, 4)
    m, d, L, feature = cell["m"], cell["d"], cell["L"], cell["feature"]
    g = cell["g"] if feature == "taylor" else None
    P = jax.random.normal(k_P, (m, d), dtype)
    r = feature_dim(d, feature=feature, g=g)
    common = dict(feature=feature, g=g, L=L)
    val = dict(key=k_val, n_val=cell["val_size"], batch_size=min(8, cell["val_size"]), **common)
    init = init_summary_params(key=k_train, r=r, d_v=d, init_std=cell["init_std"], dtype=dtype)
    params, losses = train_summary(P, W_Q, W_K, W_V, key=k_train, steps=cell["steps"], lr=cell["lr"], init=init,
                                   batch_size=cell["batch_size"], scale=cell["scale"], **common)
    mse_init, power = validation_mse(init, P, W_Q, W_K, W_V, scale=cell["scale"], **val)
    mse, _ = validation_mse(params, P, W_Q, W_K, W_V, scale=cell["scale"], **val)
    exact = prefix_summary(P, W_K, W_V, feature=feature, g=g)
    mse_exact, _ = validation_mse(params_from_summary(exact), P, W_Q, W_K, W_V, **val)
    X = jax.random.normal(k_pub, (L, d), dtype)
    out = {
        "val_mse": np.asarray(mse), "val_mse_init": np.asarray(mse_init), "val_mse_exact": np.asarray(mse_exact),
        "target_power": np.asarray(power), "losses": np.asarray(losses),
        "max_logit": np.asarray(prefix_logit_max(X, P, W_Q, W_K)),
        "summary_norm": np.asarray(jnp.linalg.norm(params["Z"]) * cell["scale"]),
        "exact_summary_norm": np.asarray(jnp.linalg.norm(exact.Z)),
    }
    if m <= 4096:  # the public objective attends over all m + L rows: (m + L)^2 logits
        ez = prefix_summary(P, W_K, W_V, feature="elu")
        out["public_loss_zero"] = np.asarray(public_objective(X, P, W_Q, W_K, W_V, jnp.zeros((d, d), dtype),
                                                              jnp.zeros((d,), dtype)))
        out["public_loss_exact"] = np.asarray(public_objective(X, P, W_Q, W_K, W_V, ez.Z, ez.k))
    return out


def estimate_bytes(cell) -> int:
    m, d, L = cell["m"], cell["d"], cell["L"]
    r = feature_dim(d, feature=cell["feature"], g=cell["g"] if cell["feature"] == "taylor" else None)
    item = cell_dtype(cell).itemsize
    per_x = item * cell["batch_size"] * L * (m + L + 2 * r)
    return item * (3 * m * d + 6 * r * d + cell["steps"]) + 4 * per_x + item * min(m + L, 4224) ** 2 + (64 << 20)


def _still_falling(losses) -> tuple[bool, str]:
    """Whether the training loss still falls at the end: the 95% Welch interval of (mean of the
    third quarter - mean of the last quarter) of the per-step losses lies above 0."""
    q = len(losses) // 4
    if q < 2:
        return True, "too few steps to tell whether training converged"
    ci = stats.welch_ci(losses[2 * q:3 * q], losses[3 * q:])
    return ci.low > 0, f"loss drop over the last quarter {ci.estimate:.3g} [{ci.low:.3g}, {ci.high:.3g}]"


def verdict(cfg: NTKAttentionTrainConfig, results) -> list[VerdictRow]:
    """Rows: 1/1b the public script's double counting, 2 logits bounded, F-1 training lowers the
    validation MSE, taylor-2 the trained summary reaches the exact one's MSE."""
    rows = []
    pub = [(c, a) for c, a in results if "public_loss_zero" in a]
    if pub:
        zero = max(float(a["public_loss_zero"]) / float(a["target_power"]) for _, a in pub)
        at_exact = min(float(a["public_loss_exact"]) / float(a["target_power"]) for _, a in pub)
        rows.append(exact_row("1", "public script double-counts the prefix: its loss is 0 at Z = k = 0", zero,
                              target=1e-8, relation="<=", cells=cell_ids(pub),
                              quantity="largest public loss at Z = k = 0 / target power",
                              tol_why="zero up to float64 rounding of softmax sums over m + L rows"))
        rows.append(exact_row("1b", "public script: its loss at the exact summary is not 0", at_exact,
                              target=100 * max(zero, 1e-300), relation=">", cells=cell_ids(pub),
                              quantity="smallest public loss at the exact summary / target power",
                              tol_why="two decades above its value at Z = k = 0 (row 1): distinct from rounding"))
    mx = max((float(a["max_logit"]) for _, a in results), default=float("nan"))
    rows.append(exact_row("2", f"logits bounded with W ~ N(0, {cfg.weight_scale:g}^2/d)", mx, target=10.0,
                          relation="<=", cells=cell_ids(results), quantity="largest prefix logit |z| over the cells",
                          tol_why="a design check, not a theorem: beyond |z| ~ 10 (e^10 ~ 2e4) the softmax is near "
                                  "one-hot and no bounded feature map follows it"))
    for feature in cfg.feature:
        res = sorted(((c, a) for c, a in results if c["feature"] == feature), key=lambda ca: ca[0]["m"])
        if not res:
            continue
        ids = cell_ids(res)
        series = "; ".join(f"m={c['m']}: {float(a['val_mse']):.3g} (init {float(a['val_mse_init']):.3g}, exact "
                           f"summary {float(a['val_mse_exact']):.3g}, target power {float(a['target_power']):.3g})"
                           for c, a in res)
        worst = max(float(a["val_mse"]) / float(a["val_mse_init"]) for _, a in res)
        rows.append(exact_row(f"{feature}-1", f"{feature}: training lowers the validation MSE", worst, target=1.0,
                              relation="<", cells=ids, quantity="largest trained / initial validation MSE",
                              tol_why="same validation draws before and after training (paired): no allowance",
                              detail=series))
        if feature == "taylor":  # elu carries no approximation claim: its numbers are in the detail above
            rows.append(_reaches_exact(res, ids))
    return rows


def _reaches_exact(res, ids) -> VerdictRow:
    """The exact summary is a feasible point, so a converged optimiser's MSE is at most its MSE.
    A shortfall while the loss still falls is undecided (more steps would decide), never failed."""
    worst = max(float(a["val_mse"]) / float(a["val_mse_exact"]) for _, a in res)
    row = exact_row("taylor-2", "taylor: trained MSE <= exact-summary MSE (the exact summary is a feasible point)",
                    worst, target=1.0, relation="<=", cells=ids,
                    quantity="largest trained / exact-summary validation MSE",
                    tol_why="same validation draws (paired); fails only where training has stopped improving")
    if row.passed:
        return row
    falling = [(c["m"], *_still_falling(np.asarray(a["losses"], float))) for c, a in res
               if float(a["val_mse"]) > float(a["val_mse_exact"])]
    detail = "; ".join(f"m={m}: {why}" for m, _, why in falling)
    if any(f for _, f, _ in falling):
        return dataclasses.replace(row, status="undecided", passed=False,
                                   detail=f"the loss still falls where the trained summary is behind (more steps "
                                          f"or a larger lr would decide it): {detail}")
    return dataclasses.replace(row, detail=f"training stopped improving short of the exact summary: {detail}")


EXPERIMENT = register(Experiment(
    name="ntk-attention-train",
    summary="Paper 1 section 4.4 rebuilt: trained (Z, k) vs prefix attention, validation MSE vs m (elu, taylor).",
    config=NTKAttentionTrainConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("m", "feature"),
    examples=("sims run ntk-attention-train --steps 2000 --m 2 --m 64 --m 4096",
              "sims run ntk-attention-train"),
))
