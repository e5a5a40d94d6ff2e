"""Pre-training objectives (paper Section 3.3; UL2's mixture of denoisers): pure per-example NumPy functions
``fn(tokens, rng, vocab, **params) -> {"inputs", "targets"}`` registered by name.

    obj = get_objective("span_corruption", noise_density=0.15, mean_noise_span_length=3.0)
    raw, targets_length = raw_length("span_corruption", 512)        # (568, 114)
    example = obj(tokens[:raw], np.random.default_rng((seed, epoch, index)), vocab)

``t5lit list objectives`` shows the names. To add one, write a file here with a function registered by
``@register_objective(name, lengths=...)`` and import it below (``ul2.py`` is the worked example).
"""

from t5lit.objectives import denoising, sequential, ul2  # noqa: F401  (registers the objectives)
from t5lit.objectives.base import (
    OBJECTIVES,
    BoundObjective,
    Objective,
    SimpleVocab,
    VocabLike,
    get_objective,
    raw_length,
    register_objective,
)
from t5lit.objectives.denoising import denoise, random_spans_helper, span_corruption_batch

__all__ = [
    "OBJECTIVES",
    "BoundObjective",
    "Objective",
    "SimpleVocab",
    "VocabLike",
    "denoise",
    "get_objective",
    "random_spans_helper",
    "raw_length",
    "register_objective",
    "span_corruption_batch",
]
