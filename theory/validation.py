"""Input checks shared by every public function in :mod:`theory`.

Every check raises a :class:`ValueError` subclass whose message names the offending argument,
and runs before any heavy work.  Checks on array *values* (NaN/inf, overflowing logits) only run
when the array is concrete; inside ``jax.jit`` they are skipped, because a traced value cannot
be inspected without a host round trip.  Public wrappers therefore validate eagerly and then
call jitted kernels.
"""

from __future__ import annotations

import functools
import inspect
import math
import numbers
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "InputError",
    "LogitOverflowError",
    "PrecisionLossError",
    "PrecisionLossWarning",
    "INT32_MAX",
    "check_count",
    "check_seed",
    "show_number",
    "check_positive",
    "check_nonnegative",
    "check_probability",
    "check_finite",
    "check_matrix",
    "check_projections",
    "check_dtype",
    "concrete",
    "max_safe_logit",
    "check_logits_fit",
    "check_arg",
    "validate_args",
]


class InputError(ValueError):
    """A public function was called with an argument it cannot accept."""


class LogitOverflowError(InputError):
    """``exp`` of some logit would overflow the working dtype."""


class PrecisionLossError(InputError):
    """The working precision certifies nothing for these inputs (rounding swamps the result)."""


class PrecisionLossWarning(UserWarning):
    """The certified rounding error is at least the size of the result it bounds."""


#: Largest int32: counts JAX keeps in an int32 (shapes, loop counters) and seeds stay at or below it.
INT32_MAX = 2**31 - 1


def show_number(value) -> str:
    """``value`` for an error message: short text as typed, big numbers in scientific notation.

    A 300-digit integer or a 300-character string never reaches a message whole.
    """
    if isinstance(value, str):
        if value and len(value) <= 24 and not any(c.isspace() for c in value):
            return value
        return repr(value) if len(value) <= 24 else repr(value[:20] + "...")
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        if abs(int(value)) < 10**6:
            return str(int(value))
        try:
            return f"{float(value):.3g}"
        except OverflowError:
            return f"about 1e+{len(str(abs(int(value)))) - 1}"
    if isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_)):
        return f"{float(value):.6g}"
    return type(value).__name__


def check_count(name: str, value, *, minimum: int = 1, maximum: int | None = None) -> int:
    """Return ``value`` as a Python ``int`` or raise.

    Accepts ints and integral floats (``1e5`` -> ``100000``); rejects bools, ``1.5``, NaN, inf,
    anything below ``minimum`` and (when given) above ``maximum``.  The message shows big
    numbers in scientific notation.
    """
    what = f"an integer >= {minimum}" + (f" and <= {show_number(maximum)}" if maximum is not None else "")
    if isinstance(value, (bool, np.bool_)):
        raise InputError(f"{name} must be {what}, got the boolean {value!r}")
    raw = value
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text) if any(c in text for c in ".eEnN") else int(text)
        except ValueError:
            raise InputError(f"{name} must be {what}, got {show_number(raw)}") from None
    if isinstance(value, numbers.Integral):
        out = int(value)
    elif isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f) or f != math.floor(f):
            raise InputError(f"{name} must be {what}, got {show_number(raw)}")
        out = int(f)
    else:
        raise InputError(f"{name} must be {what}, got {type(value).__name__}")
    if out < minimum or (maximum is not None and out > maximum):
        raise InputError(f"{name} must be {what}, got {show_number(out)}")
    return out


def check_seed(name: str, value) -> int:
    """A seed: an integer in ``[0, 2^31 - 1]`` (the one rule for every seed; any JAX key accepts it)."""
    return check_count(name, value, minimum=0, maximum=INT32_MAX)


def _real(name: str, value, what: str, ok: Callable[[float], bool]) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be {what}, got {value!r}")
    f = float(value)
    if not math.isfinite(f) or not ok(f):
        raise InputError(f"{name} must be {what}, got {value!r}")
    return f


def check_positive(name: str, value) -> float:
    """Return ``value`` as a finite float > 0 or raise."""
    return _real(name, value, "a positive finite number", lambda f: f > 0)


def check_nonnegative(name: str, value) -> float:
    """Return ``value`` as a finite float >= 0 or raise."""
    return _real(name, value, "a finite number >= 0", lambda f: f >= 0)


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
            f"{jnp.dtype(dtype).name} (limit {limit:.4g}): lower sigma or the input norm"
            + (", or use float64" if jnp.dtype(dtype) != jnp.float64 else "")
        )


def _describe(value) -> str:
    if value is None:
        return "None (missing)"
    if isinstance(value, str):
        return f"the string {value!r}"
    shape = getattr(value, "shape", None)
    return f"{type(value).__name__} of shape {tuple(shape)}" if shape is not None else type(value).__name__


def _numeric_array(name: str, value, what: str):
    """``value`` if it is an array (or tracer) with a numeric dtype, else an array from it, else raise."""
    if value is None or isinstance(value, (str, bytes)):
        raise InputError(f"{name} must be {what}, got {_describe(value)}")
    if not (hasattr(value, "shape") and hasattr(value, "dtype")):
        try:
            value = np.asarray(value)
        except (TypeError, ValueError):
            raise InputError(f"{name} must be {what}, got {_describe(value)}") from None
    if not (jnp.issubdtype(value.dtype, jnp.number) or jnp.issubdtype(value.dtype, jnp.bool_)):
        raise InputError(f"{name} must be {what}, got dtype {value.dtype}")
    if jnp.issubdtype(value.dtype, jnp.complexfloating):
        raise InputError(f"{name} must be {what} with real entries, got dtype {value.dtype} (the imaginary "
                         "part would be dropped or carried silently)")
    return value


def _no_nan(name: str, value) -> None:
    """Raise if a concrete floating array holds NaN (on the array's device; skipped for tracers)."""
    if not hasattr(value, "dtype") or not jnp.issubdtype(value.dtype, jnp.inexact) or np.size(value) == 0:
        return
    try:
        bad = int(jnp.sum(jnp.isnan(jnp.asarray(value))))
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError):
        return
    if bad:
        raise InputError(f"{name} contains {bad} NaN value(s)")


def check_arg(name: str, value, spec) -> None:
    """Check one argument against ``spec`` (raise :class:`InputError` naming it).

    ``spec``: ``"array"`` (numeric array-like of any rank: real, no NaN when concrete; a matrix
    or higher rank also not empty), an int or tuple of ints (allowed ranks, the same checks), ``"number"`` (a real number, not a bool), ``"key"`` (a JAX PRNG key: a typed key
    array or a raw ``uint32`` key of shape (2,)), ``"callable"``, ``"pytree"``
    (a non-empty pytree of numeric arrays), or a class (``isinstance``).
    """
    if isinstance(spec, type):
        if not isinstance(value, spec):
            raise InputError(f"{name} must be a {spec.__name__}, got {_describe(value)}")
    elif spec == "number":
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
            raise InputError(f"{name} must be a real number, got {_describe(value)}")
        if math.isnan(float(value)):
            raise InputError(f"{name} must be a real number, got NaN")
    elif spec == "callable":
        if not callable(value):
            raise InputError(f"{name} must be callable, got {_describe(value)}")
    elif spec == "pytree":
        leaves = jax.tree_util.tree_leaves(value)
        if not leaves:
            raise InputError(f"{name} must be a non-empty pytree of arrays, got {_describe(value)}")
        for leaf in leaves:
            arr = _numeric_array(name, leaf, "a pytree of numeric arrays")
            if np.size(arr) == 0:
                raise InputError(f"{name} must not hold empty arrays, got a leaf of shape {tuple(np.shape(arr))}")
            _no_nan(name, arr)
    elif spec == "key":
        if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "dtype"):
            raise InputError(f"{name} must be a JAX PRNG key (jax.random.key / PRNGKey), got {_describe(value)}")
        typed = jnp.issubdtype(value.dtype, jax.dtypes.prng_key)
        raw = value.dtype == jnp.uint32 and tuple(value.shape) == (2,)
        if not (typed and value.ndim == 0) and not raw:
            raise InputError(f"{name} must be a single JAX PRNG key, got {_describe(value)} of dtype {value.dtype}")
    else:
        ranks = None if spec == "array" else ((spec,) if isinstance(spec, int) else tuple(spec))
        what = "a numeric array" if ranks is None else f"a numeric array of rank {' or '.join(map(str, ranks))}"
        arr = _numeric_array(name, value, what)
        if ranks is not None and arr.ndim not in ranks:
            raise InputError(f"{name} must be {what}, got shape {tuple(arr.shape)}")
        if arr.ndim >= 2 and 0 in tuple(arr.shape):
            raise InputError(f"{name} must not be empty, got shape {tuple(arr.shape)}")
        _no_nan(name, arr)


def validate_args(**specs):
    """Decorator: :func:`check_arg` each named argument (when given) before calling the function.

    ``specs`` maps parameter names to specs; an argument left at its default ``None`` is not
    checked (optional).  The signature is preserved (``inspect.signature`` sees the original).
    """

    def wrap(fn):
        sig = inspect.signature(fn)
        unknown = set(specs) - set(sig.parameters)
        if unknown:
            raise TypeError(f"validate_args: {fn.__name__} has no parameter(s) {sorted(unknown)}")
        optional = {n for n in specs if sig.parameters[n].default is None}

        @functools.wraps(fn)
        def checked(*args, **kwargs):
            try:
                bound = sig.bind(*args, **kwargs)
            except TypeError as e:
                raise InputError(f"{fn.__name__}: {e}") from None
            for name, spec in specs.items():
                if name in bound.arguments:
                    value = bound.arguments[name]
                    if value is None and name in optional:
                        continue
                    check_arg(name, value, spec)
                elif name not in optional and sig.parameters[name].default is inspect.Parameter.empty:
                    raise InputError(f"{fn.__name__}: the argument {name} is missing")
            return fn(*args, **kwargs)

        return checked

    return wrap
