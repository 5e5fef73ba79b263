"""The transformer's trainable parameters ``theta``: one typed record per kind of adapter.

Each record is a :class:`theory.contracts.TrainableArrays` (a frozen dataclass registered as a
JAX pytree), so optimisers (optax's GD and Adam), ``jax.grad``/``jax.jacrev``/``jax.jvp`` and
``tree_map`` take it as they took the dict it replaces.  The fields are declared in the sorted
order of the former dict's keys (upper case before lower case), so the pytree leaves, every sum
over them (the NTK ``sum over blocks of J J^T``, a norm) and every flattened copy keep their order
and their bits.  Shapes are written on the fields (jaxtyping; checked when a record is built by
hand under the test suite's beartype hook):

- :class:`PrefixTheta`: a direct per-layer prefix (:func:`theory.transformer.model.init_prefix`
  with ``form="direct"``);
- :class:`ReparamTheta`: paper 2's MLP reparameterisation of the prefix (``form="reparam"``);
- :class:`LoraTheta`: LoRA factors of the query and value maps
  (:func:`theory.transformer.adapters.init_lora`);
- :class:`NtkAttentionTheta`: NTK-Attention's per-row-mean summaries
  (:func:`theory.transformer.adapters.init_ntk_attention`).

:data:`PrefixParams` is a prefix in either form; :data:`AdapterTheta` any of the four.
"""

from __future__ import annotations

from jaxtyping import Array, Float

from theory.contracts import TrainableArrays, trainable_record

__all__ = ["PrefixTheta", "ReparamTheta", "LoraTheta", "NtkAttentionTheta", "PrefixParams", "AdapterTheta"]


@trainable_record
class PrefixTheta(TrainableArrays):
    """A direct prefix: every layer's key rows ``K`` and value rows ``V`` in embedding space
    (``V`` is None when the prefix is tied, ``P^V = P^K``)."""

    K: Float[Array, "layers m d"]
    V: Float[Array, "layers m d"] | None = None


@trainable_record
class ReparamTheta(TrainableArrays):
    """Paper 2's reparameterised prefix ``[P^K_l, P^V_l] = tanh(E A + a) B_l + b_l``: one
    embedding ``E`` of the m rows, a shared hidden layer ``(A, a)`` of width ``h = d_reparam``
    and per-layer outputs ``(B, b)`` (``o = 1`` tied, 2 untied: key then value)."""

    A: Float[Array, "h h"]
    B: Float[Array, "layers o h d"]
    E: Float[Array, "m h"]
    a: Float[Array, " h"]
    b: Float[Array, "layers o d"]


@trainable_record
class LoraTheta(TrainableArrays):
    """LoRA factors of every layer's query and value maps (index 0 of the second axis adapts
    ``W_Q``, index 1 ``W_V``): the update of a map is ``A B``, rank ``r``."""

    A: Float[Array, "layers 2 d r"]
    B: Float[Array, "layers 2 r d"]


@trainable_record
class NtkAttentionTheta(TrainableArrays):
    """NTK-Attention's summaries of every head's prefix block, as per-row means: ``Z / m``
    (``r`` Taylor features by ``d_h`` values) and ``k / m`` (``r``)."""

    Z: Float[Array, "layers heads r d_h"]
    k: Float[Array, "layers heads r"]


PrefixParams = PrefixTheta | ReparamTheta  # a prefix, direct or reparameterised
AdapterTheta = PrefixTheta | ReparamTheta | LoraTheta | NtkAttentionTheta  # what an adapter trains
