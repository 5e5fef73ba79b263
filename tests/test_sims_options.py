"""Bad input to ``sims run`` is refused before any work, with exit 2 and the option named.

The float options are taken from the experiments' own configs (``sims.experiments.load_all()``), so a
new option is covered as soon as it exists; each must declare its range (``option(..., Interval(...))``).
"""

from __future__ import annotations

import dataclasses
import math

import pytest

import sims.experiments
import sims_toy
from cli_runner import invoke
from sims.cli.options import common_params, reserved_options, specs_of
from sims.core import checks
from sims.core.experiment import Experiment

FLOAT_OPTIONS = [(exp.name, s) for exp in sims.experiments.load_all() for s in specs_of(exp) if s.kind == "float"]


def _bad_values(spec):
    out = [("nan", "finite"), ("inf", "finite"), ("-inf", "finite")]
    x = spec.interval.outside()
    if not math.isnan(x):
        out.append((repr(x), "must lie in"))
    return out


CASES = [(name, s.opt, v, why) for name, s in FLOAT_OPTIONS for v, why in _bad_values(s)]


def test_every_float_option_declares_a_range():
    assert FLOAT_OPTIONS, "no float options found"
    for name, s in FLOAT_OPTIONS:
        assert s.interval is not None and s.interval != checks.REALS, f"{name} {s.opt}: declare its Interval"
        assert math.isfinite(s.interval.high), f"{name} {s.opt}: declare a finite upper bound (1e300 must be refused)"


def test_every_count_option_has_a_finite_range():
    counts = [(exp.name, s) for exp in sims.experiments.load_all() for s in specs_of(exp) if s.kind == "count"]
    assert counts
    for name, s in counts:
        assert s.interval is not None and s.interval.high <= 2**31 - 1, f"{name} {s.opt}"
        default = s.default if not s.sweep else (s.default or (s.interval.low,))
        for v in (default if isinstance(default, tuple) else (default,)):
            assert s.interval.low <= v <= s.interval.high, f"{name} {s.opt}: default {v} outside {s.interval}"


@pytest.mark.parametrize("opt, value, message", [
    ("--seeds", "1e300", "--seeds must be an integer >= 1 and <= 10000, got 1e+300"),
    ("--m", "1" + "0" * 300, "--m must be an integer >= 1 and <= 2.15e+09, got"),
    ("--data-seed", "-1", "--data-seed must be an integer >= 0 and <= 2.15e+09, got -1"),
    ("--sigma", "1e300", "--sigma must lie in (0, 1000], got 1e+300"),
])
def test_huge_values_are_refused_in_one_short_line(tmp_path, opt, value, message):
    r = invoke("run", "kernel", "--out", tmp_path / "out", opt, value)
    assert r.exit_code == 2, r.output
    assert r.output.count("\n") == 1 and message in r.output and len(r.output) < 200, r.output
    assert not (tmp_path / "out").exists()


def test_seeds_follow_one_rule_everywhere():
    from theory.validation import INT32_MAX

    seeds = [(exp.name, s) for exp in sims.experiments.load_all() for s in specs_of(exp) if checks.is_seed(s.field)]
    assert {name for name, _ in seeds} >= {"convergence", "kernel", "lazy-prefix", "ntk-attention-train"}
    for name, s in seeds:
        assert (s.kind, s.interval.low, s.interval.high) == ("count", 0, INT32_MAX), (name, s.opt)


@pytest.mark.parametrize(("experiment", "opt", "value", "why"), CASES, ids=[f"{c[0]}{c[1]}={c[2]}" for c in CASES])
def test_bad_float_option_exit_2_before_any_work(tmp_path, experiment, opt, value, why):
    r = invoke("run", experiment, "--out", tmp_path / "out", f"{opt}={value}")
    assert r.exit_code == 2, r.output
    assert opt in r.output and why in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_a_value_in_range_passes_the_check():
    for name, s in FLOAT_OPTIONS:
        default = s.default if not s.sweep else s.default[0]
        assert s.convert(str(default)) == pytest.approx(default)


def test_library_callers_get_the_same_check(tmp_path):
    import sims.core as engine
    from sims.experiments import kernel
    from theory.validation import InputError

    with pytest.raises(InputError, match="sigma must be a (positive )?finite number"):
        engine.plan(kernel.EXPERIMENT, kernel.KernelConfig(sigma=math.inf), out=tmp_path)
    with pytest.raises(InputError, match="distinct values of m"):
        engine.plan(kernel.EXPERIMENT, kernel.KernelConfig(m=(100, 100)), out=tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("interval, text, inside, outside", [
    (checks.Interval(gt=0), "(0, inf)", [1e-300, 5.0], [0.0, -1.0]),
    (checks.Interval(ge=0, le=1), "[0, 1]", [0.0, 1.0], [-1e-9, 1.5]),
    (checks.Interval(gt=0, le=1), "(0, 1]", [1.0], [0.0]),
    (checks.Interval(ge=1), "[1, inf)", [1.0, 1e300], [0.999]),
    (checks.Count(ge=0, le=60), "[0, 60]", [0, 60], [-1, 61]),
])
def test_intervals(interval, text, inside, outside):
    assert str(interval) == text
    assert all(x in interval for x in inside) and not any(x in interval for x in outside)
    assert interval.outside() not in interval


@pytest.mark.parametrize("declare", [
    lambda: checks.Interval(gt=0, ge=0),  # two lower ends
    lambda: checks.Interval(ge=1, le=0),  # empty
    lambda: checks.Interval(gt=0, lt=0),
    lambda: checks.Interval(le=math.inf),  # "no end" is None
    lambda: checks.Interval(ge=math.nan),
    lambda: checks.Count(gt=0),  # an integer range has closed ends
    lambda: checks.Count(ge=0.5),
])
def test_a_bad_declaration_is_a_programming_error(declare):
    with pytest.raises(TypeError):
        declare()


# ----------------------------------------------------------------------------- sweeps that cannot be judged


@pytest.mark.parametrize("args", [
    ["convergence", "--m", "1e5", "--m", "1e5"],
    ["convergence", "--m", "1e5", "--ladder", "1"],
    ["kernel", "--m", "1000", "--m", "1e3"],
    ["ntk-attention-cost", "--m", "64"],
    ["reparam", "--n-eff", "1e4", "--n-eff", "10000"],
    ["lazy-prefix", "--m", "4", "--m", "16", "--m", "4"],
])
def test_duplicate_sizes_refused_before_running(tmp_path, args):
    r = invoke("run", *args, "--out", tmp_path / "out")
    assert r.exit_code == 2, r.output
    assert "distinct values" in r.output
    assert not (tmp_path / "out").exists()


def test_min_distinct_declared_on_an_experiment(tmp_path, monkeypatch):
    import dataclasses

    from sims.core.experiment import REGISTRY

    monkeypatch.setitem(REGISTRY, "toy", dataclasses.replace(sims_toy.TOY, min_distinct={"x": 2}))
    r = invoke("run", "toy", "--out", tmp_path, "--x", "1", "--x", "1.0", "-q")
    assert r.exit_code == 2 and "distinct values of x" in r.output
    assert invoke("run", "toy", "--out", tmp_path, "--x", "1", "--x", "2", "-q").exit_code == 0


# ----------------------------------------------------------------------------- results folder


def test_unwritable_out_refused_before_any_work(tmp_path):
    sims_toy.CALLS.clear()
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    for out, reason in [("/proc/forbidden", "cannot write there"), (a_file, "is not a folder"),
                        (a_file / "below", "is not a folder")]:
        for extra in ([], ["--dry-run"]):
            r = invoke("run", "toy", "--out", out, *extra)
            if extra and out == "/proc/forbidden":
                continue  # a dry run writes nothing and only checks what it can without writing
            assert r.exit_code == 2, r.output
            assert str(out) in r.output and reason in r.output, r.output
    assert not sims_toy.CALLS


def _experiment_with_field(name: str) -> Experiment:
    """A throwaway experiment whose config has one field ``name`` (not registered)."""
    field = dataclasses.field(default=1, metadata={"within": checks.COUNT})
    config = dataclasses.make_dataclass("Cfg", [(name, int, field)], frozen=True)
    return Experiment(f"clash-{name}", "a clash", config, lambda cfg: [{"seed": 0}], lambda cell, *, key: {},
                      lambda cfg, results: [])


RESERVED_FIELDS = sorted(o[2:].replace("-", "_") for o in reserved_options() if o.startswith("--"))


def test_reserved_options_are_the_run_commands_own():
    """One list, read from the declarations of ``sims run``'s options: the ones added for issue 22
    (--strict, --workers, --scheduler) are in it, as is every option the command itself declares."""
    assert {"--out", "--strict", "--workers", "--scheduler", "--help", "-q"} <= reserved_options()
    declared = {p.name.removeprefix("sims_").replace("_", "-") for p in common_params()}
    assert {f"--{d}" for d in declared} <= reserved_options()


@pytest.mark.parametrize("field", RESERVED_FIELDS)
def test_experiment_declaring_a_reserved_name_is_refused(field):
    with pytest.raises(TypeError, match=f"option --{field.replace('_', '-')} clashes"):
        specs_of(_experiment_with_field(field))


def test_unreserved_field_is_accepted_negative_control():
    assert [s.opt for s in specs_of(_experiment_with_field("workers_per_cell"))] == ["--workers-per-cell"]
