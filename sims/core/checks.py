"""Checks of an experiment's config made once, before any work: finite floats in range, enough sizes.

Every float field of a config (a ``float`` or a ``tuple[float, ...]`` sweep) must be finite and
lie in its declared range, written in interval notation in the field's metadata::

    sigma: float = dataclasses.field(default=1.0, metadata={"help": "...", "range": "(0, inf)"})
    control_lr: float = dataclasses.field(default=0.01, metadata={"help": "...", "range": "(0, 1]"})

A float field without ``"range"`` must only be finite.  An experiment that needs several distinct
values of a sweep to judge its claims declares ``min_distinct={"m": 2}``, or a ``check(config)``
hook for anything else (e.g. a grid built from several fields); both are checked here, so a sweep
that cannot support its own verdict is refused before it runs.

The CLI converts each option with :func:`check_float` (naming the option, ``--sigma``) and
:func:`sims.core.planning.plan` calls :func:`check_config` (naming the field, ``sigma``): one rule,
applied wherever a config enters the engine.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from typing import Any

from theory.validation import INT32_MAX, InputError, check_count, show_number

__all__ = ["Interval", "parse_range", "check_float", "float_fields", "need_distinct", "check_config",
           "MAX_SEEDS", "is_seed", "count_bounds", "count_fields"]

#: Most ``--seeds`` (draws per grid point): every cell is listed in memory and writes one file.
MAX_SEEDS = 10_000

_RANGE = re.compile(r"^\s*([\[(])\s*([^,\s]+)\s*,\s*([^,\s]+)\s*([\])])\s*$")


@dataclasses.dataclass(frozen=True)
class Interval:
    """A real interval; ``low``/``high`` may be infinite, each end open or closed."""

    low: float
    high: float
    low_closed: bool
    high_closed: bool

    def __contains__(self, x: float) -> bool:
        above = x >= self.low if self.low_closed else x > self.low
        below = x <= self.high if self.high_closed else x < self.high
        return above and below

    def __str__(self) -> str:
        def show(v: float) -> str:
            return "inf" if v == math.inf else "-inf" if v == -math.inf else f"{v:g}"

        return f"{'[' if self.low_closed else '('}{show(self.low)}, {show(self.high)}{']' if self.high_closed else ')'}"

    def outside(self) -> float:
        """A finite value outside the interval (for tests), or nan when there is none."""
        if self.low > -math.inf:
            return self.low - 1.0 if self.low_closed else self.low
        if self.high < math.inf:
            return self.high + 1.0 if self.high_closed else self.high
        return math.nan


REALS = Interval(-math.inf, math.inf, False, False)


def parse_range(text: str | None) -> Interval:
    """``"(0, inf)"``, ``"[0, 1]"``, ... as an :class:`Interval`; None is the whole real line.

    Raises:
        ValueError: the text is not an interval (a programming error in a config).
    """
    if text is None:
        return REALS
    match = _RANGE.match(str(text))
    if not match:
        raise ValueError(f"range {text!r} is not an interval such as '(0, inf)' or '[0, 1]'")
    lo, lo_s, hi_s, hi = match.groups()
    low, high = float(lo_s), float(hi_s)
    if not low < high or (lo == "[" and low == -math.inf) or (hi == "]" and high == math.inf):
        raise ValueError(f"range {text!r} is empty or closed at an infinite end")
    return Interval(low, high, lo == "[", hi == "]")


def check_float(name: str, value: Any, range_: Interval | str | None = None) -> float:
    """``value`` as a float, finite and inside ``range_``.

    Args:
        name: how to name the value in the message (``--sigma`` or ``sigma``).
        value: a number or a numeric string.
        range_: an :class:`Interval`, its text, or None (finite only).

    Returns:
        The float.

    Raises:
        InputError: ``value`` is not a number, not finite, or outside the range.
    """
    interval = range_ if isinstance(range_, Interval) else parse_range(range_)
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {show_number(value)}") from None
    if not math.isfinite(x):
        raise InputError(f"{name} must be a finite number, got {show_number(value)}")
    if x not in interval:
        raise InputError(f"{name} must lie in {interval}, got {show_number(x)}")
    return x


def is_seed(name: str) -> bool:
    """Whether a config field is a seed (``seed``, ``data_seed``, ...): one rule, :func:`theory.validation.check_seed`."""
    return name == "seed" or name.endswith("_seed")


def count_bounds(exp: Any, field: dataclasses.Field, *, is_int: bool = False) -> tuple[int, int] | None:
    """``(minimum, maximum)`` of an integer config field, or None when it is not a count or a seed.

    A seed lies in ``[0, 2^31 - 1]``; a count (``exp.count_fields``, ``seeds``, or any field typed
    ``int``/``tuple[int, ...]``: ``is_int``) in ``[metadata["minimum"] (default 1),
    metadata["maximum"]]``, the maximum defaulting to :data:`MAX_SEEDS` for ``seeds`` and to
    ``2^31 - 1`` otherwise (sizes JAX holds in an int32).
    """
    if is_seed(field.name):
        return 0, INT32_MAX
    if is_int or field.name in tuple(getattr(exp, "count_fields", ()) or ()) or field.name == "seeds":
        top = MAX_SEEDS if field.name == "seeds" else INT32_MAX
        return int(field.metadata.get("minimum", 1)), int(field.metadata.get("maximum", top))
    return None


def count_fields(exp: Any) -> list[tuple[str, int, int]]:
    """``[(field name, minimum, maximum)]`` for every count or seed field of ``exp.config``."""
    out = []
    hints = typing.get_type_hints(exp.config)
    for f in dataclasses.fields(exp.config):
        bounds = count_bounds(exp, f, is_int=_is_float_type(hints[f.name], int)) if f.init else None
        if bounds is not None:
            out.append((f.name, *bounds))
    return out


def _is_float_type(t: Any, cls: type = float) -> bool:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        return len(args) == 1 and _is_float_type(args[0], cls)
    if origin in (tuple, list):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        return len(args) == 1 and _is_float_type(args[0], cls)
    return t is cls


def float_fields(config_cls: type) -> list[tuple[str, Interval]]:
    """``[(field name, its range)]`` for every float (or float-sweep) field of a config class."""
    hints = typing.get_type_hints(config_cls)
    return [(f.name, parse_range(f.metadata.get("range")))
            for f in dataclasses.fields(config_cls) if f.init and _is_float_type(hints[f.name])]


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
        InputError: a float field non-finite or out of range, a count or seed out of its
            range (:func:`count_bounds`), a sweep with fewer distinct
            values than ``exp.min_distinct`` asks, or ``exp.check(config)`` refusing it
            (its ``ValueError`` message is kept).
    """
    for name, interval in float_fields(type(config)):
        value = getattr(config, name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            check_float(name, v, interval)
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        bounds = count_bounds(exp, f, is_int=_is_float_type(hints[f.name], int)) if f.init else None
        if bounds is None:
            continue
        value = getattr(config, f.name)
        for v in value if isinstance(value, (tuple, list)) else (value,):
            check_count(f.name, v, minimum=bounds[0], maximum=bounds[1])
    for name, need in (getattr(exp, "min_distinct", None) or {}).items():
        opt = "--" + name.replace("_", "-")
        need_distinct(name, getattr(config, name), need, hint=f"give several different {opt} ({opt} A {opt} B)")
    hook = getattr(exp, "check", None)
    if hook is not None:
        try:
            hook(config)
        except ValueError as e:
            raise InputError(str(e)) from None
