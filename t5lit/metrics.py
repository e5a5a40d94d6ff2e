"""Text metrics on decoded, post-processed values, as T5 computes them (t5/evaluation/metrics.py).

Every metric is a pure function ``(targets, predictions) -> {name: score}`` on a 0-100 scale, as the paper
reports them (Tables 1 and 16). Classification metrics take class ids; a prediction outside the label set
arrives here as -1 (see the tasks' postprocessors) and always counts as wrong.

Benchmark averages (paper Section 2.3: the average over a benchmark's tasks; as T5's
``eval_utils.compute_avg_glue``, a task reported with two metrics counts once, as their mean):

- GLUE: CoLA (MCC), SST-2 (acc), MRPC (F1, acc), STS-B (Pearson, Spearman), QQP (F1, acc), MNLI (matched,
  mismatched accuracy), QNLI (acc), RTE (acc). WNLI is left out, as T5 does (it trains on WSC/DPR instead and
  the GLUE diagnostic ``ax`` has only a test set).
- SuperGLUE: BoolQ (acc), CB (macro F1, acc), COPA (acc), MultiRC (F1a, EM), ReCoRD (F1, EM), RTE (acc),
  WiC (acc), WSC (acc). The diagnostics axb/axg (test only) are left out.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

import numpy as np

Metric = Callable[[Sequence, Sequence], dict[str, float]]


# ------------------------------------------------------------------------------------- classification
def accuracy(targets: Sequence, predictions: Sequence) -> dict[str, float]:
    """Percentage of predictions equal to their target: ``accuracy([1, 0, 1], [1, -1, 0]) == {"accuracy": 33.3..}``."""
    _check_lengths(targets, predictions)
    return {"accuracy": 100.0 * float(np.mean([t == p for t, p in zip(targets, predictions)]))}


def f1_with_invalid(targets: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Binary F1 (positive class 1) for MRPC, QQP and MultiRC's F1a.

    As T5's ``f1_score_with_invalid``: a prediction that is neither 0 nor 1 is replaced by the opposite of its
    target, so it counts as a false positive or a false negative. Computed with torchmetrics' binary F1.
    """
    _check_lengths(targets, predictions)
    from torchmetrics.functional.classification import binary_f1_score

    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    invalid = (p != 0) & (p != 1)
    p = np.where(invalid, 1 - t, p)
    return {"f1": 100.0 * float(binary_f1_score(_tensor(p), _tensor(t)))}


def mean_multiclass_f1(num_classes: int) -> Metric:
    """Macro F1 over classes ``0..num_classes-1`` (T5's ``mean_multiclass_f1``, CB with 3 classes).

    An invalid prediction (-1) is a false negative of its target's class and a false positive of no class;
    a class with no support and no predictions has F1 0 (sklearn's ``labels=range(n), average="macro"``).
    """

    def macro_f1(targets: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
        _check_lengths(targets, predictions)
        from torchmetrics.functional.classification import multiclass_f1_score

        t = np.asarray(targets, dtype=np.int64)
        p = np.asarray(predictions, dtype=np.int64)
        p = np.where((p < 0) | (p >= num_classes), num_classes, p)  # one extra "invalid" class, not averaged
        per_class = multiclass_f1_score(_tensor(p), _tensor(t), num_classes=num_classes + 1, average="none")
        return {"f1": 100.0 * float(per_class[:num_classes].mean())}

    return macro_f1


def matthews_corrcoef(targets: Sequence[int], predictions: Sequence[int]) -> dict[str, float]:
    """Matthews correlation (CoLA), sklearn's multiclass definition; 0 when it is undefined.

    Written out rather than torchmetrics' because torchmetrics returns +-1 in degenerate binary cases (one
    class only) where sklearn, which T5 uses, returns 0. An invalid prediction (-1) is its own class.
    """
    _check_lengths(targets, predictions)
    labels, inverse = np.unique(np.concatenate([np.asarray(targets), np.asarray(predictions)]), return_inverse=True)
    n = len(targets)
    conf = np.zeros((len(labels), len(labels)), dtype=np.float64)  # (true class, predicted class)
    np.add.at(conf, (inverse[:n], inverse[n:]), 1.0)
    t_sum, p_sum = conf.sum(axis=1), conf.sum(axis=0)
    correct, total = np.trace(conf), conf.sum()
    cov_tp = correct * total - t_sum @ p_sum
    cov_pp = total**2 - p_sum @ p_sum
    cov_tt = total**2 - t_sum @ t_sum
    if cov_pp * cov_tt == 0:
        return {"mcc": 0.0}
    return {"mcc": 100.0 * float(cov_tp / math.sqrt(cov_tt * cov_pp))}


# ------------------------------------------------------------------------------------- regression (STS-B)
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return 0.0 if denom == 0 else float(x @ y) / denom  # undefined (a constant side) -> 0, not NaN


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n with ties given their mean rank (scipy's ``rankdata(method="average")``)."""
    order = np.argsort(x, kind="mergesort")
    sorted_x = x[order]
    ranks = np.empty(len(x), dtype=np.float64)
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of ranks start+1 .. end
            start = end
    return ranks


def pearson_spearman(targets: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation x100 (STS-B); an unparsable prediction arrives as -1.0."""
    _check_lengths(targets, predictions)
    t = np.asarray(targets, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    return {"pearson": 100.0 * _pearson(t, p), "spearman": 100.0 * _pearson(_average_ranks(t), _average_ranks(p))}


# ------------------------------------------------------------------------------------- grouped (MultiRC)
def multirc_f1_em(targets: Sequence[dict], predictions: Sequence[dict]) -> dict[str, float]:
    """MultiRC: F1 over all answer options ("F1a") and exact match per question (every option right).

    Each value is ``{"value": class id, "group": question key}``; the prediction's group is ignored (T5's
    ``multirc_f1_over_all_answers`` and ``mean_group_metric(all_match)``).
    """
    _check_lengths(targets, predictions)
    t = [x["value"] for x in targets]
    p = [x["value"] for x in predictions]
    groups: dict = {}
    for target, tv, pv in zip(targets, t, p):
        groups.setdefault(target["group"], []).append(tv == pv)
    em = 100.0 * float(np.mean([all(v) for v in groups.values()]))
    return {"f1": f1_with_invalid(t, p)["f1"], "exact_match": em}


# ------------------------------------------------------------------------------------- extractive QA
def normalize_answer(s: str) -> str:
    """The official SQuAD v1.1 normalization: lowercase, drop punctuation, drop a/an/the, squash spaces.

    ``normalize_answer("The  Denver Broncos!") == "denver broncos"``
    """
    s = s.lower()
    s = "".join(ch for ch in s if ch not in _PUNCTUATION)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


_PUNCTUATION = frozenset(string.punctuation)


def _token_f1(prediction: str, gold: str) -> float:
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    common = Counter(pred_tokens) & Counter(gold_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> dict[str, float]:
    """SQuAD (and ReCoRD) exact match and token F1, each the max over an example's gold answers, x100."""
    _check_lengths(targets, predictions)
    em = [max(float(normalize_answer(p) == normalize_answer(g)) for g in gold) for gold, p in zip(targets, predictions)]
    f1 = [max(_token_f1(p, g) for g in gold) for gold, p in zip(targets, predictions)]
    return {"exact_match": 100.0 * float(np.mean(em)), "f1": 100.0 * float(np.mean(f1))}


def exact_match(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Percentage of predictions equal to the target string (surrounding whitespace ignored)."""
    _check_lengths(targets, predictions)
    return {"exact_match": 100.0 * float(np.mean([t.strip() == p.strip() for t, p in zip(targets, predictions)]))}


# ------------------------------------------------------------------------------------- generation
def bleu(targets: Sequence[str], predictions: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU with sacrebleu and T5's settings (tokenize="intl", smooth_method="exp", cased)."""
    _check_lengths(targets, predictions)
    import sacrebleu

    score = sacrebleu.corpus_bleu(list(predictions), [list(targets)], smooth_method="exp", smooth_value=0.0,
                                  force=False, lowercase=False, tokenize="intl", use_effective_order=False)
    return {"bleu": float(score.score)}


ROUGE_KEYS = ("rouge1", "rouge2", "rougeLsum")


def _summary_lines(summary: str) -> str:
    # rougeLsum splits summaries into sentences on newlines; T5 puts one after every " . " (its decoded
    # predictions contain no newlines, CNN/DM highlights already have one per sentence).
    return summary.replace(" . ", " .\n")


def rouge(targets: Sequence[str], predictions: Sequence[str], keys: Sequence[str] = ROUGE_KEYS) -> dict[str, float]:
    """ROUGE F-measures x100 with rouge-score (Porter stemmer), averaged over examples.

    T5 reports the "mid" of rouge-score's BootstrapAggregator, a resampled estimate of this same mean; the
    plain mean is used here so that scores are deterministic.
    """
    _check_lengths(targets, predictions)
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(keys), use_stemmer=True)
    totals = dict.fromkeys(keys, 0.0)
    for t, p in zip(targets, predictions):
        scores = scorer.score(target=_summary_lines(t), prediction=_summary_lines(p))
        for k in keys:
            totals[k] += scores[k].fmeasure
    return {k: 100.0 * v / len(targets) for k, v in totals.items()}


# ------------------------------------------------------------------------------------- benchmark averages
# Task -> the metrics that form its score in the benchmark average (a task's metrics are averaged first).
GLUE_AVERAGE: dict[str, tuple[str, ...]] = {
    "glue_cola": ("mcc",), "glue_sst2": ("accuracy",), "glue_mrpc": ("f1", "accuracy"),
    "glue_stsb": ("pearson", "spearman"), "glue_qqp": ("f1", "accuracy"),
    "glue_mnli": ("accuracy_matched", "accuracy_mismatched"), "glue_qnli": ("accuracy",), "glue_rte": ("accuracy",),
}
SUPER_GLUE_AVERAGE: dict[str, tuple[str, ...]] = {
    "super_glue_boolq": ("accuracy",), "super_glue_cb": ("f1", "accuracy"), "super_glue_copa": ("accuracy",),
    "super_glue_multirc": ("f1", "exact_match"), "super_glue_record": ("f1", "exact_match"),
    "super_glue_rte": ("accuracy",), "super_glue_wic": ("accuracy",), "super_glue_wsc": ("accuracy",),
}


def benchmark_average(scores: Mapping[str, Mapping[str, float]], counted: Mapping[str, tuple[str, ...]]) -> float:
    """Mean over the ``counted`` tasks present in ``scores`` of the mean of each task's counted metrics.

    Tasks absent (or scored with none of their metrics) are left out; NaN when none is present.
    """
    task_scores = []
    for task, names in counted.items():
        values = [scores[task][m] for m in names if m in scores.get(task, {})]
        if values:
            task_scores.append(sum(values) / len(values))
    return sum(task_scores) / len(task_scores) if task_scores else math.nan


def glue_average(scores: Mapping[str, Mapping[str, float]]) -> float:
    """The paper's GLUE column from ``{task: {metric: value}}`` (tasks in ``GLUE_AVERAGE``; WNLI excluded).

    ``glue_average({"glue_mrpc": {"f1": 90, "accuracy": 80}, "glue_rte": {"accuracy": 70}}) == 77.5``
    """
    return benchmark_average(scores, GLUE_AVERAGE)


def super_glue_average(scores: Mapping[str, Mapping[str, float]]) -> float:
    """The paper's SGLUE column from ``{task: {metric: value}}`` (tasks in ``SUPER_GLUE_AVERAGE``)."""
    return benchmark_average(scores, SUPER_GLUE_AVERAGE)


# ------------------------------------------------------------------------------------- helpers
def _check_lengths(targets: Sequence, predictions: Sequence) -> None:
    if len(targets) != len(predictions):
        raise ValueError(f"{len(targets)} targets but {len(predictions)} predictions; they must pair up")
    if len(targets) == 0:
        raise ValueError("no examples to score")


def _tensor(x: np.ndarray):
    import torch

    return torch.from_numpy(np.ascontiguousarray(x))
