"""What the ``sims`` command prints: errors, plans, progress (from engine events), verdict tables.

The engine (:mod:`sims.core.execution`) reports plain events; :class:`Progress` turns them into a
rich progress bar on a terminal, or into one flushed plain line per finished call when stdout
is not a terminal (CI logs, ``nohup``, cluster jobs), so a redirected log is never silent.

The exit codes are defined in :mod:`sims.cli.process`.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import typer
from rich import box
from rich import progress as rp
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sims.core import execution as engine
from sims.core.experiment import VerdictRow
from sims.core.planning import short_cell
from sims.core.verdicts import measured_text, predicted_text
from sims.host.memory import format_bytes

__all__ = [
    "err_console", "fail", "verdict_table", "print_plan", "Progress",
]



def err_console() -> Console:
    """A rich console on stderr (no highlighting)."""
    return Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> typer.Exit:
    """Print ``error: message`` to stderr as one line (never folded); return the ``typer.Exit(code)`` to raise."""
    one_line = " ".join(str(message).split())
    err_console().print(f"[bold red]error:[/bold red] {escape(one_line)}", soft_wrap=True)
    return typer.Exit(code)


# ----------------------------------------------------------------------------- verdict


def _row(r: Any) -> dict[str, Any]:
    # A stored row goes through VerdictRow, which reads every manifest version (old "control" strings too).
    return (VerdictRow.from_dict(r) if isinstance(r, dict) else r).as_dict()


def verdict_table(rows: list[dict] | list[Any], title: str = "verdict", *, full: bool = False,
                  run_id: str | None = None, width: int | None = None) -> Table:
    """The verdict as a table for a terminal ``width`` columns wide (default: this terminal's).

    Default: one line per row at any width: its number (1..N, no gaps), its claim id, the
    status, the measurement (estimate [low, high]), the prediction and the claim, which takes
    the width left and is cut with an ellipsis.  A caption says where the details are
    (``sims show RUN --full`` and the report).  ``full``: the whole statement and, per row, the
    reason (``detail``), the quantity, the tolerance's reason, the size that would decide an
    undecided row and the negative control, folded over several lines.
    """
    ds = [_row(r) for r in rows]
    width = width or Console().width
    texts = []
    for i, d in enumerate(ds):
        status = d.get("status") or ("pass" if d.get("passed") else "fail")
        texts.append([str(i + 1), str(d.get("id") or i + 1), status, measured_text(d), predicted_text(d),
                      str(d.get("claim", "")) if full else str(d.get("short") or d.get("claim", ""))])
    if full:
        table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), pad_edge=False, show_lines=True)
        for c in ("#", "id", "status", "measured", "predicted", "claim", "detail"):
            table.add_column(c, overflow="fold", justify="right" if c == "#" else "left")
        for t, d in zip(texts, ds):
            table.add_row(*map(escape, t[:2]), _RESULT.get(t[2], _RESULT["undecided"]), *map(escape, t[3:]),
                          escape(_details(d)))
        return table
    heads = ("#", "id", "status", "measured", "predicted", "claim")
    natural = [max([len(h)] + [len(t[k]) for t in texts]) for k, h in enumerate(heads)]
    w = [natural[0], min(natural[1], 6), 9, min(natural[3], 28), min(natural[4], 20)]
    room = width - sum(w) - (len(heads) - 1)  # one space between columns
    for k in (3, 4):  # a narrow terminal: the measurement and the prediction give way first
        if room < 12:
            give = min(w[k] - 8, 12 - room)
            w[k] -= max(give, 0)
            room += max(give, 0)
    w.append(max(room, 4))
    # No padding, no edge: the box's one-space separators are the only characters between columns.
    table = Table(title=title, box=box.SIMPLE_HEAD, padding=0, show_edge=False)
    for k, h in enumerate(heads):
        table.add_column(h, width=w[k], no_wrap=True, overflow="ellipsis", justify="right" if k == 0 else "left")
    for t in texts:
        table.add_row(*map(escape, t[:2]), _RESULT.get(t[2], _RESULT["undecided"]), *map(escape, t[3:]))
    if ds:
        where = f"sims show {run_id} --full" if run_id else "sims show RUN --full"
        report = f"sims report {run_id}" if run_id else "sims report"
        table.caption = f"reasons, tolerances, controls: {where}; the report: {report}"
        table.caption_justify = "left"
    return table


def _details(d: dict[str, Any]) -> str:
    parts = [str(d.get("detail") or "")]
    if d.get("quantity"):
        parts.append(f"quantity: {d['quantity']}")
    if d.get("level"):
        parts.append(f"{100 * d['level']:.0f}% interval")
    if d.get("tol_why"):
        parts.append(f"tolerance: {d['tol_why']}")
    if d.get("n_needed"):
        parts.append(f"would decide: about {d['n_needed']:.0f}")
    if d.get("controls"):
        parts.append(("controls " if d.get("is_control") else "negative control: ") + ", ".join(d["controls"]))
    return "; ".join(p for p in parts if p)


_RESULT = {"pass": "[green]PASS[/green]", "fail": "[bold red]FAIL[/bold red]", "undecided": "[yellow]UNDECIDED[/yellow]"}


# ----------------------------------------------------------------------------- plan


def print_plan(console: Console, p: Any, *, full: bool) -> None:
    """The plan's one-line summary and memory line; with ``full`` also every cell (``--dry-run``)."""
    n, pending = len(p.cells), len(p.pending)
    console.print(
        f"[bold]{p.experiment}[/bold]: {n} cell(s), {n - pending} stored, {pending} to run "
        f"({len(p.batches)} call(s)); precision {p.precision}; {p.devices} device(s); run id {p.run_id}; "
        f"out {p.out}"
    )
    if not pending:
        console.print("memory: nothing to run")
    elif p.peak_bytes is None:
        console.print(f"memory: no estimate from {p.experiment}; available {format_bytes(p.available)} "
                      f"({p.available_where})")
    else:
        per = ", per device" if p.devices > 1 else ""
        console.print(f"memory: peak estimate {format_bytes(p.peak_bytes)} (largest call{per}), "
                      f"available {format_bytes(p.available)} ({p.available_where})")
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


# ----------------------------------------------------------------------------- progress


def clock(seconds: float | None) -> str:
    """``H:MM:SS`` of ``seconds`` (``?`` for None)."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """An ``on_event`` handler: a rich bar on a terminal, else plain flushed lines per call.

    Args:
        console: where the bar goes (stderr by default).
        plain: force plain lines (True) or the bar (False); None picks plain when ``stream``
            is not a terminal.
        stream: where plain lines go (default ``sys.stderr``).
    """

    def __init__(self, console: Console | None = None, *, plain: bool | None = None, stream: TextIO | None = None):
        self.console = console or err_console()
        self.stream = stream or sys.stderr
        self.plain = (not _isatty(self.stream)) if plain is None else plain
        self._bar = None
        self._task = None
        self._t0 = time.perf_counter()

    def __call__(self, event: engine.Event) -> None:
        if isinstance(event, engine.Started):
            self._t0 = time.perf_counter()
            if event.total and not self.plain:
                self._start_bar(event.plan.experiment, event.total)
        elif isinstance(event, engine.BatchStarted) and self._bar is not None:
            more = f" (+{len(event.cells) - 1})" if len(event.cells) > 1 else ""
            self._bar.update(self._task, cell=short_cell(event.cells[0].cell, 30) + more)
        elif isinstance(event, engine.BatchFinished):
            if self._bar is not None:
                self._bar.update(self._task, completed=event.done)
            else:
                self._line(event)
        elif isinstance(event, engine.Finished):
            self.close()

    def _line(self, e: engine.BatchFinished) -> None:
        left = e.elapsed_s / e.done * (e.total - e.done) if e.done else None
        self.stream.write(f"call {e.index + 1}/{e.calls}: {e.done}/{e.total} cells, elapsed {clock(e.elapsed_s)}, "
                          f"remaining ~{clock(left)}\n")
        self.stream.flush()

    def _start_bar(self, name: str, total: int) -> None:
        self._bar = rp.Progress(
            rp.TextColumn("[bold]{task.description}"), rp.BarColumn(), rp.MofNCompleteColumn(),
            rp.TimeElapsedColumn(), rp.TimeRemainingColumn(), rp.TextColumn("{task.fields[cell]}"),
            console=self.console, transient=False,
        )
        self._bar.start()
        self._task = self._bar.add_task(name, total=total, cell="")

    def close(self) -> None:
        """Stop the bar (also after an error or an interruption)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False
