"""Registry of the stylized prefix-attention models (spec section 2).

A model is a bundle of pure functions.  Only ``init`` and ``forward`` are required: with them
the generic autodiff NTK (:func:`theory.kernels.ntk_empirical.autodiff_model_ntk`) and the Monte-Carlo
kernel estimator (:func:`theory.kernels.ntk_limit.monte_carlo_kernel`) work at once.  ``structured_ntk``
(closed-form gradients, streamed over prefix rows) and ``limit_kernel`` (the closed-form
infinite-prefix kernel H*) are optional and make the model fast and checkable.

Adding a model: write ``theory/kernels/<name>.py`` defining these functions and the facts below,
build its :class:`StylizedModel` with :func:`register`, and import the module in
``theory/__init__.py`` (the order of those imports is the order of :func:`model_names`).

Everything specific to a model lives in its module and is read from the model object: besides
the functions, the frozen entries that carry one value per prefix row (``row_axes``, for
sharding), the sizes the memory plan and the benchmarks need (``operand_width``,
``chunk_numbers``, ``frozen_per_row``, ``gram_width``, ``flops_per_row``) and, where known, the
exact fluctuation ``E m ||H(0) - H*||_F^2`` (``fluctuation``).

The contract (:mod:`theory.contracts`): the frozen arrays are one typed record per model
(``frozen_type``, a :class:`~theory.contracts.FrozenArrays` subclass whose fields carry their
shapes; ``frozen.scale`` is the output scale), and each function has a Protocol:
:class:`~theory.contracts.Init`, :class:`~theory.contracts.Forward`,
:class:`~theory.contracts.StructuredNtk`, :class:`~theory.contracts.NtkRule`,
:class:`~theory.contracts.OutputsRule`, :class:`~theory.contracts.LimitKernel`,
:class:`~theory.contracts.Fluctuation`.  In short:

- ``init(*, key, m, d, k, sigma, dtype, parametrization) -> (P, frozen)``: ``P`` is the (m, d)
  trainable prefix, rows i.i.d. N(0, sigma^2 I_d); per-row fields of ``frozen`` have m rows on
  the axis ``row_axes`` names.
- ``forward(P, frozen, u) -> (k,)``: the model output for one input ``u = W x`` (shape (d,)).
- ``structured_ntk(P, frozen, U1, U2, chunk_size) -> (n1, n2, k, k)``; ``U2=None`` means
  ``U2 = U1`` and lets the model reuse one pass.
- ``ntk_rule(P, frozen, U1, U2, red)`` and ``outputs_rule(P, frozen, U, red)``: the same
  formulas with their row reductions taken from a :class:`theory.streaming.Reducers`, so that
  :mod:`theory.scaling.sharding` reuses them with reductions across devices (one definition each).
- ``limit_kernel(U1, U2, *, sigma, frozen) -> (n1, n2, k, k)``: reads only the m-independent
  fields of ``frozen`` that ``limit_reads`` names (e.g. the readout V); ``frozen`` may be None
  when it names none.
- ``logit_multiple``: how large exponents get relative to the largest logit, so that overflow
  in the working dtype is refused before any work (0 for softmax models, whose exponentials
  are max-subtracted).
- ``fluctuation(U, *, sigma) -> scalar``: the exact ``E m ||H(0) - H*||_F^2`` where the model
  has one in closed form (``exp-sign``), else None.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Mapping

import jax
import jax.numpy as jnp

from theory import validation as _v
from theory.contracts import (Fluctuation, Forward, FrozenArrays, Init, LimitKernel, NtkRule, OutputsRule,
                              StructuredNtk)
from theory.streaming import local_reducers

__all__ = ["StylizedModel", "register", "get_model", "init_model", "model_names", "output_scale", "sphere_inputs",
           "single_device_ntk", "PARAMETRIZATIONS"]

PARAMETRIZATIONS = ("ntk", "mean-field")


@dataclasses.dataclass(frozen=True, eq=False)  # compared and hashed by identity: a jit static argument
class StylizedModel:
    """One stylized prefix-attention model: its functions and the facts the tooling reads from it.

    Attributes:
        name: the registry key (``"prefix"``); description, spec: one line each.
        frozen_type: the model's frozen record (what ``init`` returns beside P).
        init, forward, structured_ntk, limit_kernel, ntk_rule, outputs_rule: typed by the
            Protocols of :mod:`theory.contracts` (only ``init`` and ``forward`` are required).
        limit_reads: the fields of the frozen record that ``limit_kernel`` reads (m-independent).
        fixed_k: the output dimension if the model fixes it (exp-sign: 1), else None.
        logit_multiple: ``exp(logit_multiple * max logit)`` must not overflow (0: max-subtracted).
        row_axes: frozen fields that carry one value per prefix row -> the axis of the rows
            (sharding splits these with P; every other frozen field is replicated).
        operand_width: ``k -> w``: columns per input of the Gram operand, so that the structured
            NTK of n inputs is a Gram matrix of width ``n w`` (memory plan, benchmark floor).
        chunk_numbers: ``k -> c``: numbers the chunk function holds per (chunk row x input): the
            logits, the exponentials and the operand (memory plan; calibrated against XLA).
        frozen_per_row: ``(k, d) -> f``: numbers of the per-row frozen arrays per prefix row.
        gram_width: ``k -> g``: columns per input of the largest per-chunk GEMM (benchmarks).
        flops_per_row: ``(n, d, k) -> flops`` of one structured NTK of n inputs with themselves,
            per prefix row (benchmarks); None when not counted.
        fluctuation: ``(U, *, sigma) -> C = E m ||H(0) - H*||_F^2`` exactly, or None.
    """

    name: str
    description: str
    frozen_type: type[FrozenArrays]
    init: Init
    forward: Forward
    structured_ntk: StructuredNtk | None = None
    limit_kernel: LimitKernel | None = None
    limit_reads: tuple[str, ...] = ()
    ntk_rule: NtkRule | None = None  # structured NTK against injectable reducers (sharding reuses it)
    outputs_rule: OutputsRule | None = None  # batched outputs against injectable reducers
    fixed_k: int | None = None  # output dimension if the model fixes it (exp-sign: 1)
    logit_multiple: float = 0.0  # exp(multiple * max logit) must not overflow
    row_axes: Mapping[str, int] = dataclasses.field(default_factory=dict)
    operand_width: Callable[[int], int] | None = None
    chunk_numbers: Callable[[int], int] | None = None
    frozen_per_row: Callable[[int, int], int] | None = None
    gram_width: Callable[[int], int] | None = None
    flops_per_row: Callable[[int, int, int], float] | None = None
    fluctuation: Fluctuation | None = None
    spec: str = ""

    def __post_init__(self):
        fields = set(self.frozen_type.field_names()) if issubclass(self.frozen_type, FrozenArrays) else None
        if fields is None:
            raise TypeError(f"model {self.name!r}: frozen_type must be a FrozenArrays record")
        for what, names in (("row_axes", self.row_axes), ("limit_reads", self.limit_reads)):
            if not set(names) <= fields:
                raise TypeError(f"model {self.name!r}: {what} names {sorted(set(names) - fields)}, "
                                f"not fields of {self.frozen_type.__name__}")

    def __repr__(self) -> str:  # keep reprs short in error messages and sims metadata
        return f"StylizedModel({self.name!r})"


_REGISTRY: dict[str, StylizedModel] = {}


@_v.validate_args(model=StylizedModel)
def register(model: StylizedModel) -> StylizedModel:
    """Add ``model`` to the registry (idempotent for the same object).

    Args:
        model: the :class:`StylizedModel` to register under ``model.name``.

    Returns:
        ``model`` itself, so that a module can write ``MODEL = register(StylizedModel(...))``.

    Raises:
        ValueError: another model is already registered under the same name.
    """
    if model.name in _REGISTRY and _REGISTRY[model.name] is not model:
        raise ValueError(f"a model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def get_model(model) -> StylizedModel:
    """Look a model up by name, or pass a :class:`StylizedModel` through.

    Args:
        model: a registered name (``"prefix"``) or a :class:`StylizedModel`.

    Returns:
        The :class:`StylizedModel`.

    Raises:
        InputError: ``model`` is neither a model nor a registered name (the message lists them).
    """
    if isinstance(model, StylizedModel):
        return model
    try:
        return _REGISTRY[model]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise _v.InputError(f"model must be one of: {known}; got {model!r}") from None


def model_names() -> list[str]:
    """The registered model names, in the order of registration.

    Returns:
        A new list; ``theory/__init__.py`` registers ``exp-sign``, ``softmax-sign``, ``prefix``
        (spec sections 2.A-2.C) in that order.
    """
    return list(_REGISTRY)


@_v.validate_args(key="key")
def sphere_inputs(*, key, n: int, d: int, radius: float = 1.0, dtype=jnp.float64) -> jnp.ndarray:
    """Inputs ``u_i = W x_i`` drawn uniformly on the sphere of ``radius`` in R^d.

    Args:
        key: a JAX PRNG key.
        n, d: number of inputs and their dimension.
        radius: the norm of every row.
        dtype: float dtype of the result.

    Returns:
        ``U`` of shape (n, d): normalised standard normal rows times ``radius``.

    Raises:
        InputError: a bad key, n or d not an integer >= 1, radius not positive and finite.
    """
    n, d = _v.check_count("n", n), _v.check_count("d", d)
    radius = _v.check_positive("radius", radius)
    dtype = _v.check_dtype("dtype", dtype)
    g = jax.random.normal(key, (n, d), dtype)
    return radius * g / jnp.linalg.norm(g, axis=1, keepdims=True)


def single_device_ntk(ntk_rule: NtkRule) -> StructuredNtk:
    """A model's ``structured_ntk`` from its ``ntk_rule``: streamed on one device, jitted.

    Args:
        ntk_rule: ``(P, frozen, U1, U2, red) -> H``, the model's formula against row reducers.

    Returns:
        ``structured_ntk(P, frozen, U1, U2, chunk_size) -> H`` (n1, n2, k, k), with the rows
        reduced :data:`~theory.streaming.LANES` chunks of ``chunk_size`` at a time
        (:func:`theory.streaming.local_reducers`); ``chunk_size`` is static, and
        ``U2=None`` means ``U2 = U1`` (the rule then makes one pass instead of two).
        Unvalidated: :func:`theory.structured_ntk` checks the inputs.
    """

    @functools.partial(jax.jit, static_argnames=("chunk_size",))
    def structured_ntk(P, frozen, U1, U2, chunk_size):
        return ntk_rule(P, frozen, U1, U2, local_reducers(chunk_size))

    structured_ntk.__doc__ = f"{ntk_rule.__module__}.ntk_rule streamed on one device (single_device_ntk)."
    return structured_ntk


def output_scale(m: int, parametrization: str, *, ntk_power: float, dtype=None):
    """The output scale: ``m^{ntk_power}`` (NTK) or ``m^{ntk_power - 1/2}`` (mean-field).

    In the NTK parametrization the outputs carry ``m^{ntk_power}`` (``-1/2`` for a plain sum,
    ``+1/2`` for a softmax average).  The mean-field control drops one ``sqrt(m)`` factor, so
    the kernel vanishes like 1/m and the rows must travel O(1) to fit the data (the regime in
    which lazy training fails).

    Args:
        m: prefix length.
        parametrization: ``"ntk"`` or ``"mean-field"``.
        ntk_power: the exponent of m in the NTK parametrization.
        dtype: dtype of the result; None gives a Python float.

    Returns:
        A scalar array (a Python float when ``dtype`` is None).

    Raises:
        InputError: unknown ``parametrization``.
    """
    if parametrization not in PARAMETRIZATIONS:
        raise _v.InputError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    power = ntk_power if parametrization == "ntk" else ntk_power - 0.5
    value = float(m) ** power
    return value if dtype is None else jnp.asarray(value, dtype)


@_v.validate_args(key="key")
def init_model(model, *, key, m, d, k: int = 1, sigma: float = 1.0, dtype=jnp.float64,
               parametrization: str = "ntk"):
    """Validated initialisation: ``(P, frozen)`` with P (m, d) rows i.i.d. N(0, sigma^2 I_d).

    Args:
        model: a registered name or a :class:`StylizedModel`.
        key: a JAX PRNG key (keyword-only, like every size).
        m, d: prefix length and feature dimension, integers >= 1 (``1e5`` is accepted, ``1.5``
            is not).
        k: output dimension (must equal ``model.fixed_k`` where the model fixes it).
        sigma: initialisation scale, > 0.
        dtype: float32 or float64 (float64 needs ``jax_enable_x64``).
        parametrization: ``"ntk"`` or ``"mean-field"`` (:func:`output_scale`).

    Returns:
        ``(P, frozen)``: P of shape (m, d) and the model's frozen record (``model.frozen_type``;
        per-row fields have their rows on the axis ``model.row_axes`` names; ``frozen.scale`` is
        a scalar).

    Raises:
        InputError: an unknown model or parametrization, a bad size, sigma, dtype, or a k the
            model does not allow.
    """
    model = get_model(model)
    m = _v.check_count("m", m)
    d = _v.check_count("d", d)
    k = _v.check_count("k", k)
    sigma = _v.check_positive("sigma", sigma)
    dtype = _v.check_dtype("dtype", dtype)
    if model.fixed_k is not None and k != model.fixed_k:
        raise _v.InputError(f"k must be {model.fixed_k} for model {model.name!r}, got {k}")
    if parametrization not in PARAMETRIZATIONS:
        raise _v.InputError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    return model.init(key=key, m=m, d=d, k=k, sigma=sigma, dtype=dtype, parametrization=parametrization)
