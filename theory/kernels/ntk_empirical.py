"""Empirical NTK of the stylized models, two ways (spec sections 2 and 3).

    H(P)[(i,l),(j,l')] = sum_r < dF_l(P; x_i)/dp_r , dF_l'(P; x_j)/dp_r >

- :func:`autodiff_ntk`: the reference for *any* model function ``f(params, u) -> (k,)``:
  per-example Jacobians by ``vmap(jacrev)``, contracted over every parameter.  It materialises
  the Jacobian, ``(n1 + n2) k`` times the parameter count, and refuses sizes over its memory
  budget before any work.
- :func:`structured_ntk`: each model's closed-form gradients, streamed over prefix rows in
  chunks, so peak memory does not grow with m and no Jacobian is formed.

Both return the full kernel, shape ``(n1, n2, k, k)``: no output axis is traced or averaged.
:func:`kernel_matrix` flattens it to ``(n1 k, n2 k)``; :func:`lambda_min` reports the smallest
eigenvalue of the symmetrised matrix.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from theory import validation as _v
from theory.contracts import FrozenArrays
from theory.kernels.models import get_model
from theory.streaming import DEFAULT_CHUNK, row_chunk_max

__all__ = [
    "autodiff_ntk",
    "autodiff_model_ntk",
    "structured_ntk",
    "empirical_ntk",
    "model_outputs",
    "kernel_matrix",
    "lambda_min",
    "lambda_max",
    "kernel_eigenvalues",
    "LambdaMin",
    "autodiff_ntk_bytes",
    "check_autodiff_budget",
    "DEFAULT_MEMORY_BUDGET",
]

DEFAULT_MEMORY_BUDGET = 4 * 2**30  # bytes of Jacobian the autodiff reference may materialise


# --------------------------------------------------------------------------- validation


def check_model_shapes(P, U1, U2=None):
    """Shapes and dtype of a model's arguments, as arrays of P's float dtype.

    Args:
        P: the prefix, (m, d), of a float dtype.
        U1, U2: inputs (n1, d) and (n2, d); ``U2`` may be None.

    Returns:
        ``(P, U1, U2)`` as JAX arrays (``U2`` stays None if it was).

    Raises:
        InputError: P is not a float matrix, or U1 / U2 do not have d columns.
    """
    P = jnp.asarray(P)
    _v.check_matrix("P", P)
    if not jnp.issubdtype(P.dtype, jnp.floating):
        raise _v.InputError(f"P must be a float array, got {P.dtype}")
    d = P.shape[1]
    U1 = jnp.asarray(U1, P.dtype)
    _v.check_matrix("U1", U1, cols=d)
    if U2 is not None:
        U2 = jnp.asarray(U2, P.dtype)
        _v.check_matrix("U2", U2, cols=d)
    return P, U1, U2


def validate_model_inputs(model, P, frozen, U1, U2=None, *, chunk_size=DEFAULT_CHUNK):
    """Check a model's arguments before any work: shapes, finiteness and logit overflow.

    Args:
        model: a registered name or a :class:`theory.StylizedModel`.
        P: prefix (m, d); frozen: its frozen record (``model.frozen_type``); U1, U2: inputs
            (n1, d), (n2, d) or None.
        chunk_size: rows per chunk of the streamed max-logit check (an integer >= 1).

    Returns:
        ``(model, P, frozen, U1, U2)`` with arrays, and ``U2 = U1`` when it was None.

    Raises:
        InputError: an unknown model, a frozen record of another model, bad shapes, NaN or inf
            anywhere, a bad chunk size.
        LogitOverflowError: ``exp(model.logit_multiple * max <p_r, u>)`` overflows P's dtype.
    """
    model = get_model(model)
    if not isinstance(frozen, model.frozen_type):
        raise _v.InputError(f"frozen must be the {model.frozen_type.__name__} of model {model.name!r} "
                            f"(from theory.init_model), got {type(frozen).__name__}")
    P, U1, U2 = check_model_shapes(P, U1, U2)
    U2 = U1 if U2 is None else U2
    _v.check_finite("P", P)
    _v.check_finite("U1", U1)
    _v.check_finite("U2", U2)
    _v.check_finite("frozen", frozen)
    _v.check_count("chunk_size", chunk_size)
    if model.logit_multiple:
        U = U1 if U2 is U1 else jnp.concatenate([U1, U2])
        z_max = _max_logit(P, U, chunk_size=int(chunk_size))
        _v.check_logits_fit("P and U", z_max, P.dtype, multiple=model.logit_multiple)
    return model, P, frozen, U1, U2


@functools.partial(jax.jit, static_argnames=("chunk_size",))
def _max_logit(P, U, chunk_size):
    return jnp.max(row_chunk_max(lambda P_c: jnp.max(P_c @ U.T, axis=0), (P,), chunk_size))


# --------------------------------------------------------------------------- outputs


@functools.partial(jax.jit, static_argnums=0)
def _outputs(forward, P, frozen, U):
    return jax.vmap(forward, in_axes=(None, None, 0))(P, frozen, U)


@_v.validate_args(P=2, frozen=FrozenArrays, U=2)
def model_outputs(model, P, frozen, U):
    """Model outputs for a batch of inputs.

    Args:
        model: a registered name or a :class:`theory.StylizedModel`.
        P: prefix (m, d); frozen: its frozen arrays; U: inputs (n, d).

    Returns:
        ``F`` of shape (n, k).

    Raises:
        InputError, LogitOverflowError: as :func:`validate_model_inputs`.
    """
    model, P, frozen, U, _ = validate_model_inputs(model, P, frozen, U)
    return _outputs(model.forward, P, frozen, U)


# --------------------------------------------------------------------------- autodiff reference


def contract_jacobians(J1, J2):
    """The NTK from two Jacobian pytrees: ``sum over leaves of J1 J2^T`` over the parameter axes.

    Args:
        J1, J2: pytrees of Jacobians, each leaf of shape (n1, k, *param_shape) and
            (n2, k, *param_shape).

    Returns:
        The kernel of shape (n1, n2, k, k).
    """
    def leaf(a, b):
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        return jnp.einsum("ikp,jlp->ijkl", a, b)

    return sum(jax.tree_util.tree_leaves(jax.tree_util.tree_map(leaf, J1, J2)))


@functools.partial(jax.jit, static_argnums=0)
def _autodiff(f, params, U1, U2):
    jac = jax.vmap(jax.jacrev(f), in_axes=(None, 0))
    J1 = jac(params, U1)
    return contract_jacobians(J1, J1 if U2 is None else jac(params, U2))


def autodiff_ntk_bytes(n1: int, n2: int, k: int, n_params: int, itemsize: int) -> int:
    """Bytes of the two Jacobians the autodiff NTK materialises.

    Args:
        n1, n2: numbers of inputs (``n2 = 0`` when the kernel is of U1 with itself).
        k: output dimension; n_params: parameters differentiated; itemsize: bytes per number.

    Returns:
        ``(n1 + n2) k n_params itemsize``.
    """
    return (n1 + n2) * k * n_params * itemsize


def check_autodiff_budget(what: str, *, n1: int, n2: int, k: int, n_params: int, itemsize: int, budget: int,
                          fix: str = "use the structured NTK, fewer inputs, or raise memory_budget") -> None:
    """Refuse an autodiff NTK whose Jacobians (:func:`autodiff_ntk_bytes`) exceed ``budget`` bytes.

    Args:
        what: the kernel, as the message names it; n1, n2, k, n_params, itemsize: as
            :func:`autodiff_ntk_bytes`; budget: bytes allowed; fix: what to do instead.

    Returns:
        None when the Jacobians fit.

    Raises:
        MemoryError: they do not; the message gives the bytes, the sizes, the budget and ``fix``.
    """
    need = autodiff_ntk_bytes(n1, n2, k, n_params, itemsize)
    if need > budget:
        raise MemoryError(f"{what} needs {need / 2**30:.2f} GiB for its Jacobians (n1={n1}, n2={n2 or n1}, k={k}, "
                          f"{n_params} parameters), over the budget of {budget / 2**30:.2f} GiB: {fix}")


@_v.validate_args(f="callable", params="pytree", U1=2, U2=2)
def autodiff_ntk(f, params, U1, U2=None, *, memory_budget: int = DEFAULT_MEMORY_BUDGET):
    """Reference empirical NTK of any ``f(params, u) -> (k,)`` over inputs ``U1``, ``U2``.

    Args:
        f: ``(params, u) -> (k,)``; params: any pytree of arrays.
        U1, U2: inputs (n1, d) and (n2, d); ``U2=None`` means ``U2 = U1``.
        memory_budget: bytes of Jacobian allowed.

    Returns:
        The full kernel ``(n1, n2, k, k)`` with ``[i, j, l, l'] = <dF_l(u_i), dF_l'(u_j)>``
        summed over every parameter leaf (nothing traced).

    Raises:
        InputError: ``f`` does not return a 1-D output.
        MemoryError: before any work, if the Jacobians would exceed ``memory_budget`` bytes.
    """
    U1 = jnp.asarray(U1)
    same = U2 is None
    U2 = U1 if same else jnp.asarray(U2)
    out = jax.eval_shape(f, params, U1[0])
    if len(out.shape) != 1:
        raise _v.InputError(f"f must return a 1-D output (k,), got shape {out.shape}")
    leaves = jax.tree_util.tree_leaves(params)
    n_params = sum(int(np.size(leaf)) for leaf in leaves)
    check_autodiff_budget("autodiff NTK", n1=U1.shape[0], n2=0 if same else U2.shape[0], k=out.shape[0],
                          n_params=n_params, itemsize=jnp.dtype(out.dtype).itemsize, budget=memory_budget)
    return _autodiff(f, params, U1, None if same else U2)


@functools.partial(jax.jit, static_argnums=0)
def autodiff_forward_ntk(forward, P, frozen, U1, U2):
    """The autodiff NTK of ``forward`` with respect to P, unvalidated and jitted (benchmarks use it).

    Args:
        forward: ``(P, frozen, u) -> (k,)``, a static argument (one compilation per function).
        P: the prefix (m, d); frozen: the model's frozen record.
        U1, U2: inputs (n1, d) and (n2, d); ``U2=None`` means ``U2 = U1`` (one Jacobian).

    Returns:
        ``H`` of shape (n1, n2, k, k), the contraction of the two Jacobians (n, k, m, d).
    """
    jac = jax.vmap(jax.jacrev(forward), in_axes=(None, None, 0))
    J1 = jac(P, frozen, U1)
    return contract_jacobians(J1, J1 if U2 is None else jac(P, frozen, U2))


@_v.validate_args(P=2, frozen=FrozenArrays, U1=2, U2=2)
def autodiff_model_ntk(model, P, frozen, U1, U2=None, *, memory_budget: int = DEFAULT_MEMORY_BUDGET):
    """:func:`autodiff_ntk` of a registered model with respect to its prefix ``P`` only.

    Args:
        model: a registered name or a :class:`theory.StylizedModel`.
        P: prefix (m, d); frozen: its frozen arrays (held fixed); U1, U2: inputs (n1, d), (n2, d).
        memory_budget: bytes of Jacobian allowed.

    Returns:
        ``H`` of shape (n1, n2, k, k).

    Raises:
        InputError, LogitOverflowError: as :func:`validate_model_inputs`.
        MemoryError: the Jacobians (n, k, m d) would exceed ``memory_budget``.
    """
    same = U2 is None
    model, P, frozen, U1, U2 = validate_model_inputs(model, P, frozen, U1, U2)
    k = jax.eval_shape(model.forward, P, frozen, U1[0]).shape[0]
    check_autodiff_budget(f"autodiff NTK of {model.name!r}", n1=U1.shape[0], n2=0 if same else U2.shape[0], k=k,
                          n_params=P.size, itemsize=P.dtype.itemsize, budget=memory_budget,
                          fix="use method='structured' or raise memory_budget")
    return autodiff_forward_ntk(model.forward, P, frozen, U1, None if same else U2)


# --------------------------------------------------------------------------- structured


@_v.validate_args(P=2, frozen=FrozenArrays, U1=2, U2=2)
def structured_ntk(model, P, frozen, U1, U2=None, *, chunk_size: int = DEFAULT_CHUNK):
    """The model's closed-form NTK, streamed over prefix rows in chunks of ``chunk_size``.

    Args:
        model: a registered name or a :class:`theory.StylizedModel`.
        P: prefix (m, d); frozen: its frozen arrays; U1, U2: inputs (n1, d), (n2, d) or None
            (``U2 = U1``: one pass instead of two).
        chunk_size: rows per chunk (memory is independent of m).

    Returns:
        ``H`` of shape (n1, n2, k, k).

    Raises:
        InputError, LogitOverflowError: as :func:`validate_model_inputs`, or the model has no
            structured NTK.
    """
    same = U2 is None
    model, P, frozen, U1, U2 = validate_model_inputs(model, P, frozen, U1, U2, chunk_size=chunk_size)
    if model.structured_ntk is None:
        raise _v.InputError(f"model {model.name!r} has no structured NTK; use method='autodiff'")
    return model.structured_ntk(P, frozen, U1, None if same else U2, int(chunk_size))


@_v.validate_args(P=2, frozen=FrozenArrays, U1=2, U2=2)
def empirical_ntk(model, P, frozen, U1, U2=None, *, method: str = "structured", chunk_size: int = DEFAULT_CHUNK,
                  memory_budget: int = DEFAULT_MEMORY_BUDGET):
    """Empirical NTK by ``method``: :func:`structured_ntk` or :func:`autodiff_model_ntk`.

    Args:
        model, P, frozen, U1, U2: as :func:`structured_ntk`.
        method: ``"structured"`` or ``"autodiff"``.
        chunk_size, memory_budget: passed to the method that uses them.

    Returns:
        ``H`` of shape (n1, n2, k, k).

    Raises:
        InputError: an unknown method, or as the method raises.
        MemoryError: the autodiff Jacobians exceed ``memory_budget``.
    """
    if method == "structured":
        return structured_ntk(model, P, frozen, U1, U2, chunk_size=chunk_size)
    if method == "autodiff":
        return autodiff_model_ntk(model, P, frozen, U1, U2, memory_budget=memory_budget)
    raise _v.InputError(f"method must be 'structured' or 'autodiff', got {method!r}")


# --------------------------------------------------------------------------- kernels as matrices


@_v.validate_args(H=4)
def kernel_matrix(H):
    """Flatten a kernel to a matrix.

    Args:
        H: kernel of shape (n1, n2, k, k).

    Returns:
        ``K`` of shape (n1 k, n2 k), row index ``i * k + l``, column index ``j * k + l'``.
    """
    n1, n2, k1, k2 = H.shape
    return jnp.transpose(H, (0, 2, 1, 3)).reshape(n1 * k1, n2 * k2)


class LambdaMin(NamedTuple):
    """Smallest eigenvalue of the symmetrised kernel matrix, with what was done to get it."""

    value: float
    asymmetry: float  # ||K - K^T||_F / ||K||_F before symmetrising
    jitter: float  # added to the diagonal (0 unless asked)


def kernel_eigenvalues(H) -> np.ndarray:
    """The eigenvalues of a kernel's symmetric part, in float64 and ascending.

    Args:
        H: a kernel (n, n, k, k) or an (n k, n k) matrix (not validated: callers pass kernels
            they computed).

    Returns:
        A float64 NumPy array of the n k eigenvalues of ``(K + K^T) / 2``.
    """
    K = np.asarray(kernel_matrix(H) if np.ndim(H) == 4 else H, np.float64)
    return np.linalg.eigvalsh((K + K.T) / 2)


def lambda_max(H) -> float:
    """The largest eigenvalue of a kernel's symmetric part (float64): :func:`kernel_eigenvalues`'s last.

    Args:
        H: a kernel (n, n, k, k) or an (n k, n k) matrix.

    Returns:
        ``lambda_max``, a float.
    """
    return float(kernel_eigenvalues(H)[-1])


@_v.validate_args(H=(2, 4))
def lambda_min(H, *, jitter: float = 0.0) -> LambdaMin:
    """``lambda_min`` of ``(K + K^T)/2 + jitter I``.

    Args:
        H: a kernel (n, n, k, k) or a square matrix (n k, n k).
        jitter: added to the diagonal, >= 0.

    Returns:
        :class:`LambdaMin` with the value, the relative asymmetry removed and the jitter.

    Raises:
        InputError: H is not square, not finite, or jitter < 0.
    """
    K = jnp.asarray(H)
    if K.ndim == 4:
        K = kernel_matrix(K)
    if K.ndim != 2 or K.shape[0] != K.shape[1]:
        raise _v.InputError(f"H must be a square kernel, got shape {K.shape}")
    _v.check_finite("H", K)
    jitter = _v.check_nonnegative("jitter", jitter)
    norm = float(jnp.linalg.norm(K))
    asym = float(jnp.linalg.norm(K - K.T)) / norm if norm > 0 else 0.0
    Ks = (K + K.T) / 2 + jitter * jnp.eye(K.shape[0], dtype=K.dtype)
    return LambdaMin(float(jnp.linalg.eigvalsh(Ks)[0]), asym, float(jitter))
