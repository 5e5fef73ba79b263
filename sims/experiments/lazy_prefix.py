"""How lazy is prefix-tuning of a real (small) transformer, and from which prefix length m?

Setup (model in :mod:`theory.transformer`): a pre-layernorm transformer (token and
position embeddings, ``layers`` x (multi-head exact prefix attention + MLP), residuals) is
pre-trained with Adam on ``(x_a + x_b) mod p`` (fresh batches; base ``"pretrained"``) or left
at its random initialisation (base ``"random"``), then frozen.  A per-layer prefix of m rows
(keys and values, embedding space) is tuned on the downstream task ``(x_a - x_b) mod p`` from
``n`` examples with the squared loss on centred one-hot targets.  Prefix rows start at
N(0, sigma^2 I_d), sigma = 0.1 by default (at sigma = 1 the pre-trained attention
concentrates on a few rows; docs/lazy_prefix.md).  Arms (``ARM_SPECS``):

- ``ntk-gd``: the NTK (lazy) scaling ``F = sqrt(m) (f(theta) - f(theta_0))``, plain gradient
  descent at the NTK-scaled step ``eta = eta_fraction / lambda_max(H(0))``;
- ``standard-gd`` (the negative control): ``F = f(theta) - f(theta_0)``, the same rule for eta (so the same
  function-space step; its kernel is H/m, its rows move sqrt(m) times further);
- ``standard-adam``: ``F = f(theta) - f(theta_0)`` with the paper's optimiser, Adam lr 1e-3 (betas 0.9,
  0.999, eps 1e-8), full batch;
- ``reparam-adam``: paper 2's MLP-reparameterised prefix, the same Adam;
- ``lora-adam``: LoRA on W_Q and W_V of matched parameter count (rank m/2, clipped to [1, d]);
- ``ntk-attention-adam``: paper 1's NTK-Attention (degree-``ntk_g`` Taylor summary per head,
  started at the exact summary of the m-row prefix, trained), both with the same Adam
  (:mod:`theory.transformer.adapters`).

Measured per cell (arm, m, seed), on the n training inputs (the probe set of the kernel):
``kernel_change`` sup over checkpoints of ``||H(t) - H(0)||_F / ||H(0)||_F``;
``param_change`` ``||theta(T) - theta_0|| / ||theta_0||``; ``output_change``
``||F(T) - F(0)|| / ||Y||`` (how far training got: the verdict also fits the movements per unit
of it, since at a fixed step budget the function moves less at larger m); ``lin_gap`` ``||F(T) - F_lin(T)|| /
||F(T) - F(0)||`` with ``F_lin`` the linearised network trained by the same optimiser (for GD:
kernel regression with H(0)); downstream test loss and accuracy of the network and of the
linearised model on ``n_test`` held-out sequences.

Verdict (:mod:`sims.experiments.lazy_prefix_verdict`): fitted log-log slopes in m (95% CI
over seeds) against the stylized prediction -1/2, at matched progress (movements per unit of
output change or of parameter displacement) and on the m in the long-prefix regime (the
prefix holds >= 1/2 of layer 0's attention at init: ``prefix_attention_share``; rule in
docs/verdicts.md, :mod:`sims.experiments.lazy_prefix_regime`), the all-m fit beside it; the smallest m from which the kernel is
stable (movement <= 0.1) and the linearised prediction is within 10% (or "not reached up to
m = ..."; "undecided" when the seeds' CI straddles the threshold at the largest m); the
standard-scaling control must NOT show the -1/2 slope; the papers' downstream claims by Welch
intervals of accuracy differences.  The pre-trained base is its own result cell (role "base": its weights and
pre-training curve); tuning cells recompute it from the same config (deterministic, cached).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from sims.core.checks import COUNT, DRAWS, SCALE, SEED, Count, Interval, check_ranges, need_distinct
from sims.core.experiment import Experiment, register
from sims.experiments import lazy_prefix_verdict as LV
from sims.experiments.common import cell_dtype, option as _f
from theory.kernels.ntk_empirical import lambda_max
from theory.ntk_attn.bounds import prefix_parameter_count
from theory.transformer import adapters as AD
from theory.transformer import lazy as LZ
from theory.transformer import model as M
from theory.transformer import tasks
from theory.transformer import train as TR

# arm -> (adapter, prefix form, output scaling, optimiser)
ARM_SPECS = {
    "ntk-gd": ("prefix", "direct", "ntk", "gd"),
    "standard-gd": ("prefix", "direct", "standard", "gd"),
    "standard-adam": ("prefix", "direct", "standard", "adam"),
    "reparam-adam": ("prefix", "reparam", "standard", "adam"),
    "lora-adam": ("lora", "direct", "standard", "adam"),
    "ntk-attention-adam": ("ntk-attention", "direct", "standard", "adam"),
}
ARMS = tuple(ARM_SPECS)
FULL_M = (1, 4, 16, 64, 256, 1024, 4096)
QUICK_M = (4, 16, 64, 256)
QUICK = dict(p=5, T=8, d=32, layers=2, heads=2, d_mlp=64, n=16, n_test=128, steps=100, log_every=25,
             pretrain_steps=600)
FULL = dict(p=7, T=16, d=64, layers=2, heads=4, d_mlp=128, n=32, n_test=256, steps=200, log_every=50,
            pretrain_steps=2000)
SIZE_FIELDS = tuple(FULL)


@dataclasses.dataclass(frozen=True)
class LazyPrefixConfig:
    quick: bool = _f(False, "Quick sizes: d=32, T=8, p=5, n=16, m = 4..256 (about 2 minutes on 2 CPU cores).")
    m: tuple[int, ...] = _f((), "Prefix rows per layer; empty = 1..4096 (x4), or 4..256 with --quick.", COUNT)
    base: str = _f("pretrained", "Base model: pre-trained on (a+b) mod p, or its random initialisation.",
                   choices=("pretrained", "random"))
    arms: tuple[str, ...] = _f(ARMS, "Arms: ntk-gd, standard-gd (control), standard-adam (paper optimiser), "
                               "reparam-adam (paper 2's MLP form), lora-adam (matched parameter count), "
                               "ntk-attention-adam (paper 1's trained summary).", choices=ARMS)
    seeds: int = _f(3, "Prefix initialisations per (arm, m).", DRAWS)
    p: int = _f(0, "Modulus of the tasks (answer classes); 0 = 7 (5 with --quick).", Count(ge=0))
    T: int = _f(0, "Sequence length; 0 = 16 (8 with --quick).", Count(ge=0))
    d: int = _f(0, "Model width; 0 = 64 (32 with --quick).", Count(ge=0))
    layers: int = _f(0, "Transformer layers; 0 = 2.", Count(ge=0))
    heads: int = _f(0, "Attention heads; 0 = 4 (2 with --quick).", Count(ge=0))
    d_mlp: int = _f(0, "MLP hidden width; 0 = 128 (64 with --quick).", Count(ge=0))
    n: int = _f(0, "Downstream training sequences (the kernel's probe set); 0 = 32 (16 with --quick).", Count(ge=0))
    n_test: int = _f(0, "Held-out downstream sequences; 0 = 256 (128 with --quick).", Count(ge=0))
    steps: int = _f(0, "Prefix-tuning steps; 0 = 200 (100 with --quick).", Count(ge=0))
    log_every: int = _f(0, "Steps between kernel measurements; 0 = 50 (25 with --quick).", Count(ge=0))
    pretrain_steps: int = _f(0, "Adam steps of pre-training (batch 128, lr 3e-3); 0 = 2000 (600 with --quick).",
                             Count(ge=0))
    sigma: float = _f(0.1, "Prefix initialisation scale (rows N(0, sigma^2 I_d)); 1 = the token scale, where "
                      "pre-trained attention concentrates on a few rows (docs/lazy_prefix.md).",
                      SCALE)
    ntk_g: int = _f(2, "Taylor degree of NTK-Attention's features.", COUNT)
    eta_fraction: float = _f(0.5, "GD step as a fraction of 1/lambda_max(H(0)).", Interval(gt=0, lt=2))
    adam_lr: float = _f(1e-3, "Adam learning rate (paper: 1e-3).", Interval(gt=0, le=10))
    data_seed: int = _f(0, "Seed of the base model, its pre-training and the downstream data.", SEED)

    def __post_init__(self):
        check_ranges(self)
        if not self.arms:
            raise ValueError("arms must not be empty")
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
                  data_seed=cfg.data_seed, ntk_g=cfg.ntk_g)
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
    adapter, form, parametrization, optimizer = ARM_SPECS[cell["arm"]]
    (tok, y), (te_tok, te_y) = _data(cell, "sub")
    Y = tasks.one_hot_targets(y, mcfg.k, dtype=jnp.dtype(dtype))
    pcfg = dataclasses.replace(mcfg, form=form)
    prefix0 = M.init_prefix(pcfg, m, key=key, sigma=cell["sigma"], dtype=jnp.dtype(dtype))
    if adapter == "lora":
        theta0 = AD.init_lora(mcfg, AD.lora_rank(mcfg, m), key=key, dtype=jnp.dtype(dtype))
    elif adapter == "ntk-attention":
        theta0 = AD.init_ntk_attention(mcfg, params, prefix0, g=cell["ntk_g"])
    else:
        theta0 = prefix0
    net = TR.TunedNetwork(pcfg, adapter=adapter, g=cell["ntk_g"], rows=m if adapter == "ntk-attention" else 1)
    scale = TR.output_scale(m, parametrization)
    F0, F0_te = (jax.vmap(lambda t: net.single(theta0, params, t))(x) for x in (tok, te_tok))
    args = (params, tok, F0, jnp.asarray(scale, F0.dtype))
    H0 = LZ.prefix_ntk(net, theta0, params, tok, scale=scale)
    lam_max = lambda_max(H0)
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
        rms.append(float(LZ.rms_row_movement(theta, theta0)) if (adapter, form) == ("prefix", "direct") else np.nan)
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
        "eta": np.asarray(eta), "lambda_max_H0": np.asarray(lam_max), "n_params": np.asarray(M.n_params(theta0)),
        "n_direct_prefix_params": np.asarray(_direct_prefix_count(mcfg, m)),
        "prefix_logit_spread": np.asarray(LZ.prefix_logit_spread(pcfg, params, prefix0, tok)),
        "prefix_attention_share": np.asarray(LZ.prefix_attention_share(pcfg, params, prefix0, tok)),
    }


def _direct_prefix_count(mcfg, m) -> int:
    """Scalars of the direct untied prefix: m key and m value rows of width d in every layer."""
    return mcfg.layers * prefix_parameter_count(m, mcfg.d)


def estimate_bytes(cell, devices: int = 1) -> int:
    """Peak bytes of one cell: the prefix Jacobian of the kernel (n k x prefix parameters), the
    checkpointed prefixes, and the activations of the backward pass over the n sequences."""
    item = cell_dtype(cell).itemsize
    if cell["role"] == "base":
        return 256 << 20
    mcfg, m = model_config(cell), cell["m"]
    reparam = jax.eval_shape(lambda: M.init_prefix(dataclasses.replace(mcfg, form="reparam"), m,
                                                   key=jax.random.key(0)))
    P = max(_direct_prefix_count(mcfg, m), M.n_params(reparam),
            AD.ntk_attention_parameter_count(mcfg, cell.get("ntk_g", 2)))  # the largest adapter of the cell
    jac = cell["n"] * cell["p"] * P * 2  # Jacobian and its contraction operands
    acts = cell["n"] * cell["layers"] * cell["heads"] * cell["T"] * (cell["m"] + cell["T"]) * 8
    ckpt = (cell["steps"] // cell["log_every"] + 1) * P * 2  # network and linearised model
    return item * (jac + acts + ckpt) + (256 << 20)


EXPERIMENT = register(Experiment(
    name="lazy-prefix",
    summary="How lazy prefix-tuning of a small pre-trained transformer is: kernel/parameter movement and the "
            "linearisation gap against m, NTK scaling vs standard (control) vs Adam.",
    config=LazyPrefixConfig,
    cells=cells,
    run=run,
    verdict=LV.verdict,
    estimate_bytes=estimate_bytes,
    sweep_fields=("m", "arms"),
    check=lambda cfg: need_distinct("m", cfg.grid(), n=3, hint="give at least three --m"),
    examples=(
        "sims run lazy-prefix --quick",
        "sims run lazy-prefix --base random --quick",
        "sims run lazy-prefix --quick --sigma 1",
        "sims run lazy-prefix --m 16 --m 256 --m 4096 --arms ntk-gd --arms standard-gd",
    ),
))
