"""Pre-training examples: a chunk of tokens -> the objective -> the architecture's model features.

The one place where an objective meets an architecture; the pre-training DataModule, ``t5lit data show``
and ``t5lit check`` all build their features here, so what one shows the other trains on. The objective's
length budget (``t5lit.objectives.Budget``) sizes the rows: an encoder-decoder gets encoder rows of the
budget's inputs and decoder rows of its targets; a one-stack model rows of inputs + targets (with the loss on
the targets). An objective with no inputs part (the LM objective) fills a one-stack row with targets only::

    pf = PretrainFeatures.build("span_corruption", {}, "encoder_decoder", inputs_length=512)
    pf.budget                                  # Budget(raw=568, inputs=512, targets=114)
    examples = pf.examples(chunks, rngs, vocab)    # chunks (B, 568): [{"inputs", "targets"}] * B
    batch = pf.features(examples)              # encoder_input_tokens (B, 512), decoder_* (B, 114), ...
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from t5lit.features import FeatureConverter, converter_for
from t5lit.objectives import BoundObjective, Budget, get_objective


@dataclass
class PretrainFeatures:
    """``objective`` (bound to its parameters) on ``arch`` at ``inputs_length``: budget and converter."""

    objective: BoundObjective
    arch: str
    inputs_length: int
    budget: Budget
    converter: FeatureConverter

    @classmethod
    def build(cls, objective: str, params: dict | None, arch: str, inputs_length: int,
              targets_length: int | None = None, pack: bool = False) -> PretrainFeatures:
        bound = get_objective(objective, **(params or {}))
        budget = bound.budget(inputs_length, targets_length)
        converter = converter_for(arch, budget.inputs, budget.targets, pack=pack)
        return cls(bound, arch, int(inputs_length), budget, converter)

    def examples(self, chunks: np.ndarray, rngs, vocab) -> list[dict]:
        """``{"inputs", "targets"}`` of each chunk (rows of ``budget.raw`` tokens, or shorter ones), each with
        its own generator; checked against the objective's budget."""
        out = self.objective.apply_batch(chunks, rngs, vocab)
        li = max((len(e["inputs"]) for e in out), default=0)
        lt = max((len(e["targets"]) for e in out), default=0)
        self.budget.check_example(self.objective.name, self.inputs_length, li, lt)
        return out

    def features(self, examples: list[dict]) -> dict[str, np.ndarray]:
        """The architecture's model features of ``examples`` (rows of the budget's lengths)."""
        return self.converter(examples)
