"""Claims: a cell is claimed before it is computed, so that many writers share one results folder.

    <out>/<experiment>/claims/<cell_id>.claim     {"pid", "host", "token", "time"} as JSON

A claim is created with ``O_CREAT | O_EXCL``, so of two processes (two ``sims run``, or the
driver of a Dask sweep and another run) exactly one gets it; the other skips the cell and, at
the end of its own work, waits for the holder to finish it (see :mod:`sims.core.execution`).
The holder removes its claim once the cell file is written (and on any exit it survives: an
exception, Ctrl-C).

A claim is *stale* when its holder cannot finish it: on this host, its pid is no longer
running (or, for this process's own pid, no run here holds it any more: a run that failed);
from another host (a shared file system), its file was not refreshed for
``stale_after`` seconds (holders refresh theirs after every call, :func:`refresh`); empty or cut
short (its writer was killed between creating and writing it), older than :data:`EMPTY_STALE_S`.  A stale
claim is broken by renaming it away (atomic: of two processes breaking it, one wins) and the
cell is claimed again.  Like :mod:`sims.core.store`, this module is part of the store: the only
code that writes under a results folder.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import time
import uuid
from pathlib import Path

from sims.core import store

__all__ = ["STALE_AFTER_S", "EMPTY_STALE_S", "Claim", "claim_path", "claim", "release", "refresh", "holder",
           "is_stale", "clean_stale"]

#: A claim from another host whose file is older than this is stale (its holder refreshes it after
#: every call; a call longer than this on a shared folder needs a larger value).
STALE_AFTER_S = float(os.environ.get("PREFIX_NTK_CLAIM_STALE_S", 6 * 3600))
#: An empty or unreadable claim (its writer killed between creating and writing it) older than this is stale.
EMPTY_STALE_S = 30.0
HOST = socket.gethostname()
_BROKEN = ".stale-"  # a stale claim renamed away before its removal: .<cell_id>.claim.stale-<hex>
_HELD: set[str] = set()  # tokens of the claims this process holds now (a claim of this pid not in it is orphaned)


@dataclasses.dataclass(frozen=True)
class Claim:
    """A claim this process holds on one cell."""

    path: Path
    token: str


def claims_dir(out: str | os.PathLike, experiment: str) -> Path:
    return store.experiment_dir(out, experiment) / "claims"


def claim_path(out: str | os.PathLike, experiment: str, cid: str) -> Path:
    """The claim file of cell ``cid`` of ``experiment`` under ``out``."""
    return claims_dir(out, experiment) / f"{cid}.claim"


def holder(path: str | os.PathLike) -> dict | None:
    """The holder recorded in a claim file (``pid``, ``host``, ``token``, ``time``), or None if absent.

    A claim being written (empty, or cut short) reads as ``{}``: held by someone, stale after
    :data:`EMPTY_STALE_S` (:func:`is_stale`).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def is_stale(path: str | os.PathLike, *, stale_after: float | None = None) -> bool:
    """Whether the claim at ``path`` can no longer be finished by its holder (see the module doc)."""
    info = holder(path)
    if info is None:
        return False
    try:
        age = time.time() - os.stat(path).st_mtime
    except FileNotFoundError:
        return False
    if not info:  # empty or cut short: its writer died between creating and writing it (a live one
        # writes it at once), so it is stale after a short grace, not after ``stale_after``
        return age > min(EMPTY_STALE_S, STALE_AFTER_S if stale_after is None else stale_after)
    if info.get("host") == HOST and isinstance(info.get("pid"), int):
        if info["pid"] == os.getpid():  # this process: stale unless a run here still holds it
            return info.get("token") not in _HELD
        return not store.pid_alive(info["pid"])
    return age > (STALE_AFTER_S if stale_after is None else stale_after)


def claim(out: str | os.PathLike, experiment: str, cid: str, *, stale_after: float | None = None) -> Claim | None:
    """Claim cell ``cid``: a :class:`Claim` if this process now holds it, None if another does.

    A stale claim is broken (renamed away) and the cell claimed again.
    """
    path = claim_path(out, experiment, cid)
    path.parent.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex
    data = json.dumps({"pid": os.getpid(), "host": HOST, "token": token, "time": time.time()}).encode()
    for _ in range(3):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not is_stale(path, stale_after=stale_after):
                return None
            _break(path)
            continue
        try:
            os.write(fd, data)
            os.fsync(fd)
        except BaseException:  # a full disk while claiming: leave no claim this process never holds
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            raise
        os.close(fd)
        _HELD.add(token)
        return Claim(path, token)
    return None


def _break(path: Path) -> bool:
    """Remove the stale claim at ``path``: renamed away first (of two processes breaking it, one
    rename succeeds), then deleted.  Whether this process broke it."""
    broken = path.with_name(f".{path.name}{_BROKEN}{uuid.uuid4().hex}")
    try:
        os.rename(path, broken)
    except FileNotFoundError:
        return False
    with contextlib.suppress(OSError):
        os.unlink(broken)
    return True


def clean_stale(out: str | os.PathLike, experiment: str, *, stale_after: float | None = None) -> list[Path]:
    """Remove the stale claims of ``experiment`` under ``out`` (those of a writer that was killed, even
    on a cell it had finished), and any claim left half-broken; return the claims removed."""
    folder = claims_dir(out, experiment)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.iterdir():
        if path.name.startswith(".") and _BROKEN in path.name:  # a breaker killed between rename and unlink
            with contextlib.suppress(OSError):
                path.unlink()
        elif path.suffix == ".claim" and is_stale(path, stale_after=stale_after) and _break(path):
            removed.append(path)
    return removed


def refresh(claims: list[Claim]) -> None:
    """Touch the files of claims this process holds (other hosts then see them as live)."""
    for c in claims:
        with contextlib.suppress(OSError):
            os.utime(c.path)


def release(c: Claim) -> None:
    """Remove a claim this process holds (if it still holds it: a claim broken as stale and taken
    by another process is left to that one)."""
    _HELD.discard(c.token)
    info = holder(c.path)
    if info is not None and info.get("token") == c.token:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(c.path)
