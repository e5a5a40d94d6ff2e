"""Pre-training objectives (paper Section 3.3; UL2's mixture of denoisers): pure per-example NumPy functions
``fn(tokens, rng, vocab, **params) -> {"inputs", "targets"}`` registered by name.

    obj = get_objective("span_corruption", noise_density=0.15, mean_noise_span_length=3.0)
    b = obj.budget(512)                          # Budget(raw=568, inputs=512, targets=114)
    example = obj(tokens[:b.raw], np.random.default_rng((seed, epoch, index)), vocab)

``t5lit list objectives`` shows the names. To add one, write a file in this folder (every module here is
discovered on the first lookup; ``ul2.py`` is a worked example) or in your own package, declared under the
``t5lit.objectives`` entry-point group, with a function decorated ``@register_objective(name)``; it then works
with every architecture, in ``t5lit data show``, runs and sweeps. See ``base.py`` for the length budget.
"""

from t5lit.objectives.base import (
    OBJECTIVES,
    BoundObjective,
    Budget,
    Objective,
    SimpleVocab,
    VocabLike,
    budget,
    get_objective,
    raw_length,
    register_objective,
)
from t5lit.objectives.denoising import denoise, random_spans_helper, span_corruption_batch

__all__ = [
    "OBJECTIVES",
    "BoundObjective",
    "Budget",
    "Objective",
    "SimpleVocab",
    "VocabLike",
    "budget",
    "denoise",
    "get_objective",
    "random_spans_helper",
    "raw_length",
    "register_objective",
    "span_corruption_batch",
]
