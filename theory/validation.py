"""Input checks shared by every public function in :mod:`theory`.

Every check raises a :class:`ValueError` subclass whose message names the offending argument,
and runs before any heavy work.  Checks on array *values* (NaN/inf, overflowing logits) only run
when the array is concrete; inside ``jax.jit`` they are skipped, because a traced value cannot
be inspected without a host round trip.  Public wrappers therefore validate eagerly and then
call jitted kernels.
"""

from __future__ import annotations

import math
import numbers

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "InputError",
    "LogitOverflowError",
    "PrecisionLossError",
    "PrecisionLossWarning",
    "check_count",
    "check_positive",
    "check_probability",
    "check_finite",
    "check_matrix",
    "check_projections",
    "check_dtype",
    "concrete",
    "max_safe_logit",
    "check_logits_fit",
]


class InputError(ValueError):
    """A public function was called with an argument it cannot accept."""


class LogitOverflowError(InputError):
    """``exp`` of some logit would overflow the working dtype."""


class PrecisionLossError(InputError):
    """The working precision certifies nothing for these inputs (rounding swamps the result)."""


class PrecisionLossWarning(UserWarning):
    """The certified rounding error is at least the size of the result it bounds."""


def check_count(name: str, value, *, minimum: int = 1) -> int:
    """Return ``value`` as a Python ``int`` or raise.

    Accepts ints and integral floats (``1e5`` -> ``100000``); rejects bools, ``1.5``, NaN, inf
    and anything below ``minimum``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be an integer >= {minimum}, got the boolean {value!r}")
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}") from None
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f) or f != math.floor(f):
            raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
        out = int(f)
    else:
        raise InputError(f"{name} must be an integer >= {minimum}, got {type(value).__name__}")
    if out < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {out}")
    return out


def check_positive(name: str, value) -> float:
    """Return ``value`` as a finite float > 0 or raise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or f <= 0:
        raise InputError(f"{name} must be a positive finite number, got {value!r}")
    return f


def check_probability(name: str, value) -> float:
    """Return ``value`` as a float in the open interval (0, 1) or raise."""
    f = check_positive(name, value)
    if f >= 1:
        raise InputError(f"{name} must lie in (0, 1), got {value!r}")
    return f


def concrete(x) -> np.ndarray | None:
    """``x`` as a NumPy array, or ``None`` when ``x`` is a tracer inside a transformation."""
    try:
        return np.asarray(x)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None


def check_finite(name: str, x) -> None:
    """Raise if a concrete array holds NaN or inf (silently skipped for tracers)."""
    for leaf in jax.tree_util.tree_leaves(x):
        arr = concrete(leaf)
        if arr is None or not np.issubdtype(arr.dtype, np.inexact):
            continue
        if not np.all(np.isfinite(arr)):
            bad = int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
            raise InputError(f"{name} contains {bad} NaN or infinite value(s)")


def check_matrix(name: str, x, *, cols: int | None = None, min_rows: int = 1) -> None:
    """Raise unless ``x`` is a 2-D array with at least ``min_rows`` rows (and ``cols`` columns)."""
    shape = np.shape(x)
    if len(shape) != 2:
        raise InputError(f"{name} must be a 2-D array (rows, features), got shape {shape}")
    if shape[0] < min_rows:
        raise InputError(f"{name} must have at least {min_rows} row(s), got shape {shape}")
    if shape[1] < 1:
        raise InputError(f"{name} must have at least one column, got shape {shape}")
    if cols is not None and shape[1] != cols:
        raise InputError(f"{name} must have {cols} columns, got shape {shape}")


def check_projections(d: int | None, *, W_Q=None, W_K=None, W_V=None, rows: str = "the token dimension") -> None:
    """Attention projections for tokens of dimension ``d``: finite 2-D matrices with ``d`` rows,
    ``W_K`` shaped like ``W_Q`` when both are given.  ``d=None`` takes ``d`` from ``W_Q``."""
    if W_Q is not None:
        check_matrix("W_Q", W_Q)
        d = np.shape(W_Q)[0] if d is None else d
    for name, W in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V)):
        if W is None:
            continue
        if name == "W_K" and W_Q is not None:
            if np.shape(W) != np.shape(W_Q):
                raise InputError(f"W_K must have the shape of W_Q {np.shape(W_Q)}, got {np.shape(W)}")
            continue
        check_matrix(name, W)
        if np.shape(W)[0] != d:
            raise InputError(f"{name} must have {d} rows ({rows}), got {np.shape(W)}")
    for name, W in (("W_Q", W_Q), ("W_K", W_K), ("W_V", W_V)):
        if W is not None:
            check_finite(name, W)


def check_dtype(name: str, dtype) -> jnp.dtype:
    """Return a floating dtype that JAX will really use, or raise.

    float64 needs ``jax_enable_x64``; without it JAX would silently compute in float32, so that
    request is refused with the switch that fixes it.
    """
    dt = jnp.dtype(dtype)
    if dt not in (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64)):
        raise InputError(f"{name} must be float32 or float64, got {dt}")
    if dt == jnp.float64 and not jax.config.jax_enable_x64:
        raise InputError(
            f"{name}=float64 needs 64-bit JAX: set JAX_ENABLE_X64=1 or call "
            "jax.config.update('jax_enable_x64', True) before creating arrays"
        )
    return dt


def max_safe_logit(dtype) -> float:
    """Largest ``z`` with ``exp(z)`` finite in ``dtype`` (about 88.7 in float32, 709.8 in float64)."""
    return float(np.log(np.finfo(jnp.dtype(dtype)).max))


def check_logits_fit(name: str, max_logit, dtype, *, multiple: float = 1.0) -> None:
    """Raise :class:`LogitOverflowError` if ``exp(multiple * max_logit)`` overflows ``dtype``.

    ``multiple`` is how many logits are added before exponentiating (2 for an NTK entry
    ``exp(z_i + z_j)``).
    """
    value = concrete(max_logit)
    if value is None:
        return
    value = float(np.max(value))
    if not math.isfinite(value):
        raise InputError(f"{name} produce non-finite logits")
    limit = max_safe_logit(dtype)
    if multiple * value > limit:
        raise LogitOverflowError(
            f"{name} give a logit of {value:.4g}; exp of {multiple:g} x that overflows "
            f"{jnp.dtype(dtype).name} (limit {limit:.4g}): lower sigma or the input norm, or use float64"
        )
