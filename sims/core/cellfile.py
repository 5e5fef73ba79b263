"""One cell file: its format, its checksum, and writing, reading and verifying it.

    <out>/<experiment>/cells/<cell_id>.npz    (path: sims.core.store.cell_path)

A cell file is a plain ``.npz`` (``np.load(path)`` reads it without pickle); the entry
``__meta__`` (:data:`META_KEY`) is a 0-d string array holding the cell's metadata as JSON (the
cell dict, its id, seed, experiment, provenance, timestamps) and its checksum: the SHA-256 of its
arrays (names, dtypes, shapes and bytes, :func:`arrays_digest`) and of its cell dict.  Every read
verifies it (:func:`verify_cell`), so a file whose arrays or cell were altered is reported by name
(:class:`CorruptCell`) and never used; ``sims verify`` checks a whole folder.  Files are written
atomically through :func:`sims.core.store.atomic_writer`, with fixed zip timestamps, so two
writes of the same arrays give the same bytes for each array entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from sims.core import store

__all__ = [
    "CorruptCell",
    "META_KEY",
    "write_cell",
    "read_cell",
    "read_cell_meta",
    "arrays_digest",
    "verify_cell",
    "cell_problem",
    "cell_done",
]

META_KEY = "__meta__"
_ARRAY_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]*$")
# Fixed zip timestamps: two writes of the same arrays give the same bytes for each array entry.
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


class CorruptCell(store.StoreError):
    """A cell file is readable but its checksum does not match its arrays or its cell."""


def _as_array(name: str, value: Any) -> np.ndarray:
    try:
        arr = np.asarray(value)  # also pulls JAX arrays off the device
    except Exception as e:  # noqa: BLE001
        raise store.StoreError(f"result {name!r} cannot be turned into an array: {e}") from None
    if arr.dtype == object:
        raise store.StoreError(f"result {name!r} is an object array; store numbers or strings only")
    return arr


def write_cell(path: str | os.PathLike, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> Path:
    """Atomically write one cell: ``arrays`` as ``.npy`` entries plus ``meta`` as JSON."""
    if not isinstance(arrays, Mapping):
        raise store.StoreError(f"an experiment must return a dict of arrays, got {type(arrays).__name__}")
    entries = {}
    for name, value in arrays.items():
        if not isinstance(name, str) or not _ARRAY_NAME.match(name) or name.startswith("__"):
            raise store.StoreError(f"bad result name {name!r}: use letters, digits and _ (not starting with __)")
        entries[name] = _as_array(name, value)
    meta = dict(meta)
    meta["checksum"] = {"algorithm": "sha256", "arrays": arrays_digest(entries),
                        **({"cell": store.digest(meta["cell"])} if "cell" in meta else {})}
    meta_text = json.dumps(store.jsonable(meta, "meta", finite=False), sort_keys=True, indent=1)
    entries[META_KEY] = np.array(meta_text)
    with store.atomic_writer(path, "wb") as f:
        with zipfile.ZipFile(f, mode="w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for name, arr in entries.items():
                info = zipfile.ZipInfo(f"{name}.npy", date_time=_ZIP_DATE)
                with zf.open(info, "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, arr, allow_pickle=False)
    return Path(path)


def _meta_from(npz) -> dict[str, Any]:
    if META_KEY not in npz.files:
        raise store.StoreError("no metadata entry")
    return json.loads(str(npz[META_KEY][()]))


# What np.load raises on a missing, empty, truncated or foreign file (empty: EOFError).
_UNREADABLE = (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError)


def arrays_digest(arrays: Mapping[str, Any]) -> str:
    """Hex SHA-256 of a cell's arrays: each name (sorted), dtype, shape and C-order bytes."""
    h = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        h.update(store.canonical_json([name, arr.dtype.str, list(arr.shape)]).encode("utf-8"))
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
            ok = store.digest(meta.get("cell")) == check.get("cell")
        except store.StoreError:
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
        raise store.StoreError(f"cannot read cell file {path}: {type(e).__name__}: {e}") from None
    if verify:
        verify_cell(path, arrays, meta)
    return arrays, meta


def read_cell_meta(path: str | os.PathLike) -> dict[str, Any] | None:
    """The metadata of a stored cell, or ``None`` if the file is missing or unreadable."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            return _meta_from(npz)
    except (*_UNREADABLE, store.StoreError):
        return None


def cell_problem(path: str | os.PathLike, cid: str | None = None) -> str | None:
    """Why ``path`` cannot be reused as cell ``cid``: None if it holds that cell, verified;
    ``"missing"`` if there is no file; otherwise the reason (unreadable, checksum, other cell)."""
    if not os.path.exists(path):
        return "missing"
    try:
        _, meta = read_cell(path)
    except store.StoreError as e:
        return str(e)
    if cid is not None and meta.get("cell_id") != cid:
        return f"cell file {path} holds cell {meta.get('cell_id')!r}, not {cid!r}"
    return None


def cell_done(path: str | os.PathLike, cid: str | None = None) -> bool:
    """Whether ``path`` holds a finished cell (with id ``cid`` when given) whose checksum matches."""
    return cell_problem(path, cid) is None
