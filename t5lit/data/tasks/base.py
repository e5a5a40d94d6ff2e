"""The downstream Task: raw examples -> {"inputs", "targets"} text -> decoded predictions -> scores.

A Task bundles four pure pieces (paper Section 2.4, "input and output format"):

- ``source``: where raw examples come from. By default the Hugging Face hub; with ``data_dir``, the official
  distribution files. Both give plain dicts with the hub's field names and an ``idx``, so one formatter
  serves both.
- ``formatter``: raw example -> ``{"inputs": str, "targets": str}`` in T5's text-to-text format.
- ``postprocessor``: ``(decoded prediction, raw example) -> value`` the metrics compare (a class id, a float,
  text); ``target`` gives the gold value of the same kind from the raw example.
- ``metrics``: functions ``(targets, predictions) -> {name: score}`` from ``t5lit.metrics``.

``Task.score_examples`` also returns the per-example statistics the scores come from (``ExampleScores``:
numbers only), and ``Task.metrics_from`` recomputes the metrics from them on any subset or bootstrap resample
of the examples: a sweep's report compares two runs by resampling the same examples (the paired bootstrap).

    >>> task = get_task("glue_rte")
    >>> task.format({"sentence1": "A dog ran.", "sentence2": "An animal ran.", "label": 0, "idx": 0})
    {'inputs': 'rte sentence1: A dog ran. sentence2: An animal ran.', 'targets': 'entailment'}
    >>> task.postprocess("not_entailment", {}), task.postprocess("maybe", {})
    (1, -1)
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

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
        return self.score_examples(examples, predictions)[0]

    def score_examples(self, examples: Sequence[Example],
                       predictions: Sequence[str]) -> tuple[dict[str, float], ExampleScores | None]:
        """``evaluate``'s scores and the per-example statistics they come from (None without labelled
        examples, or when a metric of your own cannot score single examples)."""
        if len(examples) != len(predictions):
            raise ValueError(f"task {self.name}: {len(examples)} examples but {len(predictions)} predictions")
        pairs = [(ex, p) for ex, p in zip(examples, predictions) if self.is_labelled(ex)]
        if not pairs:
            return {}, None
        targets = [self.target(ex) for ex, _ in pairs]
        preds = [self.postprocess(p, ex) for ex, p in pairs]
        group_of = [self.group(ex) for ex, _ in pairs] if self.group is not None else None
        group_names = tuple(sorted(set(group_of))) if group_of is not None else ()
        group = np.asarray([group_names.index(g) for g in group_of]) if group_of is not None else None
        stats, names, direct = [], [], {}
        for m, metric in enumerate(self.metrics):
            if hasattr(metric, "example_stats") and hasattr(metric, "from_stats"):
                stats.append(np.asarray(metric.example_stats(targets, preds), np.float64))
                names.append(None)
                continue
            direct[m] = metric  # a metric of your own: scored as a whole, single examples for the statistics
            try:
                singles = [metric([t], [p]) for t, p in zip(targets, preds)]
                keys = tuple(singles[0])
                stats.append(np.asarray([[s[k] for k in keys] for s in singles], np.float64))
                names.append(keys)
            except Exception:  # noqa: BLE001 - it needs more than one example: no per-example statistics
                stats.append(None)
                names.append(())
        scores = ExampleScores(stats, names, group, group_names)
        out = self._metrics(scores, None, lambda m, idx: direct[m]([targets[i] for i in idx],
                                                                   [preds[i] for i in idx]))
        return out, (scores if all(s is not None for s in stats) else None)

    def metrics_from(self, scores: ExampleScores, index: Sequence[int] | np.ndarray | None = None) -> dict[str, float]:
        """The task's metrics recomputed from per-example statistics, on the examples at ``index`` (a subset,
        or a bootstrap resample with repeats; None: all of them). A metric of your own counts as the mean of
        its single-example scores here (exact for a mean over examples, such as accuracy)."""
        return self._metrics(scores, index, None)

    def _metrics(self, scores: ExampleScores, index, direct) -> dict[str, float]:
        idx = np.arange(len(scores)) if index is None else np.asarray(index, np.int64)
        parts = [("", idx)] if scores.group is None else [
            (f"_{name}", idx[scores.group[idx] == g]) for g, name in enumerate(scores.group_names)]
        out: dict[str, float] = {}
        for suffix, rows in parts:
            if len(rows) == 0:
                continue
            for m, metric in enumerate(self.metrics):
                if scores.names[m] is None:
                    values = metric.from_stats(scores.stats[m][rows])
                elif direct is not None:
                    values = direct(m, rows)
                else:
                    values = {k: float(v) for k, v in zip(scores.names[m], scores.stats[m][rows].mean(axis=0))}
                out.update({f"{k}{suffix}": v for k, v in values.items()})
        return out


@dataclass
class ExampleScores:
    """Per-example statistics of a task's metrics over its labelled examples, in example order, from which
    ``Task.metrics_from`` recomputes the metrics on any subset or resample (bootstrap intervals, the paired
    bootstrap between two runs). Numbers only, so that results keep them.

    stats[m]: (n, k) statistics of metric m (``metric.example_stats``), or, for a metric without them, its
    single-example scores, whose names are names[m] (None for the exact kind). group: (n,) the group number
    of each example (MNLI's matched / mismatched), its names in group_names.
    """

    stats: list
    names: list
    group: np.ndarray | None = None
    group_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return 0 if not self.stats else len(self.stats[0])

    def to_dict(self, decimals: int = 6) -> dict:
        """``{"n", "stats": [per metric: columns of numbers], "names", "group"?, "groups"?}``; values rounded to
        ``decimals`` (the metrics are on 0-100 scales: 1e-6 is far below any reported digit)."""
        out: dict = {"n": len(self), "names": [list(n) if n is not None else None for n in self.names],
                     "stats": [[_compact(col, decimals) for col in np.asarray(s).T] for s in self.stats]}
        if self.group is not None:
            out.update(group=[int(g) for g in self.group], groups=list(self.group_names))
        return out

    @classmethod
    def from_dict(cls, d: dict) -> ExampleScores:
        n = int(d["n"])
        stats = [np.asarray(cols, np.float64).T.reshape(n, len(cols)) for cols in d["stats"]]
        names = [tuple(x) if x is not None else None for x in d["names"]]
        group = np.asarray(d["group"], np.int64) if "group" in d else None
        return cls(stats, names, group, tuple(d.get("groups", ())))


def _compact(values: np.ndarray, decimals: int) -> list:
    """Whole numbers as ints, others rounded: a compact JSON column."""
    rounded = np.round(np.asarray(values, np.float64), decimals)
    return [int(v) if float(v).is_integer() else v for v in rounded.tolist()]


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
    """``path`` when it is a file, else a one-line ConfigError naming it."""
    if path.is_dir():
        raise ConfigError(f"data file {path} is a directory, not a file (data_dir must hold the official "
                          "distribution files)")
    if not path.is_file():
        raise ConfigError(f"data file not found: {path} (data_dir must hold the official distribution files)")
    return path


def json_type(value: Any) -> str:
    """The JSON name of a parsed value's type: object, array, string, number, boolean, null."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "boolean"
    return "null" if value is None else "number"


def _not_utf8(path: Path, line: int, data: bytes, err: UnicodeDecodeError) -> ConfigError:
    column = err.start - (data.rfind(b"\n", 0, err.start) + 1) + 1
    return ConfigError(f"{path}:{line}: byte 0x{data[err.start]:02x} at column {column} is not UTF-8; the file "
                       "must be UTF-8 text")


def read_text(path: Path) -> str:
    """A whole UTF-8 text file (a leading byte-order mark dropped). A byte that is not UTF-8 is an error naming
    its line and column (T5's files are UTF-8; a Latin-1 export is the usual cause)."""
    try:
        data = expect_file(path).read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read data file {path}: {err.strerror or err}") from None
    data = data.removeprefix(codecs.BOM_UTF8)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(path, data.count(b"\n", 0, err.start) + 1, data, err) from None


def iter_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file, read one line at a time: a newline (or CR LF) ends a line,
    the final newline adds none, a leading byte-order mark is dropped; a byte that is not UTF-8 is an error
    naming its line and column."""
    try:
        with open(expect_file(path), "rb") as f:
            for number, raw in enumerate(f, 1):
                if number == 1:
                    raw = raw.removeprefix(codecs.BOM_UTF8)
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise _not_utf8(path, number, raw, err) from None
                yield number, line.removesuffix("\n").removesuffix("\r")
    except OSError as err:
        raise ConfigError(f"cannot read data file {path}: {err.strerror or err}") from None


def text_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file (see ``iter_lines``)."""
    return [line for _, line in iter_lines(path)]


def read_jsonl_records(path: Path) -> list[tuple[int, Example]]:
    """``(line number, object)`` for each JSON object of a JSON-lines file (blank lines skipped). A line that
    is not JSON (a truncated file's last line), a line that is not an object, and a file with no line at all
    are errors naming the file and line."""
    out = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}:{number}: not valid JSON ({err.msg}: column {err.colno}); each line must "
                              "be one whole JSON object (a truncated file?)") from None
        if not isinstance(record, dict):
            raise ConfigError(f"{path}:{number}: expected a JSON object, got a JSON {json_type(record)}")
        out.append((number, record))
    if not out:
        raise ConfigError(f"{path}: no examples (the file is empty); expected one JSON object per line")
    return out


def read_jsonl(path: Path) -> list[Example]:
    """One JSON object per line (blank lines skipped); see ``read_jsonl_records`` for the errors."""
    return [record for _, record in read_jsonl_records(path)]


def read_json(path: Path) -> Any:
    """A whole JSON file; invalid JSON is an error naming the line and column where it breaks."""
    try:
        return json.loads(read_text(path))
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}:{err.colno}: not valid JSON ({err.msg}); a truncated file?") from None


def require_field(record: Example, key: str, where: str, kind: type | tuple[type, ...] | None = str) -> Any:
    """``record[key]``, which must exist and (unless ``kind`` is None) be of the JSON type ``kind``;
    ``where`` names the record (``file:line`` and its path inside the record)."""
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object, got a JSON {json_type(record)}")
    if key not in record:
        has = ", ".join(map(str, record)) or "none"
        raise ConfigError(f"{where}: no field {key!r} (has: {has})")
    value = record[key]
    if kind is not None:
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            wanted = " or ".join(dict.fromkeys(json_type(k()) for k in kinds))
            raise ConfigError(f"{where}: field {key!r} must be a JSON {wanted}, got a JSON {json_type(value)}")
    return value


def read_tsv_rows(path: Path, header: Sequence[str] | None = None) -> tuple[list[str], list[tuple[int, dict]]]:
    """``(header, [(line number, row)])`` of a tab-separated file; see ``read_tsv``."""
    numbered = [(n, line.split("\t")) for n, line in iter_lines(path) if line.strip()]
    if header is None:
        if not numbered:
            raise ConfigError(f"{path}: empty file; expected a header line, then one tab-separated row per line")
        header, numbered = numbered[0][1], numbered[1:]
    header = list(header)
    out = []
    for n, cols in numbered:
        if len(cols) < len(header):
            raise ConfigError(f"{path}:{n}: {len(cols)} tab-separated fields, expected {len(header)} "
                              f"({', '.join(header)}); a truncated file?")
        out.append((n, dict(zip(header, cols))))
    return header, out


def read_tsv(path: Path, header: Sequence[str] | None = None) -> list[dict[str, str]]:
    """Tab-separated rows as dicts keyed by the first line (or by ``header`` for files without one).

    No quoting is applied (GLUE's files contain bare ``"``), as in the GLUE baselines' readers; a UTF-8
    byte-order mark (MRPC's files) is dropped; a row shorter than the header, a byte that is not UTF-8 and
    an empty file are errors naming the file and line (lines count from 1, the header included).
    """
    return [row for _, row in read_tsv_rows(path, header)[1]]


def interleave(*lists: list[Example]) -> list[Example]:
    """``[a0, b0, a1, b1, ...]`` then the longer list's rest, so that any prefix holds both (MNLI's matched
    and mismatched validation sets under one ``validation`` split)."""
    out = []
    for i in range(max(len(x) for x in lists)):
        out += [x[i] for x in lists if i < len(x)]
    return out
