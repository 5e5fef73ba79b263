"""Where a result came from: code revision, package versions, device, dtype, time.

Everything here only reads (``git`` runs with optional locks off, so it never touches the index).
"""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax

from sims.host import allocator, compile_cache

__all__ = ["now", "git_info", "versions", "device_info", "provenance"]

# The repository the code runs from: the parent of the ``sims`` package.
_CODE_ROOT = Path(__file__).resolve().parent.parent


def now() -> str:
    """The current UTC time as ISO 8601 with microseconds (``YYYY-MM-DDTHH:MM:SS.ffffff+00:00``)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="microseconds")


def _git(*args: str, cwd: Path) -> str | None:
    env = dict(os.environ, GIT_OPTIONAL_LOCKS="0", LC_ALL="C")
    try:
        res = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() if res.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def git_info(root: str | None = None) -> dict[str, Any]:
    """``{"revision": sha or "unknown", "dirty": bool or None}`` for the repository at ``root``.

    ``revision`` is ``"unknown"`` when the code does not run from a git checkout (an installed
    wheel, a repository without commits, no ``git`` on the path).
    """
    cwd = Path(root) if root else _CODE_ROOT
    rev = _git("rev-parse", "--verify", "--quiet", "HEAD", cwd=cwd)
    if not rev:
        return {"revision": "unknown", "dirty": None}
    status = _git("status", "--porcelain", "--untracked-files=no", cwd=cwd)
    return {"revision": rev, "dirty": None if status is None else bool(status)}


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


@functools.lru_cache(maxsize=None)
def versions() -> dict[str, str]:
    """Versions of python, jax, jaxlib, numpy and prefix-ntk."""
    return {
        "python": platform.python_version(),
        "jax": _version("jax"),
        "jaxlib": _version("jaxlib"),
        "numpy": _version("numpy"),
        "prefix-ntk": _version("prefix-ntk"),
    }


def device_info() -> dict[str, Any]:
    """The default JAX device: platform (cpu, gpu, tpu), kind (e.g. ``NVIDIA H100 80GB HBM3``), count."""
    devs = jax.devices()
    d = devs[0]
    return {"platform": d.platform, "kind": getattr(d, "device_kind", "unknown"), "count": len(devs)}


def provenance(dtype: str) -> dict[str, Any]:
    """Everything a result file records about how it was produced (minus the cell itself)."""
    return {
        "git": git_info(),
        "versions": versions(),
        "device": device_info(),
        "dtype": str(dtype),
        "jax_enable_x64": bool(jax.config.jax_enable_x64),
        "allocator": allocator.state(),
        "compile_cache": compile_cache.active(),
        "platform": platform.platform(),
        "argv": list(sys.argv),
    }
