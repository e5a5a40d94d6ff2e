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

Packed (``converter_packed``), a row holds as many examples as first-fit puts in it, told apart by segment ids
(T5 packs in pre-training, Section 3.1.2): what objectives whose examples are shorter than the rows need
(prefix LM, drop tokens, deshuffling, BERT-style on a one-stack model: their rows were half padding unpacked).
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
    converter_packed: FeatureConverter  # the same rows, several examples each (segment ids and positions)

    @classmethod
    def build(cls, objective: str, params: dict | None, arch: str, inputs_length: int,
              targets_length: int | None = None, pack: bool = False) -> PretrainFeatures:
        bound = get_objective(objective, **(params or {}))
        budget = bound.budget(inputs_length, targets_length)
        # trim: the lengths are T5's, which a rare example exceeds; it is cut to them, EOS kept (as T5 trimmed)
        converter = converter_for(arch, budget.inputs, budget.targets, pack=pack, truncate=budget.trim)
        packed = converter if pack else converter_for(arch, budget.inputs, budget.targets, pack=True,
                                                      truncate=budget.trim)
        return cls(bound, arch, int(inputs_length), budget, converter, packed)

    def raw_length(self, pack: bool = False) -> int:
        """The chunk length: the budget's; or, packing the one-stack rows of an objective whose examples are a bit
        more than half a row (``Budget.total``: prefix LM and drop tokens make raw + 2 tokens, a row holds 2 raw),
        the longest chunk (at most a few tokens shorter) whose examples fill a row two at a time."""
        b = self.budget
        if not pack or self.converter.encoder_length or not b.total:
            return b.raw
        row = self.converter.decoder_length
        for length in range(self.inputs_length, max(2, self.inputs_length - max(4, self.inputs_length // 64)), -1):
            shorter = self.objective.budget(length)
            if 2 * shorter.longest <= row and shorter.inputs <= b.inputs and shorter.targets <= b.targets:
                return shorter.raw
        return b.raw

    def examples(self, chunks: np.ndarray, rngs, vocab) -> list[dict]:
        """``{"inputs", "targets"}`` of each chunk (rows of ``budget.raw`` tokens, or shorter ones), each with
        its own generator; checked against the objective's budget (unless it trims: the converters cut them)."""
        out = self.objective.apply_batch(chunks, rngs, vocab)
        if not self.budget.trim:
            li = max((len(e["inputs"]) for e in out), default=0)
            lt = max((len(e["targets"]) for e in out), default=0)
            self.budget.check_example(self.objective.name, self.inputs_length, li, lt)
        return out

    def features(self, examples: list[dict]) -> dict[str, np.ndarray]:
        """The architecture's model features of ``examples`` (rows of the budget's lengths)."""
        return self.converter(examples)
