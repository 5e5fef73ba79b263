"""Options of ``sims run NAME``, generated from an experiment's config dataclass.

Each config field becomes one option: str fields with ``metadata["choices"]`` or a ``Literal``
list their choices, bools become ``--x/--no-x``, fields in ``sweep_fields`` may be repeated.  An
int or float field reads the range its field declares (:mod:`sims.core.checks`: one declaration,
which the config checks too): a :class:`~sims.core.checks.Count` parses ``1e5`` and refuses
``1.5``, an :class:`~sims.core.checks.Interval` refuses a non-finite value or one outside it, and
the help shows the interval.  Every check runs before JAX compiles anything.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import inspect
import types
import typing
from typing import Annotated, Any, Callable, Optional

import typer
from rich.markup import escape

from sims.core import checks
from sims.core import experiment as registry


__all__ = ["Precision", "Spec", "specs_of", "show_value", "typer_param", "common_params", "reserved_options",
           "examples", "epilog"]


class Precision(str, enum.Enum):
    """The ``--precision`` choices: float64 or float32."""

    float64 = "float64"
    float32 = "float32"


@dataclasses.dataclass
class Spec:
    """One command-line option read from an experiment's config field: its name, parser, kind, default and help."""

    field: str
    param: str
    opt: str
    convert: Callable[[Any], Any]
    kind: str  # "count", "float", "str", "bool", "choice"
    sweep: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None
    interval: checks.Interval | None = None  # count and float options: the field's declared range


def _unwrap_optional(t: Any) -> Any:
    origin = typing.get_origin(t)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(t) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return t


def _element_type(t: Any, sweep: bool, where: str) -> Any:
    t = _unwrap_optional(t)
    if typing.get_origin(t) is Annotated:
        t = typing.get_args(t)[0]
    if sweep:
        origin = typing.get_origin(t)
        if origin not in (tuple, list):
            raise TypeError(f"{where}: a sweep field must be typed tuple[X, ...], got {t!r}")
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        if len(set(args)) != 1:
            raise TypeError(f"{where}: a sweep field must be typed tuple[X, ...], got {t!r}")
        t = _unwrap_optional(args[0])
    return t


def specs_of(exp: registry.Experiment) -> list[Spec]:
    """The :class:`Spec` of each init field of ``exp``'s config, in field order."""
    cls = exp.config
    hints = typing.get_type_hints(cls, include_extras=True)
    specs = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        where = f"experiment {exp.name!r}, field {f.name!r}"
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            raise TypeError(f"{where}: every config field needs a default")
        sweep = f.name in exp.sweep_fields
        t = _element_type(hints[f.name], sweep, where)
        choices = f.metadata.get("choices")
        if typing.get_origin(t) is typing.Literal:
            choices = choices or typing.get_args(t)
            t = type(choices[0])
        opt = "--" + f.name.replace("_", "-")
        if opt in reserved_options():
            raise TypeError(f"{where}: option {opt} clashes with a common option of `sims run` (reserved: "
                            f"{', '.join(sorted(reserved_options()))})")
        help_ = str(f.metadata.get("help", ""))
        interval = checks.field_range(f, t if t in (int, float) and not choices else None, where)
        if interval is not None:
            kind = "count" if t is int else "float"
            convert = (lambda opt, interval: lambda v: interval.parse(opt, v))(opt, interval)
        elif choices:
            kind = "choice"
            convert = (lambda t: lambda v: t(v.value if isinstance(v, enum.Enum) else v))(t)
        elif t is bool:
            kind, convert = "bool", bool
        elif t is str:
            kind, convert = "str", str
        else:
            raise TypeError(f"{where}: unsupported option type {t!r} (int, float, str, bool or Literal)")
        choices = tuple(str(c) for c in choices) if choices else None
        specs.append(Spec(f.name, f"cfg_{f.name}", opt, convert, kind, sweep, default, help_, choices, interval))
    return specs


def show_value(v: Any) -> str:
    """A default as the help text shows it: sequences space-separated, large round floats as ``1e+05``."""
    if isinstance(v, (tuple, list)):
        return " ".join(show_value(x) for x in v) if v else "(none)"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1e5:
        return f"{v:.0e}"
    return str(v)


_METAVARS = {"count": "COUNT", "float": "FLOAT", "str": "TEXT"}


def typer_param(exp: registry.Experiment, spec: Spec) -> inspect.Parameter:
    """The typer parameter of one option (type, choices, repeatable when it sweeps, help with its range)."""
    kinds: dict[str, Any] = {"count": str, "float": float, "str": str, "bool": bool}
    if spec.kind == "choice":
        base: Any = enum.Enum(f"{exp.name}_{spec.field}", [(c, c) for c in spec.choices or ()], type=str)
    else:
        base = kinds[spec.kind]
    help_ = spec.help
    if spec.kind == "count":
        help_ += f" [dim](count in {spec.interval}: 1e5 and 100000 both work)[/dim]"
    elif spec.interval is not None and spec.interval != checks.REALS:
        help_ += f" [dim](in {spec.interval})[/dim]"
    if spec.sweep:
        help_ += f" [dim]Repeat to sweep: {spec.opt} A {spec.opt} B.[/dim]"
    default = spec.default
    if spec.kind == "count":
        default = [str(v) for v in default] if spec.sweep else str(default)
    elif spec.kind == "choice":
        default = [str(v) for v in default] if spec.sweep else str(default)
    elif spec.sweep:
        default = list(default)
    annotation = list[base] if spec.sweep else base  # type: ignore[valid-type]
    decls = [spec.opt] if spec.kind != "bool" or spec.sweep else [f"{spec.opt}/--no-{spec.opt[2:]}"]
    option = typer.Option(
        *decls,
        help=help_.strip(),
        show_default=True,
        metavar=_METAVARS.get(spec.kind),
        rich_help_panel=f"{exp.name} options",
    )
    return _param(spec.param, default, annotation, option)


def _param(name: str, default: Any, annotation: Any, option: Any) -> inspect.Parameter:
    kind = inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind, default=default, annotation=Annotated[annotation, option])


@functools.cache
def reserved_options() -> frozenset[str]:
    """The option names ``sims run`` declares itself (:func:`common_params`, and ``--help``), read
    from their declarations: a config field whose ``--field-name`` is one of them is refused
    (:func:`specs_of`, when the command is built)."""
    names = {"--help"}
    for p in common_params():
        info = typing.get_args(p.annotation)[1]
        for decl in (info.default, *info.param_decls):
            if isinstance(decl, str) and decl.startswith("-"):
                names.update(decl.split("/"))
    return frozenset(names)


def common_params() -> list[inspect.Parameter]:
    """The options every ``sims run`` command shares (--out, --precision, --dry-run, --devices, ...)."""
    def opt(*decls: str, help: str) -> Any:
        return typer.Option(*decls, help=help, rich_help_panel="Run options")

    return [
        _param("sims_out", "results", str, typer.Option(
            "--out", metavar="DIR", rich_help_panel="Run options",
            help="Results folder: OUT/<experiment>/cells and OUT/<experiment>/runs.")),
        _param("sims_precision", Precision.float64, Precision, opt(
            "--precision", help="Working dtype (float64 turns on jax_enable_x64).")),
        _param("sims_dry_run", False, bool, opt(
            "--dry-run", help="Print the plan (cells, stored or not, memory); write nothing. Exit 3: no fit.")),
        _param("sims_force", False, bool, opt(
            "--force", help="Recompute cells that are already stored (overwriting them).")),
        _param("sims_devices", None, Optional[str], opt(
            "--devices", help="Local devices that split each cell's prefix rows (experiments that shard; "
            "default all of them, else 1). Same numbers for any count.")),
        _param("sims_compile_cache", None, Optional[str], typer.Option(
            "--compile-cache", metavar="DIR|off", rich_help_panel="Run options", help="Folder of JAX's persistent compilation cache, or 'off' (default: "
            "$PREFIX_NTK_COMPILE_CACHE, else ~/.cache/prefix-ntk/jax).")),
        _param("sims_quiet", False, bool, opt(
            "--quiet", "-q", help="No progress bar or plan; only the verdict table and errors.")),
        _param("sims_debug", False, bool, opt(
            "--debug", help="On an error while writing results, also print the traceback.")),
        _param("sims_strict", False, bool, opt(
            "--strict", help="Stop (exit 4) on a damaged stored cell instead of recomputing it.")),
        _param("sims_workers", None, Optional[int], opt(
            "--workers", help="Run the cells on a local Dask cluster of this many worker processes "
            "(needs the 'distributed' extra). Same numbers as one process.")),
        _param("sims_scheduler", None, Optional[str], typer.Option(
            "--scheduler", metavar="tcp://HOST:PORT", rich_help_panel="Run options",
            help="Run the cells on an existing Dask cluster (default $DASK_SCHEDULER_ADDRESS if --workers "
            "is not given; 'none' to ignore it).")),
    ]


def examples(exp: registry.Experiment, specs: list[Spec]) -> list[str]:
    """Example command lines for ``exp``: its own, a dry run, a sweep of its first swept option, float32."""
    ex = list(exp.examples)
    ex.append(f"sims run {exp.name} --dry-run")
    sweep = next((s for s in specs if s.sweep and s.kind in ("count", "float")), None)
    if sweep is not None and not any("--" in e and sweep.opt in e for e in exp.examples):
        vals = [v for v in sweep.default][:2] or [1, 2]
        ex.append(f"sims run {exp.name} " + " ".join(f"{sweep.opt} {show_value(v)}" for v in vals))
    ex.append(f"sims run {exp.name} --precision float32 --out /tmp/results --quiet")
    return ex


def epilog(lines: list[str]) -> str:
    """The help epilog listing ``lines`` as examples (rich markup)."""
    return "[bold]Examples[/bold]\n" + "\n".join(f"  $ {escape(e)}" for e in lines)
