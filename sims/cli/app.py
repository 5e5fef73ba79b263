"""The ``sims`` command line: ``sims run NAME``, ``sims list``, ``sims show RUN``, ``sims verify``, ``sims figures``,
``sims bench``.

Commands load what they use.  Every command below is named with the module that defines it
(:data:`COMMANDS`) and that module is imported only when the command runs or its own help is
shown, so ``sims --help`` imports neither JAX, matplotlib nor any experiment.  ``sims run`` has
one subcommand per experiment (:data:`sims.experiments.MODULES`, plus any other registered with
:func:`sims.core.experiment.register`); ``sims run convergence`` imports
:mod:`sims.experiments.convergence` alone and builds its options from its config dataclass
(:mod:`sims.cli.run`, :mod:`sims.cli.options`), so a new experiment needs no change here.

:func:`main` enters the run context (:func:`sims.context`: Ctrl-C handling and the allocator)
before anything heavy is imported; the computing commands enter it again with their precision
and compile cache.

Exit codes (:mod:`sims.cli.process`): 0 no claim failed (each passed, or undecided at this size),
1 some claim failed, 2 bad usage or input, 3 would not fit in memory, 4 an experiment crashed (or,
with ``--strict``, a stored cell is damaged), 130 interrupted (Ctrl-C or SIGTERM; rerun to resume).
"""

from __future__ import annotations

import contextlib
import importlib
import sys
from typing import Any, Callable, Union

import typer
import typer.core
import typer.main
from typer._click import exceptions as _click_errors  # typer vendors click; its usage errors

from sims import experiments, runtime
from sims.cli.process import EXIT_INTERRUPTED, EXIT_USAGE
from sims.core import experiment as registry

__all__ = ["COMMANDS", "LazyGroup", "build_app", "main"]

#: A command's loader: ``"module:app"`` (a factory of a ``typer.Typer`` group), ``"module:NAME"`` (a
#: command function), or a factory.
Loader = Union[str, Callable[[], Any]]

#: The commands besides ``run``, in help order: name -> (loader, one-line help shown by ``sims --help``).
COMMANDS: dict[str, tuple[Loader, str]] = {
    "list": ("sims.cli.show:list_command", "List the experiments, one line each (with NAME: its options)."),
    "show": ("sims.cli.show:show_command", "Show a stored run: config, provenance and verdict table."),
    "verify": ("sims.cli.verify:verify_command", "Check every stored cell against its checksum."),
    "figures": ("sims.cli.figures:app", "Build the figures from stored runs (runs the missing ones first)."),
    "notebooks": ("sims.cli.notebooks:command", "Execute the notebooks and keep copies of them."),
    "reproduce": ("sims.cli.reproduce:command", "Run every experiment of the claims table, then write the report."),
    "report": ("sims.cli.report:command", "Write the report (index.html, report.md, verdicts.json) from stored runs."),
    "bench": ("sims.bench.cli:app", "Benchmarks (time and memory), written to <out>/bench/."),
}

_MAIN_EXAMPLES = [
    "sims reproduce",
    "sims list",
    "sims run NAME --help",
    "sims run NAME --dry-run",
    "sims run NAME --m 1e3 --m 1e4 --seeds 5",
    "sims run NAME --precision float32 --out /tmp/results",
    "sims show NAME-0123abcd4567",
    "sims figures --small",
]
_MAIN_EXIT_CODES = (
    "\n\n[bold]Exit codes[/bold]\n  0 no claim failed (passed or undecided), 1 some claim failed, 2 bad usage or input,\n"
    "  3 would not fit in memory, 4 an experiment crashed, 130 interrupted (rerun to resume)"
)


def _epilog(lines: list[str]) -> str:
    return "[bold]Examples[/bold]\n" + "\n".join(f"  $ {e}" for e in lines)


def _click(obj: Any, name: str, help_: str | None) -> Any:
    """The click command of a loaded ``typer.Typer``, or of a command function."""
    if isinstance(obj, typer.Typer):
        cmd = typer.main.get_group(obj)  # a group, even of one command
    else:
        t = typer.Typer(add_completion=False, pretty_exceptions_show_locals=False)
        t.command(name, help=help_, epilog=getattr(obj, "__sims_epilog__", None))(obj)
        cmd = typer.main.get_command(t)
    cmd.name = name
    if help_ and not cmd.help:
        cmd.help = help_
    return cmd


def _load(loader: Loader) -> Any:
    if callable(loader):
        return loader()
    module, attr = loader.split(":")
    obj = getattr(importlib.import_module(module), attr)
    return obj() if attr == "app" else obj


class OneLineErrors(typer.core.TyperGroup):
    """The ``sims`` group: a usage error (a bad option, a value click cannot parse, an unknown
    choice) is one line, ``error: ... (see sims run NAME --help)``, exit 2, instead of a boxed panel."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):  # type: ignore[override]
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            rv = super().main(*args, standalone_mode=False, **kwargs)
        except _click_errors.NoArgsIsHelpError as e:
            e.show()
            sys.exit(e.exit_code)
        except _click_errors.ClickException as e:
            from sims.cli.render import fail  # lazy: render loads the engine and JAX; only on a usage error

            ctx = getattr(e, "ctx", None)
            hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            fail(e.format_message() + hint, e.exit_code)
            sys.exit(e.exit_code)
        except _click_errors.Abort:
            sys.stderr.write("Aborted!\n")
            sys.exit(1)
        sys.exit(rv if isinstance(rv, int) else 0)


class LazyGroup(OneLineErrors):
    """A command group whose subcommands are built when used (usage errors in one line, :class:`OneLineErrors`).

    ``lazy`` maps a name to (build, help): ``build()`` returns the click command; ``help`` is what
    the group's own ``--help`` lists, so listing loads nothing (with ``help`` None, listing builds
    the command, as ``sims run --help`` does to show each experiment's summary).
    """

    lazy: dict[str, tuple[Callable[[], Any], str | None]] = {}

    def list_commands(self, ctx: Any) -> list[str]:
        return [*self.commands, *(n for n in self.lazy if n not in self.commands)]

    def _build(self, name: str) -> Any:
        if name not in self.commands and name in self.lazy:
            self.commands[name] = self.lazy[name][0]()
        return self.commands.get(name)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        if cmd_name in self.commands or cmd_name not in self.lazy:
            return self.commands.get(cmd_name)
        help_ = self.lazy[cmd_name][1]
        if help_ is None:
            return self._build(cmd_name)
        return typer.core.TyperCommand(cmd_name, help=help_)  # listed by --help; built when resolved

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        if args:
            self._build(args[0])
        return super().resolve_command(ctx, args)


def _lazy_group(table: dict[str, tuple[Callable[[], Any], str | None]]) -> type[LazyGroup]:
    return type("LazyGroup", (LazyGroup,), {"lazy": table})


def _run_command(name: str) -> Any:
    from sims.cli.run import make_run_command  # lazy: the engine and JAX, only when an experiment runs

    exp = experiments.get(name)
    cmd = make_run_command(exp)
    cmd.__sims_epilog__ = _epilog(cmd.__sims_examples__)
    return _click(cmd, name, exp.summary)


def build_app(groups: dict[str, tuple[Loader, str]] | None = None) -> typer.Typer:
    """A fresh ``sims`` app; nothing is imported until a command is used.

    Args:
        groups: further command groups, name -> (a ``typer.Typer`` factory or ``"module:attr"``, help).

    Raises:
        ValueError: a group named like a built-in command.
    """
    extra = dict(groups or {})
    clash = [n for n in extra if n == "run" or n in COMMANDS]
    if clash:
        raise ValueError(f"sims subcommand {clash[0]!r} already exists")
    run_names = experiments.names()  # the project's by name, then any other registered one
    run_table = {n: ((lambda n=n: _run_command(n)), None) for n in run_names}
    run_app = typer.Typer(cls=_lazy_group(run_table), no_args_is_help=True, pretty_exceptions_show_locals=False)

    @run_app.callback()
    def _run_group() -> None:
        """Run an experiment: finished cells are reused, the verdict table is printed and stored."""

    table = {"run": ((lambda: _click(run_app, "run", None)), "Run an experiment (see `sims run NAME --help`).")}
    for name, (loader, help_) in {**COMMANDS, **extra}.items():
        table[name] = ((lambda name=name, loader=loader, help_=help_: _click(_load(loader), name, help_)), help_)
    app = typer.Typer(
        cls=_lazy_group(table),
        name="sims",
        help="Run the prefix-ntk simulations, check each theory claim, and keep every result.",
        epilog=_epilog(_MAIN_EXAMPLES) + _MAIN_EXIT_CODES,
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_show_locals=False,
    )

    @app.callback()
    def _sims() -> None:
        """Run the prefix-ntk simulations, check each theory claim, and keep every result."""

    return app


def main(argv: list[str] | None = None) -> None:
    """Console entry point (``sims``, ``python -m sims``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    with contextlib.ExitStack() as stack:
        try:
            # First: a Ctrl-C while JAX is imported is kept, and honoured at the first safe point.
            stack.enter_context(runtime.context(signals=True, allocator=True))
        except ValueError as e:  # a bad $PREFIX_NTK_MALLOC (sims.host.allocator)
            sys.stderr.write(f"error: {e}\n")
            raise SystemExit(EXIT_USAGE) from None
        try:
            build_app()(args=args, prog_name="sims")
        except KeyboardInterrupt:
            sys.stderr.write("error: interrupted before any work\n")
            raise SystemExit(EXIT_INTERRUPTED) from None


if __name__ == "__main__":  # pragma: no cover
    main()
