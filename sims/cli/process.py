"""The ``sims`` process's exit codes.

0 no claim failed (each passed, or undecided at this size), 1 some claim failed, 2 bad usage or
input, 3 would not fit in memory, 4 an experiment crashed, 130 interrupted (Ctrl-C or SIGTERM;
rerun to resume).  What Ctrl-C and SIGTERM do is :mod:`sims.runtime`'s (the run context).
"""

from __future__ import annotations

__all__ = ["EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_MEMORY", "EXIT_CRASH", "EXIT_INTERRUPTED"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_MEMORY, EXIT_CRASH, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130
