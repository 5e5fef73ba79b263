"""Every public function of ``theory`` refuses a missing or mistyped required argument with an
``InputError`` that names it (issue #14).

The cases are generated from ``theory.__all__`` and ``inspect.signature``: for each function,
each required parameter (no default) is replaced in turn by ``None`` (missing), a string, and an
array of the wrong rank (where the valid example is an array), all other arguments staying
valid.  ``EXAMPLES`` holds one valid call per function (checked to succeed by
``test_examples_are_valid``); a new public function without an entry fails
``test_every_public_function_has_an_example``.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory
from theory.validation import InputError

RNG = np.random.default_rng(0)


def _a(*shape):
    return jnp.asarray(RNG.normal(size=shape) / 2)


def _key():
    return jax.random.PRNGKey(0)


def _prefix():
    P, frozen = theory.init_model("prefix", key=_key(), m=6, d=3, k=2)
    return P, frozen


def _H():
    U = _a(4, 3)
    return theory.limit_kernel("prefix", U, sigma=0.5, frozen=_prefix()[1])


def _moe():
    frozen = theory.moe_from_attention(_a(2, 2), _a(2, 2), _a(2, 2), n_tokens=3)
    params = {"b": jnp.zeros(2), "pK": _a(2, 2), "pV": _a(2, 2)}
    return frozen, params


def _summary():
    return theory.prefix_summary(_a(5, 3), _a(3, 3), _a(3, 2), feature="taylor", g=2)


def _summary_majorant():
    return theory.prefix_summary_majorant(_a(5, 3), _a(3, 3), _a(3, 2), feature="taylor", g=2)


# name -> () -> (args, kwargs): one valid, small call
EXAMPLES = {
    "attention_logits": lambda: ((_a(3, 3), _a(4, 3), _a(3, 2), _a(3, 2)), {}),
    "autodiff_model_ntk": lambda: (("prefix", *_prefix(), _a(2, 3)), {}),
    "autodiff_ntk": lambda: ((lambda p, u: jnp.tanh(p @ u)[:2], _a(2, 3), _a(2, 3)), {}),
    "chebyshev_width": lambda: ((1.0,), {"t": 0.1, "delta": 0.1}),
    "max_movement_slope": lambda: (([250, 1000, 4000],), {"sigma": 1.0, "input_norm": 1.0}),
    "default_learning_rate": lambda: ((_H(),), {}),
    "degree_needed": lambda: ((100,), {"c": 1.0, "beta": 1.0}),
    "empirical_ntk": lambda: (("prefix", *_prefix(), _a(2, 3)), {}),
    "exp_sign_fluctuation": lambda: ((_a(3, 2),), {"sigma": 0.5}),
    "fit_least_squares": lambda: ((_a(6, 6), _a(6, 2), _moe()[0]),
                                  {"structure": "nonshared", "L": 2, "key": _key(), "restarts": 1,
                                   "adam_steps": 1, "polish_steps": 1}),
    "feature_map": lambda: ((_a(2, 3),), {"feature": "taylor", "g": 2}),
    "fold_inputs": lambda: ((_a(3, 3), _a(3, 2), _a(3, 2)), {}),
    "get_model": lambda: (("prefix",), {}),
    "init_model": lambda: (("prefix",), {"key": _key(), "m": 4, "d": 3}),
    "kernel_matrix": lambda: ((_H(),), {}),
    "kernel_regression_residuals": lambda: ((_H(), _a(4, 2)), {"eta": 0.1, "steps": [0, 1, 2]}),
    "lambda_min": lambda: ((_H(),), {}),
    "limit_kernel": lambda: (("prefix", _a(4, 3)), {"sigma": 0.5, "frozen": _prefix()[1]}),
    "loss_bound": lambda: ((1.0,), {"eta": 0.1, "lam": 0.5, "steps": [0, 1]}),
    "model_names": lambda: ((), {}),
    "model_outputs": lambda: (("prefix", *_prefix(), _a(2, 3)), {}),
    "moe_from_attention": lambda: ((_a(2, 2), _a(2, 2), _a(2, 2)), {"n_tokens": 3}),
    "moe_regression": lambda: ((_a(4, 6), *_moe()), {"structure": "nonshared"}),
    "monte_carlo_kernel": lambda: (("prefix", _a(2, 3)), {"key": _key(), "m": 4, "sigma": 0.5, "n_samples": 2}),
    "ntk_attention": lambda: ((_a(3, 3), _summary(), _a(3, 3), _a(3, 3), _a(3, 2)), {"feature": "taylor", "g": 2}),
    "ntk_attention_batch": lambda: ((_a(2, 3, 3), _summary(), _a(3, 3), _a(3, 3), _a(3, 2)),
                                    {"feature": "taylor", "g": 2}),
    "ntk_attention_certified": lambda: ((_a(3, 3), _summary_majorant()[0], _a(3, 3), _a(3, 3), _a(3, 2)),
                                        {"feature": "taylor", "g": 2, "majorant": _summary_majorant()[1]}),
    "output_error_bound": lambda: ((0.1, 1.0), {}),
    "prefix_attention": lambda: ((_a(3, 3), _a(4, 3), _a(3, 2), _a(3, 2), _a(3, 2)), {}),
    "prefix_attention_batch": lambda: ((_a(2, 3, 3), _a(4, 3), _a(3, 2), _a(3, 2), _a(3, 2)), {}),
    "prefix_summary": lambda: ((_a(5, 3), _a(3, 3), _a(3, 2)), {"feature": "taylor", "g": 2}),
    "prefix_summary_majorant": lambda: ((_a(5, 3), _a(3, 3), _a(3, 2)), {"feature": "taylor", "g": 2}),
    "register": lambda: ((theory.get_model("prefix"),), {}),
    "sphere_inputs": lambda: ((), {"key": _key(), "n": 3, "d": 2}),
    "structured_ntk": lambda: (("prefix", *_prefix(), _a(2, 3)), {}),
    "taylor_features": lambda: ((_a(2, 3),), {"g": 2}),
    "train_summary": lambda: ((_a(5, 3), _a(3, 3), _a(3, 3), _a(3, 2)),
                              {"key": _key(), "feature": "taylor", "g": 1, "L": 2, "steps": 1}),
    "voronoi_loss": lambda: ((_moe()[1], _moe()[1]), {"structure": "nonshared"}),
    "weight_error": lambda: ((1.0, 3), {}),
}

# (function, parameter) pairs whose valid values have no fixed rank (element-wise or any pytree)
ANY_RANK = {
    ("output_error_bound", "eps"), ("output_error_bound", "spread"), ("autodiff_ntk", "params"),
    ("loss_bound", "loss0"), ("chebyshev_width", "C"), ("weight_error", "beta"), ("degree_needed", "m"),
    ("kernel_regression_residuals", "steps"), ("loss_bound", "steps"), ("weight_error", "g"),
    ("feature_map", "x"), ("taylor_features", "x"),  # (..., d): any rank >= 1
}


def _public_functions():
    return sorted(n for n in theory.__all__ if callable(getattr(theory, n)) and not inspect.isclass(getattr(theory, n)))


def _required(fn):
    sig = inspect.signature(fn)
    return [(i, p) for i, p in enumerate(sig.parameters.values())
            if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _cases():
    for name in _public_functions():
        if name not in EXAMPLES:
            continue
        for _, p in _required(getattr(theory, name)):
            yield name, p.name, "missing"
            yield name, p.name, "string"
            yield name, p.name, "rank"


def test_every_public_function_has_an_example():
    missing = [n for n in _public_functions() if n not in EXAMPLES]
    assert not missing, f"add a valid example call to EXAMPLES for {missing}"
    assert not set(EXAMPLES) - set(_public_functions()), "EXAMPLES lists functions that are not public"


HEAVY = {"fit_least_squares", "train_summary", "monte_carlo_kernel"}  # compile seconds each: slow-marked


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in HEAVY else n
                                  for n in sorted(EXAMPLES)])
def test_examples_are_valid(name):
    args, kwargs = _example(name)
    getattr(theory, name)(*args, **kwargs)


@functools.lru_cache(maxsize=None)
def _example_cached(name):
    args, kwargs = EXAMPLES[name]()
    return tuple(args), tuple(kwargs.items())


def _example(name):
    args, kwargs = _example_cached(name)
    return list(args), dict(kwargs)


def _substitute(name, pname, variant):
    fn = getattr(theory, name)
    args, kwargs = _example(name)
    params = list(inspect.signature(fn).parameters.values())
    pos = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if pname in pos and pos.index(pname) < len(args):
        current = args[pos.index(pname)]
    else:
        current = kwargs[pname]
    if variant == "missing":
        bad = None
    elif variant == "string":
        bad = "not-an-array"
    else:
        if (name, pname) in ANY_RANK or not hasattr(current, "ndim") or np.ndim(current) == 0:
            return None
        bad = jnp.ones((2,) * (np.ndim(current) + 1))
    if pname in pos and pos.index(pname) < len(args):
        args[pos.index(pname)] = bad
    else:
        kwargs[pname] = bad
    return fn, args, kwargs


@pytest.mark.parametrize("name,pname,variant", list(_cases()))
def test_bad_required_argument_raises_input_error(name, pname, variant):
    sub = _substitute(name, pname, variant)
    if sub is None:
        pytest.skip(f"{name}({pname}=...) has no fixed rank")
    fn, args, kwargs = sub
    with pytest.raises(InputError) as info:
        fn(*args, **kwargs)
    assert pname in str(info.value), f"message does not name {pname!r}: {info.value}"


@pytest.mark.parametrize("model", ["prefix", "softmax-sign"])
def test_limit_kernel_without_frozen(model):
    with pytest.raises(InputError, match="frozen"):
        theory.limit_kernel(model, _a(3, 2), sigma=0.5)
    with pytest.raises(InputError, match="frozen"):
        theory.limit_kernel(model, _a(3, 2), sigma=0.5, frozen={})


# ----------------------------------------------------------------------------- hostile values (issue 23)


def _array_args(name):
    """``(parameter name, example value)`` for every real floating array the valid example passes."""
    fn = getattr(theory, name)
    args, kwargs = _example(name)
    pos = [p.name for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    named = list(zip(pos, args)) + list(kwargs.items())
    return [(p, v) for p, v in named if hasattr(v, "dtype") and hasattr(v, "shape") and np.ndim(v) >= 1
            and jnp.issubdtype(v.dtype, jnp.floating)]


def _hostile(value, variant):
    if variant == "complex":
        return jnp.asarray(value) + 0j
    if variant == "nan":
        return jnp.asarray(value).reshape(-1).at[0].set(jnp.nan).reshape(np.shape(value))
    if np.ndim(value) < 2:
        return None
    return jnp.zeros((0,) + tuple(np.shape(value)[1:]), value.dtype)  # empty


def _hostile_cases():
    for name in sorted(EXAMPLES):
        for pname, _ in _array_args(name):
            for variant in ("complex", "nan", "empty"):
                yield pytest.param(name, pname, variant, id=f"{name}-{pname}-{variant}",
                                   marks=[pytest.mark.slow] if name in HEAVY else [])


def _call_with(name, pname, bad):
    fn = getattr(theory, name)
    args, kwargs = _example(name)
    pos = [p.name for p in inspect.signature(fn).parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if pname in pos and pos.index(pname) < len(args):
        args[pos.index(pname)] = bad
    else:
        kwargs[pname] = bad
    return fn(*args, **kwargs)


@pytest.mark.parametrize("name,pname,variant", list(_hostile_cases()))
def test_hostile_array_raises_input_error_naming_it(name, pname, variant):
    value = dict(_array_args(name))[pname]
    bad = _hostile(value, variant)
    if bad is None:
        pytest.skip(f"{name}({pname}=...) is a vector: no empty matrix variant")
    with pytest.raises(InputError) as info:
        _call_with(name, pname, bad)
    assert pname in str(info.value), f"message does not name {pname!r}: {info.value}"


def test_every_function_with_arrays_gets_hostile_cases():
    covered = {c.values[0] for c in _hostile_cases()}
    assert len(covered) >= 25, sorted(set(EXAMPLES) - covered)


@pytest.mark.parametrize("call, arg", [
    (lambda: theory.lambda_min(jnp.zeros((0, 0))), "H"),
    (lambda: theory.lambda_min(jnp.eye(2), jitter=float("nan")), "jitter"),
    (lambda: theory.lambda_min(jnp.eye(2) + 0j), "H"),
    (lambda: theory.limit_kernel("prefix", _a(4, 3), sigma=0.5,
                                 frozen=theory.init_model("prefix", key=_key(), m=6, d=5, k=2)[1]), "frozen.V"),
    (lambda: theory.prefix_attention(_a(3, 5), _a(4, 3), _a(3, 2), _a(3, 2), _a(3, 2)), "X"),
    (lambda: theory.chebyshev_width(1.0, t=0.1, delta=1.5), "delta"),
    (lambda: theory.chebyshev_width(1.0, t=0.1, delta=float("nan")), "delta"),
    (lambda: theory.structured_ntk("prefix", *_prefix(), _a(2, 3) + 0j), "U"),
    (lambda: theory.model_outputs("prefix", *_prefix(), np.array([["a", "b", "c"]])), "U"),
])
def test_library_hostile_cases(call, arg):
    with pytest.raises(InputError) as info:
        call()
    assert arg in str(info.value), str(info.value)


@pytest.mark.parametrize("x, y, kw, arg", [
    ([1.0, 1.0, 1.0], [1.0, 2.0, 3.0], {}, "x"),  # all-equal x: no slope (was a +-3e15 interval)
    ([1.0, 2.0, np.nan], [1.0, 2.0, 3.0], {}, "x"),  # was a NaN slope
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"level": 1.5}, "level"),  # was NaN bounds
    ([1.0, 2.0, 3.0], [1.0, 2.0, 3.0], {"level": float("nan")}, "level"),
    ([1.0, 2.0, 3.0], np.array([1.0, 2.0, 3.0]) + 0j, {}, "y"),  # the imaginary part was dropped
    (np.array([1.0, 2.0, 3.0]) + 1j, [1.0, 2.0, 3.0], {}, "x"),
    (["a", "b"], [1.0, 2.0], {}, "x"),
    ([1.0, 2.0, 3.0], [1.0, 2.0], {}, "need at least two grid points"),
    ([], [], {}, "need at least two grid points"),
])
def test_fit_loglog_slope_refuses_hostile_input(x, y, kw, arg):
    from theory.stats import fit_loglog_slope

    with pytest.raises(InputError) as info:
        fit_loglog_slope(x, y, **kw)
    assert str(info.value).startswith(arg), str(info.value)
    assert fit_loglog_slope([1.0, 2.0, 4.0], [1.0, 0.5, 0.25]).slope == pytest.approx(-1.0)
