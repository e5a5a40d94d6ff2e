"""Atomic file writes and cross-process file locks: the one owner of both in t5lit.

A write goes to a temporary file in the target's folder (same filesystem), is flushed and fsynced, then
``os.replace``-d over the target: readers see the old file or the whole new one, never a part, and a crash
leaves no half-written file behind. ``file_lock`` serializes work across processes on one machine (DDP ranks
building one cache, sweep workers deciding which trial runs next).

``commit`` finishes a temporary file that another library wrote (a trainer's checkpoint: ``t5lit.checkpoint``).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w") -> Iterator[IO[Any]]:
    """A file opened for writing (``"w"`` or ``"wb"``) that replaces ``path`` whole when the block ends
    without an exception; on an exception the temporary file is removed and ``path`` is left as it was."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes a whole new file: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def commit(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Make a finished temporary file (written by someone else, in ``path``'s folder) durable and move it
    over ``path`` in one step: fsync, then ``os.replace``."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_json(path: str | os.PathLike, data) -> None:
    """``data`` as indented JSON with sorted keys (non-JSON numbers such as tensors' items as floats)."""
    atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=float) + "\n")


@contextlib.contextmanager
def file_lock(path: str | os.PathLike) -> Iterator[None]:
    """An exclusive lock on ``<path>.lock`` across processes (POSIX flock), released when the block ends or by
    the OS when the holder dies. Without fcntl (Windows) there is no lock: writers then race, but every write
    is atomic and produces the same content."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(f"{path}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


__all__ = ["atomic_open", "commit", "atomic_write_bytes", "atomic_write_json", "atomic_write_text", "file_lock"]


def check_can_create(path: str | os.PathLike, where: str) -> None:
    """``path`` (a file or folder still to write) can be made: its nearest existing ancestor is a writable
    directory; else a one-line ConfigError starting with ``where``."""
    from t5lit.registry import ConfigError

    probe = Path(path).expanduser().absolute()
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(f"{where}: {probe} is a file, not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ConfigError(f"{where}: the directory {probe} is not writable")
