"""Atomic writes leave the old file or the whole new one, and no temporary file; file locks exclude."""

import json
import threading
import time

import pytest

from t5lit.io import atomic_open, atomic_write_bytes, atomic_write_json, atomic_write_text, commit, file_lock


def test_atomic_writes_replace_the_file_whole(tmp_path):
    atomic_write_text(tmp_path / "sub" / "a.txt", "one")  # the folder is created
    atomic_write_text(tmp_path / "sub" / "a.txt", "two")
    atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\x00\x01")
    atomic_write_json(tmp_path / "sub" / "c.json", {"b": 1, "a": [2.5]})
    assert (tmp_path / "sub" / "a.txt").read_text() == "two"
    assert (tmp_path / "sub" / "b.bin").read_bytes() == b"\x00\x01"
    assert (tmp_path / "sub" / "c.json").read_text() == '{\n  "a": [\n    2.5\n  ],\n  "b": 1\n}\n'
    assert json.loads((tmp_path / "sub" / "c.json").read_text()) == {"a": [2.5], "b": 1}
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["a.txt", "b.bin", "c.json"]


def test_a_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("half of the ne")
        raise RuntimeError("crash")
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
    with pytest.raises(ValueError, match="mode"), atomic_open(path, "a"):
        pass


def test_commit_moves_a_finished_file_over_the_target(tmp_path):
    (tmp_path / "x.ckpt.tmp").write_bytes(b"new")
    (tmp_path / "x.ckpt").write_bytes(b"old")
    commit(tmp_path / "x.ckpt.tmp", tmp_path / "x.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["x.ckpt"] and (tmp_path / "x.ckpt").read_bytes() == b"new"


def test_file_lock_excludes_a_second_holder(tmp_path):
    events: list[str] = []
    held = threading.Event()

    def second():
        held.wait()
        with file_lock(tmp_path / "d" / "res"):  # another open file: flock makes it wait
            events.append("second")

    thread = threading.Thread(target=second)
    thread.start()
    with file_lock(tmp_path / "d" / "res"):
        held.set()
        time.sleep(0.2)
        events.append("first")
    thread.join(timeout=10)
    assert events == ["first", "second"]
    assert (tmp_path / "d" / "res.lock").is_file()
