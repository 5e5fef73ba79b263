"""The C allocator's settings for long CPU runs: the ``sims`` command only, never the library.

XLA's CPU runtime and Eigen allocate a few buffers as large as P (m x d) on every gradient step,
and free them after it.  glibc serves any allocation above its mmap threshold (at most 32 MiB)
with a fresh ``mmap`` and gives it back to the kernel on ``free``, so every step faults those
pages in again (the measured faults and times are in ``docs/performance.md``, "The memory
allocator").

:func:`tune` (called once by ``sims`` at start-up, on Linux with glibc) turns glibc's use of
``mmap`` off, so large blocks come from the heap and are reused, and lets the process keep up
to 2 GiB of free heap before trimming it.  The cost: memory a run has freed stays with the
process until that limit (about 5% more peak resident memory in the measured runs).  Set ``PREFIX_NTK_MALLOC=system`` to
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
