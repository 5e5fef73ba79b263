"""The two comparison adapters of the lazy-prefix study: LoRA and NTK-Attention (pure functions).

Both are fitted to the same frozen base transformer (:mod:`theory.transformer.model`) and
task as the prefix, so that downstream loss and accuracy can be compared at equal footing.

- **LoRA** (Hu et al.): per layer, low-rank updates of the query and value maps,
  ``W_Q <- W_Q + A_Q B_Q`` and ``W_V <- W_V + A_V B_V`` on the full (d, d) maps (the heads'
  columns concatenated), ``A`` (d, r) ~ N(0, 1/d), ``B`` (r, d) = 0, so the adapted model
  starts at the base model; no alpha/r factor (alpha = r).  :func:`lora_rank` gives the rank
  whose parameter count ``4 L d r`` matches a direct untied prefix of m rows per layer
  (``2 L m d``), ``r = m / 2`` rounded, clipped to [1, d]: above ``m = 2 d`` LoRA is at full
  rank and has fewer parameters than the prefix (:func:`lora_parameter_count` says how many).
- **NTK-Attention** (paper 1, the trained-summary form): each head's prefix block is replaced
  by a summary ``(Z, k)`` of Taylor features (:mod:`theory.ntk_attn.ntk_attention`, its
  ``forward_unchecked``, on the head's operands from
  :func:`~theory.transformer.model.head_operands`; the input-token block stays exact).  :func:`init_ntk_attention`
  starts it at the exact degree-g summary of a given prefix (``Z = sum_r phi(k_r) v_r^T``,
  ``k = sum_r phi(k_r)``, computed by :func:`theory.ntk_attn._forward.summary_unchecked`), so the
  adapted model starts at (the degree-g approximation of) the prefix-tuned model at init; all
  of ``Z`` and ``k`` is then trainable.  They are stored as per-row means ``(Z / m, k / m)``
  and the forward pass multiplies by ``rows = m``: the same function, but with entries of
  order one whatever m, as the prefix rows' are, so that an optimiser's step (Adam moves each
  entry by about its learning rate) means the same at every m.  Its size,
  ``L heads C(d_h + g, g) (d_h + 1)``, does not depend on m.

:func:`adapted_forward` is the one entry point: ``adapter`` in :data:`ADAPTERS`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from theory import validation as _v
from theory.ntk_attn.feature_maps import taylor_dim
from theory.ntk_attn._forward import Summary, forward_unchecked, summary_unchecked
from theory.transformer import model as M
from theory.transformer.trainable import (AdapterTheta, LoraTheta, NtkAttentionTheta, PrefixParams, PrefixTheta,
                                          ReparamTheta)

__all__ = ["ADAPTERS", "THETA_TYPES", "lora_rank", "lora_parameter_count", "init_lora", "lora_params",
           "init_ntk_attention", "ntk_attention_parameter_count", "adapted_forward"]

ADAPTERS = ("prefix", "lora", "ntk-attention")
THETA_TYPES = {"prefix": (PrefixTheta, ReparamTheta), "lora": (LoraTheta,), "ntk-attention": (NtkAttentionTheta,)}
"""The trainable record(s) of each adapter."""


def lora_rank(cfg: M.TransformerConfig, m: int) -> int:
    """LoRA rank whose parameter count matches a direct untied prefix of ``m`` rows per layer.

    Args:
        cfg: the :class:`~theory.transformer.model.TransformerConfig`; m: prefix rows per layer (>= 1).
    Returns:
        ``clip(round(m / 2), 1, d)``, a Python int.
    Raises:
        InputError: ``m`` is not an integer >= 1.
    """
    m = _v.check_count("m", m)
    return int(min(max(round(m / 2), 1), cfg.d))


def lora_parameter_count(cfg: M.TransformerConfig, r: int) -> int:
    """Trainable scalars of rank-``r`` LoRA on W_Q and W_V of every layer: ``4 L d r``.

    Args:
        cfg: the model config; r: rank (>= 1).
    Returns:
        The count, a Python int.
    Raises:
        InputError: ``r`` is not an integer >= 1.
    """
    return 4 * cfg.layers * cfg.d * _v.check_count("r", r)


def init_lora(cfg: M.TransformerConfig, r: int, *, key, dtype=jnp.float64) -> LoraTheta:
    """LoRA factors at initialisation: ``A`` (L, 2, d, r) ~ N(0, 1/d), ``B`` (L, 2, r, d) = 0.

    Index 0 of the second axis adapts ``W_Q``, index 1 ``W_V``.

    Args:
        cfg: the model config; r: rank (1 <= r <= d); key: JAX PRNG key; dtype: of both factors.
    Returns:
        The factors, a :class:`~theory.transformer.trainable.LoraTheta`.
    Raises:
        InputError: ``r`` is not an integer in [1, d].
    """
    r = _v.check_count("r", r)
    if r > cfg.d:
        raise _v.InputError(f"LoRA rank r ({r}) must be <= d ({cfg.d})")
    A = jax.random.normal(key, (cfg.layers, 2, cfg.d, r), dtype) / jnp.sqrt(jnp.asarray(cfg.d, dtype))
    return LoraTheta(A=A, B=jnp.zeros((cfg.layers, 2, r, cfg.d), dtype))


def _heads_update(W, delta):
    """``W`` (heads, d, d_h) plus a full-map update ``delta`` (d, heads * d_h) split by heads."""
    heads, d, dh = W.shape
    return W + jnp.transpose(delta.reshape(d, heads, dh), (1, 0, 2))


def lora_params(cfg: M.TransformerConfig, params: M.TransformerWeights, lora: LoraTheta) -> M.TransformerWeights:
    """The base weights with the LoRA updates applied (``W_Q + A_Q B_Q``, ``W_V + A_V B_V`` per layer).

    Args:
        cfg: the model config; params: base weights (:func:`~theory.transformer.model.init_params`);
        lora: factors as from :func:`init_lora`.
    Returns:
        New :class:`~theory.transformer.model.TransformerWeights` (the input is not modified).
    Raises:
        Nothing of its own (unvalidated, traceable).
    """
    layers = []
    for l, lp in enumerate(params.layers):
        dQ = lora.A[l, 0] @ lora.B[l, 0]
        dV = lora.A[l, 1] @ lora.B[l, 1]
        layers.append(lp.replace(W_Q=_heads_update(lp.W_Q, dQ), W_V=_heads_update(lp.W_V, dV)))
    return params.replace(layers=tuple(layers))


def ntk_attention_parameter_count(cfg: M.TransformerConfig, g: int) -> int:
    """Trainable scalars of NTK-Attention with degree-``g`` Taylor features: ``L heads r (d_h + 1)``.

    Args:
        cfg: the model config; g: Taylor degree (>= 1).
    Returns:
        The count, ``r = C(d_h + g, g)``, a Python int.
    Raises:
        InputError: ``g`` is not an integer >= 1.
    """
    dh = cfg.d // cfg.heads
    return cfg.layers * cfg.heads * taylor_dim(dh, _v.check_count("g", g)) * (dh + 1)


def init_ntk_attention(cfg: M.TransformerConfig, params: M.TransformerWeights, theta: PrefixParams, *,
                       g: int = 2) -> NtkAttentionTheta:
    """The exact degree-``g`` Taylor summary of every head's prefix block, as trainable arrays.

    Args:
        cfg: the model config (``form`` direct or reparam); params: base weights; theta: a
            prefix (:func:`~theory.transformer.model.init_prefix`); g: Taylor degree (>= 1).
    Returns:
        The per-row means of the summary, a :class:`~theory.transformer.trainable.NtkAttentionTheta`
        with ``Z`` (L, heads, r, d_h) and ``k`` (L, heads, r) (divided by the prefix length m;
        :func:`adapted_forward` takes ``rows = m``), ``r = C(d_h + g, g)``.
    Raises:
        InputError: ``g`` is not an integer >= 1, or ``theta`` is not the prefix record of ``cfg.form``.
    """
    g = _v.check_count("g", g)
    PKs, PVs = M.prefixes(cfg, theta)
    m = PKs.shape[1]
    Zs, ks = [], []
    no_tokens = jnp.zeros((0, cfg.d), PKs.dtype)
    for l, lp in enumerate(params.layers):
        Zl, kl = [], []
        for h in range(cfg.heads):
            _, P, _, W_K, W_V = M.head_operands(cfg, no_tokens, PKs[l], PVs[l], lp.W_Q[h], lp.W_K[h],
                                                lp.W_V[h])
            s = summary_unchecked(P, W_K, W_V, "taylor", g, min(m, 4096))
            Zl.append(s.Z)
            kl.append(s.k)
        Zs.append(jnp.stack(Zl))
        ks.append(jnp.stack(kl))
    return NtkAttentionTheta(Z=jnp.stack(Zs) / m, k=jnp.stack(ks) / m)


def _ntk_attention_layer(cfg, g, rows, summaries, l, lp, h):
    no_prefix = jnp.zeros((0, cfg.d), h.dtype)
    heads = []
    for hd in range(cfg.heads):
        X, _, W_Q, W_K, W_V = M.head_operands(cfg, h, no_prefix, no_prefix, lp.W_Q[hd], lp.W_K[hd],
                                              lp.W_V[hd])
        s = Summary(rows * summaries.Z[l, hd], rows * summaries.k[l, hd])
        heads.append(forward_unchecked(X, s, W_Q, W_K, W_V, "taylor", g, cfg.causal, False))
    return jnp.concatenate(heads, axis=-1) @ lp.W_O


def adapted_forward(cfg: M.TransformerConfig, adapter: str, params: M.TransformerWeights, theta: AdapterTheta,
                    tokens, *, g: int = 2, rows: int = 1):
    """Answer logits (k,) of one sequence with trainable ``theta`` of the given ``adapter``.

    ``"prefix"``: :func:`~theory.transformer.model.forward` (``theta`` a prefix);
    ``"lora"``: the base model with :func:`lora_params` (``theta`` LoRA factors, no prefix);
    ``"ntk-attention"``: every head's prefix block replaced by the summary ``rows * theta``
    (``theta`` per-row means as from :func:`init_ntk_attention`, ``rows`` the prefix length
    they summarise), degree-``g`` Taylor features.

    Args:
        cfg: the model config; adapter: one of :data:`ADAPTERS`; params: base weights;
        theta: the adapter's trainable record (:data:`THETA_TYPES`); tokens: (T,) int; g: Taylor
        degree and rows: summarised prefix length (NTK-Attention only).
    Returns:
        The answer logits, (k,).
    Raises:
        InputError: unknown ``adapter``, or ``theta`` not a record of its kind (checked at trace time).
    """
    if adapter in THETA_TYPES and not isinstance(theta, THETA_TYPES[adapter]):
        raise _v.InputError(f"the {adapter!r} adapter trains a {' or '.join(t.__name__ for t in THETA_TYPES[adapter])},"
                            f" got {type(theta).__name__}")
    if adapter == "prefix":
        return M.forward(cfg, params, theta, tokens)
    if adapter == "lora":
        return M.forward(cfg, lora_params(cfg, params, theta), None, tokens)
    if adapter == "ntk-attention":
        return M.forward_with(cfg, params, tokens,
                              lambda l, lp, h: _ntk_attention_layer(cfg, g, rows, theta, l, lp, h))
    raise _v.InputError(f"adapter must be one of {ADAPTERS}, got {adapter!r}")
