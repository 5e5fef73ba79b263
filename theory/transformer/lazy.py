"""How lazy is prefix-tuning: kernel, parameter and function-space measurements.

For the prefix-tuned network ``F(theta; x)`` (:class:`theory.transformer.train.TunedNetwork`)
on a fixed probe set ``x_1..x_n``:

- :func:`prefix_ntk`: the empirical NTK w.r.t. the trainable ``theta`` only (the prefix, or
  the comparison adapter's parameters),
  ``H[i, j, l, l'] = <dF_l(x_i)/dtheta, dF_l'(x_j)/dtheta>``, shape (n, n, k, k), by
  the autodiff reference (per-example Jacobians, exact; tested against :func:`theory.autodiff_ntk`).
- :func:`relative_change`: ``||A - A_0|| / ||A_0||`` over a pytree (kernel movement with
  ``A = H(t)``, parameter movement with ``A = theta(t)``).
- :class:`Linearised`: the first-order model ``F_lin(theta) = F(theta_0) + J_0 (theta - theta_0)``
  (one ``jax.jvp`` at ``theta_0``), trained by the same optimiser as the network.  Under
  gradient descent its outputs follow kernel regression with ``H(0)``:
  ``r(t) = (I - eta H(0))^t r(0)`` (:func:`theory.kernel_regression_residuals`; the tests check
  the two agree), and under Adam it is the linearised dynamics of that optimiser.
- :func:`linearisation_gap`: ``||F(t) - F_lin(t)|| / ||F(t) - F(0)||``, the distance of the
  trained outputs to the linearised prediction relative to how far training moved them.
- :func:`rms_row_movement`: ``||theta(t) - theta_0||_F / sqrt(rows)`` for a direct prefix.
- :func:`prefix_logit_spread`: the spread of the first layer's prefix logits, the regime diagnostic.
- :func:`prefix_attention_share`: the share of the first layer's attention that the prefix holds,
  the long-prefix regime criterion (docs/verdicts.md).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from theory import validation as _v
from theory.kernels.ntk_empirical import DEFAULT_MEMORY_BUDGET, check_autodiff_budget
from theory.kernels.ntk_empirical import contract_jacobians
from theory.transformer import model as M
from theory.transformer.train import TunedNetwork
from theory.transformer.trainable import AdapterTheta, PrefixParams, PrefixTheta

__all__ = ["prefix_ntk", "relative_change", "Linearised", "linearisation_gap", "rms_row_movement", "tree_norm",
           "prefix_logit_spread", "prefix_attention_share"]


def tree_norm(tree):
    """Frobenius norm of all leaves of a pytree together.

    Args:
        tree: a pytree of arrays.
    Returns:
        A scalar array (0.0 for an empty pytree).
    Raises:
        Nothing of its own (non-array leaves fail in ``jnp.sum``).
    """
    return jnp.sqrt(sum(jnp.sum(a**2) for a in jax.tree_util.tree_leaves(tree)))


def relative_change(A, A0):
    """``||A - A0||_F / ||A0||_F`` over matching pytrees (kernels or parameters).

    Args:
        A: a pytree of arrays, e.g. ``H(t)`` (n, n, k, k) or ``theta(t)``.
        A0: the reference, same pytree structure and leaf shapes.
    Returns:
        A scalar array (inf or nan when ``A0`` is zero).
    Raises:
        InputError: the pytree structures differ.
    """
    if jax.tree_util.tree_structure(A) != jax.tree_util.tree_structure(A0):
        raise _v.InputError("A and A0 must have the same pytree structure")
    diff = jax.tree_util.tree_map(lambda a, b: a - b, A, A0)
    return tree_norm(diff) / tree_norm(A0)


@functools.partial(jax.jit, static_argnums=(0,))
def _prefix_ntk(net, theta, params, tokens, scale):
    def f(th, t):
        return scale * net.single(th, params, t)

    J = jax.vmap(jax.jacrev(f), in_axes=(None, 0))(theta, tokens)
    return contract_jacobians(J, J)


def prefix_ntk(net: TunedNetwork, theta: AdapterTheta, params, tokens, *, scale,
               memory_budget: int = DEFAULT_MEMORY_BUDGET):
    """Empirical NTK of ``net`` w.r.t. ``theta`` on ``tokens`` (n, T); returns (n, n, k, k).

    The autodiff reference of :mod:`theory.kernels.ntk_empirical` (per-example Jacobians by
    ``vmap(jacrev)``, the same contraction), jitted once per config.  ``scale``: the output
    scale of the parametrisation (``sqrt(m)`` for NTK scaling, 1 for the standard one); the
    constant ``F0`` of :class:`TunedNetwork` does not enter the kernel.

    Args:
        net: the :class:`TunedNetwork`; theta: its trainable record; params: the frozen
            transformer parameters.
        tokens: probe sequences, (n, T) int.
        scale: output scale of the parametrisation.
        memory_budget: most bytes the Jacobians may take.
    Returns:
        The kernel ``H``, (n, n, k, k).
    Raises:
        InputError: ``tokens`` is not (n, T).
        MemoryError: (before any work) the Jacobians exceed ``memory_budget`` bytes.
    """
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != net.cfg.T:
        raise _v.InputError(f"tokens must have shape (n, {net.cfg.T}), got {tokens.shape}")
    leaves = jax.tree_util.tree_leaves(theta)
    check_autodiff_budget("prefix NTK", n1=tokens.shape[0], n2=0, k=net.cfg.k, n_params=sum(a.size for a in leaves),
                          itemsize=leaves[0].dtype.itemsize, budget=memory_budget, fix="use fewer tokens or raise memory_budget")
    return _prefix_ntk(net, theta, params, tokens, jnp.asarray(scale, leaves[0].dtype))


@dataclasses.dataclass(frozen=True)
class Linearised:
    """``F_lin(theta) = F(theta_0) + J_0 (theta - theta_0)`` of a :class:`TunedNetwork`.

    Called as ``(theta, args)`` with ``args = (net_args, theta_0)``; hashable, like the network.
    """

    net: TunedNetwork

    def __call__(self, theta, args):
        net_args, theta0 = args
        delta = jax.tree_util.tree_map(lambda a, b: a - b, theta, theta0)
        F0, dF = jax.jvp(lambda th: self.net(th, net_args), (theta0,), (delta,))
        return F0 + dF


def linearisation_gap(F, F_lin, F_start):
    """``||F - F_lin||_F / ||F - F_start||_F`` for output arrays of equal shape (any leading axes).

    Args:
        F: trained outputs, (..., n, k), e.g. (t, n, k) with a leading time axis.
        F_lin: linearised outputs, the shape of ``F``.
        F_start: outputs at initialisation, (..., n, k) broadcasting against ``F``.
    Returns:
        The gap per leading index, shape ``F.shape[:-2]`` (a scalar for (n, k)).
    Raises:
        InputError: ``F_lin`` is not shaped like ``F`` or ``F_start`` differs in the last two axes.
    """
    F, F_lin, F_start = (jnp.asarray(a) for a in (F, F_lin, F_start))
    if F.shape != F_lin.shape or F.shape[-2:] != F_start.shape[-2:]:
        raise _v.InputError(f"F {F.shape}, F_lin {F_lin.shape} and F_start {F_start.shape} do not match")
    num = jnp.sqrt(jnp.sum((F - F_lin) ** 2, axis=(-2, -1)))
    den = jnp.sqrt(jnp.sum((F - F_start) ** 2, axis=(-2, -1)))
    return num / den


def rms_row_movement(theta: PrefixTheta, theta0: PrefixTheta):
    """Root-mean-square movement of the prefix rows, ``||theta - theta_0||_F / sqrt(rows)``.

    Args:
        theta: a direct-form prefix (:class:`~theory.transformer.trainable.PrefixTheta`); rows
            counted over ``K`` and ``V``.
        theta0: the initial prefix, same structure and shapes.
    Returns:
        A scalar array.
    Raises:
        Nothing of its own (mismatched pytrees fail in ``jax.tree_util.tree_map``).
    """
    rows = sum(a.size // a.shape[-1] for a in jax.tree_util.tree_leaves(theta0))
    diff = jax.tree_util.tree_map(lambda a, b: a - b, theta, theta0)
    return tree_norm(diff) / jnp.sqrt(jnp.asarray(rows, jax.tree_util.tree_leaves(theta0)[0].dtype))


def prefix_logit_spread(cfg, params, theta: PrefixParams, tokens):
    """How spread the first layer's prefix logits are at ``theta``: the regime diagnostic.

    For layer 0, each head ``h``, sequence and position ``i``: the standard deviation over the
    prefix rows ``r`` of ``z_ir = <q_i, k_r> / sqrt(d_h)`` (``q_i`` from the layernormed input,
    ``k_r = P^K_r W_K^h``); averaged over sequences and positions, maximum over heads.  The
    stylized models average the rows by a law of large numbers, which needs ``m`` well above
    ``exp(s^2)`` for a spread ``s`` (spec section 2's Gaussian-row caveat); a spread of order 1
    or less puts moderate m in that regime.

    Args:
        cfg: the :class:`~theory.transformer.model.TransformerConfig`; params: base weights;
        theta: a prefix (direct or reparam); tokens: (n, T) int.
    Returns:
        The spread ``s``, a scalar array (0 for a one-row prefix).
    Raises:
        InputError: ``tokens`` is not (n, T).
    """
    _, q, zP = _layer0_prefix_logits(cfg, params, theta, tokens)
    return jnp.max(jnp.mean(jnp.std(zP, axis=-1), axis=(1, 2)))


def _layer0_prefix_logits(cfg, params, theta: PrefixParams, tokens):
    """Layer 0's normalised inputs ``h`` (n, T, d), queries ``q`` (heads, n, T, d_h) and prefix
    logits ``<q_i, k_r> / sqrt(d_h)`` (heads, n, T, m); refuses tokens that are not (n, T)."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2 or tokens.shape[1] != cfg.T:
        raise _v.InputError(f"tokens must have shape (n, {cfg.T}), got {tokens.shape}")
    lp = params.layers[0]
    PK = M.prefixes(cfg, theta)[0][0]
    X = params.E[tokens] + params.pos[: cfg.T]
    h = M.layernorm(X, lp.g1, lp.c1, cfg.layernorm)
    q = jnp.einsum("ntd,hde->hnte", h, lp.W_Q)
    kP = jnp.einsum("md,hde->hme", PK, lp.W_K)
    return h, q, jnp.einsum("hnte,hme->hntm", q, kP) / jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))


def prefix_attention_share(cfg, params, theta: PrefixParams, tokens):
    """The share of the first layer's softmax attention that falls on the prefix rows.

    For layer 0, each head ``h``, sequence and position ``i``: ``sum_r a_ir`` over the prefix rows
    ``r`` of the attention weights, the rest going to the (causally visible) input tokens;
    averaged over heads, sequences and positions.  The stylized models describe a prefix that
    dominates the softmax (no input-token keys at all); a share above 1/2 is the regime
    criterion of the lazy-prefix verdict.  1 when the model has no input-token keys.

    Args:
        cfg: the :class:`~theory.transformer.model.TransformerConfig`; params: base weights;
        theta: a prefix (direct or reparam); tokens: (n, T) int.
    Returns:
        The mean share in [0, 1], a scalar array.
    Raises:
        InputError: ``tokens`` is not (n, T).
    """
    h, q, zP = _layer0_prefix_logits(cfg, params, theta, tokens)
    lp = params.layers[0]
    scale = jnp.sqrt(jnp.asarray(q.shape[-1], q.dtype))
    if not cfg.input_block:
        return jnp.ones((), q.dtype)
    kX = jnp.einsum("ntd,hde->hnte", h, lp.W_K)
    zX = jnp.einsum("hnte,hnse->hnts", q, kX) / scale
    if cfg.causal:
        visible = jnp.tril(jnp.ones((cfg.T, cfg.T), bool))
        zX = jnp.where(visible, zX, -jnp.inf)
    lse_P = jax.nn.logsumexp(zP, axis=-1)
    lse_X = jax.nn.logsumexp(zX, axis=-1)
    return jnp.mean(jnp.exp(lse_P - jnp.logaddexp(lse_P, lse_X)))
