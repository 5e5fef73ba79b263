"""``sims run NAME``: one command per experiment, its options generated from the config.

The command parses and validates the options, builds the config, plans the run
(:func:`sims.core.planning.plan`), prints the plan, executes it (:func:`sims.core.execution.execute`)
with a :class:`sims.cli.render.Progress` turning the engine's events into progress, and prints
the verdict table.  See :mod:`sims.cli.render` for the exit codes.
"""

from __future__ import annotations

import errno
import inspect
import traceback
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console
from rich.markup import escape

from sims import runtime
from sims.cli import render
from sims.cli.options import Spec, common_params, examples, specs_of, typer_param
from sims.cli.process import EXIT_CRASH, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_MEMORY, EXIT_OK, EXIT_USAGE
from sims.cli.render import fail
import sims.core as engine
from sims.core import dask_backend
from sims.core import store
from sims.core.experiment import Experiment
from sims.host import compile_cache
from theory.validation import InputError, show_number

__all__ = ["make_run_command"]


def make_run_command(exp: Experiment) -> Callable[..., Any]:
    """The typer command function of ``sims run <exp.name>`` (its signature built from the config)."""
    specs = specs_of(exp)

    def command(**kwargs: Any) -> None:
        _run(exp, specs, kwargs)

    params = [typer_param(exp, s) for s in specs] + common_params()
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__name__ = f"run_{exp.name}"
    command.__doc__ = exp.summary
    command.__sims_examples__ = examples(exp, specs)  # type: ignore[attr-defined]
    return command


def _folder(opt: str, value: Any, *, off: bool = False) -> Path | None:
    """``--out``/``--compile-cache`` as a path; refuse an empty value or a bare number (``0``, ``nan``, ``1e300``).

    A bare number is almost always a misplaced value; ``./0`` names a folder called ``0``.
    """
    if value is None:
        return None
    text = str(value)
    if not text.strip():
        raise fail(f"{opt} must name a folder, got an empty value", EXIT_USAGE)
    if off and text.strip().lower() == compile_cache.OFF:
        return None
    try:
        float(text)
    except ValueError:
        pass
    else:
        raise fail(f"{opt} {show_number(text)} looks like a number, not a folder (write ./{text} for a folder of "
                   "that name)", EXIT_USAGE)
    if "\0" in text:
        raise fail(f"{opt} must name a folder, got a value with a NUL byte", EXIT_USAGE)
    return Path(text)


def _run(exp: Experiment, specs: list[Spec], kw: dict[str, Any]) -> None:
    kw["sims_out"] = _folder("--out", kw["sims_out"])
    _folder("--compile-cache", kw["sims_compile_cache"], off=True)
    precision = kw["sims_precision"].value
    cache = kw["sims_compile_cache"] or "default"
    try:
        # x64 before any array exists; Ctrl-C and SIGTERM stop at safe points (sims.runtime).
        with runtime.context(precision, compile_cache=cache, signals=True):
            _run_inner(exp, specs, kw, precision)
    except OSError as e:
        raise fail(f"--compile-cache {e.filename or cache}: {e.strerror or e}", EXIT_USAGE) from None


def _check_out(out: Any, *, create: bool) -> None:
    try:
        store.check_writable(out, create=create)
    except store.StoreError as e:
        raise fail(str(e), EXIT_USAGE) from None


def _report_damaged(p: engine.Plan, *, strict: bool) -> None:
    """Name each stored cell that cannot be reused; under ``strict`` stop (exit 4) before any work."""
    damaged = p.damaged
    if not damaged:
        return
    err = render.err_console()
    for pc in damaged:
        err.print(f"[yellow]damaged:[/yellow] {escape(pc.problem)}" + ("" if strict else "; recomputing it"))
    if strict:
        raise fail(f"{len(damaged)} stored cell(s) of {p.experiment} are damaged (--strict); rerun without "
                   "--strict to recompute them, or check the folder with `sims verify`", EXIT_CRASH)


def _cluster(kw: dict[str, Any]) -> tuple[str, Any] | None:
    """``("workers", N)``, ``("scheduler", ADDRESS)`` or None (one process); exit 2 on bad usage or
    when Dask is not installed, before any work."""
    workers, scheduler = kw["sims_workers"], kw["sims_scheduler"]
    if workers is not None and scheduler not in (None, "none"):
        raise fail("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both", EXIT_USAGE)
    if workers is not None and workers < 1:
        raise fail(f"--workers must be a positive integer, got {workers}", EXIT_USAGE)
    if scheduler is None and workers is None:
        scheduler = dask_backend.scheduler_from_env()
    choice = ("workers", workers) if workers is not None else \
        ("scheduler", scheduler) if scheduler not in (None, "none") else None
    if choice is not None and not kw["sims_dry_run"]:
        try:
            dask_backend.require()
        except ImportError as e:
            raise fail(f"{'--workers' if workers is not None else '--scheduler'}: {e}", EXIT_USAGE) from None
    return choice


def _backend(p: engine.Plan, cluster: tuple[str, Any] | None, *, quiet: bool) -> Any:
    """The Dask backend of ``cluster`` (None: this process, also when nothing is left to compute)."""
    if cluster is None or not p.n_pending:
        return None
    cache = compile_cache.active()
    kind, value = cluster
    if kind == "workers":
        backend = dask_backend.DaskBackend.local(p, workers=value, compile_cache=cache)
    else:
        try:
            backend = dask_backend.DaskBackend.connect(p, value, compile_cache=cache)
        except (OSError, ValueError) as e:
            raise fail(f"--scheduler {value}: cannot connect ({e})", EXIT_USAGE) from None
    if not quiet:
        render.err_console().print(f"dask: {backend.workers} worker(s) at {backend.client.scheduler.address}")
    return backend


def _both(*handlers: Any) -> Callable[[Any], None]:
    live = [h for h in handlers if h is not None]

    def on_event(event: Any) -> None:
        for h in live:
            h(event)

    return on_event


def _config(exp: Experiment, specs: list[Spec], kw: dict[str, Any]) -> Any:
    values = {}
    for s in specs:
        raw = kw[s.param]
        try:
            values[s.field] = tuple(s.convert(v) for v in raw) if s.sweep else s.convert(raw)
        except (InputError, ValueError, TypeError) as e:
            msg = str(e) if s.opt in str(e) else f"{s.opt}: {e}"
            raise fail(msg, EXIT_USAGE) from None
    try:
        return exp.config(**values)
    except (InputError, TypeError, ValueError) as e:
        raise fail(f"bad {exp.name} config: {e}", EXIT_USAGE) from None


_REMEDY = {
    errno.ENOSPC: "free some space there or give another --out",
    errno.EDQUOT: "free some of your quota there or give another --out",
    errno.EROFS: "the filesystem is read-only: give another --out",
    errno.EACCES: "make the folder writable or give another --out",
    errno.EPERM: "make the folder writable or give another --out",
}


def _os_error_message(e: OSError, out: Any) -> str:
    """One line for an OS error while the run writes: the path, the reason, the remedy, how to resume."""
    path = e.filename or out
    remedy = _REMEDY.get(e.errno, "check that folder or give another --out")
    return (f"cannot write {path}: {e.strerror or e}; {remedy}, then rerun the same command to resume "
            "(finished cells are saved; --debug shows the traceback)")


def _run_inner(exp: Experiment, specs: list[Spec], kw: dict[str, Any], precision: str) -> None:
    config = _config(exp, specs, kw)
    cluster = _cluster(kw)
    out, quiet = kw["sims_out"], kw["sims_quiet"]
    console = Console(highlight=False)
    progress = None
    try:
        runtime.STOP.check()  # a Ctrl-C while the modules were imported
        p = engine.plan(exp, config, out=out, precision=precision, force=kw["sims_force"],
                         devices=kw["sims_devices"])
        _check_out(out, create=not kw["sims_dry_run"])
        if kw["sims_dry_run"]:
            render.print_plan(console, p, full=True)
            raise typer.Exit(EXIT_OK if p.fits else EXIT_MEMORY)
        _report_damaged(p, strict=kw["sims_strict"])
        if not quiet:
            render.print_plan(render.err_console(), p, full=False)
        backend = _backend(p, cluster, quiet=quiet)
        progress = None if quiet else render.Progress()
        res = engine.execute(p, on_event=_both(progress, runtime.STOP), backend=backend)
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        msg = "interrupted; finished cells are saved, rerun the same command to resume"
        raise fail(msg, EXIT_INTERRUPTED) from None
    except engine.WouldNotFit as e:
        raise fail(f"would not fit in memory: {e}", EXIT_MEMORY) from None
    except InputError as e:
        raise fail(str(e), EXIT_USAGE) from None
    except OSError as e:  # a full disk, a read-only or vanished folder while writing results
        if kw.get("sims_debug"):
            render.err_console().print(escape("".join(traceback.format_exception(e))))
        raise fail(_os_error_message(e, out), EXIT_CRASH) from None
    except Exception as e:  # noqa: BLE001
        render.err_console().print(escape("".join(traceback.format_exception(e))))
        raise fail(f"{exp.name} crashed: {type(e).__name__}: {e}", EXIT_CRASH) from None
    finally:
        if progress is not None:
            progress.close()

    console.print(render.verdict_table(res.rows, title=f"{exp.name} verdict (run {res.run_id})", run_id=res.run_id))
    n_fail = sum(r.failed for r in res.rows)
    n_undecided = sum(r.status == "undecided" for r in res.rows)
    if not quiet:
        console.print(f"{len(res.computed)} cell(s) computed, {len(res.reused)} reused; manifest {res.manifest_path}")
    if n_fail:
        console.print(f"[bold red]{n_fail} of {len(res.rows)} claim(s) failed[/bold red]")
        raise typer.Exit(EXIT_FAILED)
    if n_undecided:
        console.print(f"[green]{len(res.rows) - n_undecided} claim(s) passed[/green], [yellow]{n_undecided} "
                      f"undecided at this size[/yellow] (why, and what would decide: sims show {res.run_id} --full)")
        raise typer.Exit(EXIT_OK)
    console.print(f"[green]all {len(res.rows)} claim(s) passed[/green]")
    raise typer.Exit(EXIT_OK)
