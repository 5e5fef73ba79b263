"""How much memory a run may use: the default device's free bytes, else the host's available RAM.

:func:`available_bytes` is the only probe of the machine the planner makes; it is read once per
plan (:func:`sims.core.planning.plan`), and a plan can be given the figure instead (``memory=``) so
that tests and dry runs on another machine need no probe.
"""

from __future__ import annotations

import os

import jax

__all__ = ["available_bytes", "format_bytes"]


def format_bytes(n: int | None) -> str:
    """``n`` bytes as text in binary units (``"2.0 KiB"``); ``"unknown"`` for None.

    Args:
        n: a byte count, or None.

    Returns:
        The count with one decimal in the largest unit below 1024 (whole bytes below 1 KiB).
    """
    if n is None:
        return "unknown"
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            if unit == "PiB" and value >= 1024:
                return f"{value:.2e} PiB"
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"  # pragma: no cover


def available_bytes() -> tuple[int | None, str]:
    """Memory a run may use on the default device, and where the figure comes from.

    Returns:
        ``(bytes, where)``: the device's ``bytes_limit - bytes_in_use`` when the backend reports
        memory stats (GPUs, TPUs), else the host's ``MemAvailable``; ``(None, "unknown")`` when
        neither can be read.
    """
    dev = jax.devices()[0]
    stats = None
    try:
        stats = dev.memory_stats()
    except Exception:  # noqa: BLE001 - backends without stats
        stats = None
    if stats and "bytes_limit" in stats:
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"{dev.platform} {getattr(dev, 'device_kind', '')}".strip()
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "host RAM (MemAvailable)"
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), "host RAM"
    except (ValueError, OSError, AttributeError):  # pragma: no cover
        return None, "unknown"
