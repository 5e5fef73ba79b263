"""The ``sims`` process: its exit codes, and what Ctrl-C and SIGTERM do.

Exit codes: 0 no claim failed (each passed, or undecided at this size), 1 some claim failed, 2 bad usage or input, 3 would not fit in
memory, 4 an experiment crashed, 130 interrupted (Ctrl-C or SIGTERM; rerun to resume).

Stopping is cooperative.  The handler installed by :func:`install` only records the request:
the first Ctrl-C prints that the run stops after the call in flight, and the run leaves at the
next safe point (before planning, or between two calls: :meth:`Stop.__call__` is an
``on_event`` handler), so it never exits while XLA threads still compile or compute.  A second
Ctrl-C, or SIGTERM, raises ``KeyboardInterrupt`` at once; the engine then waits for the device
work in flight (:func:`sims.core.execute.wait_for_device`) before the exit.  Recording first
also means a request is never lost: a ``KeyboardInterrupt`` raised inside a garbage-collection
callback (JAX registers one) is printed as "Exception ignored" and dropped by Python, but the
recorded request still stops the run at the next safe point.

This module imports nothing heavy, so :func:`install` runs before JAX is imported.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

__all__ = [
    "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_MEMORY", "EXIT_CRASH", "EXIT_INTERRUPTED",
    "Stop", "STOP", "install", "installed", "restore",
]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MEMORY, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

_NOTICE = b"\nstopping after the call in flight (finished cells are saved); Ctrl-C again to stop now\n"


class Stop:
    """Stop requests of this process: a signal handler, and a check for safe points."""

    def __init__(self) -> None:
        self.requests = 0

    def handler(self, signum: int, frame: Any) -> None:
        """The SIGINT/SIGTERM handler: record; raise ``KeyboardInterrupt`` unless a first SIGINT."""
        self.requests += 1
        if signum == signal.SIGINT and self.requests == 1:
            os.write(2, _NOTICE)  # async-signal-safe, unlike a console print
            return
        raise KeyboardInterrupt

    def check(self) -> None:
        """Raise ``KeyboardInterrupt`` if a stop was requested (call it at a safe point)."""
        if self.requests:
            raise KeyboardInterrupt

    def __call__(self, event: Any) -> None:
        """An engine ``on_event`` handler: every event comes at a safe point between two calls."""
        from sims.core import execute as engine  # loaded by then; not at import (this module stays light)

        if isinstance(event, (engine.Started, engine.BatchStarted, engine.BatchFinished, engine.Waiting)):
            self.check()


STOP = Stop()


def installed() -> bool:
    """Whether :data:`STOP`'s handler is this process's SIGINT handler."""
    return signal.getsignal(signal.SIGINT) == STOP.handler


def install() -> dict[int, Any]:
    """Make :data:`STOP` handle SIGINT and SIGTERM; return the previous handlers (main thread only).

    A SIGINT that is ignored (``nohup``, a background job of a non-interactive shell) stays
    ignored.  Returns ``{}`` off the main thread, where handlers cannot be set.
    """
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old = signal.getsignal(sig)
        if old == STOP.handler or (sig == signal.SIGINT and old == signal.SIG_IGN):
            continue
        previous[sig] = signal.signal(sig, STOP.handler)
    return previous


def restore(previous: dict[int, Any]) -> None:
    """Put back the handlers :func:`install` replaced, and forget the requests."""
    for sig, old in previous.items():
        signal.signal(sig, old)
    STOP.requests = 0
