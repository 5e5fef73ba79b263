"""The ``sims`` command line: run experiments, list them, show stored runs.

Every registered experiment (see :mod:`sims.experiment`) gets its own ``sims run <name>``
command, whose options are generated from its config dataclass, so a new experiment needs no
change here.  Other modules add command groups (``sims bench``, ``sims figures``) through
:func:`register_subcommand`; see ``SUBCOMMAND_MODULES``.

Exit codes: 0 all claims passed, 1 some claim failed, 2 bad usage or input, 3 would not fit in
memory, 4 an experiment crashed, 130 interrupted (Ctrl-C or SIGTERM; rerun to resume).
"""

from __future__ import annotations

import dataclasses
import enum
import importlib
import inspect
import json
import signal
import sys
import threading
import traceback
import types
import typing
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sims import experiment as registry
from theory.validation import InputError, check_count

__all__ = [
    "EXIT_OK",
    "EXIT_FAILED",
    "EXIT_USAGE",
    "EXIT_MEMORY",
    "EXIT_CRASH",
    "EXIT_INTERRUPTED",
    "SUBCOMMANDS",
    "SUBCOMMAND_MODULES",
    "register_subcommand",
    "build_app",
    "main",
    "verdict_table",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MEMORY, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

# ----------------------------------------------------------------------------- extension hook

#: Extra command groups: name -> (factory returning a ``typer.Typer``, one-line help).
SUBCOMMANDS: dict[str, tuple[Callable[[], typer.Typer], str]] = {}

#: Modules imported by :func:`build_app` (when they exist) so they can call
#: :func:`register_subcommand` at import; a module that is not there is skipped silently.
SUBCOMMAND_MODULES: list[str] = ["sims.bench", "sims.bench_ntk", "figures.cli"]


def register_subcommand(name: str, factory: Callable[[], typer.Typer], help: str = "") -> None:
    """Add ``sims <name> ...``: ``factory()`` returns the ``typer.Typer`` holding its commands.

    Example, in ``sims/bench.py``::

        from sims.cli import register_subcommand

        def _app() -> typer.Typer:
            app = typer.Typer(help="Time the kernels.")
            @app.command()
            def kernels(n: int = 100): ...
            return app

        register_subcommand("bench", _app, "Benchmarks.")
    """
    if name in _BUILTIN or (name in SUBCOMMANDS and SUBCOMMANDS[name][0] is not factory):
        raise ValueError(f"sims subcommand {name!r} already exists")
    SUBCOMMANDS[name] = (factory, help)


_BUILTIN = ("run", "list", "show")


def _load_subcommand_modules() -> None:
    for mod in SUBCOMMAND_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            parts = mod.split(".")
            if e.name not in {".".join(parts[: i + 1]) for i in range(len(parts))}:
                raise


# ----------------------------------------------------------------------------- options from configs

_COMMON = {"--out", "--precision", "--dry-run", "--quiet", "--force", "--help", "-q"}


class Precision(str, enum.Enum):
    float64 = "float64"
    float32 = "float32"


@dataclasses.dataclass
class _Spec:
    field: str
    param: str
    opt: str
    convert: Callable[[Any], Any]
    kind: str  # "count", "int", "float", "str", "bool", "choice"
    sweep: bool
    default: Any
    help: str
    choices: tuple[str, ...] | None = None


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


def _specs(exp: registry.Experiment) -> list[_Spec]:
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
        count = f.name in exp.count_fields or f.name == "seeds"
        t = _element_type(hints[f.name], sweep, where)
        choices = f.metadata.get("choices")
        if typing.get_origin(t) is typing.Literal:
            choices = choices or typing.get_args(t)
            t = type(choices[0])
        opt = "--" + f.name.replace("_", "-")
        if opt in _COMMON:
            raise TypeError(f"{where}: option {opt} clashes with a common option of `sims run`")
        help_ = str(f.metadata.get("help", ""))
        minimum = int(f.metadata.get("minimum", 1))
        if count:
            kind = "count"
            convert = (lambda opt, minimum: lambda v: check_count(opt, v, minimum=minimum))(opt, minimum)
        elif choices:
            kind = "choice"
            convert = (lambda t: lambda v: t(v.value if isinstance(v, enum.Enum) else v))(t)
        elif t is bool:
            kind, convert = "bool", bool
        elif t is int:
            kind, convert = "int", int
        elif t is float:
            kind, convert = "float", float
        elif t is str:
            kind, convert = "str", str
        else:
            raise TypeError(f"{where}: unsupported option type {t!r} (int, float, str, bool or Literal)")
        choices = tuple(str(c) for c in choices) if choices else None
        specs.append(_Spec(f.name, f"cfg_{f.name}", opt, convert, kind, sweep, default, help_, choices))
    return specs


def _show(v: Any) -> str:
    if isinstance(v, (tuple, list)):
        return " ".join(_show(x) for x in v) if v else "(none)"
    if isinstance(v, float) and v.is_integer() and abs(v) >= 1e5:
        return f"{v:.0e}"
    return str(v)


_METAVARS = {"count": "COUNT", "int": "INT", "float": "FLOAT", "str": "TEXT"}


def _typer_param(exp: registry.Experiment, spec: _Spec) -> inspect.Parameter:
    kinds: dict[str, Any] = {"count": str, "int": int, "float": float, "str": str, "bool": bool}
    if spec.kind == "choice":
        base: Any = enum.Enum(f"{exp.name}_{spec.field}", [(c, c) for c in spec.choices or ()], type=str)
    else:
        base = kinds[spec.kind]
    help_ = spec.help
    if spec.kind == "count":
        help_ += " [dim](count: 1e5 and 100000 both work)[/dim]"
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


def _common_params() -> list[inspect.Parameter]:
    def opt(*decls: str, help: str) -> Any:
        return typer.Option(*decls, help=help, rich_help_panel="Run options")

    return [
        _param("sims_out", Path("results"), Path, opt(
            "--out", help="Results folder: OUT/<experiment>/cells and OUT/<experiment>/runs.")),
        _param("sims_precision", Precision.float64, Precision, opt(
            "--precision", help="Working dtype (float64 turns on jax_enable_x64).")),
        _param("sims_dry_run", False, bool, opt(
            "--dry-run", help="Print the plan (cells, stored or not, memory); write nothing. Exit 3: no fit.")),
        _param("sims_force", False, bool, opt(
            "--force", help="Recompute cells that are already stored (overwriting them).")),
        _param("sims_quiet", False, bool, opt(
            "--quiet", "-q", help="No progress bar or plan; only the verdict table and errors.")),
    ]


def _examples(exp: registry.Experiment, specs: list[_Spec]) -> list[str]:
    ex = list(exp.examples)
    ex.append(f"sims run {exp.name} --dry-run")
    sweep = next((s for s in specs if s.sweep and s.kind in ("count", "int", "float")), None)
    if sweep is not None and not any("--" in e and sweep.opt in e for e in exp.examples):
        vals = [v for v in sweep.default][:2] or [1, 2]
        ex.append(f"sims run {exp.name} " + " ".join(f"{sweep.opt} {_show(v)}" for v in vals))
    ex.append(f"sims run {exp.name} --precision float32 --out /tmp/results --quiet")
    return ex


def _epilog(lines: list[str]) -> str:
    return "[bold]Examples[/bold]\n" + "\n".join(f"  $ {escape(e)}" for e in lines)


def _make_run_command(exp: registry.Experiment) -> Callable[..., Any]:
    specs = _specs(exp)

    def command(**kwargs: Any) -> None:
        _execute(exp, specs, kwargs)

    params = [_typer_param(exp, s) for s in specs] + _common_params()
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"run_{exp.name}"
    command.__doc__ = exp.summary
    command.__sims_examples__ = _examples(exp, specs)  # type: ignore[attr-defined]
    return command


# ----------------------------------------------------------------------------- running


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def _fail(message: str, code: int) -> typer.Exit:
    _err().print(f"[bold red]error:[/bold red] {escape(message)}")
    return typer.Exit(code)


def verdict_table(rows: list[dict] | list[Any], title: str = "verdict") -> Table:
    table = Table(title=title, show_lines=False)
    for col in ("claim", "predicted", "measured", "result", "detail"):
        table.add_column(col, overflow="fold")
    for r in rows:
        d = r if isinstance(r, dict) else r.as_dict()
        ok = bool(d.get("passed"))
        table.add_row(
            escape(str(d.get("claim", ""))),
            escape(str(d.get("predicted", ""))),
            escape(str(d.get("measured", ""))),
            "[green]PASS[/green]" if ok else "[bold red]FAIL[/bold red]",
            escape(str(d.get("detail", ""))),
        )
    return table


def _print_plan(console: Console, p: Any, *, full: bool) -> None:
    from sims.runner import format_bytes

    n, pending = len(p.cells), len(p.pending)
    console.print(
        f"[bold]{p.experiment}[/bold]: {n} cell(s), {n - pending} stored, {pending} to run "
        f"({len(p.batches)} call(s)); precision {p.precision}; run id {p.run_id}; out {p.out}"
    )
    if not pending:
        console.print("memory: nothing to run")
    elif p.peak_bytes is None:
        avail = f"{format_bytes(p.available)} ({p.available_where})"
        console.print(f"memory: no estimate from {p.experiment}; available {avail}")
    else:
        console.print(
            f"memory: peak estimate {format_bytes(p.peak_bytes)} (largest call), "
            f"available {format_bytes(p.available)} ({p.available_where})"
        )
    if not full:
        return
    table = Table(title="cells")
    for col in ("cell id", "cell", "status", "memory"):
        table.add_column(col, overflow="fold")
    limit = 200
    for pc in p.cells[:limit]:
        cell = " ".join(f"{k}={v}" for k, v in pc.cell.items() if k != "dtype")
        table.add_row(pc.cell_id, escape(cell), "stored" if pc.done else "to run", format_bytes(pc.est_bytes))
    console.print(table)
    if n > limit:
        console.print(f"... and {n - limit} more cell(s)")
    if not p.fits:
        console.print(f"[bold red]would not fit:[/bold red] {escape(p.message)}")


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _execute(exp: registry.Experiment, specs: list[_Spec], kw: dict[str, Any]) -> None:
    import jax

    from sims import runner

    precision = kw["sims_precision"].value
    prev_x64 = bool(jax.config.jax_enable_x64)
    jax.config.update("jax_enable_x64", precision == "float64")  # before any array exists
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        _execute_inner(exp, specs, kw, precision, runner)
    finally:
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
        jax.config.update("jax_enable_x64", prev_x64)


def _execute_inner(exp, specs, kw, precision, runner) -> None:  # noqa: ANN001
    values = {}
    for s in specs:
        raw = kw[s.param]
        try:
            values[s.field] = tuple(s.convert(v) for v in raw) if s.sweep else s.convert(raw)
        except (InputError, ValueError, TypeError) as e:
            raise typer.BadParameter(str(e), param_hint=s.opt) from None
    out, quiet = kw["sims_out"], kw["sims_quiet"]
    console = Console(highlight=False)
    try:
        config = exp.config(**values)
    except (InputError, TypeError, ValueError) as e:
        raise _fail(f"bad {exp.name} config: {e}", EXIT_USAGE) from None
    try:
        if kw["sims_dry_run"]:
            p = runner.plan(exp, config, out=out, precision=precision, force=kw["sims_force"])
            _print_plan(console, p, full=True)
            raise typer.Exit(EXIT_OK if p.fits else EXIT_MEMORY)
        on_plan = None if quiet else (lambda p: _print_plan(_err(), p, full=False))
        res = runner.run(
            exp, config, out=out, precision=precision, force=kw["sims_force"],
            progress=not quiet, console=_err(), on_plan=on_plan,
        )
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        msg = "interrupted; finished cells are saved, rerun the same command to resume"
        raise _fail(msg, EXIT_INTERRUPTED) from None
    except runner.WouldNotFit as e:
        raise _fail(f"would not fit in memory: {e}", EXIT_MEMORY) from None
    except InputError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    except Exception as e:  # noqa: BLE001
        _err().print(escape("".join(traceback.format_exception(e))))
        raise _fail(f"{exp.name} crashed: {type(e).__name__}: {e}", EXIT_CRASH) from None

    console.print(verdict_table(res.rows, title=f"{exp.name} verdict (run {res.run_id})"))
    n_fail = sum(not r.passed for r in res.rows)
    if not quiet:
        console.print(
            f"{len(res.computed)} cell(s) computed, {len(res.reused)} reused; manifest {res.manifest_path}"
        )
    if n_fail:
        console.print(f"[bold red]{n_fail} of {len(res.rows)} claim(s) failed[/bold red]")
        raise typer.Exit(EXIT_FAILED)
    console.print(f"[green]all {len(res.rows)} claim(s) passed[/green]")
    raise typer.Exit(EXIT_OK)


# ----------------------------------------------------------------------------- list and show


def _list(name: str | None) -> None:
    console = Console(highlight=False)
    names = registry.names()
    if name is not None and name not in names:
        raise _fail(f"unknown experiment {name!r}; known: {', '.join(names) or '(none)'}", EXIT_USAGE)
    if not names:
        console.print("no experiments registered (add modules to sims/experiments/__init__.py)")
        return
    for n in [name] if name else names:
        exp = registry.get(n)
        specs = _specs(exp)
        table = Table(title=f"[bold]{n}[/bold]: {escape(exp.summary)}", title_justify="left")
        for col in ("option", "type", "default", "help"):
            table.add_column(col, overflow="fold")
        for s in specs:
            kind = s.kind if s.kind != "choice" else "|".join(s.choices or ())
            if s.sweep:
                kind += " (repeatable)"
            table.add_row(s.opt, escape(kind), escape(_show(s.default)), escape(s.help))
        console.print(table)
        for e in _make_run_command(exp).__sims_examples__:  # type: ignore[attr-defined]
            console.print(f"  $ {escape(e)}")
        console.print()


def _show_run(run: str, out: Path, as_json: bool) -> None:
    from sims import store

    console = Console(highlight=False)
    try:
        path = store.find_manifest(out, run)
        m = store.read_manifest(path)
    except store.StoreError as e:
        raise _fail(str(e), EXIT_USAGE) from None
    if as_json:
        sys.stdout.write(json.dumps(m, indent=2) + "\n")
        return
    rid, name = escape(str(m.get("run_id"))), escape(str(m.get("experiment")))
    console.print(f"[bold]run {rid}[/bold]  experiment {name}  ({path})")
    console.print(f"precision {m.get('precision')}; started {m.get('started')}; finished {m.get('finished')}")
    counts = m.get("counts", {})
    console.print(
        f"cells: {counts.get('cells')} ({counts.get('computed')} computed, {counts.get('reused')} reused)"
    )
    cfg = Table(title="config", title_justify="left")
    cfg.add_column("field")
    cfg.add_column("value", overflow="fold")
    for k, v in (m.get("config") or {}).items():
        cfg.add_row(k, escape(_show(v)))
    console.print(cfg)
    prov = m.get("provenance") or {}
    pt = Table(title="provenance", title_justify="left")
    pt.add_column("key")
    pt.add_column("value", overflow="fold")
    git = prov.get("git") or {}
    pt.add_row("git revision", f"{git.get('revision')}" + (" (dirty)" if git.get("dirty") else ""))
    for k, v in (prov.get("versions") or {}).items():
        pt.add_row(k, str(v))
    dev = prov.get("device") or {}
    pt.add_row("device", f"{dev.get('platform')} {dev.get('kind')} (x{dev.get('count')})")
    pt.add_row("dtype", f"{prov.get('dtype')} (jax_enable_x64={prov.get('jax_enable_x64')})")
    pt.add_row("command", escape(" ".join(prov.get("argv") or [])))
    console.print(pt)
    console.print(verdict_table(m.get("verdict") or []))
    ok = m.get("passed")
    console.print("[green]all claims passed[/green]" if ok else "[bold red]some claims failed[/bold red]")


# ----------------------------------------------------------------------------- the app

_MAIN_EPILOG = _epilog(
    [
        "sims list",
        "sims run NAME --help",
        "sims run NAME --dry-run",
        "sims run NAME --m 1e3 --m 1e4 --seeds 5",
        "sims run NAME --precision float32 --out /tmp/results",
        "sims show NAME-0123abcd4567",
    ]
) + (
    "\n\n[bold]Exit codes[/bold]\n  0 all claims passed, 1 some claim failed, 2 bad usage or input,\n"
    "  3 would not fit in memory, 4 an experiment crashed, 130 interrupted (rerun to resume)"
)


def build_app() -> typer.Typer:
    """A fresh ``sims`` app reflecting the experiments and subcommands registered right now."""
    app = typer.Typer(
        name="sims",
        help="Run the prefix-ntk simulations, check each theory claim, and keep every result.",
        epilog=_MAIN_EPILOG,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )
    run_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)

    @run_app.callback()
    def _run_group() -> None:
        """Run an experiment: finished cells are reused, the verdict table is printed and stored."""

    for name in registry.names():
        exp = registry.get(name)
        cmd = _make_run_command(exp)
        run_app.command(name, help=exp.summary, epilog=_epilog(cmd.__sims_examples__))(cmd)
    app.add_typer(run_app, name="run", help="Run an experiment (see `sims run NAME --help`).")

    @app.command("list")
    def list_cmd(
        name: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
    ) -> None:
        """List the experiments and their options."""
        _list(name)

    show_examples = [
        "sims show toy-0123abcd4567",
        "sims show results/toy/runs/toy-0123abcd4567.json",
        "sims show toy-0123 --json",
    ]

    @app.command("show", epilog=_epilog(show_examples))
    def show_cmd(
        run: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or a manifest path.")],
        out: Annotated[Path, typer.Option("--out", help="Results folder to search.")] = Path("results"),
        as_json: Annotated[bool, typer.Option("--json", help="Print the raw manifest.")] = False,
    ) -> None:
        """Show a stored run: config, provenance and verdict table."""
        _show_run(run, out, as_json)

    _load_subcommand_modules()
    for name, (factory, help_) in SUBCOMMANDS.items():
        app.add_typer(factory(), name=name, help=help_ or None)
    return app


def _wants_float32(argv: list[str]) -> bool:
    for i, a in enumerate(argv):
        if a == "--precision=float32" or (a == "--precision" and argv[i + 1 : i + 2] == ["float32"]):
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``sims``, ``python -m sims``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    import jax

    # On before experiment modules are imported, in case they build arrays at import time.
    jax.config.update("jax_enable_x64", not _wants_float32(args))
    build_app()(args=args, prog_name="sims")


if __name__ == "__main__":  # pragma: no cover
    main()
