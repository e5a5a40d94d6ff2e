"""The downstream Task: raw examples -> {"inputs", "targets"} text -> decoded predictions -> scores.

A Task bundles four pure pieces (paper Section 2.4, "input and output format"):

- ``source``: where raw examples come from. By default the Hugging Face hub; with ``data_dir``, the official
  distribution files. Both give plain dicts with the hub's field names and an ``idx``, so one formatter
  serves both.
- ``formatter``: raw example -> ``{"inputs": str, "targets": str}`` in T5's text-to-text format.
- ``postprocessor``: ``(decoded prediction, raw example) -> value`` the metrics compare (a class id, a float,
  text); ``target`` gives the gold value of the same kind from the raw example.
- ``metrics``: functions ``(targets, predictions) -> {name: score}`` from ``t5lit.metrics``.

    >>> task = get_task("glue_rte")
    >>> task.format({"sentence1": "A dog ran.", "sentence2": "An animal ran.", "label": 0, "idx": 0})
    {'inputs': 'rte sentence1: A dog ran. sentence2: An animal ran.', 'targets': 'entailment'}
    >>> task.postprocess("not_entailment", {}), task.postprocess("maybe", {})
    (1, -1)
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from t5lit.registry import ConfigError, Registry, check_choice

Example = dict[str, Any]


@dataclass(frozen=True)
class Source:
    """Where a task's raw examples come from.

    Attributes:
        default: ``split -> examples`` without ``data_dir`` (the Hugging Face hub, or built in).
        local: ``(data_dir, split) -> examples`` read from the official files; None when the task has none
            (``data_dir`` is then ignored).
        layout: the files ``local`` expects, for docs and errors, e.g. ``<data_dir>/RTE/{train,dev,test}.tsv``.
        files: ``(data_dir, split) -> paths`` that ``local`` reads, so that a run checks they exist before
            any work starts.
    """

    default: Callable[[str], list[Example]]
    local: Callable[[Path, str], list[Example]] | None = None
    layout: str = ""
    files: Callable[[Path, str], list[Path]] | None = None


def _label(example: Example) -> Any:
    return example["label"]


def _has_label(example: Example) -> bool:
    return example.get("label", -1) != -1


@dataclass(frozen=True)
class Task:
    """One downstream task; register with ``register_task`` and fetch with ``get_task(name)``.

    Attributes:
        name: registry key, e.g. ``glue_rte``.
        source: see ``Source``.
        formatter: raw example -> ``{"inputs", "targets"}``.
        postprocessor: ``(prediction text, raw example) -> value`` for the metrics.
        metrics: ``(targets, predictions) -> {metric: score}`` functions; their results are merged.
        splits: valid split names. Splits named ``test*`` carry no labels and are never scored.
        target: raw example -> the gold value (default: its ``label``).
        is_labelled: raw example -> whether it can be scored (default: ``label != -1``).
        group: raw example -> a group name; when set, each group is scored apart and metric names get the
            suffix ``_<group>`` (MNLI: ``accuracy_matched``, ``accuracy_mismatched``).
        preprocess: ``(examples, split) -> examples`` applied after loading (ReCoRD's one example per answer
            for training, WSC's correct-referent-only training set).
        description: one line for docs.
        num_beams: validation decoding when the run leaves it to the task: 1 (greedy, the paper's study) or
            T5's beam search of 4 (length penalty 0.6) for translation and summarization.
        headline: the metrics whose mean is the task's score (the paper's number for it; the best checkpoint
            is chosen on it); empty: all of its metrics. MRPC: (f1, accuracy); CNN/DM: (rouge2,).
        column: the paper's Table 1 column the task feeds (GLUE, SGLUE, CNNDM, SQuAD, EnDe, EnFr, EnRo); a
            column shared by a mixture (GLUE) is the mean over its tasks; None: reported under its name.
    """

    name: str
    source: Source
    formatter: Callable[[Example], dict[str, str]]
    postprocessor: Callable[[str, Example], Any]
    metrics: tuple[Callable[[Sequence, Sequence], dict[str, float]], ...]
    splits: tuple[str, ...] = ("train", "validation", "test")
    target: Callable[[Example], Any] = _label
    is_labelled: Callable[[Example], bool] = _has_label
    group: Callable[[Example], str] | None = None
    preprocess: Callable[[list[Example], str], list[Example]] | None = None
    description: str = ""
    num_beams: int = 1
    headline: tuple[str, ...] = ()
    column: str | None = None

    def check_split(self, split: str) -> None:
        check_choice(f"split of task {self.name}:", split, self.splits)

    def has_labels(self, split: str) -> bool:
        """Whether ``split`` carries labels (benchmark test splits do not)."""
        self.check_split(split)
        return not split.startswith("test")

    def data_files(self, split: str, data_dir: str | Path) -> list[Path]:
        """The official files ``load(split, data_dir)`` reads (none when the task reads no local files)."""
        self.check_split(split)
        if self.source.local is None or self.source.files is None:
            return []
        return list(self.source.files(Path(data_dir).expanduser(), split))

    def load(self, split: str, data_dir: str | Path | None = None) -> list[Example]:
        """Raw examples of ``split``, from ``data_dir``'s official files if given, else the default source."""
        self.check_split(split)
        if data_dir is not None and self.source.local is not None:
            examples = self.source.local(Path(data_dir).expanduser(), split)
        else:
            examples = self.source.default(split)
        for i, ex in enumerate(examples):
            ex.setdefault("idx", i)
        if self.preprocess is not None:
            examples = self.preprocess(examples, split)
        return examples

    def format(self, example: Example) -> dict[str, str]:
        return self.formatter(example)

    def postprocess(self, prediction: str, example: Example) -> Any:
        return self.postprocessor(prediction, example)

    def evaluate(self, examples: Sequence[Example], predictions: Sequence[str]) -> dict[str, float]:
        """Scores of decoded ``predictions`` against raw ``examples``; unlabelled examples are skipped, and
        ``{}`` is returned when none is labelled (a test split)."""
        if len(examples) != len(predictions):
            raise ValueError(f"task {self.name}: {len(examples)} examples but {len(predictions)} predictions")
        pairs = [(ex, p) for ex, p in zip(examples, predictions) if self.is_labelled(ex)]
        if not pairs:
            return {}
        if self.group is None:
            return self._score(pairs)
        groups: dict[str, list] = {}
        for ex, p in pairs:
            groups.setdefault(self.group(ex), []).append((ex, p))
        out = {}
        for name in sorted(groups):
            out.update({f"{k}_{name}": v for k, v in self._score(groups[name]).items()})
        return out

    def _score(self, pairs: list[tuple[Example, str]]) -> dict[str, float]:
        targets = [self.target(ex) for ex, _ in pairs]
        preds = [self.postprocess(p, ex) for ex, p in pairs]
        out: dict[str, float] = {}
        for metric in self.metrics:
            out.update(metric(targets, preds))
        return out


TASKS: Registry[Task] = Registry("task")


def register_task(task: Task) -> Task:
    """Add ``task`` to ``TASKS`` under ``task.name`` (a duplicate name is an error)."""
    return TASKS.add(task.name, task)


def get_task(name: str) -> Task:
    """The registered task ``name``; an unknown name raises a one-line ConfigError listing the valid ones."""
    return TASKS.get(name)


# ------------------------------------------------------------------------------------- formatters
def join_fields(prefix: str, example: Example, keys: Sequence[str]) -> str:
    """T5's ``glue`` layout: ``"<prefix> key1: value1 key2: value2"``.

    ``join_fields("rte", {"sentence1": "A.", "sentence2": "B."}, ("sentence1", "sentence2"))``
    gives ``"rte sentence1: A. sentence2: B."``.
    """
    parts = [prefix]
    for key in keys:
        parts += [f"{key}:", str(example[key])]
    return " ".join(parts)


def label_text(example: Example, label_names: Sequence[str]) -> str:
    """The label's name; ``"<unk>"`` for an unlabelled example (label -1), as T5 writes it."""
    label = example.get("label", -1)
    return "<unk>" if label == -1 else label_names[int(label)]


def classification_formatter(prefix: str, keys: Sequence[str], label_names: Sequence[str]):
    """Formatter for a labelled example: fields joined with ``join_fields``, target = label name."""

    def formatter(example: Example) -> dict[str, str]:
        return {"inputs": join_fields(prefix, example, keys), "targets": label_text(example, label_names)}

    return formatter


def label_postprocessor(label_names: Sequence[str]):
    """Prediction text -> class id; anything outside ``label_names`` (empty included) -> -1, always wrong."""
    names = tuple(label_names)

    def postprocessor(prediction: str, example: Example) -> int:
        text = prediction.strip()
        return names.index(text) if text in names else -1

    return postprocessor


def text_postprocessor(prediction: str, example: Example) -> str:
    """Generation tasks compare the decoded text itself."""
    return prediction.strip()


# ------------------------------------------------------------------------------------- loading helpers
def load_hub(path: str, name: str | None, split: str) -> list[Example]:
    """Rows of a Hugging Face dataset split as plain dicts; any failure is one line suggesting ``data_dir``."""
    where = f"{path}" + (f" ({name})" if name else "") + f" split {split!r}"
    try:
        import datasets

        rows = datasets.load_dataset(path, name, split=split)
    except Exception as err:  # noqa: BLE001 - network, auth, or missing dataset: all reported the same way
        msg = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ConfigError(f"could not load {where} from the Hugging Face hub ({type(err).__name__}: {msg}); "
                          f"pass data_dir with the official files instead") from None
    return [dict(row) for row in rows]


def expect_file(path: Path) -> Path:
    if not path.is_file():
        raise ConfigError(f"data file not found: {path} (data_dir must hold the official distribution files)")
    return path


def read_jsonl(path: Path) -> list[Example]:
    """One JSON object per line (blank lines skipped)."""
    with open(expect_file(path), encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def read_tsv(path: Path, header: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Tab-separated rows as dicts keyed by the first line (or by ``header`` for files without one).

    No quoting is applied (GLUE's files contain bare ``"``), as in the GLUE baselines' readers; a UTF-8
    byte-order mark (MRPC's files) is dropped; a row shorter than the header is an error naming its line.
    """
    with open(expect_file(path), encoding="utf-8-sig", newline="") as f:
        lines = [line.rstrip("\r") for line in f.read().split("\n")]
    rows = [line.split("\t") for line in lines if line.strip()]
    if header is None:
        header, rows = rows[0], rows[1:]
        first = 2
    else:
        first = 1
    out = []
    for n, cols in enumerate(rows):
        if len(cols) < len(header):
            raise ConfigError(f"{path}:{n + first}: {len(cols)} tab-separated fields, expected {len(header)}")
        out.append(dict(zip(header, cols)))
    return out


def interleave(*lists: list[Example]) -> list[Example]:
    """``[a0, b0, a1, b1, ...]`` then the longer list's rest, so that any prefix holds both (MNLI's matched
    and mismatched validation sets under one ``validation`` split)."""
    out = []
    for i in range(max(len(x) for x in lists)):
        out += [x[i] for x in lists if i < len(x)]
    return out
