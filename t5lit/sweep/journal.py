"""The sweep journal file: Optuna's journal backend made safe against writers that die mid-record.

Optuna appends each record as one JSON line. ``JournalFile`` takes an flock for every append and read, cuts a
torn last record (a dead writer's), salvages records an older writer glued onto torn ones, and reports each
repair in one line; ``check_journal`` refuses, in one line and before anything is opened, a file whose lines
are not journal records at all.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from optuna.storages.journal import JournalFileBackend

from t5lit.io import atomic_write_bytes, file_lock
from t5lit.registry import ConfigError

RECORD = b'{"op_code":'  # how every journal record starts (Optuna writes op_code first, no spaces)
CREATE_TRIAL = b'{"op_code":4,'


def _say(message: str) -> None:
    print(f"t5lit: {message}", file=sys.stderr, flush=True)


def _is_record(data: bytes) -> bool:
    """Whether ``data`` is one whole journal record (a JSON object with an op_code)."""
    try:
        record = json.loads(data)
    except ValueError:
        return False
    return isinstance(record, dict) and "op_code" in record


def check_journal(path: str | Path) -> None:
    """A journal whose complete lines are not Optuna records (and are no torn record with a whole one glued
    on, which ``JournalFile`` repairs) is a one-line ConfigError, raised before anything is opened or locked.
    The last line may be partial: a writer may be mid-record, or have died there (repaired under the lock)."""
    path = Path(path)
    if not path.is_file():
        return
    lines = path.read_bytes().split(b"\n")[:-1]  # complete lines only
    for i, line in enumerate(lines):
        if _is_record(line) or (line.rfind(RECORD) > 0 and _is_record(line[line.rfind(RECORD):])):
            continue
        raise ConfigError(f"sweep journal {path}: line {i + 1} is not an Optuna journal record ({line[:60]!r}); "
                          "it is damaged or not a journal: move it away to start the study afresh")


class JournalFile(JournalFileBackend):
    """Optuna's journal file backend that a writer dying mid-record cannot break.

    Optuna appends a record as one line; a writer killed mid-write leaves a partial last line, and the next
    append would glue its record onto it: a line that is not JSON, and a study unreadable for good. Here
    every append *and* read holds an flock on ``<journal>.access.lock`` (released by the OS when its holder
    dies), so a partial last line found under it belongs to a dead writer: it is cut back to the end of the
    last complete line (or, when it is a whole record that only lacks its newline, completed), then
    reported in one line through ``report``. Reads hold the lock too so that no reader is mid-way through
    the bytes a repair removes. A journal broken by an older version (a torn record with a whole one glued
    on) is repaired on first read by dropping the torn bytes; anything else that is not a record is a
    one-line ``ConfigError``."""

    def __init__(self, path: str | Path, report: Callable[[str], None] = _say):
        super().__init__(str(path))  # creates the file when absent; its own symlink lock is not used
        self._guard, self._report = Path(f"{path}.access"), report

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        data = "".join(json.dumps(log, separators=(",", ":")) + "\n" for log in logs).encode()
        with file_lock(self._guard):
            self._repair_tail()
            with open(self._file_path, "ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())

    def read_logs(self, log_number_from: int) -> Iterator[dict[str, Any]]:
        with file_lock(self._guard):
            self._repair_tail()
            try:
                logs = list(super().read_logs(log_number_from))
            except ValueError:  # json.JSONDecodeError included: a line that is not one record
                self._salvage()
                logs = list(super().read_logs(log_number_from))
        yield from logs

    def _repair_tail(self) -> None:
        """Under the lock: cut a torn last record (or complete a whole one that lacks its newline)."""
        with open(self._file_path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or os.pread(f.fileno(), 1, size - 1) == b"\n":  # the common case: one byte read
                return
            start, pos = 0, size
            while pos > 0:  # the byte after the last newline: records can be long (validation curves)
                step = min(1 << 16, pos)
                pos -= step
                found = os.pread(f.fileno(), step, pos).rfind(b"\n")
                if found >= 0:
                    start = pos + found + 1
                    break
            whole = _is_record(os.pread(f.fileno(), size - start, start))
        with open(self._file_path, "rb+") as f:
            if whole:
                f.seek(size)
                f.write(b"\n")
                dropped, how = 0, "dropped, its missing newline added"
            else:
                f.truncate(start)
                dropped, how = size - start, "dropped"
            f.flush()
            os.fsync(f.fileno())
        self._report(f"sweep journal {self._file_path}: repaired a torn last record ({dropped} bytes {how}; "
                     f"{self._trials()} trials kept)")

    def _salvage(self) -> None:
        """Under the lock: drop the torn bytes that an older writer glued a whole record onto."""
        lines = Path(self._file_path).read_bytes().split(b"\n")[:-1]  # the tail is repaired: it ends in \n
        dropped, fixed = 0, 0
        for i, line in enumerate(lines):
            if _is_record(line):
                continue
            cut = line.rfind(RECORD)
            while cut > 0 and not _is_record(line[cut:]):
                cut = line.rfind(RECORD, 0, cut)
            if cut <= 0:
                raise ConfigError(f"sweep journal {self._file_path}: line {i + 1} is not an Optuna journal record "
                                  f"and cannot be repaired ({line[:60]!r}); move the file away to start afresh")
            lines[i], dropped, fixed = line[cut:], dropped + cut, fixed + 1
        atomic_write_bytes(self._file_path, b"".join(line + b"\n" for line in lines))
        self._report(f"sweep journal {self._file_path}: repaired {fixed} record(s) written onto torn ones "
                     f"({dropped} bytes dropped; {self._trials()} trials kept)")

    def _trials(self) -> int:
        with open(self._file_path, "rb") as f:
            return sum(line.startswith(CREATE_TRIAL) for line in f)


