"""One home per model, shared code once: the facts the tooling reads come from the model objects,
no module spells out a list of model names or imports another module's private names, and the
helpers the experiments share behave as their callers assume."""

from __future__ import annotations

import ast
import dataclasses
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import theory as T
from sims.bench import common as bench_common
from sims.core import checks
from sims.experiments import common
from theory.kernels import exp_sign, prefix, softmax_sign
from theory.scaling import memory_plan
from theory.stats import mean_ci, t_half_width

ROOT = Path(__file__).resolve().parents[1]
SOURCES = sorted(p for top in ("theory", "sims", "figures") for p in (ROOT / top).rglob("*.py"))
sys.path.insert(0, str(ROOT / "tests"))
import compare_results  # noqa: E402


def test_registry_order_and_model_modules():
    assert T.model_names() == ["exp-sign", "softmax-sign", "prefix"]  # spec 2.A, 2.B, 2.C
    assert [T.get_model(n) for n in T.model_names()] == [exp_sign.MODEL, softmax_sign.MODEL, prefix.MODEL]
    for model in map(T.get_model, T.model_names()):
        for name in ("operand_width", "chunk_numbers", "frozen_per_row", "gram_width", "flops_per_row", "row_axes"):
            assert getattr(model, name) is not None, (model.name, name)
        P, frozen = T.init_model(model, key=jax.random.key(0), m=6, d=3, k=model.fixed_k or 2)
        for key, axis in model.row_axes.items():  # the declared per-row entries do have m rows there
            assert getattr(frozen, key).shape[axis] == 6, (model.name, key)
    assert exp_sign.MODEL.fluctuation is T.exp_sign_fluctuation
    assert softmax_sign.MODEL.fluctuation is None and prefix.MODEL.fluctuation is None


def test_sizes_are_read_from_the_model_object():
    """A model that is not registered still gets a memory plan and a flop count from its fields;
    one that declares no sizes is refused, naming it."""
    sized = dataclasses.replace(prefix.MODEL, name="prefix-twice-the-operand",
                                chunk_numbers=lambda k: 2 * (4 + 3 * k), operand_width=lambda k: 2 * (1 + k),
                                flops_per_row=lambda n, d, k: 1.0)
    kw = dict(m=1000, n1=8, d=4, k=2, chunk_size=256)
    base, twice = memory_plan.estimate_ntk_bytes(prefix.MODEL, **kw), memory_plan.estimate_ntk_bytes(sized, **kw)
    assert twice.inputs == base.inputs and twice.working > base.working
    assert bench_common.operand_width(sized, 8, 2) == 2 * bench_common.operand_width(prefix.MODEL, 8, 2) == 48
    assert bench_common.structured_flops(sized, m=10, n=8, d=4, k=2) == 10.0
    bare = dataclasses.replace(prefix.MODEL, name="bare", chunk_numbers=None)
    with pytest.raises(T.InputError, match="'bare'"):
        memory_plan.estimate_ntk_bytes(bare, **kw)


def _model_names_in(node) -> set[str]:
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", [])
    return {e.value for e in items if isinstance(e, ast.Constant) and e.value in T.model_names()}


def test_no_literal_list_of_model_names():
    """Tuples, lists, sets and dict keys naming two or more models are the registry's job."""
    found = []
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Tuple, ast.List, ast.Set, ast.Dict)) and len(_model_names_in(node)) >= 2:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not found, found


def test_the_check_sees_a_literal_list():  # negative control for the test above
    node = ast.parse('MODELS = ("exp-sign", "prefix")').body[0].value
    assert _model_names_in(node) == {"exp-sign", "prefix"}


#: Private imports in files another engineer is rewriting now (the CLI split; the paper-2
#: estimation code): listed so that this test stays honest about them.  Remove a line when
#: its file is fixed (the test then says so).
KNOWN_PRIVATE_IMPORTS: set[str] = set()


def test_no_private_names_imported_from_another_module():
    offenders = set()
    for path in SOURCES:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                if any(a.name.startswith("_") for a in node.names):
                    offenders.add(str(path.relative_to(ROOT)))
    assert offenders - KNOWN_PRIVATE_IMPORTS == set()
    assert KNOWN_PRIVATE_IMPORTS <= offenders, f"fixed, drop from the list: {KNOWN_PRIVATE_IMPORTS - offenders}"


def test_sphere_inputs_and_config_checks():
    U = T.sphere_inputs(key=jax.random.key(3), n=5, d=4, radius=0.5)
    assert U.shape == (5, 4) and U.dtype == jnp.float64
    np.testing.assert_allclose(np.linalg.norm(U, axis=1), 0.5, rtol=1e-14)

    @dataclasses.dataclass(frozen=True)
    class Cfg:
        sigma: float = common.option(1.0, "scale", checks.Interval(gt=0, le=1e3))
        eta: float = common.option(0.0, "step", checks.Interval(ge=0, le=1e3))
        seed: int = common.option(0, "seed", checks.SEED)

    assert dataclasses.fields(Cfg)[0].metadata["help"] == "scale"
    checks.check_ranges(Cfg())
    for bad, field in ((Cfg(sigma=0.0), "sigma"), (Cfg(eta=-1.0), "eta"), (Cfg(seed=-1), "seed")):
        with pytest.raises(T.InputError, match=field):
            checks.check_ranges(bad)
    common.check_choices("model", ("prefix",), T.model_names())
    with pytest.raises(T.InputError, match="model must be among"):
        common.check_choices("model", ("prefix", "nope"), T.model_names())


def test_t_half_width_is_the_t_interval():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    from scipy import stats

    expected = stats.t.ppf(0.975, 3) * x.std(ddof=1) / 2
    assert t_half_width(x) == pytest.approx(expected, rel=1e-15)
    mean, lo, hi = mean_ci(x)
    assert (hi - lo) / 2 == pytest.approx(expected, rel=1e-12) and mean == 3.75
    assert t_half_width(x, level=0.5) < expected  # a narrower level gives a narrower interval
    with pytest.raises(ValueError):
        t_half_width([1.0])


def _write(folder: Path, cid: str, **arrays):
    (folder / "exp" / "cells").mkdir(parents=True, exist_ok=True)
    np.savez(folder / "exp" / "cells" / f"{cid}.npz", __meta__=np.asarray("{}"), **arrays)


def test_compare_results_script(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a, "c1", x=np.array([1.0, np.nan, np.inf]))
    _write(b, "c1", x=np.array([1.0, np.nan, np.inf]))
    assert compare_results.main([str(a), str(b)]) == 0
    assert "max |difference| = 0" in capsys.readouterr().out
    _write(b, "c1", x=np.array([1.0 + 1e-9, np.nan, np.inf]))
    assert compare_results.main([str(a), str(b)]) == 1
    assert compare_results.main([str(a), str(b), "--atol", "1e-8"]) == 0
    _write(b, "c2", x=np.zeros(1))  # a cell only in one folder
    assert compare_results.main([str(a), str(b), "--atol", "1e-8"]) == 1
