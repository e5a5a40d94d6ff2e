"""Pre-training batches at any corpus size: the corpus read as ``lanes`` independent, deterministic streams.

A lane is an endless sequence of examples: chunks of the objective's raw length (documents concatenated, EOS
after each: T5's ``reduce_concat_tokens`` + ``split_tokens``), each made into ``{"inputs", "targets"}`` with its
own generator. Lane ``l`` makes the global batches ``l, l + L, l + 2L, ...`` (``L`` lanes), each from the
examples that follow the previous one (``batch_size`` of them, or as many as first-fit packs into ``batch_size``
rows). Where a lane's chunks come from:

- **streamed** (no ``max_tokens``): the corpus's shards (files, or a hub dataset's data files) are cut into
  pieces, at least one per lane (a shard shared by ``K`` lanes gives each every ``K``-th document); each pass
  over the corpus deals the pieces to the lanes in a new seeded order and every lane reads, tokenizes and chunks
  its own, in the DataLoader worker that owns it. Chunks are shuffled within blocks of ``block`` chunks. Nothing
  is tokenized ahead of training, so the first batch comes as soon as one block is read, whatever the corpus's
  size, and memory holds a block per lane.
- **cached** (``max_tokens``): the first ``max_tokens`` tokens, tokenized once into the token cache
  (t5lit/data/cache.py); epoch ``e`` is a seeded permutation of its chunks, and lane ``l`` takes chunks
  ``l, l + L, ...`` of the endless sequence epoch 0, epoch 1, ...: every chunk once per epoch, so the corpus is
  repeated exactly (Table 9).

Mixtures draw each chunk's corpus by the rates (each corpus chunks its own documents). The lane's position (its
block, the place in the block, and where each corpus's reading stands at the block's start) travels with each
batch to the main process, which keeps the position after the last batch the model consumed for the checkpoint:
a resumed run rebuilds each lane's block and continues with exactly the next example. Determinism: an example
is a function of (seed, lane, where it was read); batch ``g`` of a run is a function of the seed, the data
settings and ``lanes``, never of the number of DataLoader workers or DDP ranks, which split the lanes between
them (so ``lanes`` must be a multiple of devices x workers).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from t5lit.data.sources import CorpusComponent, ShardRef, read_shard
from t5lit.registry import ConfigError

DOCS_PER_ENCODE = 64  # documents per batched SentencePiece call
_MIX, _BLOCK, _EXAMPLE = 7, 11, 13  # tags that keep the generators of mixing, shuffling and examples apart


# ----------------------------------------------------------------------------------------------------------------
# Streamed chunks: one corpus component as read by one lane
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class StreamedComponent:
    """A corpus component for the lanes: its shards, and the documents held out of training for validation
    (``held_out[i]``: the first documents of shard ``i``)."""

    component: CorpusComponent
    shards: tuple[ShardRef, ...]
    held_out: tuple[int, ...] = ()

    def pieces_per_shard(self, lanes: int) -> int:
        """K: each shard is cut into K pieces (every K-th document) so that every lane gets at least one."""
        return max(1, math.ceil(lanes / len(self.shards)))


class ComponentReader:
    """Lane ``lane``'s chunks of one component: the documents of its pieces, pass after pass, tokenized,
    concatenated with EOS after each, cut into chunks of ``raw`` tokens.

    A place in the lane's text is ``(pass, piece, document, token)``: token ``token`` of the ``document``-th
    document of the ``piece``-th of the lane's pieces in pass ``pass``. ``position`` is where the next chunk
    starts, and the place where a chunk starts is its identity (what seeds its example)."""

    def __init__(self, comp: StreamedComponent, index: int, lane: int, lanes: int, seed: int, raw: int, vocab,
                 position: tuple[int, ...] = (0, 0, 0, 0)):
        self.comp, self.index, self.lane, self.lanes, self.seed, self.raw, self.vocab = \
            comp, index, lane, lanes, seed, raw, vocab
        self.k = comp.pieces_per_shard(lanes)
        self.num_pieces = len(comp.shards) * self.k
        self.pass_, self.piece, doc, token = (int(x) for x in position)
        self.pieces = self._lane_pieces(self.pass_)
        self.docs = self._documents(self.pieces[self.piece], doc)
        self.next_doc = doc  # index (in the piece) of the next document to read
        self.segments: deque[list] = deque()  # [pass, piece, document, tokens, offset] not yet chunked, in order
        self.buffered = 0
        self._skip_first = token  # tokens of the first document that an earlier chunk took

    def _lane_pieces(self, pass_: int) -> np.ndarray:
        order = np.random.default_rng((self.seed, self.index, pass_)).permutation(self.num_pieces)
        return order[self.lane::self.lanes]  # at least one: num_pieces >= lanes

    def _documents(self, piece: int, start: int) -> Iterator[str]:
        """The piece's documents from its ``start``-th: every K-th document of its shard, after the held-out."""
        shard, sub = divmod(int(piece), self.k)
        skip = self.comp.held_out[shard] if shard < len(self.comp.held_out) else 0
        kept = 0
        for i, doc in enumerate(read_shard(self.comp.shards[shard])):
            if i < skip or i % self.k != sub:
                continue
            if kept >= start:
                yield doc
            kept += 1

    @property
    def position(self) -> tuple[int, int, int, int]:
        if self.segments:
            p, q, d, _, off = self.segments[0]
            return (p, q, d, off)
        return (self.pass_, self.piece, self.next_doc, self._skip_first)

    def _read(self) -> bool:
        """Tokenize the next documents of the current piece into segments; False when the piece was done (and
        the reader moved to the next piece, or the first piece of the next pass)."""
        batch: list[str] = []
        for doc in self.docs:
            batch.append(doc)
            if len(batch) == DOCS_PER_ENCODE:
                break
        if not batch:
            self.piece += 1
            if self.piece == len(self.pieces):
                self.pass_, self.piece = self.pass_ + 1, 0
                self.pieces = self._lane_pieces(self.pass_)
            self.docs, self.next_doc, self._skip_first = self._documents(self.pieces[self.piece], 0), 0, 0
            return False
        for ids in self.vocab.encode_batch(batch, sentinels=False):  # corpus text never holds sentinels
            d = self.next_doc
            self.next_doc += 1
            if not ids:
                continue
            tokens = np.empty(len(ids) + 1, np.int32)
            tokens[:-1] = ids
            tokens[-1] = self.vocab.eos_id
            offset, self._skip_first = min(self._skip_first, len(tokens)), 0
            if offset < len(tokens):
                self.segments.append([self.pass_, self.piece, d, tokens, offset])
                self.buffered += len(tokens) - offset
        return True

    def next_chunk(self) -> tuple[np.ndarray, tuple[int, ...]]:
        """``(tokens (raw,) int32, the place where the chunk starts)``."""
        dry = 0  # pieces finished with no text since the last token
        while self.buffered < self.raw:
            if self._read() or self.segments:
                dry = 0
                continue
            dry += 1
            if dry > 4 * self.num_pieces + 4:  # every piece read, several times over, and not one token
                raise ConfigError(f"corpus {self.comp.component.label!r} gave lane {self.lane} no text in "
                                  f"{dry} pieces of documents: it yields no documents")
        start = self.position
        out = np.empty(self.raw, np.int32)
        filled = 0
        while filled < self.raw:
            seg = self.segments[0]
            take = min(self.raw - filled, len(seg[3]) - seg[4])
            out[filled:filled + take] = seg[3][seg[4]:seg[4] + take]
            filled += take
            seg[4] += take
            if seg[4] == len(seg[3]):
                self.segments.popleft()
        self.buffered -= self.raw
        return out, start


# ----------------------------------------------------------------------------------------------------------------
# A lane: blocks of examples -> batches
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class LaneSpec:
    """What every lane needs, the same in every worker (plain data, pickled to the DataLoader workers)."""

    lanes: int
    seed: int
    batch_size: int
    block: int  # chunks per block: shuffled together (streamed), made into examples together
    pack: bool
    raw: int
    components: list = field(default_factory=list)  # [StreamedComponent] (streamed) or []
    rates: tuple = ()
    cached_chunks: int = 0  # cached: chunks per epoch (the token cache's training part)

    @property
    def streamed(self) -> bool:
        return bool(self.components)

    @property
    def source_width(self) -> int:
        return 4 * len(self.components) if self.streamed else 1

    @property
    def state_width(self) -> int:
        """Ints in a lane's position: block, place in the block, then the source's position at the block."""
        return 2 + self.source_width


class Lane:
    """One lane: its blocks of examples and its batches. ``position`` is where its next batch starts."""

    def __init__(self, spec: LaneSpec, lane: int, recipe, vocab, tokens=None, position: tuple | None = None,
                 epoch: int = 0):
        self.spec, self.lane, self.recipe, self.vocab, self.tokens = spec, lane, recipe, vocab, tokens
        self.converter = recipe.converter_packed if spec.pack else recipe.converter
        position = tuple(position) if position is not None else self.initial_position(epoch)
        if len(position) != spec.state_width:
            raise ConfigError(f"lane {lane}: a checkpoint position of {len(position)} numbers, expected "
                              f"{spec.state_width}: the data settings changed")
        self.block_no, skip = int(position[0]), int(position[1])
        source = tuple(int(x) for x in position[2:])
        if spec.streamed:  # the readers stay open from block to block: each piece is read once, in order
            self._readers = [ComponentReader(c, i, lane, spec.lanes, spec.seed, spec.raw, vocab,
                                             source[4 * i:4 * i + 4]) for i, c in enumerate(spec.components)]
        else:
            self._next_chunk = source[0]
        self._load_block()
        self.q = skip

    def initial_position(self, epoch: int) -> tuple[int, ...]:
        """The position at the start of epoch (cached) or pass (streamed) ``epoch``."""
        if self.spec.streamed:
            return (0, 0) + (epoch, 0, 0, 0) * len(self.spec.components)
        n, s = self.spec.cached_chunks, self.spec.lanes
        return (0, 0, max(0, -(-(epoch * n - self.lane) // s)))

    # -- blocks ---------------------------------------------------------------------------------------------
    def _load_block(self) -> None:
        """Read the lane's next block of chunks and make its examples (in the block's shuffled order)."""
        spec, m = self.spec, self.spec.block
        if spec.streamed:
            readers = self._readers
            self.block_source = tuple(x for r in readers for x in r.position)
            if len(readers) > 1:
                draw = np.random.default_rng((spec.seed, _MIX, self.lane, self.block_no))
                which = draw.choice(len(readers), size=m, p=np.asarray(spec.rates) / sum(spec.rates))
            else:
                which = np.zeros(m, np.int64)
            chunks, rngs = np.empty((m, spec.raw), np.int32), []
            for t in range(m):
                tokens, place = readers[which[t]].next_chunk()
                chunks[t] = tokens
                rngs.append(np.random.default_rng((spec.seed, _EXAMPLE, self.lane, int(which[t]), *place)))
            order = np.random.default_rng((spec.seed, _BLOCK, self.lane, self.block_no)).permutation(m)
        else:
            i0 = self._next_chunk
            self.block_source = (i0,)
            chunks, rngs = np.empty((m, spec.raw), np.int32), []
            for t in range(m):
                epoch, c = self._chunk_id(i0 + t)
                chunks[t] = self.tokens.chunk(c, spec.raw)
                rngs.append(np.random.default_rng((spec.seed, epoch, c)))  # as the cache has always seeded them
            order = np.arange(m)
            self._next_chunk = i0 + m
        examples = self.recipe.examples(chunks, rngs, self.vocab)
        self.examples = [examples[i] for i in order]
        self.q = 0

    def _chunk_id(self, i: int) -> tuple[int, int]:
        """Cached: ``(epoch, chunk)`` of the lane's ``i``-th chunk, item ``lane + i * lanes`` of the endless
        sequence epoch 0, epoch 1, ... (each a seeded permutation of the cache's chunks)."""
        epoch, j = divmod(self.lane + i * self.spec.lanes, self.spec.cached_chunks)
        return epoch, int(self._epoch_order(epoch)[j])

    _orders: dict = {}

    def _epoch_order(self, epoch: int) -> np.ndarray:
        key = (self.spec.seed, epoch, self.spec.cached_chunks)
        orders = Lane._orders
        if key not in orders:
            if len(orders) > 4:
                orders.clear()
            orders[key] = np.random.default_rng((self.spec.seed, epoch)).permutation(self.spec.cached_chunks)
        return orders[key]

    def _next_example(self) -> dict:
        if self.q == len(self.examples):
            self.block_no += 1
            self._load_block()
        ex = self.examples[self.q]
        self.q += 1
        return ex

    def next_examples(self, n: int) -> list[dict]:
        """The lane's next ``n`` examples (``{"inputs", "targets"}``), for a consumer that makes its own rows
        (the unsupervised member of a fine-tuning mixture, t5lit/data/unsupervised.py)."""
        return [self._next_example() for _ in range(n)]

    def _peek(self) -> dict:
        if self.q == len(self.examples):
            self.block_no += 1
            self._load_block()
        return self.examples[self.q]

    @property
    def position(self) -> tuple[int, ...]:
        return (self.block_no, self.q, *self.block_source)

    # -- batches --------------------------------------------------------------------------------------------
    def next_batch(self) -> dict[str, np.ndarray]:
        """The lane's next batch of model features (batch_size rows)."""
        b = self.spec.batch_size
        if not self.spec.pack:
            return self.converter([self._next_example() for _ in range(b)])
        from t5lit.features import pad_rows

        cap_a, cap_b = self.converter._capacity()
        room = np.array([[cap_a, cap_b]] * b, np.int64)  # (rows, 2) what each row still holds
        rows: list[list[int]] = [[] for _ in range(b)]
        taken: list[dict] = []
        while True:
            ex = self._peek()
            li, lt = self.converter._fit_lengths(np.array([len(ex["inputs"])]), np.array([len(ex["targets"])]))
            need_a, need_b = self.converter._needs(li, lt)
            fits = np.flatnonzero((room[:, 0] >= need_a[0]) & (room[:, 1] >= need_b[0]))
            if not len(fits):
                break
            r = int(fits[0])
            room[r] -= (int(need_a[0]), int(need_b[0]))
            rows[r].append(len(taken))
            taken.append(self._next_example())
        used = [row for row in rows if row]
        return pad_rows(self.converter(taken, rows=used), b)


def padding_fraction(batch: dict[str, np.ndarray]) -> float:
    """The share of the batch's token positions (encoder and decoder) that hold padding."""
    total = pad = 0
    for key in ("encoder_input_tokens", "decoder_target_tokens"):
        if key in batch:
            total += batch[key].size
            pad += int(np.count_nonzero(batch[key] == 0))
    return pad / max(total, 1)
