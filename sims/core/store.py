"""The results store: the only module of the project that writes files.

Layout under an output folder ``out`` (``results/`` by default)::

    <out>/<experiment>/cells/<cell_id>.npz    one finished cell: its arrays + "__meta__"
    <out>/<experiment>/runs/<run_id>.json     one run manifest: config, cell ids, verdict, provenance

A cell file is a plain ``.npz`` (``np.load(path)`` reads it without pickle); the entry
``__meta__`` is a 0-d string array holding the cell's metadata as JSON (the cell dict, its id,
seed, experiment, provenance, timestamps) and its checksum: the SHA-256 of its arrays (names, dtypes,
shapes and bytes) and of its cell dict, verified by every read (:func:`verify_cell`), so a file
whose arrays or cell were altered is reported by name (:class:`CorruptCell`) and never used.
Every file is written atomically: into a temporary
file in the same folder, flushed and fsynced, then ``os.replace``d onto its final name and the
folder fsynced.  A file that exists is therefore complete, and an interrupted run (Ctrl-C,
``kill``, even ``kill -9``) leaves at most a stray temporary file, which later runs ignore and
clean up.

Ids are stable hashes of canonical JSON (sorted keys, no whitespace), so the same cell or the same
config always maps to the same file name, whatever the order of a sweep.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import tempfile
import zipfile
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

import numpy as np

__all__ = [
    "StoreError",
    "CorruptCell",
    "META_KEY",
    "check_writable",
    "canonical_json",
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
    "write_cell",
    "read_cell",
    "read_cell_meta",
    "arrays_digest",
    "verify_cell",
    "cell_problem",
    "cell_done",
    "write_manifest",
    "read_manifest",
    "find_manifest",
    "list_manifests",
    "clean_stale_temps",
]

META_KEY = "__meta__"
_TMP_MARK = ".tmp-"
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Fixed zip timestamps: two writes of the same arrays give the same bytes for each array entry.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class StoreError(ValueError):
    """A result could not be stored or read back (bad name, bad value, unreadable file)."""


class CorruptCell(StoreError):
    """A cell file is readable but its checksum does not match its arrays or its cell."""


# ----------------------------------------------------------------------------- ids


def _jsonable(value: Any, where: str, finite: bool = True) -> Any:
    """``value`` as plain JSON data (tuples -> lists, NumPy scalars -> Python); raise otherwise.

    ``finite=True`` (for ids) also refuses NaN and infinities, which have no canonical JSON.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.generic):
        return _jsonable(value.item(), where, finite)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if finite and not math.isfinite(value):
            raise StoreError(f"{where} is {value!r}; ids need finite numbers")
        return float(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{where}[{i}]", finite) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise StoreError(f"{where} has a non-string key {k!r}")
            out[k] = _jsonable(v, f"{where}[{k!r}]", finite)
        return out
    raise StoreError(f"{where} is a {type(value).__name__}; only JSON scalars, lists and dicts are allowed")


def canonical_json(obj: Any) -> str:
    """Canonical JSON text of ``obj``: sorted keys, no whitespace, finite numbers only."""
    return json.dumps(_jsonable(obj, "value"), sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any) -> str:
    """Hex SHA-256 of :func:`canonical_json` of ``obj``."""
    return hashlib.sha256(canonical_json(obj).encode("utf-8")).hexdigest()


def normalize_cell(cell: Mapping[str, Any]) -> dict[str, Any]:
    """A cell as a flat dict of JSON scalars (NumPy scalars converted); raise on anything else."""
    if not isinstance(cell, Mapping):
        raise StoreError(f"a cell must be a dict, got {type(cell).__name__}")
    out = {}
    for k, v in cell.items():
        v = _jsonable(v, f"cell[{k!r}]")
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


def _pid_alive(pid: int) -> bool:
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
        if not _pid_alive(pid):
            with contextlib.suppress(OSError):
                p.unlink()
                removed.append(p)
    return removed


# ----------------------------------------------------------------------------- cells


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)  # also pulls JAX arrays off the device
    except Exception as e:  # noqa: BLE001
        raise StoreError(f"result {name!r} cannot be turned into an array: {e}") from None
    if arr.dtype == object:
        raise StoreError(f"result {name!r} is an object array; store numbers or strings only")
    return arr


def write_cell(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Atomically write one cell: ``arrays`` as ``.npy`` entries plus ``meta`` as JSON."""
    if not isinstance(arrays, Mapping):
        raise StoreError(f"an experiment must return a dict of arrays, got {type(arrays).__name__}")
    entries = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name) or name.startswith("__"):
            raise StoreError(f"bad result name {name!r}: use letters, digits and _ (not starting with __)")
        entries[name] = _as_array(name, value)
    meta = dict(meta)
    meta["checksum"] = {"algorithm": "sha256", "arrays": arrays_digest(entries),
                        **({"cell": digest(meta["cell"])} if "cell" in meta else {})}
    meta_text = json.dumps(_jsonable(meta, "meta", finite=False), sort_keys=True, indent=1)
    entries[META_KEY] = np.array(meta_text)
    with atomic_writer(path, "wb") as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in entries.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
    return Path(path)


def _meta_from(npz) -> dict[str, Any]:
    if META_KEY not in npz.files:
        raise StoreError("no metadata entry")
    return json.loads(str(npz[META_KEY][()]))


# What np.load raises on a missing, empty, truncated or foreign file (empty: EOFError).
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def arrays_digest(arrays: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a cell's arrays: each name (sorted), dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(canonical_json([name, arr.dtype.str, list(arr.shape)]).encode("utf-8"))
        h.update(arr.tobytes())
    return h.hexdigest()


def verify_cell(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> bool:
    """Raise :class:`CorruptCell` unless ``meta``'s checksum matches ``arrays`` and the cell.

    Returns True when verified, False for a file written before checksums existed (no
    ``"checksum"`` entry: accepted, so that older results folders stay usable; ``sims verify``
    lists them).
    """
    check = meta.get("checksum")
    if check is None:
        return False
    if not isinstance(check, Mapping) or check.get("algorithm") != "sha256" or "arrays" not in check:
        raise CorruptCell(f"cell file {path}: its checksum entry is malformed ({check!r})")
    if arrays_digest(arrays) != check["arrays"]:
        raise CorruptCell(f"cell file {path}: its arrays do not match their checksum (altered or damaged)")
    if "cell" in meta or "cell" in check:
        try:
            ok = digest(meta.get("cell")) == check.get("cell")
        except StoreError:
            ok = False
        if not ok:
            raise CorruptCell(f"cell file {path}: its cell does not match its checksum (altered or damaged)")
    return True


def read_cell(path: str | os.PathLike, *, verify: bool = True) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``(arrays, meta)`` of a stored cell, its checksum verified (:class:`CorruptCell` if not)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            meta = _meta_from(npz)
            arrays = {k: npz[k] for k in npz.files if k != META_KEY}
    except _UNREADABLE as e:
        raise StoreError(f"cannot read cell file {path}: {type(e).__name__}: {e}") from None
    if verify:
        verify_cell(path, arrays, meta)
    return arrays, meta


def read_cell_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a stored cell, or ``None`` if the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _meta_from(npz)
    except (*_UNREADABLE, StoreError):
        return None


def cell_problem(path: str | os.PathLike, cid: str | None = None) -> str | None:
    """Why ``path`` cannot be reused as cell ``cid``: None if it holds that cell, verified;
    ``"missing"`` if there is no file; otherwise the reason (unreadable, checksum, other cell)."""
    if not os.path.exists(path):
        return "missing"
    try:
        _, meta = read_cell(path)
    except StoreError as e:
        return str(e)
    if cid is not None and meta.get("cell_id") != cid:
        return f"cell file {path} holds cell {meta.get('cell_id')!r}, not {cid!r}"
    return None


def cell_done(path: str | os.PathLike, cid: str | None = None) -> bool:
    """Whether ``path`` holds a finished cell (with id ``cid`` when given) whose checksum matches."""
    return cell_problem(path, cid) is None


# ----------------------------------------------------------------------------- manifests


def write_manifest(out: str | os.PathLike, experiment: str, rid: str, manifest: Mapping[str, Any]) -> Path:
    """Atomically write (or replace) the manifest of run ``rid``."""
    path = manifest_path(out, experiment, rid)
    text = json.dumps(_jsonable(dict(manifest), "manifest", finite=False), indent=2, sort_keys=False) + "\n"
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
