"""What the experiments share: their config fields, the checks of those fields, their inputs.

- :func:`option`: a config field with its CLI help (``sims run NAME --help`` shows it), its
  declared range (a :class:`sims.core.checks.Interval` or :class:`~sims.core.checks.Count`: the
  one declaration the config's ``__post_init__``, through :func:`sims.core.checks.check_ranges`,
  and the CLI both read) and any extra metadata the CLI reads (``choices``).
- :func:`check_choices`: a sweep of names drawn from a list; a bad value raises
  :class:`theory.InputError` (a ``ValueError``: exit 2 from the CLI) naming the field.

A new experiment imports these instead of copying them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from sims.core.checks import Interval
from theory import validation as _v

__all__ = ["option", "check_choices", "cell_dtype"]


def option(default: Any, help: str, within: Interval | None = None, **extra: Any):
    """A dataclass field of an experiment config: its default, CLI help, range and extra metadata.

    Args:
        default: the default value (tuples for repeatable options).
        help: one line shown by ``sims run NAME --help``.
        within: the range of an int or float field (of each value of a sweep): an
            :class:`~sims.core.checks.Interval` for a float, a :class:`~sims.core.checks.Count`
            (``COUNT``, ``SEED``, ``DRAWS``, ``Count(ge=0)``) for an int; required for those,
            absent for the others.
        **extra: more metadata for the CLI, e.g. ``choices=(...)``.

    Returns:
        A ``dataclasses.field`` (the range is ``metadata["within"]``).
    """
    meta = {"help": help, **extra}
    if within is not None:
        meta["within"] = within
    return dataclasses.field(default=default, metadata=meta)


def cell_dtype(cell: dict) -> np.dtype:
    """The dtype a cell computes in: its ``"dtype"`` entry (the run's precision), float64 when absent.

    Memory estimates count ``cell_dtype(cell).itemsize`` bytes per number (4 in float32).
    """
    return np.dtype(cell.get("dtype", "float64"))


def check_choices(name: str, values: Iterable[Any], allowed: Iterable[Any]) -> None:
    """Raise :class:`theory.InputError` unless every one of ``values`` is in ``allowed``."""
    allowed = tuple(allowed)
    bad = [v for v in values if v not in allowed]
    if bad:
        raise _v.InputError(f"{name} must be among {allowed}, got {bad}")
