"""How lazy is prefix-tuning of a real (small) transformer, and from which prefix length m?

Setup (issue 16; model in :mod:`theory.transformer`): a pre-layernorm transformer (token and
position embeddings, ``layers`` x (multi-head exact prefix attention + MLP), residuals) is
pre-trained with Adam on ``(x_a + x_b) mod p`` (fresh batches; base ``"pretrained"``) or left
at its random initialisation (base ``"random"``), then frozen.  A per-layer prefix of m rows
(keys and values, embedding space) is tuned on the downstream task ``(x_a - x_b) mod p`` from
``n`` examples with the squared loss on centred one-hot targets.  Three arms:

- ``ntk-gd``: the NTK (lazy) scaling ``F = sqrt(m) (f(theta) - f(theta_0))``, plain gradient
  descent at the NTK-scaled step ``eta = eta_fraction / lambda_max(H(0))``;
- ``standard-gd`` (the negative control): ``F = f(theta) - f(theta_0)``, the same rule for eta (so the same
  function-space step; its kernel is H/m, its rows move sqrt(m) times further);
- ``standard-adam``: ``F = f(theta) - f(theta_0)`` with the paper's optimiser, Adam lr 1e-3 (betas 0.9,
  0.999, eps 1e-8), full batch.

Measured per cell (arm, m, seed), on the n training inputs (the probe set of the kernel):
``kernel_change`` sup over checkpoints of ``||H(t) - H(0)||_F / ||H(0)||_F``;
``param_change`` ``||theta(T) - theta_0|| / ||theta_0||``; ``output_change``
``||F(T) - F(0)|| / ||Y||`` (how far training got: the verdict also fits the movements per unit
of it, since at a fixed step budget the function moves less at larger m); ``lin_gap`` ``||F(T) - F_lin(T)|| /
||F(T) - F(0)||`` with ``F_lin`` the linearised network trained by the same optimiser (for GD:
kernel regression with H(0)); downstream test loss and accuracy of the network and of the
linearised model on ``n_test`` held-out sequences.

Verdict: fitted log-log slopes in m (95% CI over seeds) against the stylized prediction
-1/2; the smallest m from which the kernel is stable (movement <= 0.1) and the linearised
prediction is within 10% (or "not reached up to m = ..."; "undecided" when the seeds' CI
straddles the threshold at the largest m); the standard-scaling control must NOT show the
-1/2 slope.  The pre-trained base is its own result cell (role "base": its weights and
pre-training curve); tuning cells recompute it from the same config (deterministic, cached).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

import theory as T
from sims.core.checks import need_distinct
from sims.core.experiment import Experiment, VerdictRow, register
from sims.core.verdicts import slope_row
from sims.experiments.common import check_fields, option as _f
from theory.stats import mean_ci
from theory.transformer import lazy as LZ
from theory.transformer import model as M
from theory.transformer import tasks
from theory.transformer import train as TR

ARMS = ("ntk-gd", "standard-gd", "standard-adam")
FULL_M = (1, 4, 16, 64, 256, 1024, 4096)
QUICK_M = (4, 16, 64, 256)
THRESHOLD = 0.1  # "kernel stable" and "linearised prediction within 10%"
QUICK = dict(p=5, T=8, d=32, layers=2, heads=2, d_mlp=64, n=16, n_test=128, steps=100, log_every=25,
             pretrain_steps=600)
FULL = dict(p=7, T=16, d=64, layers=2, heads=4, d_mlp=128, n=32, n_test=256, steps=200, log_every=50,
            pretrain_steps=2000)
SIZE_FIELDS = tuple(FULL)


@dataclasses.dataclass(frozen=True)
class LazyPrefixConfig:
    quick: bool = _f(False, "Quick sizes: d=32, T=8, p=5, n=16, m = 4..256 (about 2 minutes on 2 CPU cores).")
    m: tuple[int, ...] = _f((), "Prefix rows per layer; empty = 1..4096 (x4), or 4..256 with --quick.")
    base: str = _f("pretrained", "Base model: pre-trained on (a+b) mod p, or its random initialisation.",
                   choices=("pretrained", "random"))
    arms: tuple[str, ...] = _f(ARMS, "Arms: ntk-gd, standard-gd (control), standard-adam (paper optimiser).",
                               choices=ARMS)
    seeds: int = _f(3, "Prefix initialisations per (arm, m).")
    p: int = _f(0, "Modulus of the tasks (answer classes); 0 = 7 (5 with --quick).", minimum=0)
    T: int = _f(0, "Sequence length; 0 = 16 (8 with --quick).", minimum=0)
    d: int = _f(0, "Model width; 0 = 64 (32 with --quick).", minimum=0)
    layers: int = _f(0, "Transformer layers; 0 = 2.", minimum=0)
    heads: int = _f(0, "Attention heads; 0 = 4 (2 with --quick).", minimum=0)
    d_mlp: int = _f(0, "MLP hidden width; 0 = 128 (64 with --quick).", minimum=0)
    n: int = _f(0, "Downstream training sequences (the kernel's probe set); 0 = 32 (16 with --quick).", minimum=0)
    n_test: int = _f(0, "Held-out downstream sequences; 0 = 256 (128 with --quick).", minimum=0)
    steps: int = _f(0, "Prefix-tuning steps; 0 = 200 (100 with --quick).", minimum=0)
    log_every: int = _f(0, "Steps between kernel measurements; 0 = 50 (25 with --quick).", minimum=0)
    pretrain_steps: int = _f(0, "Adam steps of pre-training (batch 128, lr 3e-3); 0 = 2000 (600 with --quick).",
                             minimum=0)
    sigma: float = _f(1.0, "Prefix initialisation scale (rows N(0, sigma^2 I_d)).", range="(0, inf)")
    eta_fraction: float = _f(0.5, "GD step as a fraction of 1/lambda_max(H(0)).", range="(0, 2)")
    adam_lr: float = _f(1e-3, "Adam learning rate (paper: 1e-3).", range="(0, inf)")
    data_seed: int = _f(0, "Seed of the base model, its pre-training and the downstream data.")

    def __post_init__(self):
        if not self.arms:
            raise ValueError("arms must not be empty")
        check_fields(self, positive=("sigma", "eta_fraction", "adam_lr"), seeds=("data_seed",))
        if self.size("steps") % self.size("log_every"):
            raise ValueError(f"steps ({self.size('steps')}) must be a multiple of log_every ({self.size('log_every')})")
        if self.size("T") < 3 or self.size("p") < 2:
            raise ValueError("need T >= 3 and p >= 2")
        if self.size("d") % self.size("heads"):
            raise ValueError(f"d ({self.size('d')}) must be a multiple of heads ({self.size('heads')})")

    def size(self, name):
        return getattr(self, name) or (QUICK if self.quick else FULL)[name]

    def grid(self) -> list[int]:
        return sorted({int(v) for v in self.m}) or list(QUICK_M if self.quick else FULL_M)


def cells(cfg: LazyPrefixConfig) -> list[dict]:
    common = {name: cfg.size(name) for name in SIZE_FIELDS}
    common.update(base=cfg.base, sigma=cfg.sigma, eta_fraction=cfg.eta_fraction, adam_lr=cfg.adam_lr,
                  data_seed=cfg.data_seed)
    base = {**common, "role": "base", "arm": "", "m": 0, "seed": 0}
    return [base] + [{**common, "role": "tune", "arm": a, "m": m, "seed": s}
                     for a in cfg.arms for m in cfg.grid() for s in range(cfg.seeds)]


def model_config(cell) -> M.TransformerConfig:
    return M.TransformerConfig(vocab=cell["p"] + 1, k=cell["p"], T=cell["T"], d=cell["d"], layers=cell["layers"],
                               heads=cell["heads"], d_mlp=cell["d_mlp"])


@functools.lru_cache(maxsize=4)
def _base(mcfg: M.TransformerConfig, base: str, pretrain_steps: int, data_seed: int, dtype: str):
    """Base weights (a pure function of its arguments; cached so that a run pre-trains once)."""
    root = jax.random.key(data_seed)
    params = M.init_params(mcfg, key=jax.random.fold_in(root, 0), dtype=jnp.dtype(dtype))
    if base == "random":
        return params, np.zeros(0), np.zeros(0)
    params, loss, acc = TR.pretrain(mcfg, params, key=jax.random.fold_in(root, 1), task="add",
                                    steps=pretrain_steps, batch=128)
    return params, np.asarray(loss), np.asarray(acc)


def _data(cell, task):
    root = jax.random.fold_in(jax.random.key(cell["data_seed"]), 2)
    tr = tasks.sample(task, cell["n"], key=jax.random.fold_in(root, 0), p=cell["p"], T=cell["T"])
    te = tasks.sample(task, cell["n_test"], key=jax.random.fold_in(root, 1), p=cell["p"], T=cell["T"])
    return tr, te


def _outputs(mcfg, params, theta, tokens):
    return jax.vmap(lambda t: M.forward(mcfg, params, theta, t))(tokens)


def _run_base(cell, mcfg, params, loss, acc):
    (_, _), (te_tok, te_y) = _data(cell, "add")
    (_, _), (ds_tok, ds_y) = _data(cell, "sub")
    F_add = _outputs(mcfg, params, None, te_tok)
    F_sub = _outputs(mcfg, params, None, ds_tok)
    flat = np.concatenate([np.asarray(a).reshape(-1) for a in jax.tree_util.tree_leaves(params)])
    return {"base_params": flat, "pretrain_loss": loss, "pretrain_accuracy": acc,
            "pretrain_test_accuracy": np.asarray(tasks.accuracy(F_add, te_y)),
            "zero_shot_downstream_accuracy": np.asarray(tasks.accuracy(F_sub, ds_y))}


def run(cell, *, key):
    dtype = cell.get("dtype", "float64")
    mcfg = model_config(cell)
    params, loss, acc = _base(mcfg, cell["base"], cell["pretrain_steps"], cell["data_seed"], dtype)
    if cell["role"] == "base":
        return _run_base(cell, mcfg, params, loss, acc)
    m = int(cell["m"])
    parametrization, optimizer = cell["arm"].split("-")
    (tok, y), (te_tok, te_y) = _data(cell, "sub")
    Y = tasks.one_hot_targets(y, mcfg.k, dtype=jnp.dtype(dtype))
    theta0 = M.init_prefix(mcfg, m, key=key, sigma=cell["sigma"], dtype=jnp.dtype(dtype))
    net = TR.TunedNetwork(mcfg)
    scale = TR.output_scale(m, parametrization)
    F0, F0_te = _outputs(mcfg, params, theta0, tok), _outputs(mcfg, params, theta0, te_tok)
    args = (params, tok, F0, jnp.asarray(scale, F0.dtype))
    H0 = LZ.prefix_ntk(net, theta0, params, tok, scale=scale)
    lam_max = float(np.linalg.eigvalsh(np.asarray(T.kernel_matrix(H0), np.float64))[-1])
    eta = cell["eta_fraction"] / lam_max if optimizer == "gd" else cell["adam_lr"]
    fit = dict(optimizer=optimizer, eta=eta, steps=cell["steps"], log_every=cell["log_every"])
    out = TR.fit(net, theta0, Y, args=args, **fit)
    lin = TR.fit(LZ.Linearised(net), theta0, Y, args=(args, theta0), **fit)
    checkpoints = jax.tree_util.tree_leaves(out["thetas"])[0].shape[0]
    at = lambda tree, i: jax.tree_util.tree_map(lambda a: a[i], tree)  # noqa: E731
    kernel_change, param_change, rms = [], [], []
    for i in range(checkpoints):
        theta = at(out["thetas"], i)
        H = H0 if i == 0 else LZ.prefix_ntk(net, theta, params, tok, scale=scale)
        kernel_change.append(float(LZ.relative_change(H, H0)))
        param_change.append(float(LZ.relative_change(theta, theta0)))
        rms.append(float(LZ.rms_row_movement(theta, theta0)) if mcfg.form == "direct" else np.nan)
    thetaT, theta_linT = at(out["thetas"], -1), at(lin["thetas"], -1)
    te_args = (params, te_tok, F0_te, jnp.asarray(scale, F0.dtype))
    F_te, F_lin_te = net(thetaT, te_args), LZ.Linearised(net)(theta_linT, (te_args, theta0))
    Y_te = tasks.one_hot_targets(te_y, mcfg.k, dtype=F_te.dtype)
    gap = LZ.linearisation_gap(out["F"][1:], lin["F"][1:], out["F"][0])
    return {
        "loss": np.asarray(out["loss"]), "loss_lin": np.asarray(lin["loss"]),
        "lin_gap_curve": np.concatenate([[0.0], np.asarray(gap)]),
        "lin_gap": np.asarray(gap[-1]),
        "test_lin_gap": np.asarray(LZ.linearisation_gap(F_te, F_lin_te, F0_te)),
        "kernel_change_curve": np.asarray(kernel_change), "kernel_change": np.asarray(max(kernel_change)),
        "param_change_curve": np.asarray(param_change), "param_change": np.asarray(param_change[-1]),
        "rms_row_movement": np.asarray(rms[-1]),
        "output_change": np.asarray(jnp.linalg.norm(out["F"][-1] - out["F"][0]) / jnp.linalg.norm(Y)),
        "train_accuracy": np.asarray(tasks.accuracy(out["F"][-1], y)),
        "test_accuracy": np.asarray(tasks.accuracy(F_te, te_y)),
        "test_accuracy_lin": np.asarray(tasks.accuracy(F_lin_te, te_y)),
        "test_loss": np.asarray(0.5 * jnp.mean(jnp.sum((F_te - Y_te) ** 2, axis=1))),
        "eta": np.asarray(eta), "lambda_max_H0": np.asarray(lam_max), "n_prefix_params": np.asarray(M.n_params(theta0)),
    }


def estimate_bytes(cell, devices: int = 1) -> int:
    """Peak bytes of one cell: the prefix Jacobian of the kernel (n k x prefix parameters), the
    checkpointed prefixes, and the activations of the backward pass over the n sequences."""
    item = 4 if cell.get("dtype") == "float32" else 8
    if cell["role"] == "base":
        return 256 << 20
    P = 2 * cell["layers"] * cell["m"] * cell["d"]
    jac = cell["n"] * cell["p"] * P * 2  # Jacobian and its contraction operands
    acts = cell["n"] * cell["layers"] * cell["heads"] * cell["T"] * (cell["m"] + cell["T"]) * 8
    ckpt = (cell["steps"] // cell["log_every"] + 1) * P * 2  # network and linearised model
    return item * (jac + acts + ckpt) + (256 << 20)


# ----------------------------------------------------------------------------- verdict


def _by_arm(results, arm):
    rows = [(c, a) for c, a in results if c.get("role") == "tune" and c["arm"] == arm]
    ms = sorted({c["m"] for c, _ in rows})
    return ms, {m: [a for c, a in rows if c["m"] == m] for m in ms}


def threshold_row(claim, ms, by_m, key, *, level=THRESHOLD):
    """Smallest m from which ``key`` <= level holds (95% CI over seeds below it) at every larger m.

    At each m: holds if the upper CI end is <= level, fails if the lower end is > level,
    undecided otherwise.  Pass iff it holds at the largest m.
    """
    state = {}
    for m in ms:
        v = [float(a[key]) for a in by_m[m]]
        mean, lo, hi = mean_ci(v)
        state[m] = "holds" if hi <= level else ("fails" if lo > level else "undecided")
    top = ms[-1]
    top_mean = float(np.mean([float(a[key]) for a in by_m[top]]))
    since = None
    for m in reversed(ms):
        if state[m] != "holds":
            break
        since = m
    if since is not None:
        measured = f"holds from m = {since} (mean {top_mean:.3g} at m = {top})"
    elif state[top] == "undecided":
        measured = f"at m = {top} the seeds' 95% CI straddles {level:g} (mean {top_mean:.3g})"
        return VerdictRow.undecided(claim, f"<= {level:g} from some m", measured,
                                    "undecided at this size: more seeds or a larger m would decide it")
    else:
        measured = f"not reached up to m = {top} (mean {top_mean:.3g})"
    return VerdictRow(claim, f"<= {level:g} from some m", measured, since is not None)


def verdict(cfg: LazyPrefixConfig, results) -> list[VerdictRow]:
    base = [a for c, a in results if c.get("role") == "base"]
    base_note = f"base: {cfg.base}"
    if base and cfg.base == "pretrained":
        base_note += (f" (pre-train test accuracy {float(base[0]['pretrain_test_accuracy']):.2f}, "
                      f"zero-shot downstream {float(base[0]['zero_shot_downstream_accuracy']):.2f})")
    rows = []
    claims = [("relative kernel movement sup_t ||H(t)-H(0)||/||H(0)||", "kernel_change"),
              ("relative parameter movement ||theta(T)-theta_0||/||theta_0||", "param_change"),
              ("linearisation gap ||F(T)-F_lin(T)||/||F(T)-F(0)||", "lin_gap")]
    ms, by_m = _by_arm(results, "ntk-gd")
    if ms:
        for claim, key in claims:
            rows.append(slope_row(f"ntk-gd: {claim} ~ m^-1/2", ms, [[float(a[key]) for a in by_m[m]] for m in ms]))
        for claim, key in claims[:2]:  # per unit of function-space progress (training budget confound removed)
            rows.append(slope_row(f"ntk-gd: {claim.split(' ||')[0]} / output change ~ m^-1/2", ms,
                                  [[float(a[key]) / float(a["output_change"]) for a in by_m[m]] for m in ms]))
        rows.append(threshold_row("ntk-gd: kernel stable (movement <= 0.1)", ms, by_m, "kernel_change"))
        rows.append(threshold_row("ntk-gd: linearised prediction within 10%", ms, by_m, "lin_gap"))
    cms, cby = _by_arm(results, "standard-gd")
    if cms:
        for claim, key in claims[:2]:
            rows.append(slope_row(f"control standard-gd: {claim} not ~ m^-1/2", cms,
                                  [[float(a[key]) for a in cby[m]] for m in cms], control=True))
    ams, aby = _by_arm(results, "standard-adam")
    if ams:
        for claim, key in claims:
            rows.append(slope_row(f"standard-adam (paper optimiser): {claim} ~ m^-1/2", ams,
                                  [[float(a[key]) for a in aby[m]] for m in ams]))
        rows.append(threshold_row("standard-adam: linearised prediction within 10%", ams, aby, "lin_gap"))
    for arm in cfg.arms:
        ams, aby = _by_arm(results, arm)
        if not ams:
            continue
        top = ams[-1]
        mean, lo, hi = mean_ci([float(a["test_accuracy"]) for a in aby[top]])
        chance = 1.0 / (cfg.size("p"))
        claim, pred, meas = (f"{arm}: downstream test accuracy at m = {top} above chance", f"> {chance:.3g}",
                             f"{mean:.3f} [{lo:.3f}, {hi:.3f}]")
        if lo <= chance < hi:  # the interval straddles chance: more seeds would decide it
            rows.append(VerdictRow.undecided(claim, pred, meas, "95% t-interval over seeds straddles chance: "
                                             "undecided at this size, more seeds would decide it"))
        else:
            rows.append(VerdictRow(claim, pred, meas, lo > chance, "95% t-interval over seeds"))
    return [dataclasses.replace(r, detail=(r.detail + "; " if r.detail else "") + base_note) for r in rows]


EXPERIMENT = register(Experiment(
    name="lazy-prefix",
    summary="How lazy prefix-tuning of a small pre-trained transformer is: kernel/parameter movement and the "
            "linearisation gap against m, NTK scaling vs standard (control) vs Adam.",
    config=LazyPrefixConfig,
    cells=cells,
    run=run,
    verdict=verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("m", "arms"),
    count_fields=("m", "seeds"),
    check=lambda cfg: need_distinct("m", cfg.grid(), n=3, hint="give at least three --m"),
    examples=(
        "sims run lazy-prefix --quick",
        "sims run lazy-prefix --base random --quick",
        "sims run lazy-prefix --m 16 --m 256 --m 4096 --arms ntk-gd --arms standard-gd",
    ),
))
