"""The ``sims`` command line: run experiments, list them, show stored runs.

Every registered experiment (see :mod:`sims.core.experiment`) gets its own ``sims run <name>``
command, whose options are generated from its config dataclass, so a new experiment needs no
change here.  Other modules add command groups (``sims bench``, ``sims figures``) through
:func:`register_subcommand`; see ``SUBCOMMAND_MODULES``.

Exit codes: 0 no claim failed (each passed or undecided at this size), 1 some claim failed, 2 bad
usage or input, 3 would not fit in memory, 4 an experiment crashed, 130 interrupted (Ctrl-C or SIGTERM; rerun to resume).
"""

from __future__ import annotations

import importlib
import inspect
import json
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Annotated, Any, Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sims.core import experiment as registry
from theory.validation import InputError

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
SUBCOMMAND_MODULES: list[str] = ["sims.bench.cli", "sims.bench.ntk", "figures.cli"]


def register_subcommand(name: str, factory: Callable[[], typer.Typer], help: str = "") -> None:
    """Add ``sims <name> ...``: ``factory()`` returns the ``typer.Typer`` holding its commands.

    Example, in ``sims/bench/cli.py``::

        from sims.cli.app import register_subcommand

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

from sims.cli.options import _Spec, _common_params, _epilog, _examples, _show, _specs, _typer_param  # noqa: E402


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
        mark = "[yellow]UNDECIDED[/yellow]" if d.get("status") == "undecided" else (
            "[green]PASS[/green]" if ok else "[bold red]FAIL[/bold red]")
        table.add_row(
            escape(str(d.get("claim", ""))),
            escape(str(d.get("predicted", ""))),
            escape(str(d.get("measured", ""))),
            mark,
            escape(str(d.get("detail", ""))),
        )
    return table


def _print_plan(console: Console, p: Any, *, full: bool) -> None:
    from sims.core.runner import format_bytes

    n, pending = len(p.cells), len(p.pending)
    console.print(
        f"[bold]{p.experiment}[/bold]: {n} cell(s), {n - pending} stored, {pending} to run "
        f"({len(p.batches)} call(s)); precision {p.precision}; {p.devices} device(s); run id {p.run_id}; out {p.out}"
    )
    if not pending:
        console.print("memory: nothing to run")
    elif p.peak_bytes is None:
        avail = f"{format_bytes(p.available)} ({p.available_where})"
        console.print(f"memory: no estimate from {p.experiment}; available {avail}")
    else:
        console.print(
            f"memory: peak estimate {format_bytes(p.peak_bytes)} (largest call{', per device' if p.devices > 1 else ''}), "
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

    from sims.core import runner

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
            p = runner.plan(exp, config, out=out, precision=precision, force=kw["sims_force"],
                            devices=kw["sims_devices"])
            _print_plan(console, p, full=True)
            raise typer.Exit(EXIT_OK if p.fits else EXIT_MEMORY)
        on_plan = None if quiet else (lambda p: _print_plan(_err(), p, full=False))
        res = runner.run(
            exp, config, out=out, precision=precision, force=kw["sims_force"],
            progress=not quiet, console=_err(), on_plan=on_plan, devices=kw["sims_devices"],
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
    n_fail = sum(r.failed for r in res.rows)
    n_undecided = sum(r.status == "undecided" for r in res.rows)
    if not quiet:
        console.print(
            f"{len(res.computed)} cell(s) computed, {len(res.reused)} reused; manifest {res.manifest_path}"
        )
    if n_fail:
        console.print(f"[bold red]{n_fail} of {len(res.rows)} claim(s) failed[/bold red]")
        raise typer.Exit(EXIT_FAILED)
    if n_undecided:
        console.print(f"[green]{len(res.rows) - n_undecided} claim(s) passed[/green], [yellow]{n_undecided} "
                      f"undecided at this size[/yellow] (see detail)")
        raise typer.Exit(EXIT_OK)
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
    from sims.core import store

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
    und = m.get("undecided") or 0
    console.print(("[bold red]some claims failed[/bold red]" if not ok else
                   f"[green]no claim failed[/green], [yellow]{und} undecided[/yellow]" if und else
                   "[green]all claims passed[/green]"))


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
    "\n\n[bold]Exit codes[/bold]\n  0 no claim failed (passed or undecided), 1 some claim failed, 2 bad usage or input,\n"
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
    from sims.host import allocator

    try:
        allocator.tune()  # before the large arrays: see sims/host/allocator.py
    except ValueError as e:
        _err().print(f"[bold red]error:[/bold red] {escape(str(e))}")
        raise SystemExit(EXIT_USAGE) from None
    import jax

    # On before experiment modules are imported, in case they build arrays at import time.
    jax.config.update("jax_enable_x64", not _wants_float32(args))
    build_app()(args=args, prog_name="sims")


if __name__ == "__main__":  # pragma: no cover
    main()
