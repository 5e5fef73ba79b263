"""The run context: every process-wide setting a run needs, set in one place and restored after.

    import sims
    with sims.context(precision="float64", compile_cache="default"):
        result = sims.core.run(exp, config, out="results")

:func:`context` owns four global settings; each is changed only when asked and put back on exit
(also on an exception), and contexts nest (an inner one changes what it is given, then restores
it):

- ``precision``: JAX's ``jax_enable_x64`` (``"float64"`` on, ``"float32"`` off; None: untouched).
- ``compile_cache``: JAX's persistent compilation cache (:mod:`sims.host.compile_cache`):
  a folder, ``"off"``, or ``"default"`` (``$PREFIX_NTK_COMPILE_CACHE``, else
  ``~/.cache/prefix-ntk/jax``); None: untouched.
- ``signals``: Ctrl-C and SIGTERM handled by :data:`STOP` (below).
- ``allocator``: glibc's settings for long CPU runs (:mod:`sims.host.allocator`).

The ``sims`` command enters ``context(signals=True, allocator=True)`` first thing, before JAX is
imported, and each computing command (``sims run``, ``sims figures``) enters
``context(precision=..., compile_cache=...)`` around its work; notebooks and the test suite
enter ``context(precision="float64")``.  :mod:`theory` and the engine (:mod:`sims.core`) change
no global setting.

Stopping is cooperative.  The handler only records the request: the first Ctrl-C prints that
the run stops after the call in flight, and the run leaves at the next safe point (before
planning, or between two calls: :meth:`Stop.__call__` is an ``on_event`` handler), so it never
exits while XLA threads still compile or compute.  A second Ctrl-C, or SIGTERM, raises
``KeyboardInterrupt`` at once; the engine then waits for the device work in flight
(:func:`sims.core.execution.wait_for_device`) before the exit.  Recording first also means a
request is never lost: a ``KeyboardInterrupt`` raised inside a garbage-collection callback (JAX
registers one) is printed as "Exception ignored" and dropped by Python, but the recorded request
still stops the run at the next safe point.

This module imports neither JAX nor the engine at import time, so the ``sims`` command can
install the handlers before anything heavy is loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from typing import Any, Iterator

from sims.host import allocator as _allocator
from sims.host import compile_cache as _compile_cache

__all__ = ["PRECISIONS", "Stop", "STOP", "context", "install", "installed", "restore"]

PRECISIONS = ("float64", "float32")
#: Events between two calls of the engine (:mod:`sims.core.execution`): the safe points to stop at.
_SAFE_EVENTS = ("Started", "BatchStarted", "BatchFinished", "Waiting")
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
        if type(event).__name__ in _SAFE_EVENTS:
            self.check()


STOP = Stop()


def installed() -> bool:
    """Whether :data:`STOP`'s handler is this process's SIGINT handler."""
    return signal.getsignal(signal.SIGINT) == STOP.handler


def install() -> dict[int, Any]:
    """Make :data:`STOP` handle SIGINT and SIGTERM; return the previous handlers (main thread only).

    A SIGINT that is ignored (``nohup``, a background job of a non-interactive shell) stays
    ignored.  Returns ``{}`` off the main thread, where handlers cannot be set, and when they
    are installed already (an outer context restores them).
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
    """Put back the handlers :func:`install` replaced, and forget the requests if it replaced any."""
    for sig, old in previous.items():
        signal.signal(sig, old)
    if previous:
        STOP.requests = 0


@contextlib.contextmanager
def context(precision: str | None = None, *, compile_cache: str | os.PathLike | None = None,
            signals: bool = False, allocator: bool = False) -> Iterator[None]:
    """Set the process-wide settings of a run inside the block; restore them on exit.

    Args:
        precision: ``"float64"`` (``jax_enable_x64`` on), ``"float32"`` (off), or None (untouched).
        compile_cache: a folder, ``"off"``, ``"default"`` (see :func:`sims.host.compile_cache.resolve`),
            or None (untouched).
        signals: Ctrl-C and SIGTERM stop at safe points (:data:`STOP`).
        allocator: tune glibc for long runs (:func:`sims.host.allocator.tune`; ``sims`` only).

    Raises:
        theory.InputError: an unknown precision.
        ValueError: a bad ``$PREFIX_NTK_MALLOC`` (what was set already is restored).
        OSError: the compile-cache folder cannot be created.
    """
    if precision is not None and precision not in PRECISIONS:
        from theory.validation import InputError  # lazy: theory pulls JAX in; only on this error path

        raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    with contextlib.ExitStack() as stack:
        if signals:
            stack.callback(restore, install())
        if allocator and not _allocator.state().startswith("glibc"):
            _allocator.tune()
            stack.callback(_allocator.untune)
        if precision is not None:
            import jax  # lazy: on entry, not with this module: `sims --help` must not load JAX

            stack.callback(jax.config.update, "jax_enable_x64", bool(jax.config.jax_enable_x64))
            jax.config.update("jax_enable_x64", precision == "float64")
        if compile_cache is not None:
            folder = _compile_cache.resolve(None if str(compile_cache) == "default" else compile_cache)
            stack.enter_context(_compile_cache.enabled(folder))
        yield
