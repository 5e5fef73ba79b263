"""Registry of the stylized prefix-attention models (spec section 2).

A model is a bundle of pure functions.  Only ``init`` and ``forward`` are required: with them
the generic autodiff NTK (:func:`theory.kernels.ntk_empirical.autodiff_model_ntk`) and the Monte-Carlo
kernel estimator (:func:`theory.kernels.ntk_limit.monte_carlo_kernel`) work at once.  ``structured_ntk``
(closed-form gradients, streamed over prefix rows) and ``limit_kernel`` (the closed-form
infinite-prefix kernel H*) are optional and make the model fast and checkable.

Adding a model: write ``theory/model_<name>.py`` defining these functions and calling
:func:`register`, and import it in ``theory/__init__.py``.

Signatures (all arrays in one float dtype):

- ``init(*, key, m, d, k, sigma, dtype, parametrization) -> (P, frozen)``: ``P`` is the (m, d)
  trainable prefix, rows i.i.d. N(0, sigma^2 I_d); ``frozen`` is a dict of frozen arrays
  (per-row constants have leading axis m; ``frozen["scale"]`` is the output scale).
- ``forward(P, frozen, u) -> (k,)``: the model output for one input ``u = W x`` (shape (d,)).
- ``structured_ntk(P, frozen, U1, U2, chunk_size) -> (n1, n2, k, k)``; ``U2=None`` means
  ``U2 = U1`` and lets the model reuse one pass.
- ``ntk_rule(P, frozen, U1, U2, red)`` and ``outputs_rule(P, frozen, U, red)``: the same
  formulas with their row reductions taken from a :class:`theory.scaling.streaming.Reducers`, so that
  :mod:`theory.scaling.sharding` reuses them with reductions across devices (one definition each).
- ``limit_kernel(U1, U2, *, sigma, frozen) -> (n1, n2, k, k)``: uses only the m-independent
  entries of ``frozen`` (e.g. the readout V).
- ``max_logit(P, U) -> scalar`` and ``logit_multiple``: how large exponents get, so that
  overflow in the working dtype is refused before any work (``logit_multiple`` = 0 for
  softmax models, whose exponentials are max-subtracted).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax.numpy as jnp

from theory import validation as _v

__all__ = ["StylizedModel", "register", "get_model", "init_model", "model_names", "PARAMETRIZATIONS"]

PARAMETRIZATIONS = ("ntk", "mean-field")


@dataclasses.dataclass(frozen=True)
class StylizedModel:
    name: str
    description: str
    init: Callable
    forward: Callable
    structured_ntk: Callable | None = None
    limit_kernel: Callable | None = None
    ntk_rule: Callable | None = None  # structured NTK against injectable reducers (sharding reuses it)
    outputs_rule: Callable | None = None  # batched outputs against injectable reducers
    fixed_k: int | None = None  # output dimension if the model fixes it (exp-sign: 1)
    logit_multiple: float = 0.0  # exp(multiple * max logit) must not overflow
    spec: str = ""

    def __repr__(self) -> str:  # keep reprs short in error messages and sims metadata
        return f"StylizedModel({self.name!r})"


_REGISTRY: dict[str, StylizedModel] = {}


@_v.validate_args(model=StylizedModel)
def register(model: StylizedModel) -> StylizedModel:
    """Add ``model`` to the registry (idempotent for the same object)."""
    if model.name in _REGISTRY and _REGISTRY[model.name] is not model:
        raise ValueError(f"a model named {model.name!r} is already registered")
    _REGISTRY[model.name] = model
    return model


def get_model(model) -> StylizedModel:
    """Look a model up by name, or pass a :class:`StylizedModel` through."""
    if isinstance(model, StylizedModel):
        return model
    try:
        return _REGISTRY[model]
    except (KeyError, TypeError):
        known = ", ".join(sorted(_REGISTRY))
        raise _v.InputError(f"model must be one of: {known}; got {model!r}") from None


def model_names() -> list[str]:
    return sorted(_REGISTRY)


def output_scale(m: int, parametrization: str, *, ntk_power: float, dtype) -> jnp.ndarray:
    """The output scale: ``m^{ntk_power}`` (NTK) or ``m^{ntk_power - 1/2}`` (mean-field).

    In the NTK parametrization the outputs carry ``m^{ntk_power}`` (``-1/2`` for a plain sum,
    ``+1/2`` for a softmax average).  The mean-field control drops one ``sqrt(m)`` factor, so
    the kernel vanishes like 1/m and the rows must travel O(1) to fit the data (the regime in
    which lazy training fails).
    """
    if parametrization not in PARAMETRIZATIONS:
        raise _v.InputError(f"parametrization must be one of {PARAMETRIZATIONS}, got {parametrization!r}")
    power = ntk_power if parametrization == "ntk" else ntk_power - 0.5
    return jnp.asarray(float(m) ** power, dtype)


@_v.validate_args(key="key")
def init_model(model, *, key, m, d, k: int = 1, sigma: float = 1.0, dtype=jnp.float64,
               parametrization: str = "ntk"):
    """Validated initialisation: ``(P, frozen)`` with P (m, d) rows i.i.d. N(0, sigma^2 I_d).

    ``m`` and ``d`` must be integers >= 1 (``1e5`` is accepted, ``1.5`` is not), ``sigma`` > 0,
    ``dtype`` float32 or float64 (float64 needs ``jax_enable_x64``).
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
