"""The unsupervised member of a multi-task mixture: the pre-training objective on the pre-training corpus, drawn
into a fine-tuning stage's training stream (paper Sections 3.5.2-3.5.3, Tables 11-12; T5's ``all_mix``).

Its examples are made exactly as pre-training makes them (t5lit/data/examples.py ``PretrainFeatures``,
t5lit/data/lanes.py): the corpus streamed (never tokenized whole) as ``lanes`` deterministic streams, its
documents concatenated with EOS after each, cut into chunks of the objective's raw length at the fine-tuning
stage's lengths (``objective_length``), each chunk through the objective with its own generator. What comes out is the
same ``{"inputs", "targets"}`` token ids as a supervised task's examples, so the stage's converter and packing
take them as they are; they are never validated or scored.

How they meet the mixture's stream (FinetuneDataModule): the global training batch ``g`` of an epoch takes
the unsupervised examples its rows hold (the mixture's draws decide how many) from lane ``g % lanes``, the next
ones of that lane. Each epoch starts every lane at a new pass over the corpus (a new seeded order of its
pieces), so an epoch's batches are a function of the seed and the data settings alone; the lanes' positions
travel with the batches, are kept in every checkpoint, and a resumed run goes on with exactly the next
example. The lanes are seeded apart from a pre-training stage's (the same corpus with the same seed gives a
multi-task stage other examples than the pre-training stage before it).
"""

from __future__ import annotations

import numpy as np

from t5lit.data.examples import PretrainFeatures
from t5lit.data.lanes import Lane, LaneSpec, StreamedComponent
from t5lit.registry import ConfigError

_TAG = 0x756E73  # seeds the member's lanes apart from a pre-training stage's ("uns")


def unsupervised_seed(seed: int) -> int:
    """The seed of the unsupervised member's lanes for the experiment's ``seed``."""
    return int(np.random.SeedSequence((int(seed), _TAG)).generate_state(1)[0])


def objective_length(objective: str, params: dict | None, inputs_length: int, targets_length: int) -> int:
    """The inputs length the objective makes the member's examples at: the stage's ``inputs_length`` when the
    objective's length budget there fits the stage's lengths (the paper's 512 / 512 with the baseline's
    objectives), else the longest shorter one whose budget does (shorter chunks: the same noise, never a target
    cut). One line when none does."""
    from t5lit.objectives import get_objective

    bound = get_objective(objective, **(params or {}))
    for length in range(int(inputs_length), 1, -1):
        try:
            budget = bound.budget(length)
        except ConfigError:
            continue
        if budget.inputs <= inputs_length and budget.targets <= targets_length:
            return length
    raise ConfigError(f"'unsupervised': objective {objective!r} makes no examples that fit the stage's lengths "
                      f"(inputs_length {inputs_length}, targets_length {targets_length}); raise "
                      "finetune.targets_length")


class UnsupervisedMember:
    """The pre-training objective on a corpus, as examples of a fine-tuning stage's lengths.

    Args:
        corpus, corpus_options: the pre-training corpus (``t5lit list corpora``) and its options.
        objective, objective_params: the pre-training objective (``t5lit list objectives``) and its parameters.
        arch: the model's architecture; inputs_length, targets_length: the fine-tuning stage's lengths. The
            examples are what pre-training at ``inputs_length`` makes, when the objective's length budget there
            fits both lengths, else pre-training's at the longest shorter inputs length whose budget does
            (``objective_length``: the i.i.d. objective's targets at 512 fit T5's 512 / 512 mixture lengths; at a
            tiny scale's 96 / 24 its chunks get shorter).
        lanes: the streams the corpus is read in (a multiple of devices x DataLoader workers).
        block: chunks read, shuffled and made into examples together per lane.
        seed: the experiment's seed; pack: the stage packs (the chunk length of a one-stack row follows it).
    """

    def __init__(self, corpus: str, corpus_options: dict | None, objective: str, objective_params: dict | None,
                 arch: str, inputs_length: int, targets_length: int, lanes: int, block: int, seed: int,
                 pack: bool = True):
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ConfigError(f"lanes must be an integer >= 1, got {lanes!r}")
        self.corpus, self.corpus_options = corpus, dict(corpus_options or {})
        length = objective_length(objective, objective_params, inputs_length, targets_length)
        self.recipe = PretrainFeatures.build(objective, objective_params, arch, length)
        budget = self.recipe.budget
        # Each example is cut to the budget (EOS kept last; only an objective whose budget trims makes longer
        # ones), so a packing plan can reserve the budget for it before it is made.
        self.lengths = (budget.inputs, budget.targets)
        self.lanes, self.block, self.seed = lanes, block, unsupervised_seed(seed)
        self.raw = self.recipe.raw_length(pack)
        self.spec: LaneSpec | None = None
        self.vocab = None

    def setup(self, vocab) -> None:
        """Find the corpus's shards (its train split: none of it is held out, nothing here is validated) and
        make one example, so that an objective that cannot work with this vocabulary fails now in one line."""
        from t5lit.data.sources import corpus_components, corpus_shards

        components = [StreamedComponent(c, tuple(corpus_shards(c, "train")))
                      for c in corpus_components(self.corpus, self.corpus_options)]
        self.spec = LaneSpec(self.lanes, self.seed, 1, self.block, False, self.raw, components=components,
                             rates=tuple(c.component.rate for c in components))
        self.vocab = vocab
        probe = (3 + np.arange(self.raw) % max(1, vocab.vocab_size - vocab.num_extra_ids - 3)).astype(np.int32)
        self.recipe.examples(probe[None], [np.random.default_rng(0)], vocab)

    @property
    def state_width(self) -> int:
        """Ints in a lane's position (t5lit/data/lanes.py ``LaneSpec.state_width``)."""
        return 2 + 4 * len(self.spec.components)

    def lane(self, lane: int, epoch: int, position: tuple[int, ...] | None = None) -> Lane:
        """Lane ``lane`` at ``position``, or at the start of epoch ``epoch`` (its pass ``epoch`` of the corpus)."""
        return Lane(self.spec, lane, self.recipe, self.vocab, position=position, epoch=epoch)

    def take(self, lane: Lane, n: int) -> list[dict]:
        """The next ``n`` examples of ``lane``, each within the objective's budget."""
        return self.cut(lane.next_examples(n))

    def cut(self, examples: list[dict]) -> list[dict]:
        """``examples`` cut to the objective's budget, EOS kept last (as T5 trimmed to its sequence lengths)."""
        from t5lit.features import _truncate

        a, b = self.lengths
        return [{"inputs": _truncate(np.asarray(ex["inputs"], np.int32), a),
                 "targets": _truncate(np.asarray(ex["targets"], np.int32), b)} for ex in examples]


class LaneCursor:
    """The unsupervised member's lanes as one DataLoader worker (or the main process) reads them during one
    iteration over the training batches: lanes opened at their checkpointed positions, or at the start of the
    epoch, or (a batch asked for out of order: ``train_batch`` called directly) replayed from it.

    ``known``: (lanes, 3 + state width) ints, per lane ``[known, epoch, lane batch, *position]``: the position
    after the lane's last consumed batch."""

    def __init__(self, member: UnsupervisedMember, known: np.ndarray | None = None):
        self.member = member
        self.known = known
        self.open: dict[int, tuple[int, int, Lane]] = {}  # lane -> (epoch, its next batch, the lane)

    def examples(self, epoch: int, batch: int, n: int, counts) -> tuple[list[dict], np.ndarray]:
        """The ``n`` unsupervised examples of global batch ``batch`` of epoch ``epoch`` and the state it carries
        (``[lane, epoch, lane batch, *position after it]``); ``counts(g)``: the unsupervised examples of batch g
        (for a replay)."""
        lanes = self.member.lanes
        lane_no, j = batch % lanes, batch // lanes
        got = self.open.get(lane_no)
        if got is None or got[:2] != (epoch, j):
            lane = self._open(epoch, lane_no, j, counts)
        else:
            lane = got[2]
        out = self.member.take(lane, n)
        self.open[lane_no] = (epoch, j + 1, lane)
        return out, np.array([lane_no, epoch, j, *lane.position], np.int64)

    def _open(self, epoch: int, lane_no: int, j: int, counts) -> Lane:
        member = self.member
        if self.known is not None and self.known[lane_no, 0]:
            saved = self.known[lane_no]
            if int(saved[1]) == epoch and int(saved[2]) + 1 == j:
                return member.lane(lane_no, epoch, tuple(int(x) for x in saved[3:]))
        lane = member.lane(lane_no, epoch)
        for k in range(j):  # replay the lane's earlier batches of the epoch
            lane.next_examples(counts(lane_no + k * member.lanes))
        return lane
