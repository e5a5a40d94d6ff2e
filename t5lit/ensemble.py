"""Ensembles (paper Section 3.6, Table 13): several models decode as one, their per-step predictions averaged.

The paper ensembles four models "by averaging their logits before feeding them into the output softmax". Here
each member's logits become log-probabilities, and their mean is what the decoder ranks. The two agree: member
i's log-probabilities are its logits minus one constant per row (log Z_i), so the mean of the log-probabilities
is the mean of the logits minus a constant per row, and the softmax of either is the same distribution.
Greedy decoding takes its argmax; beam search renormalises it (``log_softmax``), so beam scores are the log
of that distribution, exactly as for one model.

``Ensemble`` has the two methods ``t5lit.model.generate`` decodes with, so greedy and beam search work for an
ensemble of any architecture without a line of their own:

    ensemble = Ensemble([model_a, model_b])                       # same architecture, same vocabulary
    logp, cache = ensemble.begin_decoding(inputs)                 # (B, V) mean log-probabilities
    logp = ensemble.decode_step(tokens, cache)                    # one cache per member inside
    ids = generate(ensemble, inputs, max_new_tokens=64, num_beams=4)
    Evaluator(...).evaluate(ModelPredictor(ensemble), data)       # what t5lit eval and evaluate stages do

An ensemble of one decodes as its model; an ensemble of two identical models decodes as one of them (the mean
of two equal numbers is that number).

Members must share the architecture (their decoders feed alike: a decoder-only member sees the inputs as a
prefix, an encoder-decoder member encodes them) and the vocabulary (the averaged distributions are over the
same ids); their sizes may differ. ``check_members`` refuses anything else in one line, before any decoding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from t5lit.registry import ConfigError


@dataclass
class EnsembleCache:
    """One decoding cache per member; ``select`` reorders (or repeats) the rows of every one of them."""

    caches: list

    def select(self, index: Tensor) -> EnsembleCache:
        return EnsembleCache([c.select(index) for c in self.caches])


class Ensemble(nn.Module):
    """Members decoded together: each step's log-probabilities are the mean of the members' (B, V)."""

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one model")
        check_members([getattr(m, "cfg", None) for m in members])
        self.members = nn.ModuleList(members)
        self.cfg = members[0].cfg

    @staticmethod
    def _mean(logits: list[Tensor]) -> Tensor:
        """(B, V) logits of each member -> (B, V) mean of their float32 log-probabilities."""
        logp = [x.float().log_softmax(-1) for x in logits]
        return logp[0] if len(logp) == 1 else torch.stack(logp).mean(0)

    def begin_decoding(self, inputs: Tensor) -> tuple[Tensor, EnsembleCache]:
        """inputs (B, L) right-padded with 0 -> ((B, V) mean log-probabilities of the first target token, cache)."""
        starts = [m.begin_decoding(inputs) for m in self.members]
        return self._mean([logits for logits, _ in starts]), EnsembleCache([cache for _, cache in starts])

    def decode_step(self, tokens: Tensor, cache: EnsembleCache) -> Tensor:
        """tokens (B,) -> (B, V) mean log-probabilities of the next position (every member's cache advances)."""
        return self._mean([m.decode_step(tokens, c) for m, c in zip(self.members, cache.caches)])


def check_members(configs: Sequence, labels: Sequence[str] | None = None,
                  vocabularies: Sequence[str | None] | None = None) -> None:
    """One line when ensemble members cannot decode together: architectures or vocabularies that differ.

    Args:
        configs: each member's ModelConfig (its ``arch`` and ``vocab_size``).
        labels: how to name each member in the message (its checkpoint path); default "member <i>".
        vocabularies: each member's SentencePiece vocabulary as its checkpoint records it (None: unknown); two
            paths with the same contents are the same vocabulary.
    """
    labels = list(labels) if labels is not None else [f"member {i}" for i in range(len(configs))]
    if any(c is None for c in configs):
        raise ConfigError("ensemble members must be t5lit models (with a cfg: ModelConfig)")
    first = configs[0]
    for cfg, label in zip(configs[1:], labels[1:]):
        if cfg.arch != first.arch:
            raise ConfigError(f"ensemble members must share the architecture: {labels[0]} is {first.arch}, {label} "
                              f"is {cfg.arch}")
        if cfg.vocab_size != first.vocab_size:
            raise ConfigError(f"ensemble members must share the vocabulary: {labels[0]} has vocab_size "
                              f"{first.vocab_size}, {label} has {cfg.vocab_size}")
    if vocabularies is None:
        return
    keys = [_vocabulary_key(v) for v in vocabularies]
    for key, vocab, label in zip(keys[1:], vocabularies[1:], labels[1:]):
        if None not in (keys[0], key) and key != keys[0]:
            raise ConfigError(f"ensemble members must share the vocabulary: {labels[0]} was trained with "
                              f"{vocabularies[0]}, {label} with {vocab}")


def _vocabulary_key(spec: str | None):
    """What identifies a vocabulary: the built-in one's spec, or a file's contents (a copy elsewhere is the
    same vocabulary); None when unknown."""
    import hashlib
    from pathlib import Path

    if spec is None:
        return None
    text = str(spec)
    if text == "builtin" or text.startswith("builtin:"):
        return "builtin:1000" if text == "builtin" else text  # "builtin" is the 1000-piece one
    path = Path(text).expanduser()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).hexdigest()
    return text
