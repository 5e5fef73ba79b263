"""Every numeric config field declares its range once, and both of its readers hold to it.

For each experiment (``sims.experiments.load_all()``) and each int or float field of its config
(a sweep: each value): the field declares an :class:`~sims.core.checks.Interval` (a
:class:`~sims.core.checks.Count` for an int) in ``metadata["within"]``.  A value just outside
each finite end (the next float past an end, or one integer past it) is refused by the config
(``InputError`` naming the field, from its ``__post_init__``) and by the CLI's parser of the option
(``spec.convert``, what ``sims run`` calls); the value just inside (the end itself, or the next float
inside an open end) is accepted by the parser and not refused by the config for its range: the
negative control (a rule across fields may still refuse it, with its own message).  The help of
every option shows its interval.  The end values are read from the declaration; whether a value
is outside is decided here from the ends, not by calling the check under test.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

import sims.experiments
from cli_runner import invoke
from sims.cli.options import specs_of, typer_param
from sims.core import checks
from theory.validation import InputError

EXPERIMENTS = sims.experiments.load_all()
NUMERIC = {int: int, float: float, tuple[int, ...]: int, tuple[float, ...]: float}
OTHER = {bool, str, tuple[str, ...]}


def _numeric_fields():
    for exp in EXPERIMENTS:
        hints = typing.get_type_hints(exp.config)
        for f in dataclasses.fields(exp.config):
            if f.init and hints[f.name] in NUMERIC:
                yield exp, f, NUMERIC[hints[f.name]], hints[f.name] in (tuple[int, ...], tuple[float, ...])


FIELDS = list(_numeric_fields())


def _ends(within: checks.Interval, kind: type):
    """``[(just outside, just inside)]`` for each finite end of the declared range."""
    out = []
    if kind is int:
        out.append((within.ge - 1, within.ge))
        out.append((within.le + 1, within.le))
        return out
    if within.gt is not None:
        out.append((within.gt, math.nextafter(within.gt, math.inf)))
    if within.ge is not None:
        out.append((math.nextafter(within.ge, -math.inf), within.ge))
    if within.lt is not None:
        out.append((within.lt, math.nextafter(within.lt, -math.inf)))
    if within.le is not None:
        out.append((math.nextafter(within.le, math.inf), within.le))
    return out


def _cases():
    for exp, f, kind, sweep in FIELDS:
        within = f.metadata.get("within")
        if not isinstance(within, checks.Interval):
            continue  # test_every_numeric_field_declares_its_range fails for it
        for outside, inside in _ends(within, kind):
            yield pytest.param(exp, f.name, sweep, outside, inside, id=f"{exp.name}.{f.name}={outside!r}")


def _text(x) -> str:
    return repr(x) if isinstance(x, float) else str(x)


def test_every_numeric_field_declares_its_range():
    assert len(FIELDS) > 50, "the walk found too few numeric fields"
    for exp in EXPERIMENTS:
        hints = typing.get_type_hints(exp.config)
        for f in dataclasses.fields(exp.config):
            assert hints[f.name] in NUMERIC or hints[f.name] in OTHER, f"{exp.name}.{f.name}: new field type"
    for exp, f, kind, _ in FIELDS:
        within = f.metadata.get("within")
        where = f"{exp.name}.{f.name}"
        assert isinstance(within, checks.Interval), f"{where}: declare its range (option(..., Interval(...)))"
        assert isinstance(within, checks.Count) == (kind is int), f"{where}: an int declares a Count"
        assert math.isfinite(within.low) and math.isfinite(within.high), f"{where}: declare both ends"
        if checks.is_seed(f.name):
            assert within == checks.SEED, where
        if f.name == "seeds":
            assert within == checks.DRAWS, where


@pytest.mark.parametrize(("exp", "name", "sweep", "outside", "inside"), list(_cases()))
def test_just_outside_is_refused_by_config_and_cli_just_inside_is_not(exp, name, sweep, outside, inside):
    spec = next(s for s in specs_of(exp) if s.field == name)
    assert spec.interval == exp.config.__dataclass_fields__[name].metadata["within"]  # the CLI reads the declaration
    wrap = (lambda v: (v,)) if sweep else (lambda v: v)

    with pytest.raises(InputError, match=f"^{name} must") as info:
        exp.config(**{name: wrap(outside)})
    assert str(spec.interval) in str(info.value) or "an integer >=" in str(info.value), info.value
    with pytest.raises(InputError, match=f"^{spec.opt} must"):
        spec.convert(_text(outside))

    assert spec.convert(_text(inside)) == inside
    try:
        exp.config(**{name: wrap(inside)})
    except ValueError as e:  # a rule across fields; never this field's own range
        assert not str(e).startswith(f"{name} must"), e


def test_help_shows_each_interval():
    for exp in EXPERIMENTS:
        for spec in specs_of(exp):
            if spec.kind in ("count", "float"):
                info = typing.get_args(typer_param(exp, spec).annotation)[1]
                assert f"in {spec.interval}" in info.help, (exp.name, spec.opt, info.help)
    out = invoke("run", "reparam-identifiability", "--help").output
    for shown in ("(in (0, 0.5))", "(count in [16, 2.14748e+09]"):
        assert shown in out, out


def test_an_undeclared_numeric_field_is_refused_negative_control():
    declared = dataclasses.make_dataclass(
        "Declared", [("x", float, dataclasses.field(default=1.0, metadata={"within": checks.Interval(gt=0, le=2)}))],
        frozen=True)
    checks.check_ranges(declared())
    with pytest.raises(InputError, match="x must lie in"):
        checks.check_ranges(declared(x=3.0))
    for meta in ({}, {"within": checks.COUNT}):  # none, or a Count on a float
        bare = dataclasses.make_dataclass("Bare", [("x", float, dataclasses.field(default=1.0, metadata=meta))],
                                          frozen=True)
        with pytest.raises(TypeError, match="Bare.x"):
            checks.check_ranges(bare())
    exp = dataclasses.replace(EXPERIMENTS[0], config=bare)
    with pytest.raises(TypeError, match="field 'x'"):
        specs_of(exp)


def test_config_values_are_numbers_not_text():
    from sims.experiments import kernel

    for bad in ({"sigma": "0.5"}, {"sigma": True}, {"n": "8"}, {"m": (1000, 1.5)}):
        with pytest.raises(InputError, match=next(iter(bad))):
            kernel.KernelConfig(**bad)
