"""The C allocator's settings for long CPU runs: the ``sims`` command only, never the library.

XLA's CPU runtime and Eigen allocate a few buffers as large as P (m x d) on every gradient step,
and free them after it.  glibc serves any allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back to the kernel on ``free``, so every step faults those
pages in again.  Measured on the project's 2-core CPU (JAX 0.10.2, float64), 40 steps of the
``convergence`` training of one ``prefix`` cell at m = 1e6: 1.48 M minor page faults, 3.4-3.6 s
of system time and 9.1-10.2 s in all; with the settings below 0.17 M faults, 0.5 s and
7.2-7.3 s (about 1.3x).  Re-measured on 2026-12-01 (same CPU) for the whole command
``sims run convergence --m 1e6 --ladder 1 --seeds 1 --steps 40 --no-control``, start-up,
compilation and kernel measurements included, two runs each: 13.7-14.3 s wall, 3.4 s system
time and 1.60 M minor faults with glibc's defaults; 12.4-13.4 s, 0.9 s and 0.32 M tuned.  The
whole main job ``sims run convergence --m 1e5`` (all ladder cells and the control) took
27.7-28.0 s tuned (two runs) and 33.1 s with glibc's defaults (one run).

:func:`tune` (called once by ``sims`` at start-up, on Linux with glibc) turns glibc's use of
``mmap`` off, so large blocks come from the heap and are reused, and lets the process keep up
to 2 GiB of free heap before trimming it.  The cost: memory a run has freed stays with the
process until that limit (1.41 against 1.32 GB peak resident memory in one measured run;
1.39 against 1.31-1.33 GB in the two re-measured above).  Set ``PREFIX_NTK_MALLOC=system`` to
keep glibc's defaults.  Each result records which was in force (``provenance["allocator"]``).
"""

from __future__ import annotations

import ctypes
import os
import sys
from typing import Mapping

__all__ = ["tune", "untune", "state", "ENV"]

ENV = "PREFIX_NTK_MALLOC"
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt parameter numbers
_TRIM_BYTES = 2**31 - 1  # mallopt takes an int
_DEFAULT_MMAP_MAX, _DEFAULT_TRIM_BYTES = 65536, 128 * 1024  # glibc's documented defaults

_state = "system"


def tune(env: Mapping[str, str] = os.environ) -> str:
    """Apply the settings above unless ``env[ENV] == "system"``; return :func:`state`."""
    global _state
    choice = env.get(ENV, "tuned")
    if choice not in ("tuned", "system"):
        raise ValueError(f"{ENV} must be 'tuned' or 'system', got {choice!r}")
    if choice == "system":
        _state = f"system ({ENV}=system)"
    elif not sys.platform.startswith("linux"):
        _state = f"system (not Linux: {sys.platform})"
    else:
        try:
            libc = ctypes.CDLL("libc.so.6")
            ok = libc.mallopt(_M_MMAP_MAX, 0) == 1 and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_BYTES) == 1
        except (OSError, AttributeError):  # not glibc (musl, ...)
            ok = False
        _state = "glibc: no mmap, trim above 2 GiB" if ok else "system (mallopt unavailable)"
    return _state


def untune() -> str:
    """Put glibc's default values back (after :func:`tune`); return :func:`state` (``"system"``).

    glibc adapts its mmap threshold while neither value was ever set; once set, the adaptive
    threshold stays off, so this restores the default values, not that adaptation.
    """
    global _state
    if _state.startswith("glibc"):
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, _DEFAULT_MMAP_MAX)
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_BYTES)
    _state = "system"
    return _state


def state() -> str:
    """What :func:`tune` did in this process (``"system"`` if it was never called)."""
    return _state
