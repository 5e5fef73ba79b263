"""The ``sims`` command line: ``sims run NAME``, ``sims list``, ``sims show RUN``, ``sims verify``, ``sims bench``,
``sims figures``.

Every experiment (``sims.experiments.ALL``, imported, plus any other registered with
:func:`sims.core.experiment.register`) gets its own ``sims run <name>`` command
(:mod:`sims.cli.run`), its options generated from its config dataclass (:mod:`sims.cli.options`),
so a new experiment needs no change here.  The path is imports alone: ``sims run convergence``
runs :data:`sims.experiments.convergence.EXPERIMENT`, whose module imports the model's formulas
from :mod:`theory`.  The command groups are wired below by explicit imports: ``sims bench``
(:mod:`sims.bench.cli`) and ``sims figures`` (:mod:`sims.cli.figures`).

Exit codes: 0 no claim failed (each passed, or undecided at this size), 1 some claim failed, 2 bad usage or input, 3 would not fit in
memory, 4 an experiment crashed (or, with ``--strict``, a stored cell is damaged), 130 interrupted
(Ctrl-C or SIGTERM; rerun to resume).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Callable

import typer
import typer.core
from typer._click import exceptions as _click_errors  # typer vendors click; its usage errors

from sims.cli import process
from sims.cli.process import (  # noqa: F401  (the exit codes are part of this module's interface)
    EXIT_CRASH,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_MEMORY,
    EXIT_OK,
    EXIT_USAGE,
)

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_MEMORY", "EXIT_CRASH", "EXIT_INTERRUPTED",
    "command_groups", "build_app", "main",
]

Group = tuple[Callable[[], typer.Typer], str]


def command_groups() -> dict[str, Group]:
    """The command groups besides run/list/show: name -> (factory of its ``typer.Typer``, help)."""
    from sims.bench import cli as bench
    from sims.cli import figures

    return {"bench": (bench.app, bench.HELP), "figures": (figures.app, figures.HELP)}


_MAIN_EXAMPLES = [
    "sims list",
    "sims run NAME --help",
    "sims run NAME --dry-run",
    "sims run NAME --m 1e3 --m 1e4 --seeds 5",
    "sims run NAME --precision float32 --out /tmp/results",
    "sims show NAME-0123abcd4567",
]
_MAIN_EXIT_CODES = (
    "\n\n[bold]Exit codes[/bold]\n  0 no claim failed (passed or undecided), 1 some claim failed, 2 bad usage or input,\n"
    "  3 would not fit in memory, 4 an experiment crashed (--strict: a stored cell is damaged),\n"
    "  130 interrupted (rerun to resume)"
)


class OneLineErrors(typer.core.TyperGroup):
    """The ``sims`` group: a usage error (a bad option, a value click cannot parse, an unknown
    choice) is one line, ``error: ... (see sims run NAME --help)``, exit 2, instead of a boxed panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        from sims.cli.render import fail

        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except _click_errors.ClickException as e:
            ctx = getattr(e, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            fail(e.format_message() + hint, e.exit_code)
            sys.exit(e.exit_code)
        except _click_errors.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


def build_app(groups: dict[str, Group] | None = None) -> typer.Typer:
    """A fresh ``sims`` app for the experiments registered right now.

    Args:
        groups: the extra command groups (default :func:`command_groups`).

    Raises:
        ValueError: a group named like a built-in command.
    """
    import sims.experiments
    from sims.cli import notebooks, show, verify
    from sims.cli.options import epilog
    from sims.cli.run import make_run_command
    from sims.core import experiment as registry

    app = typer.Typer(
        name="sims",
        help="Run the prefix-ntk simulations, check each theory claim, and keep every result.",
        epilog=epilog(_MAIN_EXAMPLES) + _MAIN_EXIT_CODES,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
        cls=OneLineErrors,
    )
    run_app = typer.Typer(no_args_is_help=True, pretty_exceptions_show_locals=False)

    @run_app.callback()
    def _run_group() -> None:
        """Run an experiment: finished cells are reused, the verdict table is printed and stored."""

    # The project's experiments by import; then any other registered one (a test's, a plugin's).
    others = [e for e in registry.REGISTRY.values() if e not in sims.experiments.ALL]
    for exp in sorted([*sims.experiments.ALL, *others], key=lambda e: e.name):
        cmd = make_run_command(exp)
        run_app.command(exp.name, help=exp.summary, epilog=epilog(cmd.__sims_examples__))(cmd)
    app.add_typer(run_app, name="run", help="Run an experiment (see `sims run NAME --help`).")

    @app.command("list")
    def list_cmd(
        name: Annotated[str | None, typer.Argument(help="Only this experiment.")] = None,
    ) -> None:
        """List the experiments and their options."""
        show.list_experiments(name)

    show_examples = [
        "sims show toy-0123abcd4567",
        "sims show results/toy/runs/toy-0123abcd4567.json",
        "sims show toy-0123 --json",
        "sims show toy-0123 --full",
    ]

    @app.command("show", epilog=epilog(show_examples))
    def show_cmd(
        run: Annotated[str, typer.Argument(help="A run id, a unique prefix of one, or a manifest path.")],
        out: Annotated[Path, typer.Option("--out", help="Results folder to search.")] = Path("results"),
        as_json: Annotated[bool, typer.Option("--json", help="Print the raw manifest.")] = False,
        full: Annotated[bool, typer.Option("--full", help="Full claim statements in the verdict.")] = False,
    ) -> None:
        """Show a stored run: config, provenance and verdict table."""
        show.show_run(run, out, as_json, full)

    @app.command("verify", epilog=epilog(["sims verify", "sims verify --out /tmp/results"]))
    def verify_cmd(
        out: Annotated[Path, typer.Option("--out", help="Results folder to check.")] = Path("results"),
    ) -> None:
        """Check every stored cell against its checksum; exit 1 if any is damaged or missing."""
        verify.verify_folder(out)

    app.command("notebooks")(notebooks.command)

    for name, (factory, help_) in (command_groups() if groups is None else groups).items():
        if name in ("run", "list", "show", "verify"):
            raise ValueError(f"sims subcommand {name!r} already exists")
        app.add_typer(factory(), name=name, help=help_ or None)
    return app


def _wants_float32(argv: list[str]) -> bool:
    for i, a in enumerate(argv):
        if a == "--precision=float32" or (a == "--precision" and argv[i + 1 : i + 2] == ["float32"]):
            return True
    return False


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``sims``, ``python -m sims``)."""
    previous = process.install()  # first: a Ctrl-C while JAX is imported is kept, and honoured (sims.cli.process)
    try:
        _main(list(sys.argv[1:] if argv is None else argv))
    finally:
        process.restore(previous)


def _main(args: list[str]) -> None:
    from sims.host import allocator

    try:
        allocator.tune()  # before the large arrays: see sims/host/allocator.py
    except ValueError as e:
        sys.stderr.write(f"error: {e}\n")
        raise SystemExit(EXIT_USAGE) from None
    import jax

    # On before experiment modules are imported, in case they build arrays at import time.
    jax.config.update("jax_enable_x64", not _wants_float32(args))
    try:
        app = build_app()
        process.STOP.check()  # a Ctrl-C while the modules were imported
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted before any work\n")
        raise SystemExit(EXIT_INTERRUPTED) from None
    app(args=args, prog_name="sims")


if __name__ == "__main__":  # pragma: no cover
    main()
