"""Ranges of an experiment's config, declared once per field and checked before any work.

Every numeric field of a config (``int``, ``float``, or a ``tuple[int | float, ...]`` sweep)
declares its range as an object, passed to :func:`sims.experiments.common.option`::

    control_lr: float = option(0.01, "Mean-field step.", Interval(gt=0, le=1))
    m: tuple[int, ...] = option((1_000,), "Prefix lengths.", COUNT)
    data_seed: int = option(0, "Seed of the data.", SEED)

:class:`Interval` is a real interval (finite values only, each end open, closed or absent);
:class:`Count` an integer interval (``1e5`` accepted, ``1.5`` refused), with the usual
declarations :data:`COUNT` (``[1, 2^31 - 1]``), :data:`SEED` (``[0, 2^31 - 1]``, the one rule for
every seed), :data:`DRAWS` (``--seeds``: at most :data:`MAX_SEEDS`) and :data:`SCALE` (``(0, 1e3]``).  Both readers use that one
declaration: the config's :func:`check_ranges` (called from its ``__post_init__``, and again by
:func:`check_config` when a config enters the engine) and the CLI (:mod:`sims.cli.options`: the
parser of ``--sigma`` and the interval its help shows).  A numeric field without a declaration,
or with the wrong kind (a :class:`Count` on a float), is a programming error (``TypeError``).

Rules across fields (``steps`` a multiple of ``log_every``, 0 meaning "the default size") stay as
code in ``__post_init__``.  An experiment that needs several distinct values of a sweep to judge
its claims declares ``min_distinct={"m": 2}``, or a ``check(config)`` hook for anything else;
:func:`check_config` runs both, so a sweep that cannot support its own verdict is refused before
it runs.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import types
import typing
from typing import Any

import numpy as np

from theory.validation import INT32_MAX, InputError, check_count, show_number

__all__ = ["Interval", "Count", "REALS", "COUNT", "SEED", "DRAWS", "SCALE", "MAX_SEEDS", "check_float", "is_seed",
           "numeric_type", "field_range", "declared_ranges", "check_ranges", "need_distinct", "check_config"]

#: Most ``--seeds`` (draws per grid point): every cell is listed in memory and writes one file.
MAX_SEEDS = 10_000


@dataclasses.dataclass(frozen=True, kw_only=True)
class Interval:
    """A declared real range: ``gt``/``ge`` the lower end (open/closed), ``lt``/``le`` the upper; None: no end.

    Values must also be finite.  ``Interval()`` is every finite number; an experiment's float
    option declares a finite upper end too (``1e300`` must be refused).

    Raises:
        TypeError: both ends of one side given, an end that is not a finite number, or an empty
            interval (a programming error in a config).
    """

    gt: float | None = None
    ge: float | None = None
    lt: float | None = None
    le: float | None = None

    def __post_init__(self):
        for a, b in (("gt", "ge"), ("lt", "le")):
            if getattr(self, a) is not None and getattr(self, b) is not None:
                raise TypeError(f"{type(self).__name__}: give {a} or {b}, not both")
        for end in ("gt", "ge", "lt", "le"):
            v = getattr(self, end)
            if v is not None and (isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v)):
                raise TypeError(f"{type(self).__name__}: {end} must be a finite number or None, got {v!r}")
        if not (self.low < self.high or (self.low == self.high and self.low_closed and self.high_closed)):
            raise TypeError(f"{type(self).__name__} {self} is empty")

    @property
    def low(self) -> float:
        """The lower end (``-inf`` when there is none)."""
        return self.gt if self.gt is not None else self.ge if self.ge is not None else -math.inf

    @property
    def high(self) -> float:
        """The upper end (``inf`` when there is none)."""
        return self.lt if self.lt is not None else self.le if self.le is not None else math.inf

    @property
    def low_closed(self) -> bool:
        return self.ge is not None

    @property
    def high_closed(self) -> bool:
        return self.le is not None

    def __contains__(self, x: float) -> bool:
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        return bool(above and below)

    def __str__(self) -> str:
        def show(v: float) -> str:
            return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"

        return (f"{'[' if self.low_closed else '('}{show(self.low)}, "
                f"{show(self.high)}{']' if self.high_closed else ')'}")

    def outside(self) -> float:
        """A finite value outside the interval (for tests), or nan when there is none."""
        if self.low > -math.inf:
            return self.low - 1.0 if self.low_closed else self.low
        if self.high < math.inf:
            return self.high + 1.0 if self.high_closed else self.high
        return math.nan

    def parse(self, name: str, value: Any) -> float:
        """``value`` (a number or a numeric string, as the CLI gives it) checked: :func:`check_float`."""
        return check_float(name, value, self)

    def check(self, name: str, value: Any) -> None:
        """Raise :class:`theory.InputError` unless ``value`` (a config's value: a real number, not
        a bool or a string) is finite and inside."""
        if isinstance(value, (bool, np.bool_, str)) or not isinstance(value, numbers.Real):
            raise InputError(f"{name} must be a number, got {show_number(value)}")
        check_float(name, value, self)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Count(Interval):
    """A declared integer range ``[ge, le]`` (default ``[1, 2^31 - 1]``, the sizes JAX holds in an int32).

    Integral floats are accepted (``1e5``), anything else is refused
    (:func:`theory.validation.check_count`).
    """

    ge: int = 1
    le: int = INT32_MAX

    def __post_init__(self):
        if self.gt is not None or self.lt is not None:
            raise TypeError("Count: give ge and le (integer ends), not gt or lt")
        for end in ("ge", "le"):
            v = getattr(self, end)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral):
                raise TypeError(f"Count: {end} must be an integer, got {v!r}")
        super().__post_init__()

    def parse(self, name: str, value: Any) -> int:
        """``value`` as an ``int`` inside ``[ge, le]`` (a number or a numeric string)."""
        return check_count(name, value, minimum=self.ge, maximum=self.le)

    def check(self, name: str, value: Any) -> None:
        if isinstance(value, str):
            raise InputError(f"{name} must be {self._what()}, got {show_number(value)}")
        check_count(name, value, minimum=self.ge, maximum=self.le)

    def _what(self) -> str:
        return f"an integer >= {self.ge} and <= {show_number(self.le)}"


#: Every finite number (what an undeclared float used to mean; experiments declare more).
REALS = Interval()
#: A size or a count: an integer in ``[1, 2^31 - 1]``.
COUNT = Count()
#: A seed: an integer in ``[0, 2^31 - 1]`` (any JAX key accepts it; :func:`theory.validation.check_seed`).
SEED = Count(ge=0)
#: ``seeds``, the draws per grid point: at most :data:`MAX_SEEDS`.
DRAWS = Count(le=MAX_SEEDS)
#: A positive scale (initialisation, norm, noise, jitter, bound): at most 1e3, so that its squares
#: and products stay finite in float32.
SCALE = Interval(gt=0, le=1e3)


def check_float(name: str, value: Any, interval: Interval = REALS) -> float:
    """``value`` as a float, finite and inside ``interval``.

    Args:
        name: how to name the value in the message (``--sigma`` or ``sigma``).
        value: a number or a numeric string.
        interval: the declared range (default: any finite number).

    Returns:
        The float.

    Raises:
        InputError: ``value`` is not a number, not finite, or outside the range.
    """
    try:
        x = float(value)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{name} must be a number, got {show_number(value)}") from None
    if not math.isfinite(x):
        raise InputError(f"{name} must be a finite number, got {show_number(value)}")
    if x not in interval:
        raise InputError(f"{name} must lie in {interval}, got {show_number(x)}")
    return x


def is_seed(name: str) -> bool:
    """Whether a config field is a seed by its name (``seed``, ``data_seed``, ...); it declares :data:`SEED`."""
    return name == "seed" or name.endswith("_seed")


def numeric_type(t: Any) -> type | None:
    """``int`` or ``float`` when the annotation ``t`` is one (or ``Optional``, ``tuple[X, ...]``,
    ``list[X]`` of one), else None.  ``bool`` is not numeric."""
    origin = typing.get_origin(t)
    if origin is typing.Annotated:
        return numeric_type(typing.get_args(t)[0])
    if origin in (typing.Union, types.UnionType, tuple, list):
        args = [a for a in typing.get_args(t) if a is not type(None) and a is not Ellipsis]
        return numeric_type(args[0]) if len(set(args)) == 1 else None
    return t if t in (int, float) else None


def field_range(field: dataclasses.Field, kind: type | None, where: str = "") -> Interval | None:
    """The range a config field declares (``field.metadata["within"]``), checked against its kind.

    Args:
        field: a dataclass field.
        kind: its :func:`numeric_type` (``int``, ``float`` or None for other fields).
        where: how to name the field in an error (default its name).

    Returns:
        The :class:`Interval` (a :class:`Count` for an int), or None for a field that is not numeric.

    Raises:
        TypeError: a numeric field without a declaration, an int without a :class:`Count`, a
            float with one, or a declaration on a field that is not numeric.
    """
    where = where or f"field {field.name!r}"
    within = field.metadata.get("within")
    if kind is None:
        if within is not None:
            raise TypeError(f"{where}: a range is declared but the field is not an int or a float")
        return None
    if not isinstance(within, Interval):
        raise TypeError(f"{where}: a numeric config field declares its range, e.g. "
                        f"option(..., Interval(gt=0, le=1e3)) or option(..., COUNT); got {within!r}")
    if (kind is int) != isinstance(within, Count):
        raise TypeError(f"{where}: an int field declares a Count, a float field an Interval; got {within!r}")
    return within


@functools.cache
def declared_ranges(config_cls: type) -> dict[str, Interval]:
    """``{field name: its declared range}`` for every numeric init field of a config class.

    Raises:
        TypeError: see :func:`field_range`.
    """
    hints = typing.get_type_hints(config_cls)
    out = {}
    for f in dataclasses.fields(config_cls):
        if not f.init:
            continue
        kind = None if f.metadata.get("choices") else numeric_type(hints[f.name])
        within = field_range(f, kind, f"{config_cls.__name__}.{f.name}")
        if within is not None:
            out[f.name] = within
    return out


def check_ranges(config: Any) -> None:
    """Check every numeric field of ``config`` (each value of a sweep) against its declared range.

    The one range check of a config, called from its ``__post_init__`` (before its rules across
    fields) and by :func:`check_config`.

    Raises:
        InputError: the first value out of range, naming its field.
        TypeError: a numeric field without a declaration (:func:`field_range`).
    """
    for name, within in declared_ranges(type(config)).items():
        value = getattr(config, name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            within.check(name, v)


def need_distinct(name: str, values, n: int = 2, *, hint: str = "") -> None:
    """Raise ``InputError`` unless ``values`` holds at least ``n`` distinct values.

    Args:
        name: the sweep's name (``m``).
        values: its values (``1e5`` and ``100000`` count as one).
        n: how many distinct values the claims need.
        hint: how to give more, appended to the message.
    """
    distinct = sorted({float(v) if isinstance(v, (int, float)) else v for v in values})
    if len(distinct) < n:
        shown = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in distinct) or "none"
        raise InputError(f"the claims need >= {n} distinct values of {name} to fit a rate, got {len(distinct)} "
                         f"({shown})" + (f"; {hint}" if hint else ""))


def check_config(exp: Any, config: Any) -> None:
    """Refuse a config the experiment cannot run or judge, before any work.

    Args:
        exp: the :class:`sims.core.experiment.Experiment`.
        config: an instance of ``exp.config``.

    Raises:
        InputError: a value out of its declared range (:func:`check_ranges`: a config whose
            class has no ``__post_init__`` is checked here too), a sweep with fewer distinct
            values than ``exp.min_distinct`` asks, or ``exp.check(config)`` refusing it
            (its ``ValueError`` message is kept).
    """
    check_ranges(config)
    for name, need in (getattr(exp, "min_distinct", None) or {}).items():
        opt = "--" + name.replace("_", "-")
        need_distinct(name, getattr(config, name), need, hint=f"give several different {opt} ({opt} A {opt} B)")
    hook = getattr(exp, "check", None)
    if hook is not None:
        try:
            hook(config)
        except ValueError as e:
            raise InputError(str(e)) from None
