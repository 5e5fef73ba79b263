"""The results store: the only code of the project that writes files (with :mod:`sims.core.cellfile`
for the cell files and :mod:`sims.core.claims` for the claims, which write through it).

Layout under an output folder ``out`` (``results/`` by default)::

    <out>/<experiment>/cells/<cell_id>.npz    one finished cell: its arrays + "__meta__" (sims.core.cellfile)
    <out>/<experiment>/runs/<run_id>.json     one run manifest: config, cell ids, verdict, provenance
    <out>/<experiment>/claims/<cell_id>.claim a cell being computed (sims.core.claims)

This module holds what every file of the store shares: canonical JSON and the ids hashed from
it, the folder layout, atomic writes, and the run manifests.  Every file is written atomically:
into a temporary file in the same folder, flushed and fsynced, then ``os.replace``d onto its final
name and the folder fsynced.  A file that exists is therefore complete, and an interrupted run
(Ctrl-C, ``kill``, even ``kill -9``) leaves at most a stray temporary file, which later runs
ignore and clean up (:func:`clean_stale_temps`).

Ids are stable hashes of canonical JSON (sorted keys, no whitespace), so the same cell or the same
config always maps to the same file name, whatever the order of a sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np

__all__ = [
    "StoreError",
    "check_writable",
    "jsonable",
    "canonical_json",
    "pid_alive",
    "digest",
    "normalize_cell",
    "cell_id",
    "run_id",
    "experiment_dir",
    "cells_dir",
    "runs_dir",
    "cell_path",
    "manifest_path",
    "atomic_writer",
    "atomic_write_bytes",
    "atomic_write_text",
    "write_manifest",
    "read_manifest",
    "find_manifest",
    "list_manifests",
    "clean_stale_temps",
]

_TMP_MARK = ".tmp-"


class StoreError(ValueError):
    """A result could not be stored or read back (bad name, bad value, unreadable file)."""


# ----------------------------------------------------------------------------- ids


def jsonable(value: Any, where: str, finite: bool = True) -> Any:
    """``value`` as plain JSON data (tuples -> lists, NumPy scalars -> Python); raise otherwise.

    ``finite=True`` (for ids) also refuses NaN and infinities, which have no canonical JSON.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return jsonable(value.item(), where, finite)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            raise StoreError(f"{where} is {value!r}; ids need finite numbers")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, f"{where}[{i}]", finite) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{where} has a non-string key {k!r}")
            out[k] = jsonable(v, f"{where}[{k!r}]", finite)
        return out
    raise StoreError(f"{where} is a {type(value).__name__}; only JSON scalars, lists and dicts are allowed")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, finite numbers only."""
    return json.dumps(jsonable(obj, "value"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def normalize_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    """A cell as a flat dict of JSON scalars (NumPy scalars converted); raise on anything else."""
    if not isinstance(cell, Mapping):
        raise StoreError(f"a cell must be a dict, got {type(cell).__name__}")
    out = {}
    for k, v in cell.items():
        v = jsonable(v, f"cell[{k!r}]")
        if isinstance(v, (list, dict)):
            raise StoreError(f"cell[{k!r}] must be a JSON scalar (number, string, bool, None), got {v!r}")
        out[str(k)] = v
    return out


def cell_id(cell: Mapping[str, Any]) -> str:
    """Stable id of a cell: the first 16 hex digits of the hash of its sorted dict."""
    return digest(normalize_cell(cell))[:16]


def run_id(experiment: str, config: Mapping[str, Any], precision: str) -> str:
    """Stable id of a run: ``<experiment>-<12 hex digits of the hash of config and precision>``."""
    h = digest({"experiment": experiment, "config": dict(config), "precision": precision})
    return f"{experiment}-{h[:12]}"


# ----------------------------------------------------------------------------- layout


def experiment_dir(out: str | os.PathLike, experiment: str) -> Path:
    """``<out>/<experiment>``."""
    return Path(out) / experiment


def cells_dir(out: str | os.PathLike, experiment: str) -> Path:
    """``<out>/<experiment>/cells``: one ``.npz`` per cell."""
    return experiment_dir(out, experiment) / "cells"


def runs_dir(out: str | os.PathLike, experiment: str) -> Path:
    """``<out>/<experiment>/runs``: one manifest per run."""
    return experiment_dir(out, experiment) / "runs"


def cell_path(out: str | os.PathLike, experiment: str, cid: str) -> Path:
    """The file of cell ``cid``: ``<out>/<experiment>/cells/<cid>.npz``."""
    return cells_dir(out, experiment) / f"{cid}.npz"


def manifest_path(out: str | os.PathLike, experiment: str, rid: str) -> Path:
    """The manifest of run ``rid``: ``<out>/<experiment>/runs/<rid>.json``."""
    return runs_dir(out, experiment) / f"{rid}.json"


# ----------------------------------------------------------------------------- atomic writes


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms without directory fds
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()  # read once at import: os.umask is process-wide and not thread-safe


@contextlib.contextmanager
def atomic_writer(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file next to ``path``; on a clean exit fsync it and move it onto ``path``.

    On any exception (KeyboardInterrupt included) the temporary file is removed and ``path`` is
    left as it was.  Use it for every file the project writes (figures included)::

        with store.atomic_writer("figures/out/fig1.png") as f:
            fig.savefig(f, format="png")
    """
    if mode not in ("wb", "w"):
        raise StoreError(f"atomic_writer mode must be 'wb' or 'w', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f"{_TMP_MARK}{os.getpid()}")
    try:
        with os.fdopen(fd, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give results the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(e, OSError) and not e.filename:  # a write or fsync on a full disk names no file
            raise OSError(e.errno, e.strerror, os.fspath(path)) from e
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (a temporary file, then a rename); return the path."""
    with atomic_writer(path, "wb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` as UTF-8 to ``path`` atomically; return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def check_writable(out: str | os.PathLike, *, create: bool = True) -> Path:
    """Make sure files can be written under the results folder ``out``, before any work.

    ``create``: make ``out`` and write and remove a probe file in it; False (plans that write
    nothing) only checks that ``out`` is, or can be made as, a writable folder.  Returns
    ``Path(out)``; raises :class:`StoreError` naming the path and the reason.
    """
    out = parent = Path(out)
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise StoreError(f"--out {out}: {'exists and ' if parent == out else parent.as_posix() + ' '}is not a folder")
    if not create:
        if not os.access(parent, os.W_OK | os.X_OK):
            raise StoreError(f"--out {out}: {parent} is not writable")
        return out
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=out, prefix=".write-probe.", suffix=f"{_TMP_MARK}{os.getpid()}")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise StoreError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return out


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running (this process: True)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's live process
        return True
    return True


def clean_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Remove temporary files left in ``folder`` by processes that are no longer running."""
    folder = Path(folder)
    removed = []
    if not folder.is_dir():
        return removed
    for p in folder.iterdir():
        name = p.name
        if not (name.startswith(".") and _TMP_MARK in name):
            continue
        try:
            pid = int(name.rsplit(_TMP_MARK, 1)[1])
        except ValueError:
            continue
        if not pid_alive(pid):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


# ----------------------------------------------------------------------------- manifests


def write_manifest(out: str | os.PathLike, experiment: str, rid: str, manifest: Mapping[str, Any]) -> Path:
    """Atomically write (or replace) the manifest of run ``rid``."""
    path = manifest_path(out, experiment, rid)
    text = json.dumps(jsonable(dict(manifest), "manifest", finite=False), indent=2, sort_keys=False) + "\n"
    atomic_write_text(path, text)
    return path


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """The manifest (JSON) at ``path``; :class:`StoreError` when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise StoreError(f"cannot read run manifest {path}: {e}") from None


def list_manifests(out: str | os.PathLike) -> list[Path]:
    """Every run manifest under ``out``, newest first."""
    paths = [p for p in Path(out).glob("*/runs/*.json") if not p.name.startswith(".")]
    return sorted(paths, key=lambda p: p.stat().st_mtime, reverse=True)


def find_manifest(out: str | os.PathLike, run: str) -> Path:
    """The manifest named by ``run``: a path to a ``.json`` file, a run id or a unique id prefix."""
    p = Path(run)
    if p.suffix == ".json" or os.sep in run:
        if p.is_file():
            return p
        raise StoreError(f"no run manifest at {run}")
    matches = [m for m in list_manifests(out) if m.stem == run]
    if not matches:
        matches = [m for m in list_manifests(out) if m.stem.startswith(run)]
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise StoreError(f"no run {run!r} under {out}/ (give a run id, an id prefix or a manifest path)")
    names = ", ".join(m.stem for m in matches[:10])
    raise StoreError(f"run {run!r} is ambiguous under {out}/: {names}")
