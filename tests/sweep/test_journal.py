"""A sweep journal whose last record was torn by a writer that died mid-write: the tear is detected, cut off
(every complete record, so every finished trial, kept), reported in one line, and never appended onto; a
journal that an older version did append onto is repaired too; Optuna's own reader reads every result."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from optuna.storages import JournalStorage
from optuna.storages.journal import JournalFileBackend
from optuna.trial import TrialState

from sweep.test_worker import FAST, fake_runner, make_sweep, starts
from t5lit.cli import main
from t5lit.registry import ConfigError
from t5lit.sweep import run_sweep
from t5lit.sweep.study import StudyStorage

TORN = b'{"op_code":6,"worker_id":"w","trial_id":2,"state":1,"val'  # a record cut mid-write


def finished_study(path: Path, n: int = 3) -> None:
    """A study "s" with ``n`` COMPLETE trials (values 0..n-1) in the journal at ``path``."""
    study = optuna.create_study(study_name="s", storage=StudyStorage(str(path)).storage)
    for i in range(n):
        study.tell(study.ask(), float(i))


def plain(path: Path, name: str = "s") -> optuna.Study:
    """The study read by Optuna's own journal reader (no repair): it raises on any line that is not a record."""
    return optuna.load_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(path))))


def records(path: Path) -> list[dict]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    return [json.loads(line) for line in data.splitlines()]


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_a_torn_last_record_is_cut_reported_and_never_appended_onto(tmp_path, capsys):
    path = tmp_path / "s.journal"
    finished_study(path)
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(TORN)
    capsys.readouterr()
    store = StudyStorage(str(path))  # opening reads the journal: the tear is found and repaired
    assert one_line(capsys.readouterr().err) == (
        f"t5lit: sweep journal {path}: repaired a torn last record ({len(TORN)} bytes dropped; 3 trials kept)")
    assert path.stat().st_size == whole
    study = optuna.load_study(study_name="s", storage=store.storage)
    study.tell(study.ask(), 3.0)  # the next record starts on a line of its own
    assert [t.value for t in plain(path).get_trials()] == [0.0, 1.0, 2.0, 3.0]
    assert records(path) and capsys.readouterr().err == ""  # every line a record; nothing more to repair


def test_a_whole_record_that_lacks_its_newline_is_kept(tmp_path, capsys):
    path = tmp_path / "s.journal"
    finished_study(path)
    optuna.load_study(study_name="s", storage=StudyStorage(str(path)).storage).set_user_attr("note", "kept")
    with open(path, "rb+") as f:  # its writer died between the record and its newline
        f.truncate(path.stat().st_size - 1)
    capsys.readouterr()
    study = optuna.load_study(study_name="s", storage=StudyStorage(str(path)).storage)
    assert "(0 bytes dropped, its missing newline added; 3 trials kept)" in one_line(capsys.readouterr().err)
    assert study.user_attrs == {"note": "kept"} and plain(path).user_attrs == {"note": "kept"}


def test_a_writer_killed_mid_record_while_others_run(tmp_path, capsys):
    """A real process takes the journal's lock, writes half a record and is SIGKILLed holding it; a storage that
    was open all along (another worker) goes on, and its next record lands on a line of its own."""
    path = tmp_path / "s.journal"
    finished_study(path)
    study = optuna.load_study(study_name="s", storage=StudyStorage(str(path)).storage)
    writer = (f"import os, signal\nfrom t5lit.io import file_lock\nwith file_lock({str(path)!r} + '.access'):\n"
              f"    f = open({str(path)!r}, 'ab'); f.write({TORN!r}); f.flush()\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    proc = subprocess.Popen([sys.executable, "-c", writer], start_new_session=True)
    try:
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert path.read_bytes().endswith(TORN)
    capsys.readouterr()
    study.tell(study.ask(), 3.0)
    assert "repaired a torn last record" in one_line(capsys.readouterr().err)
    assert [t.state for t in plain(path).get_trials()] == [TrialState.COMPLETE] * 4


def test_a_journal_appended_onto_a_tear_by_an_older_version_is_repaired(tmp_path, capsys):
    path = tmp_path / "s.journal"
    finished_study(path)
    with open(path, "ab") as f:
        f.write(TORN)
    old = optuna.load_study(study_name="s", storage=JournalStorage(JournalFileBackend(str(path))))
    old.set_user_attr("a", 1)  # glued onto the torn record
    with pytest.raises(ValueError):  # json.JSONDecodeError: the next write finds the study unreadable
        old.set_user_attr("b", 2)
    broken = path.read_bytes()
    capsys.readouterr()
    study = optuna.load_study(study_name="s", storage=StudyStorage(str(path)).storage)
    assert one_line(capsys.readouterr().err) == (f"t5lit: sweep journal {path}: repaired 1 record(s) written onto "
                                                 f"torn ones ({len(TORN)} bytes dropped; 3 trials kept)")
    assert study.user_attrs == {"a": 1, "b": 2} and [t.value for t in study.get_trials()] == [0.0, 1.0, 2.0]
    assert len(path.read_bytes()) == len(broken) - len(TORN) and plain(path).user_attrs == {"a": 1, "b": 2}


def test_a_line_that_is_no_record_is_one_line_error(tmp_path, capsys):
    path = tmp_path / "s.journal"
    finished_study(path)
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:2] + [b"not a record\n"] + lines[2:]))
    with pytest.raises(ConfigError) as err:
        StudyStorage(str(path))
    assert str(err.value).startswith(f"sweep journal {path}: line 3 is not an Optuna journal record") \
        and "\n" not in str(err.value)
    capsys.readouterr()
    with pytest.raises(SystemExit) as code:
        main(["sweep", "status", "--study", "s", "--storage", str(path)])
    assert code.value.code == 2 and "line 3 is not an Optuna journal record" in one_line(capsys.readouterr().err)


def test_a_sweep_continues_on_a_torn_journal_without_rerunning_anything(tmp_path, capsys):
    sweep = make_sweep(tmp_path, {"study": "torn", "rows": [{"name": "a"}, {"name": "b"}]})
    out = tmp_path / "out"
    assert run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)["complete"] == 2
    journal = out / "torn" / "torn.journal"
    shutil.copy(journal, tmp_path / "before.journal")
    with open(journal, "ab") as f:
        f.write(TORN)
    capsys.readouterr()
    main(["sweep", "status", str(sweep), "--out", str(out)])
    captured = capsys.readouterr()
    assert one_line(captured.err) == (f"t5lit: sweep journal {journal}: repaired a torn last record "
                                      f"({len(TORN)} bytes dropped; 2 trials kept)")
    assert journal.read_bytes() == (tmp_path / "before.journal").read_bytes()
    assert "a-seed0  complete" in captured.out and "2/2 done: 2 complete" in captured.out
    with open(journal, "ab") as f:
        f.write(TORN)
    again = run_sweep(sweep, workers=1, runner=fake_runner, out_dir=out, **FAST)
    assert again["done"] == 2 and again["exit_codes"] == [0]
    assert "repaired a torn last record" in one_line(capsys.readouterr().err)
    assert [len(starts(out / "torn" / job)) for job in ("a-seed0", "b-seed0")] == [1, 1]
    assert [t.state for t in plain(journal, "torn").get_trials()] == [TrialState.COMPLETE] * 2 and records(journal)
