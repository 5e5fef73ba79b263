"""What the experiments share: their config fields, the checks of those fields, their inputs.

- :func:`option`: a config field with its CLI help (``sims run NAME --help`` shows it) and any
  extra metadata the CLI reads (``choices``, ``minimum``; see :mod:`sims.core.experiment`).
- :func:`check_fields`: a config's ``__post_init__`` checks, through the checks of
  :mod:`theory.validation` (positive, non-negative, counts, choices), so that an experiment
  never writes its own "must be > 0"; a bad value raises :class:`theory.InputError` (a
  ``ValueError``: exit 2 from the CLI) naming the field.

A new experiment imports these instead of copying them.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Iterable

import numpy as np

from theory import validation as _v

__all__ = ["option", "check_fields", "check_choices", "cell_dtype"]


def option(default: Any, help: str, **extra: Any):
    """A dataclass field of an experiment config: its default, CLI help and extra metadata.

    Args:
        default: the default value (tuples for repeatable options).
        help: one line shown by ``sims run NAME --help``.
        **extra: more metadata for the CLI, e.g. ``choices=(...)`` or ``minimum=0``.

    Returns:
        A ``dataclasses.field``.
    """
    return dataclasses.field(default=default, metadata={"help": help, **extra})


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


def check_fields(cfg, *, positive: Iterable[str] = (), nonnegative: Iterable[str] = (),
                 counts: Iterable[str] = (), seeds: Iterable[str] = ()) -> None:
    """Check the named fields of ``cfg`` with :mod:`theory.validation`.

    Args:
        cfg: a config dataclass instance.
        positive: fields that must be finite and > 0 (:func:`theory.validation.check_positive`).
        nonnegative: fields that must be finite and >= 0.
        counts: integer fields >= 1 (:func:`theory.validation.check_count`).
        seeds: seed fields (:func:`theory.validation.check_seed`: integers in [0, 2^31 - 1]).

    Raises:
        InputError: the first field that fails, named in the message.
    """
    for name in positive:
        _v.check_positive(name, getattr(cfg, name))
    for name in nonnegative:
        _v.check_nonnegative(name, getattr(cfg, name))
    for name in counts:
        _v.check_count(name, getattr(cfg, name))
    for name in seeds:
        _v.check_seed(name, getattr(cfg, name))
