"""Pre-training the base model and prefix-tuning it, as pure functions of arrays and keys.

- :func:`pretrain`: Adam on the cross-entropy of the answer logits, a fresh batch from the
  task at every step (the base model has no prefix); returns the weights and the loss curve.
- :class:`TunedNetwork`: the prefix-tuned network's outputs on a fixed batch, in one of two
  parametrisations of the prefix's effect (the lazy-training scaling of Chizat and Bach, as in
  the stylized models of spec section 2)::

      "ntk":       F(theta) = sqrt(m) (f(theta) - f(theta_0))
      "standard":  F(theta) =          f(theta) - f(theta_0)

  where ``f`` is :func:`theory.transformer.model.forward`.  Both are centred at the initial
  prefix (``F(theta_0) = 0``, as the stylized models of spec 2 are), so the two differ only
  by the scale; the NTK of the first is m times that of the second.
- :func:`fit`: full-batch training of ``L = 1/2 sum_i ||F(x_i) - y_i||^2`` by plain gradient
  descent at a constant step ``eta`` or by Adam (paper settings: lr 1e-3, betas 0.9/0.999,
  eps 1e-8), inside ``lax.scan``; it logs the outputs every step and the parameters every
  ``log_every`` steps.  The same function trains the linearised model of
  :mod:`theory.transformer.lazy`.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import optax

from theory import validation as _v
from theory.kernels.models import output_scale as models_output_scale
from theory.transformer import adapters as _adapters
from theory.transformer import tasks as _tasks
from theory.transformer.model import TransformerConfig, forward
from theory.transformer.trainable import AdapterTheta

__all__ = ["pretrain", "output_scale", "TunedNetwork", "fit", "ADAM_PAPER", "PARAMETRIZATIONS"]

PARAMETRIZATIONS = ("ntk", "standard")
ADAM_PAPER = {"learning_rate": 1e-3, "b1": 0.9, "b2": 0.999, "eps": 1e-8}


@functools.partial(jax.jit, static_argnames=("cfg", "task", "p", "steps", "batch"))
def _pretrain(params, key, lr, *, cfg, task, p, steps, batch):
    opt = optax.adam(lr)

    def loss(prm, tokens, y):
        F = jax.vmap(lambda t: forward(cfg, prm, None, t))(tokens)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(F, y)), _tasks.accuracy(F, y)

    def step(carry, k_t):
        prm, state = carry
        tokens, y = _tasks.sample(task, batch, key=k_t, p=p, T=cfg.T)
        (l, acc), g = jax.value_and_grad(loss, has_aux=True)(prm, tokens, y)
        upd, state = opt.update(g, state, prm)
        return (optax.apply_updates(prm, upd), state), (l, acc)

    (params, _), (losses, accs) = jax.lax.scan(step, (params, opt.init(params)), jax.random.split(key, steps))
    return params, losses, accs


def pretrain(cfg: TransformerConfig, params, *, key, task: str = "add", steps: int = 1000, batch: int = 128,
             lr: float = 3e-3):
    """Adam on fresh batches of ``task`` (cross-entropy of the answer logits, no prefix).

    The task's modulus is ``p = cfg.k`` and its sequences have ``cfg.T`` tokens (``cfg.vocab``
    must be at least ``p + 1``).

    Args:
        cfg: the :class:`TransformerConfig`; params: initial weights (:func:`init_params`).
        key: JAX PRNG key; task: one of ``TASKS``; steps: Adam steps; batch: sequences per
            step; lr: learning rate (> 0).
    Returns:
        ``(params, loss, accuracy)``: the trained weights, loss (steps,), accuracy (steps,).
    Raises:
        InputError: ``steps`` or ``batch`` not an integer >= 1, ``cfg.vocab < cfg.k + 1``,
            unknown ``task``, or ``lr`` not a positive finite number.
    """
    _v.check_count("steps", steps)
    _v.check_count("batch", batch)
    if cfg.vocab < cfg.k + 1:
        raise _v.InputError(f"cfg.vocab ({cfg.vocab}) must be >= k + 1 ({cfg.k + 1}) for the '=' token")
    if task not in _tasks.TASKS:
        raise _v.InputError(f"task must be one of {_tasks.TASKS}, got {task!r}")
    lr = _v.check_positive("lr", lr)
    return _pretrain(params, key, jnp.asarray(lr), cfg=cfg, task=task, p=cfg.k, steps=int(steps), batch=int(batch))


def output_scale(m: int, parametrization: str):
    """``sqrt(m)`` for ``"ntk"``, 1 for ``"standard"``.

    Args:
        m: prefix length (not checked); parametrization: one of ``PARAMETRIZATIONS``.
    Returns:
        The output scale, a Python float.
    Raises:
        InputError: unknown ``parametrization``.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise _v.InputError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    # The stylized models' rule (theory.kernels.models.output_scale) with a softmax average's m^{1/2}:
    # "standard" is its mean-field control, one sqrt(m) factor less.
    return models_output_scale(m, "ntk" if parametrization == "ntk" else "mean-field", ntk_power=0.5)


@dataclasses.dataclass(frozen=True)
class TunedNetwork:
    """The adapted network's outputs as a hashable function ``(theta, args) -> (n, k)``.

    ``args = (params, tokens, F0, scale)``: frozen base weights, sequences (n, T), ``F0``
    (n, k) = ``f(theta_0)`` on those tokens, and ``scale`` = :func:`output_scale`.  ``adapter``
    says what ``theta`` is (:data:`theory.transformer.adapters.ADAPTERS`: a prefix, LoRA
    factors or NTK-Attention summaries; ``g`` is NTK-Attention's Taylor degree and ``rows`` the
    prefix length its per-row-mean summaries stand for).  Equal configs
    give equal (hash-equal) objects, so jitted training compiles once per shape.
    """

    cfg: TransformerConfig
    adapter: str = "prefix"
    g: int = 2
    rows: int = 1

    def single(self, theta: AdapterTheta, params, tokens):
        """Uncentred, unscaled logits ``f(theta; x)`` (k,) of one sequence ``tokens`` (T,)."""
        return _adapters.adapted_forward(self.cfg, self.adapter, params, theta, tokens, g=self.g, rows=self.rows)

    def __call__(self, theta: AdapterTheta, args):
        params, tokens, F0, scale = args
        f = jax.vmap(lambda t: self.single(theta, params, t))(tokens)
        return scale * (f - F0)


@functools.partial(jax.jit, static_argnums=(0,), static_argnames=("optimizer", "steps", "log_every"))
def _fit(outputs, theta0, args, Y, eta, *, optimizer, steps, log_every):
    opt = optax.sgd(eta) if optimizer == "gd" else optax.adam(eta, b1=ADAM_PAPER["b1"], b2=ADAM_PAPER["b2"],
                                                               eps=ADAM_PAPER["eps"])

    def loss(theta):
        F = outputs(theta, args)
        return 0.5 * jnp.sum((F - Y) ** 2), F

    def step(carry, _):
        theta, state = carry
        (l, F), g = jax.value_and_grad(loss, has_aux=True)(theta)
        upd, state = opt.update(g, state, theta)
        return (optax.apply_updates(theta, upd), state), (l, F)

    def block(carry, _):
        carry, (l, F) = jax.lax.scan(step, carry, None, length=log_every)
        return carry, (l, F, carry[0])

    (theta, _), (l, F, thetas) = jax.lax.scan(block, (theta0, opt.init(theta0)), None, length=steps // log_every)
    lT, FT = loss(theta)
    cat = lambda a0, a: jnp.concatenate([a0[None], a.reshape(-1, *a0.shape)])  # noqa: E731
    return {"loss": jnp.concatenate([l.reshape(-1), lT[None]]),
            "F": jnp.concatenate([F.reshape(-1, *FT.shape), FT[None]]),
            "thetas": jax.tree_util.tree_map(cat, theta0, thetas)}


def fit(outputs, theta0: AdapterTheta, Y, *, args, optimizer: str = "gd", eta: float, steps: int, log_every: int):
    """Full-batch training of ``1/2 ||outputs(theta) - Y||^2`` from ``theta0``.

    Args:
        outputs: a hashable function ``(theta, args) -> (n, k)`` (a :class:`TunedNetwork`, or
            :class:`theory.transformer.lazy.Linearised` of one).
        theta0: the initial trainable record (:mod:`theory.transformer.trainable`).
        Y: targets, (n, k).
        args: the array arguments of ``outputs``.
        optimizer: ``"gd"`` (step ``eta``) or ``"adam"`` (learning rate ``eta``, the paper's
            betas and eps).
        eta: step / learning rate (> 0); steps: number of steps; log_every: checkpoint period.
    Returns:
        A dict: ``loss`` (steps + 1,) with ``loss[t]`` the loss at step t, ``F``
        (steps + 1, n, k) the outputs at every step, and ``thetas``: ``theta0``'s record with a
        leading axis of steps // log_every + 1 checkpoints (t = 0, log_every, 2 log_every, ...).
    Raises:
        InputError: unknown ``optimizer``, ``eta`` not positive, ``steps`` or ``log_every`` not
            an integer >= 1, or ``steps`` not a multiple of ``log_every``.
    """
    if optimizer not in ("gd", "adam"):
        raise _v.InputError(f"optimizer must be 'gd' or 'adam', got {optimizer!r}")
    eta = _v.check_positive("eta", eta)
    _v.check_count("steps", steps)
    _v.check_count("log_every", log_every)
    if steps % log_every:
        raise _v.InputError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    Y = jnp.asarray(Y)
    return _fit(outputs, theta0, args, Y, jnp.asarray(eta, Y.dtype), optimizer=optimizer, steps=int(steps),
                log_every=int(log_every))
