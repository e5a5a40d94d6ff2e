"""The one Evaluator: predictions -> decoded text -> postprocessed values -> metrics -> samples, per task.

Every place that scores a model goes through it: the validation callback during fine-tuning
(``t5lit.callbacks.TaskValidation``), ``t5lit eval``, evaluate stages of the pipeline, and the pipeline's
summary columns. Results are structured (``TaskResult``, ``EvalResult``), never metric-name strings that
someone parses back.

    evaluator = Evaluator(get_task_or_mixture("glue"), vocab, num_beams=1, max_decode_length=128)
    data = EvalSet.load(evaluator.tasks, vocab, inputs_length=512, data_dir="glue_data")
    result = evaluator.evaluate(ModelPredictor(model), data, batch_size=32)
    result.tasks["glue_rte"].score, result.tasks["glue_rte"].metrics     # 71.5, {"accuracy": 71.5}

A predictor turns a batch of inputs (B, L) into generated token ids (B, T); ``ModelPredictor`` wraps one
model's ``generate``, and an ensemble (``t5lit.ensemble.Ensemble``, the members' per-step log-probabilities
averaged) is decoded by the same ``generate``: ``ModelPredictor(Ensemble(models))``. ``Evaluator.predict``
gives the decoded texts of every example of a split, labelled or not (test-set submissions,
t5lit/predict.py). Each Task declares its ``headline`` metrics (their mean is the task's score: the best
checkpoint is chosen on it) and its paper ``column`` (Table 1's GLUE, SGLUE, CNNDM, SQuAD, EnDe, EnFr, EnRo);
``summarize`` turns task scores into those columns.

Each TaskResult also keeps its per-example statistics (``examples``, numbers only: ``ExampleScores.to_dict``),
from which a sweep's report recomputes any metric on resampled examples (the paired bootstrap between two
runs), and a 95% bootstrap interval beside every metric (``intervals``, examples resampled with a fixed
seed), as T5 logged one beside ROUGE.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from t5lit.data.tasks.base import ExampleScores, Task
from t5lit.model.generate import generate
from t5lit.stats import BOOTSTRAP_SAMPLES, percentile_interval

# The paper's summary columns in Table 1's order; each comes from the tasks (or mixture) that declare it.
PAPER_COLUMNS = ("GLUE", "CNNDM", "SQuAD", "SGLUE", "EnDe", "EnFr", "EnRo")


@dataclass
class TaskResult:
    """One task's scores: every metric (0-100), the headline score, how many examples, a few samples; the
    per-example statistics (``ExampleScores.to_dict()``, None when unavailable) and a 95% bootstrap interval
    ``[low, high]`` per metric."""

    task: str
    metrics: dict[str, float]
    score: float
    num_examples: int
    samples: list[dict[str, str]] = field(default_factory=list)  # {"input", "prediction", "target"}
    examples: dict | None = None
    intervals: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        out = {"task": self.task, "metrics": self.metrics, "score": self.score, "num_examples": self.num_examples,
               "samples": self.samples, "intervals": self.intervals}
        if self.examples is not None:
            out["examples"] = self.examples
        return out

    @classmethod
    def from_dict(cls, d: Mapping) -> TaskResult:
        return cls(d["task"], dict(d["metrics"]), float(d["score"]), int(d["num_examples"]), list(d.get("samples", [])),
                   d.get("examples"), {k: list(v) for k, v in (d.get("intervals") or {}).items()})

    def samples_markdown(self) -> str:
        lines = ["| input | prediction | target |", "|---|---|---|"]
        for s in self.samples:
            cells = [s["input"][:300], s["prediction"], s["target"][:300]]
            lines.append("| " + " | ".join(c.replace("|", "\\|").replace("\n", " ") for c in cells) + " |")
        return "\n".join(lines)


@dataclass
class EvalResult:
    """The results of one evaluation, by task name."""

    tasks: dict[str, TaskResult] = field(default_factory=dict)

    def metrics(self) -> dict[str, dict[str, float]]:
        return {name: dict(r.metrics) for name, r in self.tasks.items()}

    def scores(self) -> dict[str, float]:
        return {name: r.score for name, r in self.tasks.items()}


class Predictor(Protocol):
    """Generates targets for a batch of inputs (B, L), right-padded with 0 -> token ids (B, T)."""

    def predict(self, inputs, *, num_beams: int, max_new_tokens: int, length_penalty_alpha: float): ...


class ModelPredictor:
    """One model's greedy or beam-search decoding (``t5lit.model.generate``)."""

    def __init__(self, model):
        self.model = model

    def predict(self, inputs, *, num_beams: int, max_new_tokens: int, length_penalty_alpha: float = 0.6):
        return generate(self.model, inputs, max_new_tokens=max_new_tokens, num_beams=num_beams,
                        length_penalty_alpha=length_penalty_alpha)


@dataclass
class EvalSet:
    """The examples of one split of some tasks, raw and tokenized: what a model is scored on.

    raw[task]: the raw examples (``Task.load``); text[task]: formatted ``{"inputs", "targets"}``;
    inputs[task] / targets[task]: token ids (EOS last, truncated to the lengths as T5 does)."""

    tasks: list[Task]
    raw: dict[str, list[dict]]
    text: dict[str, list[dict[str, str]]]
    inputs: dict[str, list[np.ndarray]]
    targets: dict[str, list[np.ndarray]]

    @classmethod
    def load(cls, tasks: Sequence[Task], vocab, *, inputs_length: int, targets_length: int = 512,
             split: str = "validation", max_examples: int | None = None,
             data_dirs: Mapping[str, str | None] | str | None = None) -> EvalSet:
        """A task without ``split`` contributes no examples (DPR has no validation split: T5 skips evaluating
        such a task of a mixture, and so does this)."""
        raw, text, inputs, targets = {}, {}, {}, {}
        for task in tasks:
            d = data_dirs.get(task.name) if isinstance(data_dirs, Mapping) else data_dirs
            examples = task.load(split, d) if split in task.splits else []
            if max_examples is not None:
                examples = examples[:max_examples]
            raw[task.name] = examples
            text[task.name] = [task.format(ex) for ex in examples]
            inputs[task.name] = [tokenize(vocab, t["inputs"], inputs_length) for t in text[task.name]]
            targets[task.name] = [tokenize(vocab, t["targets"], targets_length) for t in text[task.name]]
        return cls(list(tasks), raw, text, inputs, targets)

    def batches(self, batch_size: int, split: str = "validation", labelled_only: bool = True):
        """``(task index, example indices, inputs (B, L) int64 right-padded)`` over every scorable task (with
        ``labelled_only=False``, every task that has the split: test sets to predict)."""
        for ti, task in enumerate(self.tasks):
            if split not in task.splits or (labelled_only and not task.has_labels(split)):
                continue
            exs = self.inputs[task.name]
            for start in range(0, len(exs), batch_size):
                part = exs[start:start + batch_size]
                arr = np.zeros((len(part), max(len(e) for e in part)), np.int64)
                for r, e in enumerate(part):
                    arr[r, : len(e)] = e
                yield ti, list(range(start, start + len(part))), arr


def tokenize(vocab, text: str, length: int) -> np.ndarray:
    """Ids of ``text`` cut to ``length - 1`` tokens, then EOS (T5's truncation for fine-tuning)."""
    return np.asarray(vocab.encode(text)[: length - 1] + [vocab.eos_id], dtype=np.int32)


class Evaluator:
    """Scores predictions of ``tasks`` (decode with ``vocab``, postprocess, metrics, samples).

    num_beams None: each task's own (``Task.num_beams``); an integer decodes every task so.
    """

    def __init__(self, tasks: Sequence[Task], vocab, *, num_beams: int | None = None,
                 length_penalty_alpha: float = 0.6, max_decode_length: int = 128, num_samples: int = 5,
                 interval_samples: int = BOOTSTRAP_SAMPLES):
        self.tasks, self.vocab = list(tasks), vocab
        self.num_beams, self.alpha = num_beams, length_penalty_alpha
        self.max_decode_length, self.num_samples = max_decode_length, num_samples
        self.interval_samples = interval_samples  # bootstrap resamples per interval (0: no intervals)

    def beams_for(self, task: Task) -> int:
        return self.num_beams if self.num_beams is not None else task.num_beams

    def decode(self, ids: Sequence[int]) -> str:
        """Text of generated ids; ids beyond the vocabulary (the model's padding rows) decode to nothing."""
        return self.vocab.decode([int(i) for i in ids if 0 <= int(i) < self.vocab.vocab_size])

    def predict_batch(self, predictor: Predictor, task_index: int, inputs) -> list[list[int]]:
        tokens = predictor.predict(inputs, num_beams=self.beams_for(self.tasks[task_index]),
                                   max_new_tokens=self.max_decode_length, length_penalty_alpha=self.alpha)
        return tokens.tolist()

    # -- scoring -------------------------------------------------------------------------------------------
    def score_task(self, task: Task, examples: Sequence[dict], predictions: Sequence[str],
                   texts: Sequence[dict[str, str]] | None = None) -> TaskResult:
        """Scores of decoded ``predictions`` against raw ``examples`` (unlabelled examples are skipped)."""
        metrics, per_example = task.score_examples(examples, predictions)
        n = sum(1 for ex in examples if task.is_labelled(ex))
        samples = []
        for i in range(min(self.num_samples, len(predictions))):
            t = texts[i] if texts is not None else task.format(examples[i])
            samples.append({"input": t["inputs"], "prediction": predictions[i], "target": t["targets"]})
        intervals = bootstrap_intervals(task, per_example, self.interval_samples) if per_example else {}
        return TaskResult(task.name, metrics, headline_score(task, metrics), n, samples,
                          per_example.to_dict() if per_example is not None else None, intervals)

    def score_tokens(self, data: EvalSet, task_idx: Sequence[int], example_idx: Sequence[int],
                     tokens: Sequence[Sequence[int]]) -> EvalResult:
        """Score generated ``tokens`` of (task index, example index) pairs (any order, each pair once)."""
        by_task: dict[int, dict[int, str]] = {}
        for t, e, p in zip(task_idx, example_idx, tokens):
            by_task.setdefault(int(t), {})[int(e)] = self.decode(p)
        out = EvalResult()
        for t in sorted(by_task):
            task, decoded = self.tasks[t], by_task[t]
            order = sorted(decoded)
            out.tasks[task.name] = self.score_task(task, [data.raw[task.name][i] for i in order],
                                                   [decoded[i] for i in order],
                                                   [data.text[task.name][i] for i in order])
        return out

    def _generate(self, predictor: Predictor, data: EvalSet, batch_size: int, device, split: str,
                  labelled_only: bool, progress: bool) -> tuple[list[int], list[int], list[list[int]]]:
        """(task index, example index, generated ids) of every example ``data.batches`` yields."""
        import torch

        tasks, examples, tokens = [], [], []
        batches = list(data.batches(batch_size, split, labelled_only))
        if progress:
            from tqdm.auto import tqdm

            batches = tqdm(batches, desc="evaluating" if labelled_only else "predicting", unit="batch", leave=False)
        for ti, idx, arr in batches:
            inputs = torch.from_numpy(arr)
            if device is not None:
                inputs = inputs.to(device)
            tasks += [ti] * len(idx)
            examples += idx
            tokens += self.predict_batch(predictor, ti, inputs)
        return tasks, examples, tokens

    def evaluate(self, predictor: Predictor, data: EvalSet, batch_size: int = 32, device=None,
                 split: str = "validation", progress: bool = False) -> EvalResult:
        """Decode every scorable example of ``data`` with ``predictor`` and score it."""
        tasks, examples, tokens = self._generate(predictor, data, batch_size, device, split, True, progress)
        return self.score_tokens(data, tasks, examples, tokens)

    def predict(self, predictor: Predictor, data: EvalSet, batch_size: int = 32, device=None,
                split: str = "test", progress: bool = False) -> dict[str, list[str]]:
        """The decoded prediction of every example of ``data`` (labelled or not), per task in example order:
        what a test-set submission is made of (t5lit/predict.py). Tasks without ``split`` are left out."""
        tasks, examples, tokens = self._generate(predictor, data, batch_size, device, split, False, progress)
        out: dict[str, dict[int, str]] = {}
        for t, e, ids in zip(tasks, examples, tokens):
            out.setdefault(self.tasks[t].name, {})[e] = self.decode(ids)
        return {name: [texts[i] for i in sorted(texts)] for name, texts in out.items()}


def bootstrap_intervals(task: Task, scores: ExampleScores, n_samples: int = BOOTSTRAP_SAMPLES, seed: int = 0,
                        confidence: float = 0.95) -> dict[str, list[float]]:
    """A percentile bootstrap interval ``[low, high]`` per metric: the examples resampled ``n_samples`` times
    (the same draws for every metric; seeded, so deterministic)."""
    n = len(scores)
    if n_samples <= 0 or n < 2:
        return {}
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_samples):
        for name, value in task.metrics_from(scores, rng.integers(0, n, size=n)).items():
            draws.setdefault(name, []).append(value)
    return {name: list(percentile_interval(np.asarray(v), confidence)) for name, v in draws.items()
            if len(v) == n_samples}


def task_score_from(task: Task, record: Mapping | ExampleScores, index=None) -> float:
    """The headline score of ``task`` recomputed from per-example statistics (``TaskResult.examples``) on the
    examples at ``index`` (None: all)."""
    scores = record if isinstance(record, ExampleScores) else ExampleScores.from_dict(dict(record))
    return headline_score(task, task.metrics_from(scores, index))


def headline_score(task: Task, metrics: Mapping[str, float]) -> float:
    """The mean of the task's headline metrics (all of its metrics when it names none); NaN without any."""
    names = [m for m in (task.headline or tuple(metrics)) if m in metrics]
    return sum(metrics[m] for m in names) / len(names) if names else math.nan


def summarize(scores: Mapping[str, Any], reported: Sequence[str]) -> dict[str, float]:
    """The paper's table columns from per-task results.

    ``scores`` maps task -> ``{metric: value}`` (or a TaskResult); ``reported`` lists the task and mixture
    names the experiment trained or evaluated. A mixture with a column (glue -> GLUE) gives that column,
    the mean over its tasks of each task's headline score (as T5's GLUE average: a task with two metrics
    counts once, their mean); a task with a column of its own (squad -> SQuAD, EM) gives that column; any
    other task appears under its own name, as its headline score.

        >>> summarize({"squad": {"exact_match": 80.0, "f1": 88.0}}, ["squad"])
        {'SQuAD': 80.0}
    """
    from t5lit.data.mixtures import MIXTURES
    from t5lit.data.tasks import get_task

    shared = {MIXTURES.get(m).column for m in MIXTURES.names() if MIXTURES.get(m).column}

    def score(name: str) -> float | None:
        value = scores.get(name)
        if value is None:
            return None
        if isinstance(value, TaskResult):
            return value.score
        s = headline_score(get_task(name), value)
        return None if math.isnan(s) else s

    from t5lit.data.mixtures import UNSUPERVISED, task_names

    out: dict[str, float] = {}

    def add(name: str) -> None:
        if name == UNSUPERVISED:  # the pre-training objective is trained, never scored
            return
        if name in MIXTURES:
            mixture = MIXTURES.get(name)
            if mixture.column:
                members = [s for t in task_names(name) if t != UNSUPERVISED and (s := score(t)) is not None]
                if members:
                    out[mixture.column] = sum(members) / len(members)
                return
            for member in mixture.tasks:  # a mixture without a column reports its parts (supervised: GLUE, ...)
                add(member)
            return
        _task_column(out, name, score(name), shared)

    for name in reported:
        add(name)
    return out


def _task_column(out: dict, name: str, value: float | None, shared: set) -> None:
    from t5lit.data.tasks import get_task

    if value is None:
        return
    column = get_task(name).column
    out[column if column and column not in shared else name] = value
