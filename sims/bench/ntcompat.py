"""Import neural-tangents 0.6.5 on current JAX, without tensorflow: the project's only contact
with JAX internals.

neural-tangents (nt) is the project's independent cross-check: its empirical NTK
(``JACOBIAN_CONTRACTION``, ``NTK_VECTOR_PRODUCTS``), ``monte_carlo_kernel_fn`` and
``predict.gradient_descent_mse``.  Its last release (0.6.5, Dec 2023) no longer imports on
JAX >= 0.6, and its ``neural_tangents.experimental`` package pulls in tensorflow (2 GB).  This
module makes it import (why, and what each patch does: ``docs/neural_tangents.md``), and
is the **only** module of the project allowed to touch ``jax.core``/``jax.interpreters``.
Nothing else in ``theory/`` imports neural_tangents, and ``theory/__init__`` does not import
this module: using nt is opt-in::

    from sims.bench.ntcompat import import_neural_tangents
    nt = import_neural_tangents()          # ImportError with the reason if it cannot

What :func:`install` does, before ``import neural_tangents`` (each patch only when the symbol is
missing, so on an old JAX nothing is touched; :data:`PATCHES` lists what was done):

1. ``sys.modules["neural_tangents.experimental"]``: an empty stand-in module.  nt's
   ``__init__`` does ``from . import experimental``, whose only content is TF-model interop
   (``empirical_ntk_fn_tf``); the stand-in keeps tensorflow, tf2jax and jax2tf out of the
   process.  Using an attribute of it raises with this explanation.
2. Aliases of moved symbols to their public homes: ``jax.core.{Jaxpr, JaxprEqn, Literal, Var,
   Primitive, ClosedJaxpr}`` -> ``jax.extend.core`` (moved in 0.6; nt imports them at load
   time); ``jax.core.get_aval`` -> ``jax.typeof`` (0.10); ``jax.interpreters.ad.source_info_util``
   -> ``jax.extend.source_info_util`` and ``ad.config`` -> ``jax.config`` (0.4.26; upstream
   commit e84d2ab made the same change and was never released).
3. ``jax.util`` (removed in 0.8; nt imports ``safe_map``/``safe_zip`` at load time): a module
   with a strict ``map``/``zip`` that raise on unequal lengths, the only behaviour nt relies on.
4. Inert placeholders for deleted features, none of which can change a number:
   ``jax.core.DShapedArray`` (dynamic shapes, removed in 0.8: nt only tests ``type(a) is
   DShapedArray``, now always False); ``ad.zeros_like_p`` (primitive removed in 0.9: nt
   registers rules for it at import, so a fresh never-bound ``Primitive`` makes them dead);
   ``ad.reducing_transposes`` (registry removed in 0.10, empty since 0.7): ``{}``.

After the import, :func:`post_import_fixes` replaces two nt helpers that call ``jnp.size`` and
``result_type`` on ``ShapeDtypeStruct`` (deprecated in JAX 0.10, "an error in a future
release") with the same computation from ``.shape``/``.dtype``, and ``_get_flops`` (AUTO only)
to accept both return types of ``cost_analysis()``.

Not default, ever: ``NtkImplementation.AUTO`` (compiles every implementation to count flops and
prints to stdout) is refused by :func:`nt_model_ntk_fn`; ``STRUCTURED_DERIVATIVES`` needs
``import_neural_tangents(structured_derivatives=True)``, which installs an *experimental* shim
(:func:`install_structured_derivatives_shim`): JAX 0.10 changed the private
``ad.linearize(fun, *primals) -> (out, pvals, jaxpr, consts)``, so nt's own ``ad`` reference is
replaced by a proxy whose ``linearize`` rebuilds the old result from public ``jax.linearize`` +
``jax.make_jaxpr`` (JAX's own module is left alone), and ``Primitive.map_primitive = False``.
It relies on ``WrappedFun.call_wrapped`` and the shape of nt's backward pass, so check its
results (:func:`structured_derivatives_ok`) before trusting it.

Never run nt's structured derivatives with ``jax_enable_checks``: ``jax.core.lattice_join``
is gone and is deliberately not patched.
"""

from __future__ import annotations

import functools
import importlib
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["PATCHES", "IMPLEMENTATIONS", "install", "post_import_fixes", "install_structured_derivatives_shim",
           "import_neural_tangents", "nt_available", "nt_model_ntk_fn", "nt_model_ntk", "structured_derivatives_ok"]

#: Human-readable record of every patch applied in this process (``"jax.core.Jaxpr -> ..."``).
PATCHES: list[str] = []

#: Implementations :func:`nt_model_ntk_fn` accepts (``auto`` is refused on purpose).
IMPLEMENTATIONS = ("jacobian_contraction", "ntk_vector_products", "structured_derivatives")

_STUB_DOC = (
    "Stand-in for neural_tangents.experimental, installed by sims.bench.ntcompat so that importing "
    "neural-tangents never imports tensorflow. The real package only holds TF-model interop "
    "(empirical_ntk_fn_tf), which prefix-ntk does not use."
)


def _record(what: str) -> None:
    if what not in PATCHES:
        PATCHES.append(what)


def _set_missing(obj, name: str, value, why: str, where: str) -> None:
    """``setattr(obj, name, value)`` only when ``obj`` lacks ``name``; record it."""
    if not hasattr(obj, name):
        setattr(obj, name, value)
        _record(f"{where}.{name}: {why}")


# ----------------------------------------------------------------------------- stand-ins


class _ExperimentalStub(types.ModuleType):
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError(
            f"neural_tangents.experimental.{name} is disabled: sims.bench.ntcompat replaced "
            "neural_tangents.experimental (tensorflow interop) by an empty stand-in"
        )


def _strict_map(f, *args):
    """``jax.util.safe_map``: ``list(map(f, *args))`` that raises when lengths differ."""
    args = list(map(list, args))
    n = len(args[0])
    for a in args[1:]:
        if len(a) != n:
            raise ValueError(f"length mismatch: {[len(x) for x in args]}")
    return list(map(f, *args))


def _strict_zip(*args):
    """``jax.util.safe_zip``: ``list(zip(*args))`` that raises when lengths differ."""
    args = list(map(list, args))
    n = len(args[0])
    for a in args[1:]:
        if len(a) != n:
            raise ValueError(f"length mismatch: {[len(x) for x in args]}")
    return list(zip(*args))


class _RemovedDShapedArray:
    """Placeholder for ``jax.core.DShapedArray`` (dynamic shapes were removed from JAX).

    No JAX value is ever an instance, so nt's ``type(a) is core.DShapedArray`` is always False.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("DShapedArray was removed from JAX; this placeholder only exists for neural-tangents")


def install() -> list[str]:
    """Apply the pre-import patches (idempotent); returns :data:`PATCHES`.

    Only adds symbols that are missing; nothing that exists is replaced.
    """
    import jax.core as jcore
    from jax.interpreters import ad

    if "neural_tangents.experimental" not in sys.modules:
        stub = _ExperimentalStub("neural_tangents.experimental", _STUB_DOC)
        sys.modules["neural_tangents.experimental"] = stub
        _record("neural_tangents.experimental: empty stand-in (keeps tensorflow out)")

    try:
        import jax.extend.core as xcore
    except ImportError:  # jax < 0.4.30 still has the names in jax.core
        xcore = None
    if xcore is not None:
        for name in ("Jaxpr", "JaxprEqn", "Literal", "Var", "Primitive", "ClosedJaxpr"):
            if hasattr(xcore, name):
                _set_missing(jcore, name, getattr(xcore, name), f"alias of jax.extend.core.{name}", "jax.core")
    if hasattr(jax, "typeof"):
        _set_missing(jcore, "get_aval", jax.typeof, "alias of jax.typeof", "jax.core")
    _set_missing(jcore, "DShapedArray", _RemovedDShapedArray, "inert placeholder (dynamic shapes removed)",
                 "jax.core")

    try:
        importlib.import_module("jax.util")
    except ImportError:
        util = types.ModuleType("jax.util", "Stand-in for the removed jax.util (safe_map/safe_zip), by sims.bench.ntcompat.")
        util.safe_map, util.safe_zip = _strict_map, _strict_zip
        sys.modules["jax.util"] = util
        if not hasattr(jax, "util"):
            jax.util = util
        _record("jax.util: stand-in module with strict safe_map/safe_zip")

    try:
        import jax.extend.source_info_util as siu
    except ImportError:  # pragma: no cover - old jax keeps ad.source_info_util
        siu = None
    if siu is not None:
        _set_missing(ad, "source_info_util", siu, "alias of jax.extend.source_info_util", "jax.interpreters.ad")
    _set_missing(ad, "config", jax.config, "alias of jax.config", "jax.interpreters.ad")
    if not hasattr(ad, "zeros_like_p"):
        prim_cls = getattr(jcore, "Primitive")
        ad.zeros_like_p = prim_cls("zeros_like_removed")
        _record("jax.interpreters.ad.zeros_like_p: inert never-bound Primitive (primitive removed in JAX 0.9)")
    _set_missing(ad, "reducing_transposes", {}, "empty registry (removed in JAX 0.10)", "jax.interpreters.ad")
    return PATCHES


# ----------------------------------------------------------------------------- after the import


def _std_basis(pytree):
    """nt's ``_std_basis`` from ``.shape``/``.dtype`` (no ``jnp.size`` on ShapeDtypeStruct)."""
    leaves, _ = jax.tree_util.tree_flatten(pytree)
    ndim = sum(int(np.prod(np.shape(leaf))) for leaf in leaves)
    dtype = jnp.result_type(*[leaf.dtype for leaf in leaves])
    return _unravel_array_into_pytree(pytree, 1, jnp.eye(ndim, dtype=dtype))


def _unravel_array_into_pytree(pytree, axis, arr):
    """nt's ``_unravel_array_into_pytree`` from ``.shape`` (no ``jnp.size`` on ShapeDtypeStruct)."""
    leaves, treedef = jax.tree_util.tree_flatten(pytree)
    if arr.ndim > 0:
        axis %= arr.ndim
    shapes = [arr.shape[:axis] + tuple(np.shape(leaf)) + arr.shape[axis + 1:] for leaf in leaves]
    sizes = [int(np.prod(np.shape(leaf))) for leaf in leaves[:-1]]
    parts = jnp.split(arr, np.cumsum(sizes).astype(int), axis)
    return jax.tree_util.tree_unflatten(treedef, [jnp.reshape(x, s) for x, s in zip(parts, shapes)])


def _get_flops(f, optimize, *a, **kw):
    """nt's ``_get_flops`` accepting ``cost_analysis()`` as a dict (JAX >= 0.5) or ``[dict]``."""
    e = jax.jit(f).lower(*a, **kw)
    analysis = e.compile().cost_analysis() if optimize else e.cost_analysis()
    if isinstance(analysis, (list, tuple)):
        analysis = analysis[0]
    return analysis["flops"]


def post_import_fixes(nt) -> None:
    """Replace three nt helpers by equivalents on non-deprecated APIs (idempotent)."""
    emp = sys.modules["neural_tangents._src.empirical"]
    for name, fn in (("_std_basis", _std_basis), ("_unravel_array_into_pytree", _unravel_array_into_pytree),
                     ("_get_flops", _get_flops)):
        if getattr(emp, name) is not fn:
            setattr(emp, name, fn)
            _record(f"neural_tangents._src.empirical.{name}: replaced (same computation, public API)")


# ----------------------------------------------------------------------------- structured derivatives (opt-in)


class _UnknownPartialVal:
    """Stand-in for the old ``PartialVal`` of a linearized output: always unknown."""

    def is_known(self) -> bool:
        return False


def _legacy_linearize(traceable, *primals, has_aux=False):
    """The pre-0.10 ``ad.linearize(fun, *primals) -> (out, pvals, jaxpr, consts)``, from public APIs.

    ``jaxpr`` maps input tangents to output tangents (its invars are the tangents), ``consts``
    are its residuals, ``pvals`` mark every output tangent as unknown.
    """
    if has_aux:
        raise NotImplementedError("the structured-derivatives shim does not support has_aux")
    out, f_jvp = jax.linearize(lambda *xs: traceable.call_wrapped(*xs), *primals)
    closed = jax.make_jaxpr(f_jvp)(*primals)
    out = list(out)
    return out, [_UnknownPartialVal() for _ in out], closed.jaxpr, list(closed.consts)


def install_structured_derivatives_shim(nt) -> None:
    """EXPERIMENTAL: let nt's STRUCTURED_DERIVATIVES run on JAX >= 0.10 (see the module docstring).

    nt's ``empirical`` module gets its own proxy of ``jax.interpreters.ad`` whose ``linearize``
    has the old signature; JAX's module is not modified.  ``Primitive.map_primitive`` is set to
    False where the attribute no longer exists.
    """
    import jax.core as jcore
    from jax.interpreters import ad

    emp = sys.modules["neural_tangents._src.empirical"]
    prim_cls = getattr(jcore, "Primitive")
    _set_missing(prim_cls, "map_primitive", False, "False (map primitives removed)", "Primitive")
    try:
        import inspect

        params = list(inspect.signature(ad.linearize).parameters)
    except (TypeError, ValueError):  # pragma: no cover
        params = []
    if params[:2] == ["traceable", "primals_ft"] or "is_vjp" in params:  # the JAX 0.10 signature
        if not isinstance(emp.ad, _AdProxy):
            emp.ad = _AdProxy(ad)
            _record("neural_tangents._src.empirical.ad: proxy with the pre-0.10 linearize (experimental)")


class _AdProxy(types.ModuleType):
    """``jax.interpreters.ad`` as nt's structured derivatives expect it: old ``linearize``."""

    def __init__(self, ad):
        super().__init__("jax.interpreters.ad (ntcompat proxy)")
        self._ad = ad

    def __getattr__(self, name):
        if name == "linearize":
            return _legacy_linearize
        return getattr(self._ad, name)


# ----------------------------------------------------------------------------- entry point


@functools.lru_cache(maxsize=None)
def _import(structured_derivatives: bool):
    try:
        install()
        nt = importlib.import_module("neural_tangents")
        post_import_fixes(nt)
        if structured_derivatives:
            install_structured_derivatives_shim(nt)
    except ModuleNotFoundError as e:
        if e.name and e.name.split(".")[0] == "neural_tangents":
            raise ImportError(
                "neural-tangents is not installed: `pip install --no-deps neural-tangents==0.6.5` "
                "(and frozendict); --no-deps keeps tensorflow out"
            ) from e
        raise ImportError(f"neural-tangents cannot be imported on jax {jax.__version__}: missing module {e.name!r}") from e
    except (ImportError, AttributeError, TypeError) as e:
        raise ImportError(
            f"neural-tangents cannot be imported on jax {jax.__version__} even with sims.bench.ntcompat "
            f"({type(e).__name__}: {e}); add the missing alias to sims/bench/ntcompat.py:install()"
        ) from e
    return nt


def import_neural_tangents(*, structured_derivatives: bool = False):
    """The ``neural_tangents`` module, importable on current JAX without tensorflow.

    Raises ``ImportError`` whose message says why (not installed, or a JAX symbol nt needs is
    missing).  ``structured_derivatives=True`` also installs the experimental shim for
    ``NtkImplementation.STRUCTURED_DERIVATIVES``.
    """
    return _import(bool(structured_derivatives))


def nt_available() -> tuple[bool, str]:
    """``(True, "")`` if :func:`import_neural_tangents` works, else ``(False, reason)``."""
    try:
        import_neural_tangents()
    except ImportError as e:
        return False, str(e)
    return True, ""


# ----------------------------------------------------------------------------- nt's NTK of a registered model


def _implementation(nt, implementation: str):
    name = str(implementation).lower()
    if name == "auto":
        raise ValueError("NtkImplementation.AUTO is never used here: it compiles every implementation "
                         "and prints to stdout; pick one of " + ", ".join(IMPLEMENTATIONS))
    if name not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    return getattr(nt.NtkImplementation, name.upper())


def nt_model_ntk_fn(model, *, implementation: str = "jacobian_contraction", vmap_axes=0):
    """A jitted ``(P, frozen, U1, U2=None) -> (n1, n2, k, k)``: nt's empirical NTK of a registered model.

    Uses ``trace_axes=()`` (nt's default ``(-1,)`` would *average* over the output axis) and
    ``vmap_axes=0`` (examples are independent).  The NTK is taken with respect to ``P`` only;
    ``frozen`` is an argument, not a compiled-in constant.
    """
    from theory.kernels.models import get_model

    model = get_model(model)
    sd = str(implementation).lower() == "structured_derivatives"
    nt = import_neural_tangents(structured_derivatives=sd)
    impl = _implementation(nt, implementation)

    @jax.jit
    def ntk(P, frozen, U1, U2=None):
        def f(P_, U):
            return jax.vmap(model.forward, in_axes=(None, None, 0))(P_, frozen, U)

        return nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=vmap_axes, implementation=impl)(U1, U2, P)

    return ntk


def nt_model_ntk(model, P, frozen, U1, U2=None, *, implementation: str = "jacobian_contraction"):
    """nt's empirical NTK ``(n1, n2, k, k)`` of a registered model (see :func:`nt_model_ntk_fn`)."""
    return nt_model_ntk_fn(model, implementation=implementation)(P, frozen, U1, U2)


def structured_derivatives_ok(model=None, *, rtol: float = 1e-5) -> tuple[bool, str]:
    """Check nt's STRUCTURED_DERIVATIVES against the project's autodiff NTK on a tiny problem.

    ``model`` defaults to the prefix model.  Returns ``(ok, detail)``; never raises (an exception
    is reported as the detail).  Use it before relying on the experimental shim, and fall back
    to ``jacobian_contraction``.
    """
    from theory.kernels import prefix
    from theory.kernels.models import init_model
    from theory.kernels.ntk_empirical import autodiff_model_ntk

    model = prefix.MODEL if model is None else model
    try:
        dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
        P, frozen = init_model(model, key=jax.random.key(0), m=7, d=3, k=1, sigma=0.5, dtype=dtype)
        U = 0.5 * jax.random.normal(jax.random.key(1), (3, 3), dtype)
        ref = autodiff_model_ntk(model, P, frozen, U)
        got = nt_model_ntk(model, P, frozen, U, implementation="structured_derivatives")
        err = float(jnp.max(jnp.abs(got - ref)) / jnp.max(jnp.abs(ref)))
    except Exception as e:  # noqa: BLE001 - report, never raise
        return False, f"{type(e).__name__}: {e}"
    return err <= rtol, f"max relative error {err:.2e}"
