"""GLUE (Wang et al., 2018) as T5 casts it (t5/data/preprocessors.py ``glue`` and ``stsb``; paper Section 2.3).

Inputs are ``"<task> <field>: <text> ..."`` with the fields in sorted order; targets are the label's name:

    cola  sentence: ...                      -> acceptable | unacceptable              (MCC)
    sst2  sentence: ...                      -> positive | negative                    (accuracy)
    mrpc  sentence1: ... sentence2: ...      -> equivalent | not_equivalent            (F1, accuracy)
    qqp   question1: ... question2: ...      -> duplicate | not_duplicate              (F1, accuracy)
    stsb  sentence1: ... sentence2: ...      -> "3.8" (score rounded to 0.2)           (Pearson, Spearman)
    mnli  hypothesis: ... premise: ...       -> entailment | neutral | contradiction   (accuracy m / mm)
    qnli  question: ... sentence: ...        -> entailment | not_entailment            (accuracy)
    rte   sentence1: ... sentence2: ...      -> entailment | not_entailment            (accuracy)
    wnli  sentence1: ... sentence2: ...      -> entailment | not_entailment            (accuracy)

Sources: the hub's ``nyu-mll/glue``, or with ``data_dir`` the official ``glue_data`` layout:
``<data_dir>/<TASK>/{train,dev,test}.tsv`` with TASK in CoLA, SST-2, MRPC, QQP, STS-B, MNLI, QNLI, RTE, WNLI
(MNLI: ``dev_matched.tsv``, ``dev_mismatched.tsv``, ``test_matched.tsv``, ``test_mismatched.tsv``). CoLA's
train and dev files have no header (source, label, original label, sentence); every other file has one.

MNLI's ``validation`` split holds the matched and mismatched sets interleaved, each example tagged with
``subset``; it is scored per subset as ``accuracy_matched`` and ``accuracy_mismatched`` (the paper's MNLI-m
and MNLI-mm). ``validation_matched`` / ``validation_mismatched`` (and the test ones) give one set each.

The diagnostic ``glue_ax`` (test only, unlabelled) is cast as MNLI, as T5 does (``glue_utils``: "Cast the GLUE
diagnostic task as MNLI"): ``mnli hypothesis: <sentence2> premise: <sentence1>``, predicted with the MNLI
model; it is in no mixture and no average. Its file is the official ``<data_dir>/diagnostic/diagnostic.tsv``
(``index``, ``sentence1``, ``sentence2``), or the hub's ``ax`` test split. Test examples keep the file's own
``index`` (QQP: ``id``) as ``idx``: the leaderboard's submission files name examples by it (t5lit/predict.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    classification_formatter,
    interleave,
    label_postprocessor,
    load_hub,
    read_tsv_rows,
    register_task,
)
from t5lit.registry import ConfigError

HUB_PATH = "nyu-mll/glue"


@dataclass(frozen=True)
class GlueSpec:
    """One GLUE task: hub config, official folder, fields, labels, and how its TSV columns map to fields."""

    name: str  # hub config and T5's input prefix
    folder: str  # folder in glue_data
    keys: tuple[str, ...]  # input fields, in T5's (sorted) order
    label_names: tuple[str, ...]  # class id -> target text (the hub's order)
    columns: dict[str, str]  # field -> TSV column
    label_column: str
    label_type: str = "int"  # "int" (0/1 in the file), "name" (label text), "float" (STS-B)
    header: tuple[str, ...] | None = None  # train/dev column names for files without a header line


SPECS = {s.name: s for s in [
    GlueSpec("cola", "CoLA", ("sentence",), ("unacceptable", "acceptable"), {"sentence": "sentence"}, "label",
             header=("source", "label", "original_label", "sentence")),
    GlueSpec("sst2", "SST-2", ("sentence",), ("negative", "positive"), {"sentence": "sentence"}, "label"),
    GlueSpec("mrpc", "MRPC", ("sentence1", "sentence2"), ("not_equivalent", "equivalent"),
             {"sentence1": "#1 String", "sentence2": "#2 String"}, "Quality"),
    GlueSpec("qqp", "QQP", ("question1", "question2"), ("not_duplicate", "duplicate"),
             {"question1": "question1", "question2": "question2"}, "is_duplicate"),
    GlueSpec("stsb", "STS-B", ("sentence1", "sentence2"), (), {"sentence1": "sentence1", "sentence2": "sentence2"},
             "score", label_type="float"),
    GlueSpec("mnli", "MNLI", ("hypothesis", "premise"), ("entailment", "neutral", "contradiction"),
             {"premise": "sentence1", "hypothesis": "sentence2"}, "gold_label", label_type="name"),
    GlueSpec("qnli", "QNLI", ("question", "sentence"), ("entailment", "not_entailment"),
             {"question": "question", "sentence": "sentence"}, "label", label_type="name"),
    GlueSpec("rte", "RTE", ("sentence1", "sentence2"), ("entailment", "not_entailment"),
             {"sentence1": "sentence1", "sentence2": "sentence2"}, "label", label_type="name"),
    GlueSpec("wnli", "WNLI", ("sentence1", "sentence2"), ("not_entailment", "entailment"),
             {"sentence1": "sentence1", "sentence2": "sentence2"}, "label"),
]}

# MNLI's split -> its official file stem and the hub's split; the other tasks use train / dev / test.
MNLI_SPLITS = {"train": "train", "validation_matched": "dev_matched", "validation_mismatched": "dev_mismatched",
               "test_matched": "test_matched", "test_mismatched": "test_mismatched"}
FILE_STEMS = {"train": "train", "validation": "dev", "test": "test"}


def _parse_label(spec: GlueSpec, value: str, where: str):
    """The label of one row: a class id (from a 0/1 column or a label name) or STS-B's float score."""
    if spec.label_type == "float":
        try:
            score = float(value)
        except ValueError:
            score = math.nan
        if not 0.0 <= score <= 5.0:  # nan fails too
            raise ConfigError(f"{where}: label {value!r} of GLUE {spec.name} must be a number from 0 to 5")
        return score
    if spec.label_type == "name":
        if value not in spec.label_names:
            raise ConfigError(f"{where}: unexpected label {value!r} for GLUE {spec.name}; valid: "
                              f"{', '.join(spec.label_names)}")
        return spec.label_names.index(value)
    valid = ", ".join(f"{i} ({name})" for i, name in enumerate(spec.label_names))
    if not value.strip().lstrip("-").isdigit() or not 0 <= int(value) < len(spec.label_names):
        raise ConfigError(f"{where}: unexpected label {value!r} for GLUE {spec.name}; valid: {valid}")
    return int(value)


def read_glue_file(spec: GlueSpec, path: Path, unlabelled: bool | None = None) -> list[Example]:
    """The examples of one official GLUE TSV file, with the hub's field names (``label`` -1 when absent: test
    files, ``test*.tsv``, unless ``unlabelled`` says otherwise).

    Errors name the file and line (the header is line 1): a missing column, a short row, a label outside the
    task's labels (``RTE/dev.tsv:3: unexpected label 'maybe' for GLUE rte; valid: entailment, not_entailment``).
    """
    unlabelled = path.stem.startswith("test") if unlabelled is None else unlabelled
    header, rows = read_tsv_rows(path, header=None if unlabelled else spec.header)
    needed = list(spec.columns.values()) + ([] if unlabelled else [spec.label_column])
    missing = [c for c in needed if c not in header]
    if missing:
        raise ConfigError(f"{path}:1: no column {missing[0]!r} in the header ({', '.join(header)}); GLUE "
                          f"{spec.name}'s {path.name} has the columns {', '.join(dict.fromkeys(needed))}")
    out = []
    for i, (line, row) in enumerate(rows):
        ex: Example = {field: row[col] for field, col in spec.columns.items()}
        ex["label"] = -1 if unlabelled else _parse_label(spec, row[spec.label_column], f"{path}:{line}")
        ex["idx"] = _file_index(row, i) if unlabelled else i
        out.append(ex)
    return out


def _file_index(row: dict, position: int) -> int:
    """A test row's own ``index`` (QQP: ``id``) column, which the leaderboard's submissions use; else its
    position (the same number in the official files)."""
    value = row.get("index", row.get("id", ""))
    return int(value) if value.strip().isdigit() else position


def _with_subset(examples: list[Example], split: str) -> list[Example]:
    subset = "mismatched" if split.endswith("_mismatched") else "matched"
    for ex in examples:
        ex["subset"] = subset
    return examples


def _load(spec: GlueSpec, data_dir: Path | None, split: str) -> list[Example]:
    if spec.name == "mnli" and split in ("validation", "test"):  # both MNLI sets, interleaved
        return interleave(_load(spec, data_dir, f"{split}_matched"), _load(spec, data_dir, f"{split}_mismatched"))
    if data_dir is None:
        rows = load_hub(HUB_PATH, spec.name, split)
    else:
        stem = MNLI_SPLITS[split] if spec.name == "mnli" else FILE_STEMS[split]
        rows = read_glue_file(spec, data_dir / spec.folder / f"{stem}.tsv")
    return _with_subset(rows, split) if spec.name == "mnli" else rows


# ------------------------------------------------------------------------------------- STS-B
def stsb_target(label: float) -> str:
    """The score rounded to the nearest 0.2 (half to even) with one decimal: ``stsb_target(3.85) == "3.8"``."""
    return f"{round(label * 5) / 5:.1f}"


def stsb_formatter(example: Example) -> dict[str, str]:
    label = example.get("label", -1)
    target = "<unk>" if label == -1 else stsb_target(float(label))
    return {"inputs": f"stsb sentence1: {example['sentence1']} sentence2: {example['sentence2']}", "targets": target}


def stsb_postprocessor(prediction: str, example: Example) -> float:
    """The predicted score; unparsable or non-finite text -> -1.0 (T5's default), far from any real score."""
    try:
        value = float(prediction.strip())
    except ValueError:
        return -1.0
    return value if math.isfinite(value) else -1.0


# ------------------------------------------------------------------------------------- registration
METRICS = {
    "cola": (M.matthews_corrcoef,), "sst2": (M.accuracy,), "mrpc": (M.f1_with_invalid, M.accuracy),
    "qqp": (M.f1_with_invalid, M.accuracy), "stsb": (M.pearson_spearman,), "mnli": (M.accuracy,),
    "qnli": (M.accuracy,), "rte": (M.accuracy,), "wnli": (M.accuracy,),
}


def _layout(spec: GlueSpec) -> str:
    if spec.name == "mnli":
        return "<data_dir>/MNLI/{train,dev_matched,dev_mismatched,test_matched,test_mismatched}.tsv"
    return f"<data_dir>/{spec.folder}/{{train,dev,test}}.tsv"


def _files(spec: GlueSpec, data_dir: Path, split: str) -> list[Path]:
    if spec.name == "mnli":
        stems = ([MNLI_SPLITS[f"{split}_matched"], MNLI_SPLITS[f"{split}_mismatched"]]
                 if split in ("validation", "test") else [MNLI_SPLITS[split]])
    else:
        stems = [FILE_STEMS[split]]
    return [data_dir / spec.folder / f"{stem}.tsv" for stem in stems]


def _register(spec: GlueSpec) -> Task:
    source = Source(default=partial(_load, spec, None), local=lambda d, split: _load(spec, d, split),
                    layout=_layout(spec), files=partial(_files, spec))
    splits = ("train", "validation", "test")
    kwargs = {}
    if spec.name == "mnli":
        splits += ("validation_matched", "validation_mismatched", "test_matched", "test_mismatched")
        kwargs["group"] = lambda ex: ex.get("subset", "matched")
    if spec.name == "stsb":
        formatter, post = stsb_formatter, stsb_postprocessor
    else:
        formatter = classification_formatter(spec.name, spec.keys, spec.label_names)
        post = label_postprocessor(spec.label_names)
    return register_task(Task(name=f"glue_{spec.name}", source=source, formatter=formatter, postprocessor=post,
                              metrics=METRICS[spec.name], splits=splits, description=f"GLUE {spec.folder}",
                              headline=M.GLUE_AVERAGE.get(f"glue_{spec.name}", ()), column="GLUE", **kwargs))


for _spec in SPECS.values():
    _register(_spec)


# ------------------------------------------------------------------------------------- diagnostic (AX)
AX = GlueSpec("mnli", "diagnostic", SPECS["mnli"].keys, SPECS["mnli"].label_names,
              {"premise": "sentence1", "hypothesis": "sentence2"}, "label", label_type="name")


def _load_ax(data_dir: Path | None, split: str) -> list[Example]:
    if data_dir is None:
        return load_hub(HUB_PATH, "ax", split)
    return read_glue_file(AX, _ax_file(data_dir), unlabelled=True)


def _ax_file(data_dir: Path) -> Path:
    return data_dir / "diagnostic" / "diagnostic.tsv"


register_task(Task(
    name="glue_ax", source=Source(default=partial(_load_ax, None), local=_load_ax,
                                  layout="<data_dir>/diagnostic/diagnostic.tsv",
                                  files=lambda d, split: [_ax_file(d)]),
    formatter=classification_formatter(AX.name, AX.keys, AX.label_names),
    postprocessor=label_postprocessor(AX.label_names), metrics=(), splits=("test",),
    description="GLUE diagnostic (AX), cast as MNLI and predicted with the MNLI model"))
