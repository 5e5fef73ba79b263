"""JAX's persistent compilation cache for the ``sims`` command: where it lives, on or off.

Every ``sims run`` used to compile its programs from scratch.  The command (never the library:
:mod:`theory` and :mod:`sims.core` change no global setting) turns on JAX's persistent cache so a
rerun, even into a fresh results folder, loads the compiled programs instead:

- the folder is ``--compile-cache DIR`` if given, else ``$PREFIX_NTK_COMPILE_CACHE``, else
  ``$XDG_CACHE_HOME/prefix-ntk/jax`` (``~/.cache/prefix-ntk/jax``);
- ``off`` (option or variable) disables it;
- every program is cached, however quick its compilation (JAX's default keeps only those over
  one second);
- the folder used (or None) is recorded in each result's provenance (``compile_cache``).

Cached programs give the same numbers as freshly compiled ones: the cache key covers the
program, the compiler options, the backend and the JAX version.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

__all__ = ["ENV", "OFF", "default_dir", "resolve", "active", "enabled"]

ENV = "PREFIX_NTK_COMPILE_CACHE"
OFF = "off"
_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")


def default_dir() -> Path:
    """``$XDG_CACHE_HOME/prefix-ntk/jax``, or ``~/.cache/prefix-ntk/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "prefix-ntk" / "jax"


def resolve(option: str | os.PathLike | None = None, environ: dict[str, str] | None = None) -> Path | None:
    """The cache folder to use: ``option``, else ``$PREFIX_NTK_COMPILE_CACHE``, else the default.

    Args:
        option: the ``--compile-cache`` value (a folder, ``"off"``, or None).
        environ: the environment (default ``os.environ``).

    Returns:
        The folder, or None when the cache is off.
    """
    env = os.environ if environ is None else environ
    choice = option if option not in (None, "") else env.get(ENV) or None
    if choice is None:
        return default_dir()
    if str(choice).strip().lower() == OFF:
        return None
    return Path(choice).expanduser()


def active() -> str | None:
    """The cache folder JAX uses now (None: no persistent cache), for provenance."""
    import jax  # lazy: sims.runtime imports this module, and `sims --help` must not load JAX

    value = jax.config.jax_compilation_cache_dir
    return None if value in (None, "") else str(value)


@contextlib.contextmanager
def enabled(folder: Path | None) -> Iterator[Path | None]:
    """Use ``folder`` as JAX's persistent cache inside the block (None: no cache); restore after.

    Raises:
        OSError: the folder cannot be created.
    """
    import jax  # lazy: sims.runtime imports this module, and `sims --help` must not load JAX

    before: dict[str, Any] = {k: getattr(jax.config, k) for k in _SETTINGS}
    try:
        if folder is None:
            jax.config.update("jax_compilation_cache_dir", None)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            jax.config.update("jax_compilation_cache_dir", str(folder))
            jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
            jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
        yield folder
    finally:
        for k, v in before.items():
            jax.config.update(k, v)
