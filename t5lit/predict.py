"""Test-set predictions in each benchmark's submission format: ``t5lit predict`` (the paper's Table 14).

    t5lit predict --checkpoint runs/x/finetune/glue --task glue --data_dir /data/glue_data --out preds/
    t5lit predict --checkpoint a.ckpt b.ckpt c.ckpt d.ckpt --task super_glue --data_dir /data/superglue --out p/
    t5lit predict --checkpoint runs/x/finetune/cnn_dailymail/best-cnn_dailymail.ckpt --task cnn_dailymail ...

A checkpoint is a ``.ckpt`` file (it predicts every task) or a fine-tuning stage's directory (each task is
predicted by its own ``best-<task>.ckpt``, the checkpoint the paper reports: Section 3.1.3); several are an
ensemble (t5lit/ensemble.py). The diagnostics are predicted by the model of the task they are cast as (T5's
``glue_utils``): GLUE's AX by MNLI's, SuperGLUE's AX-b and AX-g by RTE's. Everything is checked first (names,
every checkpoint, the members of each ensemble, every data file), then decoded.

What is written under ``--out``:

- ``glue/<Task>.tsv`` and ``glue.zip``: the GLUE leaderboard's files (gluebenchmark.com; file names and label
  forms as jiant's writer, nyu-mll/jiant-v1-legacy ``jiant/evaluate.py``: ``GLUE_NAME_MAP``,
  ``_write_glue_preds``): CoLA, SST-2, MRPC, STS-B, QQP, MNLI-m, MNLI-mm, QNLI, RTE, WNLI, AX, each a header
  ``index<TAB>prediction`` then one row per test example with the test file's own index. Labels: 0/1 for
  CoLA, SST-2, MRPC, QQP and WNLI (1 = acceptable, positive, equivalent, duplicate, entailment); the label
  names for MNLI, AX (entailment, neutral, contradiction), QNLI and RTE (entailment, not_entailment); STS-B a
  score clipped to [0, 5] with three decimals. WNLI, which the paper never trains (Section 2.3), is written
  with its majority class 0 when a stage directory has no WNLI checkpoint (the GLUE baseline's 65.1).
- ``super_glue/<Task>.jsonl`` and ``super_glue.zip``: the SuperGLUE leaderboard's files (super.gluebenchmark.com;
  as jiant's ``SUPERGLUE_NAME_MAP`` and ``_write_*_preds``): one JSON object per line, ``{"idx": ..., "label":
  ...}``: BoolQ and WiC ``"true"`` / ``"false"``; CB and RTE the label names; COPA 0 / 1 (the choice); WSC
  ``"True"`` / ``"False"`` (whether the predicted referent is the candidate, T5's ``wsc_simple``); ReCoRD the
  answer text, ``idx`` the query's; MultiRC one line per passage, ``{"idx": p, "passage": {"questions":
  [{"idx": q, "answers": [{"idx": a, "label": 0 | 1}]}]}}``; AX-b and AX-g entailment / not_entailment.
- any other task: ``<task>.txt``, one prediction per line (WMT: the detokenized translation sacreBLEU scores;
  CNN/DM: the summary, its line breaks as spaces); SQuAD (no public test split: ``--split validation``):
  ``squad.json``, ``{question id: answer}`` as the official ``evaluate-v1.1.py`` reads it.
- ``scores.json``: the metrics of every task whose examples carry labels in the split (AX-b, AX-g, the
  CNN/DM and WMT test sets), also printed.

A prediction that is no valid label (an empty or stray text) is written as the task's first label and counted
in the summary line, since a leaderboard refuses a file with a label it does not know.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from t5lit.registry import ConfigError


@dataclass(frozen=True)
class Target:
    """One file of predictions: ``task`` on ``split`` (None: the split asked for; MNLI's halves name theirs),
    predicted by the checkpoints of ``model`` (None: the task's own), written by ``form`` (see ``FORMS``)."""

    task: str
    file: str
    form: str
    split: str | None = None
    model: str | None = None


GLUE = (
    Target("glue_cola", "CoLA.tsv", "id"), Target("glue_sst2", "SST-2.tsv", "id"),
    Target("glue_mrpc", "MRPC.tsv", "id"), Target("glue_stsb", "STS-B.tsv", "score"),
    Target("glue_qqp", "QQP.tsv", "id"), Target("glue_mnli", "MNLI-m.tsv", "name", "{split}_matched"),
    Target("glue_mnli", "MNLI-mm.tsv", "name", "{split}_mismatched"), Target("glue_qnli", "QNLI.tsv", "name"),
    Target("glue_rte", "RTE.tsv", "name"), Target("glue_wnli", "WNLI.tsv", "id"),
    Target("glue_ax", "AX.tsv", "name", model="glue_mnli"),
)
SUPER_GLUE = (
    Target("super_glue_boolq", "BoolQ.jsonl", "lower"), Target("super_glue_cb", "CB.jsonl", "name"),
    Target("super_glue_copa", "COPA.jsonl", "id"), Target("super_glue_multirc", "MultiRC.jsonl", "multirc"),
    Target("super_glue_record", "ReCoRD.jsonl", "record"), Target("super_glue_rte", "RTE.jsonl", "name"),
    Target("super_glue_wic", "WiC.jsonl", "lower"), Target("super_glue_wsc", "WSC.jsonl", "wsc"),
    Target("super_glue_axb", "AX-b.jsonl", "name", model="super_glue_rte"),
    Target("super_glue_axg", "AX-g.jsonl", "name", model="super_glue_rte"),
)
BENCHMARKS = {"glue": GLUE, "super_glue": SUPER_GLUE}  # a leaderboard: its folder and files
MAJORITY_FALLBACK = {"glue_wnli": 0}  # never trained by the paper: its majority class when no checkpoint has it


# ------------------------------------------------------------------------------------------ formats
def _label(value, names: Sequence[str], bad: list) -> int:
    """A class id of a postprocessed prediction; -1 (no valid label) becomes 0 and is counted in ``bad``."""
    if isinstance(value, int) and 0 <= value < max(1, len(names)):
        return value
    bad.append(value)
    return 0


def _label_names(task) -> tuple[str, ...]:
    from t5lit.data.tasks import glue, superglue

    short = task.name.removeprefix("glue_").removeprefix("super_glue_")
    if task.name.startswith("glue_"):
        return (glue.AX if short == "ax" else glue.SPECS[short]).label_names
    return superglue.SPECS[short][2]


def _rows(task, form: str, examples: list[dict], predictions: list[str], bad: list) -> list:
    """The submission rows of one file: ``(index, label)`` for a TSV, JSON objects for a JSON-lines file."""
    names = _label_names(task) if form in ("id", "name", "lower") else ()
    if form == "score":  # STS-B: the predicted similarity, clipped to the scale (an unparsable text -> 0)
        scores = [task.postprocess(p, ex) for ex, p in zip(examples, predictions)]
        bad += [v for v in scores if v < 0]
        return [(ex["idx"], f"{min(5.0, max(0.0, v)):.3f}") for ex, v in zip(examples, scores)]
    if form in ("id", "name", "lower"):
        out = []
        for ex, p in zip(examples, predictions):
            k = _label(task.postprocess(p, ex), names, bad)
            out.append((ex["idx"], k if form == "id" else names[k].lower() if form == "lower" else names[k]))
        return out if task.name.startswith("glue_") else [{"idx": i, "label": v} for i, v in out]
    if form == "wsc":  # wsc_simple: does the predicted referent name the candidate?
        return [{"idx": ex["idx"], "label": str(task.postprocess(p, ex) == 1)} for ex, p in zip(examples, predictions)]
    if form == "record":
        return [{"idx": ex["idx"]["query"], "label": p.strip()} for ex, p in zip(examples, predictions)]
    if form == "multirc":  # one line per passage, questions and answers nested in file order
        passages: dict = {}
        for ex, p in zip(examples, predictions):
            idx = ex["idx"]
            label = _label(task.postprocess(p, ex)["value"], ("False", "True"), bad)
            questions = passages.setdefault(idx["paragraph"], {})
            questions.setdefault(idx["question"], []).append({"idx": idx["answer"], "label": label})
        return [{"idx": p, "passage": {"questions": [{"idx": q, "answers": a} for q, a in qs.items()]}}
                for p, qs in passages.items()]
    raise ValueError(f"unknown submission form {form!r}")


def write_submission(path: Path, task, form: str, examples: list[dict], predictions: list[str]) -> int:
    """Write one leaderboard file (TSV for GLUE, JSON lines for SuperGLUE); returns how many predictions were
    no valid label (written as the first label)."""
    bad: list = []
    rows = _rows(task, form, examples, predictions, bad)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".tsv":
        text = "index\tprediction\n" + "".join(f"{i}\t{v}\n" for i, v in rows)
    else:
        text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    _write(path, text)
    return len(bad)


def write_plain(path: Path, task, examples: list[dict], predictions: list[str]) -> None:
    """Any other task: one prediction per line (``<task>.txt``), or SQuAD's ``{id: answer}`` JSON."""
    if task.name == "squad":
        _write(path, json.dumps({ex["id"]: p.strip() for ex, p in zip(examples, predictions)}, ensure_ascii=False,
                                indent=1) + "\n")
        return
    _write(path, "".join(" ".join(p.split()) + "\n" for p in predictions))


def _write(path: Path, text: str) -> None:
    from t5lit.io import atomic_write_text

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, text)


# ------------------------------------------------------------------------------------------ planning
@dataclass
class Job:
    """One target, resolved: its task, split, file, the checkpoints that predict it (empty: majority class)."""

    target: Target
    task: object
    split: str
    path: Path
    checkpoints: tuple[Path, ...]


def targets_of(names: Sequence[str], split: str) -> tuple[list[Target], list[str]]:
    """The files ``names`` ask for (``glue`` / ``super_glue``: the leaderboard's; a mixture: its tasks), and a
    note for each task that has no ``split``."""
    from t5lit.data.mixtures import UNSUPERVISED, task_names
    from t5lit.data.tasks import get_task

    out: list[Target] = []
    notes: list[str] = []
    for name in names:
        if name in BENCHMARKS:
            found = [t for t in BENCHMARKS[name]]
        else:
            found = []
            for t in task_names(name):
                if t == UNSUPERVISED:
                    continue
                listed = [x for bench in BENCHMARKS.values() for x in bench if x.task == t]
                found += listed or [Target(t, f"{t}.json" if t == "squad" else f"{t}.txt", "plain")]
        for target in found:
            task = get_task(target.task)
            s = target.split.format(split=split) if target.split else split
            if s not in task.splits:
                notes.append(f"{target.file}: {task.name} has no {s!r} split (it has {', '.join(task.splits)}); "
                             "skipped")
                continue
            if target not in out:
                out.append(target)
    return out, notes


def _folder(target: Target) -> str:
    return next((b for b, targets in BENCHMARKS.items() if target in targets), "")


def resolve_checkpoints(given: Sequence[str], target: Target) -> tuple[Path, ...]:
    """The checkpoints that predict ``target``: each given ``.ckpt`` file, or each given stage directory's
    ``best-<task>.ckpt`` (the diagnostics: of the task they are cast as). Empty: a task with a majority
    fallback that no directory has a checkpoint for. Anything else missing is one line."""
    model = target.model or target.task
    out = []
    for item in given:
        path = Path(item)
        if path.is_dir():
            best = path / f"best-{model}.ckpt"
            if not best.is_file():
                if target.task in MAJORITY_FALLBACK and target.model is None:
                    return ()
                have = sorted(p.name for p in path.glob("*.ckpt"))
                raise ConfigError(f"{target.file}: no {best.name} in {path} (it has {', '.join(have) or 'no .ckpt'});"
                                  f" {target.task} is predicted by {model}'s best checkpoint")
            out.append(best)
        elif path.is_file() or path.suffix == ".ckpt":
            out.append(path)  # a missing file is read_checkpoint's one line
        else:
            raise ConfigError(f"checkpoint not found: {path} (a .ckpt file or a fine-tuning stage's directory)")
    return tuple(out)


def _data_dirs(specs: Sequence[str], targets: Sequence[Target]) -> dict[str, str | None]:
    """``--data_dir DIR`` (every task) and ``--data_dir NAME=DIR`` (a task, mixture or benchmark) -> per task."""
    from t5lit.data.mixtures import task_names

    default, by_task = None, {}
    for spec in specs:
        name, sep, folder = spec.partition("=")
        if not sep:
            default = spec
            continue
        if name in BENCHMARKS:
            tasks = [t.task for t in BENCHMARKS[name]]
        else:
            tasks = task_names(name)
        for t in tasks:
            by_task[t] = folder
    return {t.task: by_task.get(t.task, default) for t in targets}


# ------------------------------------------------------------------------------------------ the command
def predict(checkpoints: Sequence[str], names: Sequence[str], out: str | Path, *, data_dir: Sequence[str] = (),
            split: str = "test", vocab: str = "builtin", batch_size: int = 32, max_examples: int | None = None,
            num_beams: int | None = None, inputs_length: int | None = None, targets_length: int | None = None,
            accelerator: str = "auto", print_summary: bool = True) -> dict:
    """Write the predictions of ``checkpoints`` (one model, or an ensemble) on ``names``' ``split`` under
    ``out``; returns ``{"files": [paths], "scores": {task: metrics}, "invalid": {file: count}, "notes": [...]}``."""
    from t5lit.data.vocab import load_vocabulary
    from t5lit.evaluate import _device, check_positive, checkpoint_settings, format_scores, load_predictor, read_members
    from t5lit.evaluator import EvalSet, Evaluator

    check_positive(batch_size=batch_size, max_examples=max_examples, num_beams=num_beams,
                   inputs_length=inputs_length, targets_length=targets_length)
    if not checkpoints:
        raise ConfigError("predict needs --checkpoint: a .ckpt file, a fine-tuning stage's directory, or several")
    targets, notes = targets_of(names, split)
    if not targets:
        raise ConfigError(f"nothing to predict: {'; '.join(notes) or 'no task'}")
    from t5lit.data.tasks import get_task

    out = Path(out)
    dirs = _data_dirs(data_dir, targets)
    jobs = []
    for target in targets:
        folder = _folder(target)
        jobs.append(Job(target, get_task(target.task), target.split.format(split=split) if target.split else split,
                        out / folder / target.file if folder else out / target.file,
                        resolve_checkpoints(checkpoints, target)))
    # Before any decoding: every ensemble's members agree, and every data file reads.
    groups: dict[tuple[tuple[Path, ...], str], list[Job]] = {}
    for job in jobs:
        groups.setdefault((job.checkpoints, job.split), []).append(job)
    settings = {}
    for ckpts, _ in groups:
        if ckpts and ckpts not in settings:
            settings[ckpts] = checkpoint_settings(read_members(ckpts, vocab)[0], vocab)
    data = {}
    for (ckpts, s), group in groups.items():
        cfg = settings.get(ckpts) or {"vocab": vocab, "inputs_length": 512, "targets_length": 128}
        vocabulary = load_vocabulary(cfg["vocab"])
        tasks = list({j.task.name: j.task for j in group}.values())
        data[ckpts, s] = (vocabulary, EvalSet.load(
            tasks, vocabulary, inputs_length=inputs_length or cfg["inputs_length"],
            targets_length=targets_length or cfg["targets_length"], split=s, max_examples=max_examples,
            data_dirs=dirs))
    device = _device(accelerator)
    predictions: dict[tuple[str, str], list[str]] = {}
    loaded: dict[tuple[Path, ...], object] = {}
    for (ckpts, s), group in groups.items():
        vocabulary, evalset = data[ckpts, s]
        if not ckpts:  # the majority class, for a task no checkpoint predicts
            for job in group:
                label = _label_names(job.task)[MAJORITY_FALLBACK[job.task.name]]
                predictions[job.task.name, s] = [label] * len(evalset.raw[job.task.name])
                notes.append(f"{job.target.file}: no checkpoint predicts {job.task.name} (the paper never trains it); "
                             f"written with its majority class {label}")
            continue
        if ckpts not in loaded:
            loaded.clear()  # one model (or ensemble) in memory at a time
            loaded[ckpts] = load_predictor(read_members(ckpts, vocab), device)
        cfg = settings[ckpts]
        evaluator = Evaluator(evalset.tasks, vocabulary, num_beams=num_beams or cfg["num_beams"],
                              length_penalty_alpha=cfg["length_penalty_alpha"],
                              max_decode_length=cfg["max_decode_length"])
        for name, texts in evaluator.predict(loaded[ckpts], evalset, batch_size, device, s,
                                             progress=print_summary).items():
            predictions[name, s] = texts
    files, scores, invalid = [], {}, {}
    for job in jobs:
        evalset = data[job.checkpoints, job.split][1]
        examples, texts = evalset.raw[job.task.name], predictions.get((job.task.name, job.split), [])
        if job.target.form == "plain":
            write_plain(job.path, job.task, examples, texts)
        else:
            bad = write_submission(job.path, job.task, job.target.form, examples, texts)
            if bad:
                invalid[job.target.file] = bad
        files.append(job.path)
        metrics = job.task.evaluate(examples, texts) if job.task.metrics else {}
        if metrics:
            scores[job.task.name if job.split == split else f"{job.task.name}.{job.split}"] = metrics
    for folder in {_folder(j.target) for j in jobs} - {""}:
        archive = out / f"{folder}.zip"
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:  # the leaderboard takes the files at its root
            for job in jobs:
                if _folder(job.target) == folder:
                    z.write(job.path, job.path.name)
        files.append(archive)
    if scores:
        _write(out / "scores.json", json.dumps(scores, indent=1, sort_keys=True) + "\n")
    summary = {"files": [str(f) for f in files], "scores": scores, "invalid": invalid, "notes": notes}
    if print_summary:
        for note in notes:
            print(f"note: {note}")
        for file, n in invalid.items():
            print(f"note: {file}: {n} prediction(s) were no valid label; written as the first label")
        if scores:
            print(format_scores(scores))
        print(f"wrote {len(files)} file(s) under {out}")
    return summary


__all__ = ["BENCHMARKS", "Target", "predict", "resolve_checkpoints", "targets_of", "write_plain", "write_submission"]
