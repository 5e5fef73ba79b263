"""A small pre-layernorm transformer with a per-layer trainable prefix (P-Tuning v2 style).

Plain pytrees and pure functions.  For one sequence of token ids ``tokens`` (T,)::

    x_0      = E[tokens] + Pos                                   (T, d)
    x_{l+1}  = x_l + MHA_l(LN(x_l); P^K_l, P^V_l)                (attention, residual)
    x_{l+1} += MLP_l(LN(x_{l+1}))                                (if cfg.mlp)
    F(x)     = LN(x_Lyr)[-1] W_U[:, :k]                          (k answer logits at the last position)

Each head ``h`` of layer ``l`` is exact prefix attention (:func:`theory.prefix_attention`)
with keys ``[P^K_l; X] W_K^h`` and values ``[P^V_l; X] W_V^h``: the prefix rows live in
embedding space (paper 1), shared by the heads of a layer.  Tied prefixes (``P^K = P^V``,
the stylized model) call the kernel directly; untied ones call it on the stacked features
``[X, X]`` with block projections ``[W_Q; 0]``, ``[W_K; 0]``, ``[0; W_V]`` and prefix
``[P^K, P^V]``, which is the same operator (the zero blocks add exact zeros).

Prefix parametrisations (the trainable ``theta``, records of :mod:`theory.transformer.trainable`):

- ``"direct"``: a :class:`PrefixTheta`, ``K`` and ``V`` (Lyr, m, d) (``V`` None when tied).
- ``"reparam"`` (paper 2's MLP reparameterisation): a :class:`ReparamTheta`, one embedding
  ``E`` (m, d_e) and a shared two-layer MLP, ``[P^K_l, P^V_l] = tanh(E A + a) B_l + b_l``; all
  of it is trainable.

``cfg.input_block = False`` drops the input tokens from the keys (attention over the prefix
only, spec section 2: "one query; the prefix dominates"), still through
:func:`theory.prefix_attention`: a constant feature column and an extra key coordinate shift
the input-token logits by -4000, so their weights are exactly 0; with one layer, no MLP, no
layernorm, tied prefixes and identity value/output maps this is the stylized ``prefix`` model.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Int, PRNGKeyArray

from theory import validation as _v
from theory.contracts import FrozenArrays, frozen_record
from theory.prefix_attention import prefix_attention_jit
from theory.transformer.trainable import PrefixParams, PrefixTheta, ReparamTheta

__all__ = ["TransformerConfig", "TransformerWeights", "LayerWeights", "init_params", "init_prefix", "prefixes",
           "forward", "attention_heads", "attention_layer", "forward_with", "head_operands",
           "layernorm", "n_params"]

LN_EPS = 1e-5


@dataclasses.dataclass(frozen=True)
class TransformerConfig:
    """Static shape and architecture of the model (hashable: usable as a jit static argument).

    ``vocab``: token count; ``k``: answer logits read out (the first k tokens); ``T``: sequence
    length; ``d``: width; ``layers``, ``heads``; ``d_mlp``: hidden width of the MLP.
    """

    vocab: int = 12
    k: int = 11
    T: int = 16
    d: int = 64
    layers: int = 2
    heads: int = 4
    d_mlp: int = 128
    mlp: bool = True
    layernorm: bool = True
    causal: bool = True
    input_block: bool = True
    tied: bool = False
    form: str = "direct"  # "direct" or "reparam"
    d_reparam: int = 32  # width of E and of the MLP hidden layer (form "reparam")

    def __post_init__(self):
        for name in ("vocab", "k", "T", "d", "layers", "heads", "d_mlp", "d_reparam"):
            _v.check_count(name, getattr(self, name))
        if self.d % self.heads:
            raise _v.InputError(f"d ({self.d}) must be a multiple of heads ({self.heads})")
        if self.k > self.vocab:
            raise _v.InputError(f"k ({self.k}) must be <= vocab ({self.vocab})")
        if self.form not in ("direct", "reparam"):
            raise _v.InputError(f"form must be 'direct' or 'reparam', got {self.form!r}")


@frozen_record
class LayerWeights(FrozenArrays):
    """One layer's base weights (fields in the order of the former dict's sorted keys, so the
    pytree leaves, and every flattened copy of them, keep their order)."""

    W_1: Float[Array, "d d_mlp"]  # MLP in
    W_2: Float[Array, "d_mlp d"]  # MLP out
    W_K: Float[Array, "heads d d_h"]
    W_O: Float[Array, "d d"]
    W_Q: Float[Array, "heads d d_h"]
    W_V: Float[Array, "heads d d_h"]
    b_1: Float[Array, " d_mlp"]
    c1: Float[Array, " d"]  # layernorm biases and gains (attention, MLP)
    c2: Float[Array, " d"]
    g1: Float[Array, " d"]
    g2: Float[Array, " d"]


@frozen_record
class TransformerWeights(FrozenArrays):
    """The frozen base weights of the transformer (fields in the former dict's sorted-key order)."""

    E: Float[Array, "vocab d"]  # token embedding
    W_U: Float[Array, "d vocab"]  # unembedding (the first k columns are the answer logits)
    c_f: Float[Array, " d"]  # final layernorm bias and gain
    g_f: Float[Array, " d"]
    layers: tuple[LayerWeights, ...]
    pos: Float[Array, "T d"]  # position embedding


def init_params(cfg: TransformerConfig, *, key: PRNGKeyArray, dtype=jnp.float64) -> TransformerWeights:
    """Frozen base weights, standard init (N(0, 1/fan_in)); returns a :class:`TransformerWeights`.

    Shapes: ``E`` (vocab, d), ``pos`` (T, d), per layer ``W_Q``/``W_K``/``W_V`` (heads, d, d/heads),
    ``W_O`` (d, d), ``W_1`` (d, d_mlp), ``W_2`` (d_mlp, d), layernorm gains/biases (d,); ``W_U`` (d, vocab).

    Args:
        cfg: the :class:`TransformerConfig`; key: JAX PRNG key; dtype: of every weight.
    Returns:
        The :class:`TransformerWeights` with the shapes above (``layers`` a tuple of ``cfg.layers``
        :class:`LayerWeights`).
    Raises:
        Nothing of its own (``cfg`` is validated when constructed; JAX's errors pass through).
    """
    d, dh = cfg.d, cfg.d // cfg.heads
    keys = iter(jax.random.split(key, 3 + 6 * cfg.layers))

    def nrm(shape, fan_in):
        return jax.random.normal(next(keys), shape, dtype) / jnp.sqrt(jnp.asarray(fan_in, dtype))

    ones, zeros = jnp.ones(d, dtype), jnp.zeros(d, dtype)
    layers = []
    for _ in range(cfg.layers):
        layers.append(LayerWeights(  # the keys are drawn in this order
            W_Q=nrm((cfg.heads, d, dh), d), W_K=nrm((cfg.heads, d, dh), d), W_V=nrm((cfg.heads, d, dh), d),
            W_O=nrm((d, d), d), W_1=nrm((d, cfg.d_mlp), d), W_2=nrm((cfg.d_mlp, d), cfg.d_mlp),
            b_1=jnp.zeros(cfg.d_mlp, dtype), g1=ones, c1=zeros, g2=ones, c2=zeros,
        ))
    E, pos = nrm((cfg.vocab, d), 1), nrm((cfg.T, d), 1) * 0.5
    return TransformerWeights(E=E, pos=pos, layers=tuple(layers), g_f=ones, c_f=zeros, W_U=nrm((d, cfg.vocab), d))


def init_prefix(cfg: TransformerConfig, m: int, *, key, sigma: float = 1.0, dtype=jnp.float64) -> PrefixParams:
    """Trainable prefix ``theta`` at initialisation (see the module docstring for its layout).

    Direct: rows i.i.d. N(0, sigma^2 I_d).  Reparam: ``E`` N(0, 1), ``A`` N(0, 1/d_e),
    ``B`` N(0, sigma^2/d_e) per layer and output, biases zero (so the rows of ``P`` have entries
    of size about sigma, as in the direct form).

    Args:
        cfg: the :class:`TransformerConfig`; m: prefix length (>= 1); key: JAX PRNG key;
        sigma: init scale (> 0); dtype: of every array.
    Returns:
        Direct: a :class:`PrefixTheta`, ``K`` and ``V`` (layers, m, d) (``V`` None when tied);
        reparam: a :class:`ReparamTheta`, ``E`` (m, d_e), ``A`` (d_e, d_e), ``a`` (d_e,), ``B``
        (layers, o, d_e, d), ``b`` (layers, o, d) with o = 1 tied, 2 untied.
    Raises:
        InputError: ``m`` is not an integer >= 1 or ``sigma`` not a positive finite number.
    """
    _v.check_count("m", m)
    sigma = _v.check_positive("sigma", sigma)
    Lyr, d = cfg.layers, cfg.d
    k1, k2, k3, k4 = jax.random.split(key, 4)
    if cfg.form == "direct":
        K = sigma * jax.random.normal(k1, (Lyr, m, d), dtype)
        return PrefixTheta(K=K, V=None if cfg.tied else sigma * jax.random.normal(k2, (Lyr, m, d), dtype))
    h = cfg.d_reparam
    outs = 1 if cfg.tied else 2
    return ReparamTheta(E=jax.random.normal(k1, (m, h), dtype),
                        A=jax.random.normal(k3, (h, h), dtype) / jnp.sqrt(jnp.asarray(h, dtype)),
                        a=jnp.zeros(h, dtype),
                        B=jax.random.normal(k4, (Lyr, outs, h, d), dtype) / jnp.sqrt(jnp.asarray(h, dtype)) * sigma,
                        b=jnp.zeros((Lyr, outs, d), dtype))


def prefixes(cfg: TransformerConfig, theta: PrefixParams) -> tuple[Float[Array, "layers m d"],
                                                                   Float[Array, "layers m d"]]:
    """Per-layer ``(P^K, P^V)`` from ``theta`` (P^V is P^K when tied).

    Args:
        cfg: the :class:`TransformerConfig`; theta: a prefix as from :func:`init_prefix`.
    Returns:
        ``(P^K, P^V)``, each (layers, m, d).
    Raises:
        InputError: ``theta`` is not the record of ``cfg.form``, or an untied direct prefix
            has no ``V`` (checked at trace time).
    """
    want = PrefixTheta if cfg.form == "direct" else ReparamTheta
    if not isinstance(theta, want):
        raise _v.InputError(f"a {cfg.form!r} prefix is a {want.__name__}, got {type(theta).__name__}")
    if cfg.form == "direct":
        if not cfg.tied and theta.V is None:
            raise _v.InputError("an untied prefix needs its value rows V (PrefixTheta.V is None)")
        return theta.K, (theta.K if cfg.tied else theta.V)
    Z = jnp.tanh(theta.E @ theta.A + theta.a)  # (m, h)
    P = jnp.einsum("mh,lohd->lomd", Z, theta.B) + theta.b[:, :, None, :]
    return P[:, 0], P[:, -1]


def layernorm(x, g, c, on):
    """Layernorm over the last axis with gain ``g`` and bias ``c`` (the identity when ``on`` is False).

    Args:
        x: activations (..., d); g, c: gain and bias (d,); on: whether to normalise.
    Returns:
        The normalised activations, the shape of ``x``.
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    if not on:
        return x
    mu = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean((x - mu) ** 2, axis=-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + LN_EPS) * g + c


INPUT_LOGIT_SHIFT = 4000.0  # input-token logits pushed this far below: exp(-4000) is exactly 0 in float32/64


def _stacked(X, PK, PV, W_Q, W_K, W_V):
    """The untied head as one prefix-attention call: features ``[X, X]``, prefix ``[P^K, P^V]``,
    projections ``[W_Q; 0]``, ``[W_K; 0]``, ``[0; W_V]`` (the zero blocks add exact zeros)."""
    Z = jnp.zeros_like(W_Q)
    return (jnp.concatenate([X, X], axis=1), jnp.concatenate([PK, PV], axis=1), jnp.concatenate([W_Q, Z]),
            jnp.concatenate([W_K, Z]), jnp.concatenate([jnp.zeros_like(W_V), W_V]))


def head_operands(cfg: TransformerConfig, X, PK, PV, W_Q, W_K, W_V):
    """``(X, P, W_Q, W_K, W_V)`` of one head in the form :func:`theory.prefix_attention` takes them.

    Tied prefixes as they are; untied ones stacked (see the module docstring).  The one place
    the stacking is defined: the prefix-only head and NTK-Attention's summaries
    (:mod:`theory.transformer.adapters`) build on it.

    Args:
        cfg: the :class:`TransformerConfig`; X: normalised inputs (T, d); PK, PV: prefix
        (m, d); W_Q, W_K, W_V: one head's projections (d, d_h).
    Returns:
        The five operands of the prefix-attention call.
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    if cfg.tied:
        return X, PK, W_Q, W_K, W_V
    return _stacked(X, PK, PV, W_Q, W_K, W_V)


def _prefix_only(X, PK, PV, W_Q, W_K, W_V, causal):
    """Softmax attention over the prefix rows only (no input-token keys), (T, d_h), computed by
    :func:`theory.prefix_attention` itself: on the stacked operands, a constant feature column
    (1 on the tokens, 0 on the prefix rows) and one extra key coordinate subtract
    ``INPUT_LOGIT_SHIFT`` from every input-token logit and leave the prefix logits unchanged
    (``W_Q`` is rescaled for the kernel's 1/sqrt(d_k + 1)), so the input block's weights
    underflow to exactly 0."""
    X2, P2, W_Q2, W_K2, W_V2 = _stacked(X, PK, PV, W_Q, W_K, W_V)
    dt, dk = X.dtype, W_Q.shape[1]
    a = jnp.sqrt(jnp.asarray(INPUT_LOGIT_SHIFT, dt) * jnp.sqrt(jnp.asarray(dk, dt)))
    c = jnp.sqrt(jnp.asarray((dk + 1) / dk, dt))
    e = jnp.zeros((1, dk + 1), dt).at[0, -1].set(1.0)
    col = jnp.zeros((W_Q2.shape[0], 1), dt)
    W_Q3 = c * jnp.concatenate([jnp.concatenate([W_Q2, col], 1), a * e])
    W_K3 = jnp.concatenate([jnp.concatenate([W_K2, col], 1), -a * e])
    W_V3 = jnp.concatenate([W_V2, jnp.zeros((1, W_V2.shape[1]), dt)])
    X3 = jnp.concatenate([X2, jnp.ones((X.shape[0], 1), dt)], axis=1)
    P3 = jnp.concatenate([P2, jnp.zeros((P2.shape[0], 1), dt)], axis=1)
    return prefix_attention_jit(X3, P3, W_Q3, W_K3, W_V3, causal, None)


def attention_heads(cfg: TransformerConfig, X: Float[Array, "T d"], PK: Float[Array, "m d"],
                    PV: Float[Array, "m d"], W_Q: Float[Array, "heads d d_h"], W_K: Float[Array, "heads d d_h"],
                    W_V: Float[Array, "heads d d_h"]) -> Float[Array, "heads T d_h"]:
    """Per-head prefix attention of one layer, (heads, T, d_h).

    ``X`` (T, d) normalised inputs; ``PK``, ``PV`` (m, d); ``W_Q``/``W_K``/``W_V`` (heads, d, d_h).
    Each head is :func:`theory.prefix_attention` (see the module docstring), a loop over heads.

    Args:
        cfg: the :class:`TransformerConfig`; X: normalised inputs (T, d); PK, PV: prefix (m, d);
        W_Q, W_K, W_V: per-head projections (heads, d, d_h).
    Returns:
        The head outputs, (heads, T, d_h).
    Raises:
        Nothing of its own (unvalidated, traceable; shape errors come from JAX).
    """
    heads = []
    for h in range(W_Q.shape[0]):
        if cfg.input_block:
            heads.append(prefix_attention_jit(*head_operands(cfg, X, PK, PV, W_Q[h], W_K[h], W_V[h]), cfg.causal, None))
        else:
            heads.append(_prefix_only(X, PK, PV, W_Q[h], W_K[h], W_V[h], cfg.causal))
    return jnp.stack(heads)


def attention_layer(cfg: TransformerConfig, X: Float[Array, "T d"], PK: Float[Array, "m d"],
                    PV: Float[Array, "m d"], W_Q: Float[Array, "heads d d_h"], W_K: Float[Array, "heads d d_h"],
                    W_V: Float[Array, "heads d d_h"], W_O: Float[Array, "d d"]) -> Float[Array, "T d"]:
    """Multi-head prefix attention of one layer: heads concatenated, then ``W_O``.

    Args:
        cfg, X, PK, PV, W_Q, W_K, W_V: as in :func:`attention_heads`; W_O: output map (d, d).
    Returns:
        The layer output, (T, d).
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    heads = attention_heads(cfg, X, PK, PV, W_Q, W_K, W_V)
    return jnp.concatenate(list(heads), axis=-1) @ W_O


def forward_with(cfg: TransformerConfig, params: TransformerWeights, tokens: Int[Array, " T"],
                 attend) -> Float[Array, "{cfg.k}"]:
    """Answer logits (k,) of one sequence with the attention of each layer supplied by ``attend``.

    The residual stream, layernorms, MLPs and read-out of :func:`forward`; ``attend(l, lp, h)``
    returns layer ``l``'s attention output (T, d) for its normalised input ``h`` (T, d) and
    its weights ``lp`` (a :class:`LayerWeights`; how :mod:`theory.transformer.adapters` swaps in
    LoRA or NTK-Attention).

    Args:
        cfg: the :class:`TransformerConfig`; params: as from :func:`init_params`;
        tokens: token ids, (T,) int; attend: a traceable function ``(l, lp, h) -> (T, d)``.
    Returns:
        The answer logits, (k,).
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    X = params.E[tokens] + params.pos[: tokens.shape[0]]
    for l, lp in enumerate(params.layers):
        X = X + attend(l, lp, layernorm(X, lp.g1, lp.c1, cfg.layernorm))
        if cfg.mlp:
            h = layernorm(X, lp.g2, lp.c2, cfg.layernorm)
            X = X + jax.nn.gelu(h @ lp.W_1 + lp.b_1) @ lp.W_2
    out = layernorm(X[-1], params.g_f, params.c_f, cfg.layernorm)
    return out @ params.W_U[:, : cfg.k]


def forward(cfg: TransformerConfig, params: TransformerWeights, theta: PrefixParams | None,
            tokens: Int[Array, " T"]) -> Float[Array, "{cfg.k}"]:
    """Answer logits ``F(x)`` (k,) for one sequence ``tokens`` (T,) of ids in [0, vocab).

    Args:
        cfg: the :class:`TransformerConfig`; params: as from :func:`init_params`.
        theta: a prefix as from :func:`init_prefix`, or ``None`` for the base model without a
            prefix (pre-training).
        tokens: token ids, (T,) int in [0, vocab).
    Returns:
        The answer logits, (k,).
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    if theta is None:
        empty = jnp.zeros((0, cfg.d), params.E.dtype)
        PKs = PVs = [empty] * cfg.layers
    else:
        PKs, PVs = prefixes(cfg, theta)

    def attend(l, lp, h):
        return attention_layer(cfg, h, PKs[l], PVs[l], lp.W_Q, lp.W_K, lp.W_V, lp.W_O)

    return forward_with(cfg, params, tokens, attend)


def n_params(tree) -> int:
    """Number of scalars in a pytree.

    Args:
        tree: a pytree of arrays.
    Returns:
        The total ``size`` of its leaves, a Python int.
    Raises:
        Nothing of its own (leaves without ``size`` raise AttributeError).
    """
    return sum(int(a.size) for a in jax.tree_util.tree_leaves(tree))
