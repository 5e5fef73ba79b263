"""The contract every simulation follows, and the registry the CLI reads.

An experiment is a set of pure functions; it never writes files (all I/O lives in
:mod:`sims.core.store` and :mod:`sims.core.record`).

- ``config``: a frozen dataclass, every field with a default.  Fields listed in
  ``sweep_fields`` hold a tuple of values; the CLI accepts the option several times.
  A field's ``metadata={"help": ...}`` is shown by ``sims list``.
- ``cells(config) -> list[dict]``: the independent units of work.  Each cell is a flat dict of
  JSON scalars that fully determines its result, including ``"seed"``.  Its stable id (hash of
  the sorted dict) names its result file and derives its PRNG key, so reordered or resumed
  sweeps give identical numbers.
- The runner stamps every cell with ``cell["dtype"]`` (``"float64"`` or ``"float32"``, from
  ``sims run --precision``) before taking its id; compute in that dtype.  ``key`` is
  ``fold_in(key(32-bit hash of the cell id without "dtype"), cell["seed"])`` (see
  :func:`sims.core.planning.cell_key`): both precisions get the same key, but JAX draws different
  numbers from one key in float32 and float64, so the two precisions' results are not draw-for-draw twins.
- ``run(cell, *, key) -> dict[str, array]``: pure and deterministic given ``(cell, key)``.
  Result names are identifiers not starting with ``__``; values are arrays or scalars.
- ``run_batch(cells, *, keys) -> list[dict]`` (optional): the same for a group of cells that
  differ only in their seed, e.g. vmapped over seeds; ``keys`` is a stacked key array of shape
  ``(len(cells),)``.  ``batch_key(cell)`` (JSON-able) groups cells; without it, cells equal up
  to ``"seed"`` are grouped.  Groups may be split to fit memory, and a resumed run may pass a
  smaller group, so each cell's result must not depend on its batch-mates.
- ``verdict(config, results) -> list[VerdictRow]``: ``results`` is a list of
  ``(cell, arrays)`` pairs, one per cell; the rows compare each claim's prediction with the
  measurement, each ``pass``, ``fail`` or ``undecided`` (with the reason and the size that would decide it).
- ``estimate_bytes(cell) -> int`` (optional): peak memory of one cell, for ``--dry-run`` and
  the refusal of runs that do not fit (a batch is estimated as the sum of its cells).
- ``min_distinct`` (e.g. ``{"m": 2}``) and ``check(config)`` (optional): refuse, before any
  work, a sweep that cannot support the verdict (``check`` raises ``ValueError``); float fields
  declare their range once (``option(default, help, Interval(gt=0))``).  See :mod:`sims.core.checks`.
- ``shardable`` (default False): the experiment splits each cell's prefix rows over devices.
  Its ``run``/``run_batch`` then take a keyword ``mesh`` (a one-axis
  :func:`theory.scaling.sharding.device_mesh`, or None for one device; see :mod:`sims.host.devices`), must
  give the same numbers for any mesh up to the order of floating-point sums, and its
  ``estimate_bytes(cell, devices=D)`` gives the peak per device.
- CLI options are generated from ``config``'s fields (``--field-name``): int/float/str/bool
  (bool -> ``--x/--no-x``), ``metadata={"choices": (...)}`` or a ``Literal`` for choices,
  each int and float field parsed and checked against its declared ``Interval``/``Count`` (the
  same declaration the config's ``check_ranges`` reads).  Validate rules across fields in
  ``__post_init__`` (raise ``ValueError``: exit 2).  A field may not take the name of one of ``sims run``'s own
  options (``--out``, ``--workers``, ...: the list is :func:`sims.cli.options.reserved_options`,
  read from the options' declarations); such an experiment is refused when its command is built.
  ``examples`` are shown by ``sims run NAME --help``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping

__all__ = ["STATUSES", "RELATIONS", "Experiment", "VerdictRow", "register", "get", "names", "REGISTRY"]


STATUSES = ("pass", "fail", "undecided")


RELATIONS = ("within", "outside", "<=", ">=", "<", ">")


@dataclasses.dataclass(frozen=True)
class VerdictRow:
    """One claim's verdict, as numbers; its text is written from them by :mod:`sims.cli.render`.

    ``claim`` is the full statement (kept in the manifest, shown by ``sims show RUN --full``);
    ``id`` is a short claim id (``"1"``, ``"4b"``; the runner numbers rows that have none) and
    ``short`` a short name for the table (default: the claim, cut to fit).

    The numbers: ``estimate`` with its interval ``[low, high]`` at confidence ``level`` (a
    deterministic value has ``low == high == estimate`` and no level); the prediction ``target``
    with ``relation`` (one of :data:`RELATIONS`: ``"within"`` means ``|estimate - target| <= tol``)
    and ``tol``; ``tol_why`` says why the tolerance or level is what it is; ``quantity`` what the
    estimate is.  ``controls`` links a claim to the ids of its negative-control rows (on a control
    row, ``is_control`` is set and ``controls`` names the claim it controls); ``cells`` are the ids of
    the cells it was computed from; ``n_needed`` the size that would decide an undecided row.

    ``status`` is ``"pass"``, ``"fail"`` or ``"undecided"`` (the data at this size cannot decide
    the claim; ``detail`` then says why and what size would decide it).  Left empty it is
    derived from ``passed``; an undecided row has ``passed=False``.  A run fails only on a
    ``"fail"`` row (see :attr:`failed`).  A control row's ``pass`` means the control was caught.

    ``predicted`` and ``measured`` may be left empty when the numbers are given; they remain for
    rows whose prediction is not a number (they are then the text shown).
    """

    claim: str
    predicted: str = ""
    measured: str = ""
    passed: bool = False
    detail: str = ""
    status: str = ""
    id: str = ""
    short: str = ""
    estimate: float | None = None
    low: float | None = None
    high: float | None = None
    level: float | None = None
    target: float | None = None
    tol: float | None = None
    relation: str = ""
    quantity: str = ""
    tol_why: str = ""
    controls: tuple[str, ...] = ()
    is_control: bool = False
    cells: tuple[str, ...] = ()
    n_needed: float | None = None

    def __post_init__(self):
        status = self.status or ("pass" if self.passed else "fail")
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        if (status == "pass") != bool(self.passed):
            raise ValueError(f"status {status!r} contradicts passed={self.passed!r}")
        if self.relation and self.relation not in RELATIONS:
            raise ValueError(f"relation must be one of {RELATIONS}, got {self.relation!r}")
        object.__setattr__(self, "status", status)
        for name in ("cells", "controls"):
            v = getattr(self, name)
            if isinstance(v, str):  # tuple("c1") would split it into characters
                raise TypeError(f"{name} must be a tuple of ids, got the string {v!r}")
            object.__setattr__(self, name, tuple(str(c) for c in v))
        for name in ("estimate", "low", "high", "level", "target", "tol", "n_needed"):
            v = getattr(self, name)
            if v is not None:
                object.__setattr__(self, name, float(v))

    @classmethod
    def undecided(cls, claim: str, predicted: str, measured: str, reason: str, **numbers) -> "VerdictRow":
        """A claim the data cannot decide at this size; ``reason`` says why and what would decide it."""
        return cls(claim, predicted, measured, False, detail=reason, status="undecided", **numbers)

    @property
    def failed(self) -> bool:
        return self.status == "fail"

    def as_dict(self) -> dict[str, Any]:
        """The row as JSON-able data (``cells`` and ``controls`` as lists), as the manifest stores it."""
        d = dataclasses.asdict(self)
        d["cells"] = list(self.cells)
        d["controls"] = list(self.controls)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "VerdictRow":
        """The row stored by :meth:`as_dict` (unknown keys, from a newer version, are ignored).

        Manifests written before ``controls`` hold ``control``, one string of comma-separated ids;
        it is read as ``controls``.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["cells"] = tuple(kw.get("cells") or ())
        if "controls" not in d:
            kw["controls"] = tuple(c.strip() for c in str(d.get("control") or "").split(",") if c.strip())
        kw["controls"] = tuple(kw.get("controls") or ())
        kw.setdefault("passed", kw.get("status") == "pass")
        return cls(**kw)


@dataclasses.dataclass(frozen=True)
class Experiment:
    """An experiment: its config, cells, pure ``run(cell, *, key)``, verdict and sizing hooks (the contract above)."""

    name: str
    summary: str
    config: type
    cells: Callable[[Any], list[dict]]
    run: Callable[..., dict]
    verdict: Callable[[Any, list], list[VerdictRow]]
    sweep_fields: tuple[str, ...] = ()
    run_batch: Callable[..., list] | None = None
    batch_key: Callable[[dict], Any] | None = None
    estimate_bytes: Callable[..., int] | None = None
    shardable: bool = False
    examples: tuple[str, ...] = ()
    min_distinct: Mapping[str, int] = dataclasses.field(default_factory=dict)
    check: Callable[[Any], None] | None = None


REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` to :data:`REGISTRY` under its name and return it; a second, different one of that name raises ``ValueError``."""
    if exp.name in REGISTRY and REGISTRY[exp.name] is not exp:
        raise ValueError(f"experiment {exp.name!r} registered twice")
    REGISTRY[exp.name] = exp
    return exp


def get(name: str) -> Experiment:
    """The registered experiment ``name`` (``sims.experiments.get`` first imports the project's own).

    Raises:
        KeyError: no experiment of that name is registered.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown experiment {name!r}; known: {', '.join(sorted(REGISTRY))}") from None


def names() -> list[str]:
    """The names of the registered experiments, sorted."""
    return sorted(REGISTRY)
