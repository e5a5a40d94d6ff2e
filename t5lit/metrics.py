"""Text metrics on decoded, post-processed values, as T5 computes them (t5/evaluation/metrics.py).

Every metric is a pure function ``(targets, predictions) -> {name: score}`` on a 0-100 scale, as the paper
reports them (Tables 1 and 16). Classification metrics take class ids; a prediction outside the label set
arrives here as -1 (see the tasks' postprocessors) and always counts as wrong.

Each metric here is also split in two, so that it can be recomputed on any subset or resample of the
examples (bootstrap intervals, the paired bootstrap between two runs) from numbers alone:
``metric.example_stats(targets, predictions)`` gives an (n, k) array of per-example statistics (a correct
flag, a ROUGE F-measure, a (target, prediction) class pair, BLEU's n-gram counts), and
``metric.from_stats(stats)`` the metric from them; ``metric(t, p) == metric.from_stats(metric.example_stats(t,
p))`` exactly. A metric of your own without the two attributes still works; ``t5lit.data.tasks.base`` then
falls back to its single-example scores (exact for a mean over examples, an approximation otherwise).

ROUGE is T5's: rouge-score without the Porter stemmer, sentences split at " . " for ROUGE-Lsum. T5's
``rouge_mean`` (the plain mean over examples) is the default here, deterministic; T5's ``rouge`` reports the
"mid" of rouge-score's BootstrapAggregator instead (``rouge_bootstrap`` reproduces it, with its 95% interval;
the Evaluator puts such an interval beside every metric, ``TaskResult.intervals``). Stemming, which moves
CNN/DM ROUGE-1 by more than a point, is an option: ``make_rouge(use_stemmer=True)`` (``rouge_stemmed``).

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
from functools import lru_cache

import numpy as np

from t5lit.stats import average_ranks

Metric = Callable[[Sequence, Sequence], dict[str, float]]
StatsFn = Callable[[Sequence, Sequence], np.ndarray]
ReduceFn = Callable[[np.ndarray], dict[str, float]]


def per_example(stats: StatsFn, reduce: ReduceFn, name: str, doc: str = "") -> Metric:
    """A metric ``(targets, predictions) -> {name: score}`` made of per-example statistics and their
    reduction; the function returned carries both as ``example_stats`` and ``from_stats``."""

    def metric(targets: Sequence, predictions: Sequence) -> dict[str, float]:
        _check_lengths(targets, predictions)
        return reduce(stats(targets, predictions))

    def example_stats(targets: Sequence, predictions: Sequence) -> np.ndarray:
        _check_lengths(targets, predictions)
        return stats(targets, predictions)

    metric.__name__ = metric.__qualname__ = name
    metric.__doc__ = doc
    metric.example_stats = example_stats
    metric.from_stats = reduce
    return metric


def _column(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).reshape(-1, 1)


def _means(*names: str) -> ReduceFn:
    """The reduction of per-example scores in [0, 1]: their means x100, one per column."""

    def reduce(stats: np.ndarray) -> dict[str, float]:
        means = np.asarray(stats, np.float64).mean(axis=0)
        return {name: 100.0 * float(m) for name, m in zip(names, means)}

    return reduce


# ------------------------------------------------------------------------------------- classification
accuracy = per_example(
    lambda t, p: _column([ti == pi for ti, pi in zip(t, p)]), _means("accuracy"), "accuracy",
    """Percentage of predictions equal to their target: ``accuracy([1, 0, 1], [1, -1, 0]) == {"accuracy": 33.3..}``.
    Per example: 1 if right, else 0.""")


def _f1(tp: float, fp: float, fn: float) -> float:
    return 0.0 if 2 * tp + fp + fn == 0 else float(2 * tp / (2 * tp + fp + fn))


def _binary_counts(targets, predictions) -> np.ndarray:
    """(n, 3): each example's (tp, fp, fn) with T5's rule for invalid predictions (see f1_with_invalid)."""
    t = np.asarray(targets, dtype=np.int64)
    p = np.asarray(predictions, dtype=np.int64)
    p = np.where((p != 0) & (p != 1), 1 - t, p)
    return np.stack([(t == 1) & (p == 1), (t == 0) & (p == 1), (t == 1) & (p == 0)], axis=1).astype(np.float64)


def _binary_f1(stats: np.ndarray) -> dict[str, float]:
    tp, fp, fn = np.asarray(stats, np.float64).sum(axis=0)
    return {"f1": 100.0 * _f1(tp, fp, fn)}


f1_with_invalid = per_example(
    _binary_counts, _binary_f1, "f1_with_invalid",
    """Binary F1 (positive class 1) for MRPC, QQP and MultiRC's F1a.

    As T5's ``f1_score_with_invalid``: a prediction that is neither 0 nor 1 is replaced by the opposite of its
    target, so it counts as a false positive or a false negative (sklearn's F1: 0 when undefined). Per
    example: its (tp, fp, fn) counts.""")


def _class_pairs(targets, predictions) -> np.ndarray:
    return np.stack([np.asarray(targets, np.float64), np.asarray(predictions, np.float64)], axis=1)


def mean_multiclass_f1(num_classes: int) -> Metric:
    """Macro F1 over classes ``0..num_classes-1`` (T5's ``mean_multiclass_f1``, CB with 3 classes).

    An invalid prediction (-1) is a false negative of its target's class and a false positive of no class;
    a class with no support and no predictions has F1 0 (sklearn's ``labels=range(n), average="macro"``).
    Per example: its (target, prediction) pair.
    """

    def reduce(stats: np.ndarray) -> dict[str, float]:
        t, p = np.asarray(stats[:, 0], np.int64), np.asarray(stats[:, 1], np.int64)
        p = np.where((p < 0) | (p >= num_classes), num_classes, p)  # one extra "invalid" class, not averaged
        k = num_classes + 1
        conf = np.bincount(t * k + p, minlength=k * k).reshape(k, k).astype(np.float64)  # (true, predicted)
        tp = np.diag(conf)[:num_classes]
        fp = conf.sum(axis=0)[:num_classes] - tp
        fn = conf.sum(axis=1)[:num_classes] - tp
        return {"f1": 100.0 * float(np.mean([_f1(*c) for c in zip(tp, fp, fn)]))}

    return per_example(_class_pairs, reduce, "macro_f1", mean_multiclass_f1.__doc__)


def _mcc(stats: np.ndarray) -> dict[str, float]:
    t, p = stats[:, 0], stats[:, 1]
    labels, inverse = np.unique(np.concatenate([t, p]), return_inverse=True)
    n = len(t)
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


matthews_corrcoef = per_example(
    _class_pairs, _mcc, "matthews_corrcoef",
    """Matthews correlation (CoLA), sklearn's multiclass definition; 0 when it is undefined.

    Written out rather than torchmetrics' because torchmetrics returns +-1 in degenerate binary cases (one
    class only) where sklearn, which T5 uses, returns 0. An invalid prediction (-1) is its own class.
    Per example: its (target, prediction) pair.""")


# ------------------------------------------------------------------------------------- regression (STS-B)
def _pearson(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(), y - y.mean()
    denom = math.sqrt(float(x @ x) * float(y @ y))
    return 0.0 if denom == 0 else float(x @ y) / denom  # undefined (a constant side) -> 0, not NaN


_average_ranks = average_ranks  # the name other modules knew


def _correlations(stats: np.ndarray) -> dict[str, float]:
    t, p = stats[:, 0], stats[:, 1]
    return {"pearson": 100.0 * _pearson(t, p), "spearman": 100.0 * _pearson(average_ranks(t), average_ranks(p))}


pearson_spearman = per_example(
    _class_pairs, _correlations, "pearson_spearman",
    """Pearson and Spearman correlation x100 (STS-B); an unparsable prediction arrives as -1.0.
    Per example: its (target, prediction) pair.""")


# ------------------------------------------------------------------------------------- grouped (MultiRC)
def _multirc_stats(targets: Sequence[dict], predictions: Sequence[dict]) -> np.ndarray:
    ids: dict = {}
    groups = [ids.setdefault(_hashable(x["group"]), len(ids)) for x in targets]
    return np.stack([np.asarray([x["value"] for x in targets], np.float64),
                     np.asarray([x["value"] for x in predictions], np.float64),
                     np.asarray(groups, np.float64)], axis=1)


def _hashable(group):
    return tuple(group) if isinstance(group, list) else group


def _multirc_reduce(stats: np.ndarray) -> dict[str, float]:
    t, p, g = stats[:, 0], stats[:, 1], stats[:, 2].astype(np.int64)
    wrong = np.bincount(g, weights=(t != p).astype(np.float64))
    present = np.bincount(g) > 0
    em = 100.0 * float(np.mean(wrong[present] == 0))
    return {"f1": _binary_f1(_binary_counts(t, p))["f1"], "exact_match": em}


multirc_f1_em = per_example(
    _multirc_stats, _multirc_reduce, "multirc_f1_em",
    """MultiRC: F1 over all answer options ("F1a") and exact match per question (every option right).

    Each value is ``{"value": class id, "group": question key}``; the prediction's group is ignored (T5's
    ``multirc_f1_over_all_answers`` and ``mean_group_metric(all_match)``). Per example: (target, prediction,
    question number).""")


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


def _squad_stats(targets: Sequence[Sequence[str]], predictions: Sequence[str]) -> np.ndarray:
    return np.asarray([[max(float(normalize_answer(p) == normalize_answer(g)) for g in gold),
                        max(_token_f1(p, g) for g in gold)] for gold, p in zip(targets, predictions)], np.float64)


squad = per_example(
    _squad_stats, _means("exact_match", "f1"), "squad",
    """SQuAD (and ReCoRD) exact match and token F1, each the max over an example's gold answers, x100.
    Per example: (EM, F1) in [0, 1].""")

exact_match = per_example(
    lambda t, p: _column([a.strip() == b.strip() for a, b in zip(t, p)]), _means("exact_match"), "exact_match",
    """Percentage of predictions equal to the target string (surrounding whitespace ignored).""")


# ------------------------------------------------------------------------------------- generation: BLEU
MAX_NGRAM = 4


@lru_cache(maxsize=1)
def _intl_tokenizer():
    from sacrebleu.tokenizers.tokenizer_intl import TokenizerV14International

    return TokenizerV14International()


def _ngrams(tokens: list[str]) -> Counter:
    return Counter(tuple(tokens[i:i + n]) for n in range(1, MAX_NGRAM + 1) for i in range(len(tokens) - n + 1))


def _bleu_stats(targets: Sequence[str], predictions: Sequence[str]) -> np.ndarray:
    """(n, 2 + 2 * MAX_NGRAM): hypothesis length, reference length, matched n-grams per order, n-grams per
    order (sacrebleu's sufficient statistics, "intl" tokenization, cased, one reference)."""
    tokenize = _intl_tokenizer()
    rows = []
    for ref, hyp in zip(targets, predictions):
        h, r = tokenize(hyp.rstrip()).split(), tokenize(ref.rstrip()).split()
        hyp_ngrams, ref_ngrams = _ngrams(h), _ngrams(r)
        correct, total = [0] * MAX_NGRAM, [max(0, len(h) - n) for n in range(MAX_NGRAM)]
        for ngram, count in hyp_ngrams.items():
            correct[len(ngram) - 1] += min(count, ref_ngrams.get(ngram, 0))
        rows.append([len(h), len(r), *correct, *total])
    return np.asarray(rows, np.float64)


def _bleu_reduce(stats: np.ndarray) -> dict[str, float]:
    """Corpus BLEU from summed statistics with "exp" smoothing (mteval's: each order without a match gets
    precision 1 / (2^k * total), k counting such orders), as sacrebleu's ``compute_bleu``."""
    sums = np.asarray(stats, np.float64).sum(axis=0)
    sys_len, ref_len = sums[0], sums[1]
    correct, total = sums[2:2 + MAX_NGRAM], sums[2 + MAX_NGRAM:]
    if not correct.any():
        return {"bleu": 0.0}
    bp = 1.0 if sys_len >= ref_len else math.exp(1 - ref_len / sys_len)
    logs, smooth = [], 1.0
    for c, n in zip(correct, total):
        if n == 0:
            logs.append(-math.inf)  # no n-grams of this order at all: BLEU is 0
            break
        if c == 0:
            smooth *= 2
            logs.append(math.log(100.0 / (smooth * n)))
        else:
            logs.append(math.log(100.0 * c / n))
    logs += [-math.inf] * (MAX_NGRAM - len(logs))
    return {"bleu": float(bp * math.exp(sum(logs) / MAX_NGRAM))}


bleu = per_example(
    _bleu_stats, _bleu_reduce, "bleu",
    """Corpus BLEU with T5's sacrebleu settings (tokenize="intl", smooth_method="exp", cased), computed from
    per-sentence n-gram statistics so that it can be resampled; equal to ``sacrebleu.corpus_bleu``.""")


# ------------------------------------------------------------------------------------- generation: ROUGE
ROUGE_KEYS = ("rouge1", "rouge2", "rougeLsum")


def _summary_lines(summary: str) -> str:
    # rougeLsum splits summaries into sentences on newlines; T5 puts one after every " . " (its decoded
    # predictions contain no newlines, CNN/DM highlights already have one per sentence).
    return summary.replace(" . ", " .\n")


@lru_cache(maxsize=8)
def _rouge_scorer(keys: tuple[str, ...], use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(list(keys), use_stemmer=use_stemmer)


def rouge_stats(targets: Sequence[str], predictions: Sequence[str], keys: Sequence[str] = ROUGE_KEYS,
                use_stemmer: bool = False) -> np.ndarray:
    """(n, len(keys)): each example's ROUGE F-measures in [0, 1] (rouge-score, T5's sentence splitting)."""
    _check_lengths(targets, predictions)
    scorer = _rouge_scorer(tuple(keys), bool(use_stemmer))
    rows = []
    for t, p in zip(targets, predictions):
        scores = scorer.score(target=_summary_lines(t), prediction=_summary_lines(p))
        rows.append([scores[k].fmeasure for k in keys])
    return np.asarray(rows, np.float64)


def rouge(targets: Sequence[str], predictions: Sequence[str], keys: Sequence[str] = ROUGE_KEYS,
          use_stemmer: bool = False) -> dict[str, float]:
    """ROUGE F-measures x100 averaged over examples: T5's ``rouge_mean`` (rouge-score without stemming,
    deterministic). T5's ``rouge`` reports the bootstrap "mid" of the same per-example scores instead
    (``rouge_bootstrap``); ``use_stemmer=True`` applies the Porter stemmer, as T5 does not."""
    return _means(*keys)(rouge_stats(targets, predictions, keys, use_stemmer))


def make_rouge(keys: Sequence[str] = ROUGE_KEYS, use_stemmer: bool = False) -> Metric:
    """The ROUGE metric with these ``keys`` and stemming choice, as a task metric with per-example stats."""
    keys = tuple(keys)
    return per_example(lambda t, p: rouge_stats(t, p, keys, use_stemmer), _means(*keys),
                       "rouge_stemmed" if use_stemmer else "rouge", rouge.__doc__)


_default_rouge = make_rouge()
rouge.example_stats = _default_rouge.example_stats
rouge.from_stats = _default_rouge.from_stats
rouge_stemmed = make_rouge(use_stemmer=True)


def rouge_bootstrap(targets: Sequence[str], predictions: Sequence[str], keys: Sequence[str] = ROUGE_KEYS,
                    use_stemmer: bool = False, n_samples: int = 1000, confidence: float = 0.95,
                    seed: int = 0) -> dict[str, tuple[float, float, float]]:
    """T5's ``rouge``: rouge-score's BootstrapAggregator over the per-example F-measures, x100, as
    ``{key: (low, mid, high)}``; its "mid" is what T5 reported. The resampling draws from
    ``np.random.RandomState(seed)`` in the aggregator's order, so ``np.random.seed(seed)`` before a
    BootstrapAggregator gives the same numbers (T5 itself left the global generator unseeded)."""
    scores = rouge_stats(targets, predictions, keys, use_stemmer)
    rng = np.random.RandomState(seed)
    out = {}
    delta = (1 - confidence) / 2
    for j, key in enumerate(keys):  # the aggregator resamples each score type in turn
        column = scores[:, j:j + 1]
        means = np.array([column[rng.choice(np.arange(len(column)), size=len(column))].mean(axis=0)
                          for _ in range(n_samples)])
        low, mid, high = np.percentile(means, 100 * np.array([delta, 0.5, 1 - delta]), axis=0)[:, 0]
        out[key] = (100.0 * float(low), 100.0 * float(mid), 100.0 * float(high))
    return out


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
