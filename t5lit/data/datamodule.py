"""The two DataModules: pre-training (corpus x objective x architecture) and fine-tuning (task or mixture).

Pre-training builds examples the way T5 does (paper Section 3.1.2, T5's span_corruption and iid_denoising
tasks): documents concatenated with EOS after each, cut into chunks of the objective's raw length (511 tokens
for 512 inputs of the i.i.d. baseline; 568 for span corruption), each chunk through the objective with its own
generator, and the architecture's feature converter (packing several examples into a row by default, as T5
does). The corpus is read as ``lanes`` deterministic streams (t5lit/data/lanes.py): streamed and tokenized in the
DataLoader workers for a corpus of any size, or, with ``max_tokens``, from the token cache of its first
``max_tokens`` tokens, repeated. The lanes' positions are part of every checkpoint: a resumed run continues
with exactly the batches of the uninterrupted one.

Fine-tuning tokenizes each task's formatted {inputs, targets} strings (EOS appended, truncated to the
lengths as T5 does), draws the training stream from the tasks by the mixture's rates, packs it with a
plan computed per epoch, and validates by generation, scored by each task's metrics. A mixture that holds the
unsupervised member draws it by its rate too: its examples are made when their batch is, by the pre-training
objective on the streamed corpus (t5lit/data/unsupervised.py), and the positions of its lanes are part of every
checkpoint, as pre-training's are.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from dataclasses import dataclass

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from t5lit.data.examples import PretrainFeatures
from t5lit.data.lanes import Lane, LaneSpec, StreamedComponent
from t5lit.data.stream import BatchStream, ResumableMixin, StreamLoader, to_tensors
from t5lit.features import converter_for, pad_rows, plan_packing
from t5lit.registry import ConfigError

DATA_FORMAT = 2  # the pre-training data state in checkpoints: lanes (1: one (epoch, batch) position)
BLOCK_BATCHES = 8  # a lane's block: this many batches' worth of chunks, shuffled and made into examples together


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def training_tokens(steps: int, batch_size: int, world: int, inputs_length: int) -> int:
    """The paper's count of pre-training tokens: steps x sequences per step x inputs length (2^19 x 128 x 512 =
    2^35 for the baseline, Section 3.1.2); a corpus of ``max_tokens`` tokens is repeated this / max_tokens times
    (Table 9)."""
    return int(steps) * int(batch_size) * int(world) * int(inputs_length)


def tokens_for_repeats(repeats: float, steps: int, batch_size: int, world: int, inputs_length: int,
                       raw_length: int) -> tuple[int, bool]:
    """``(max_tokens, floored)``: the corpus size that training repeats ``repeats`` times, at least one global
    batch's chunks (``floored`` when the repeats cannot be kept at this scale: too few training tokens)."""
    want = math.ceil(training_tokens(steps, batch_size, world, inputs_length) / repeats)
    least = batch_size * world * raw_length
    return max(want, least), want < least


class PretrainDataModule(L.LightningDataModule):
    """Pre-training batches for ``objective`` on ``corpus`` for the architecture ``arch``.

    Args:
        corpus: a corpus name (``t5lit list corpora``); corpus_options: its options (e.g. paths).
        vocab: "builtin", "builtin:<pieces>" or a SentencePiece .model path (extra ids are added).
        objective: an objective name (``t5lit list objectives``); objective_params: its parameters.
        arch: linked to ``model.arch`` by the CLI. inputs_length: the encoder length (T5: 512); the raw
            chunk and targets lengths follow from the objective (T5's random_spans_helper); decoder-only
            rows hold inputs + targets. targets_length: pad targets to this length instead (an error when
            the objective's targets can be longer).
        batch_size: rows per device. pack: several examples per row (segment ids), as T5 pre-trains.
        max_tokens: the corpus's first max_tokens tokens, tokenized once and repeated (None: streamed).
        repeats: instead of max_tokens, the repeats over training (Table 9): max_tokens = steps x batch_size x
            devices x inputs_length / repeats. steps: the training steps for that (default: the trainer's).
        lanes: the streams the corpus is read in (a multiple of devices x num_workers; the data order depends
            on it, not on the workers or devices). val_examples: held-out examples for val/loss.
        seed: seeds the order and every example.
    """

    def __init__(self, corpus: str = "builtin", corpus_options: dict | None = None, vocab: str = "builtin",
                 objective: str = "span_corruption", objective_params: dict | None = None,
                 arch: str = "encoder_decoder", inputs_length: int = 512, batch_size: int = 128,
                 max_tokens: int | None = None, val_examples: int = 256, seed: int = 0, num_workers: int = 0,
                 cache_dir: str | None = None, targets_length: int | None = None, pack: bool = True,
                 lanes: int = 64, repeats: float | None = None, steps: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        if max_tokens is not None and repeats is not None:
            raise ConfigError("give max_tokens (the corpus's size) or repeats (how often training sees it), not "
                              "both")
        if not isinstance(lanes, int) or isinstance(lanes, bool) or lanes < 1:
            raise ConfigError(f"lanes must be an integer >= 1, got {lanes!r}")
        # objective x architecture: the length budget and the feature converter (shared with `t5lit data show`)
        self.recipe = PretrainFeatures.build(objective, objective_params, arch, inputs_length, targets_length)
        self.objective_fn, self.converter = self.recipe.objective, self.recipe.converter
        self.raw_length, self.targets_length = self.recipe.raw_length(pack), self.recipe.budget.targets
        self.vocab = None
        self.spec: LaneSpec | None = None
        self.train_tokens = None
        self.num_train_chunks: int | None = None  # cached corpora only
        self.info: dict = {}
        self._positions: dict[int, list[int]] = {}  # lane -> [lane batch, *position] after its last consumed batch
        self._resume: tuple[int, dict] | None = None

    def fingerprint(self) -> str:
        hp = self.hparams
        return _fingerprint(DATA_FORMAT, hp.corpus, hp.corpus_options, hp.vocab, hp.objective, hp.objective_params,
                            hp.arch, hp.inputs_length, hp.targets_length, hp.batch_size, hp.max_tokens, hp.repeats,
                            hp.seed, hp.pack, hp.lanes, BLOCK_BATCHES)

    # ------------------------------------------------------------------------------------------ setup
    def _world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def setup(self, stage: str | None = None):
        if self.vocab is not None:
            return
        from t5lit.data.vocab import load_vocabulary

        hp = self.hparams
        rank, world = self._world()
        workers = max(1, hp.num_workers)
        if hp.lanes % (world * workers):
            raise ConfigError(f"pretrain.lanes ({hp.lanes}) must be a multiple of devices x num_workers ({world} x "
                              f"{workers}): each DataLoader worker of each device reads whole lanes")
        vocab = load_vocabulary(hp.vocab, cache_dir=hp.cache_dir)
        model_vocab = getattr(getattr(self.trainer, "lightning_module", None), "config", None)
        if model_vocab is not None and vocab.vocab_size > model_vocab.vocab_size:
            raise ConfigError(f"vocabulary has {vocab.vocab_size} ids but the model's vocab_size is "
                              f"{model_vocab.vocab_size}; raise model vocab_size or use a smaller vocabulary")
        self.vocab = vocab
        max_tokens = self._max_tokens(world)
        block = BLOCK_BATCHES * hp.batch_size
        if max_tokens is not None:
            val = self._setup_cached(max_tokens)
            self.spec = LaneSpec(hp.lanes, hp.seed, hp.batch_size, block, hp.pack, self.raw_length,
                                 cached_chunks=self.num_train_chunks)
        else:
            components, val = self._setup_streamed()
            self.spec = LaneSpec(hp.lanes, hp.seed, hp.batch_size, block, hp.pack, self.raw_length,
                                 components=components, rates=tuple(c.component.rate for c in components))
        self.num_val_examples = len(val)
        self._val_examples = val
        self._report(world)

    def _max_tokens(self, world: int) -> int | None:
        hp = self.hparams
        if hp.repeats is None:
            return hp.max_tokens
        steps = hp.steps if hp.steps is not None else getattr(self.trainer, "max_steps", None)
        if steps is None or steps < 1:
            raise ConfigError("repeats needs the number of training steps (steps=, or the trainer's max_steps)")
        tokens, floored = tokens_for_repeats(hp.repeats, steps, hp.batch_size, world, hp.inputs_length,
                                             self.raw_length)
        if floored:
            import warnings

            warnings.warn(f"repeats {hp.repeats:g}: {steps} steps of {hp.batch_size} x {world} rows cannot repeat a "
                          f"corpus that often (it would be smaller than one batch); using one batch's "
                          f"{tokens:,} tokens", stacklevel=2)
        return tokens

    def _setup_cached(self, max_tokens: int) -> list[dict]:
        """The token cache of the first max_tokens tokens; validation from the validation split, else the last
        chunks of the cache."""
        from t5lit.data.cache import token_cache
        from t5lit.data.sources import corpus_components

        hp = self.hparams
        components = corpus_components(hp.corpus, hp.corpus_options)
        if len(components) > 1:
            raise ConfigError(f"max_tokens with the mixture {hp.corpus!r}: a token cache holds one corpus; stream "
                              "the mixture (max_tokens: null) or cap one corpus")
        opts = dict(cache_dir=hp.cache_dir, corpus_options=hp.corpus_options)
        self.train_tokens = token_cache(hp.corpus, "train", self.vocab, max_tokens=max_tokens, **opts)
        n_train = self.train_tokens.num_chunks(self.raw_length)
        if components[0].has_validation:
            val_tokens = token_cache(hp.corpus, "validation", self.vocab, max_tokens=max_tokens, **opts)
            offset, n_val = 0, min(hp.val_examples, val_tokens.num_chunks(self.raw_length))
        else:  # hold out the last chunks of the train split
            n_val = min(hp.val_examples, n_train // 10)
            val_tokens, offset = self.train_tokens, n_train - n_val
            n_train -= n_val
        self.num_train_chunks = n_train
        if n_train < hp.batch_size:
            raise ConfigError(f"corpus {hp.corpus!r} gives {n_train} training chunks of {self.raw_length} tokens, "
                              f"fewer than one batch of {hp.batch_size}; use more data or a smaller batch")
        self.info["corpus_tokens"] = n_train * self.raw_length
        chunks = np.stack([val_tokens.chunk(offset + i, self.raw_length) for i in range(n_val)]) if n_val else None
        # At least one example now, so that an objective that cannot work with this vocabulary (too few extra ids
        # for its sentinels) fails here in one line, not later inside a DataLoader worker.
        probe = chunks if chunks is not None else np.stack([self.train_tokens.chunk(0, self.raw_length)])
        examples = self.recipe.examples(probe, [np.random.default_rng((hp.seed, 0, offset + i))
                                                for i in range(len(probe))], self.vocab)
        return examples if n_val else []

    def _setup_streamed(self) -> tuple[list[StreamedComponent], list[dict]]:
        """Every component's shards; validation examples from its validation split, else from the first
        documents of its first shard (held out of training)."""
        from t5lit.data.sources import corpus_components, corpus_shards

        hp = self.hparams
        out, val = [], []
        for comp in corpus_components(hp.corpus, hp.corpus_options):
            shards = tuple(corpus_shards(comp, "train"))
            want = max(1, round(hp.val_examples * comp.rate))
            if comp.has_validation:
                chunks, _ = _first_chunks(corpus_shards(comp, "validation"), want, self.raw_length, self.vocab)
                held = ()
            else:
                chunks, used = _first_chunks(shards[:1], want, self.raw_length, self.vocab, keep_some=len(shards) == 1)
                held = (used,)
            out.append(StreamedComponent(comp, shards, held))
            rngs = [np.random.default_rng((hp.seed, 0, len(val) + i)) for i in range(len(chunks))]
            if len(chunks):
                val.extend(self.recipe.examples(np.stack(chunks), rngs, self.vocab))
        return out, val[:hp.val_examples]

    def _report(self, world: int) -> None:
        """Log what the corpus is and, when capped, how often training repeats it (Table 9)."""
        hp = self.hparams
        trainer = self.trainer
        steps = hp.steps if hp.steps is not None else getattr(trainer, "max_steps", None)
        info = self.info
        info.update(lanes=hp.lanes, pack=hp.pack, mode="cached" if self.train_tokens is not None else "streamed")
        if "corpus_tokens" in info and steps and steps > 0:
            info["training_tokens"] = training_tokens(steps, hp.batch_size, world, hp.inputs_length)
            info["repeats"] = info["training_tokens"] / info["corpus_tokens"]
        from lightning.pytorch.utilities import rank_zero_info

        if "repeats" in info:
            rank_zero_info(f"pre-training data: {hp.corpus}, its first {info['corpus_tokens']:,} tokens for training, "
                           f"repeated {info['repeats']:,.1f} times over {info['training_tokens']:,} training tokens")
        logger = getattr(trainer, "logger", None) if trainer is not None else None
        if logger is not None and trainer.is_global_zero and "repeats" in info:
            logger.log_metrics({"data/repeats": float(info["repeats"]),
                                "data/corpus_tokens": float(info["corpus_tokens"])}, step=0)

    # ------------------------------------------------------------------------------------------ batches
    def train_batch(self, epoch: int, batch: int) -> dict:
        """Batch ``batch`` (a global index) of a run whose lanes all start at epoch (or pass) ``epoch``."""
        lane_no, j = batch % self.spec.lanes, batch // self.spec.lanes
        lane = Lane(self.spec, lane_no, self.recipe, self.vocab, self.train_tokens, epoch=epoch)
        for _ in range(j):
            lane.next_batch()
        return lane.next_batch()

    def train_dataloader(self):
        dataset = LaneBatches(self.spec, self.recipe, self.vocab, self.train_tokens)
        return LaneLoader(dataset, self._loader_position, num_workers=self.hparams.num_workers,
                          pin_memory=torch.cuda.is_available(), persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self):
        b, examples = self.hparams.batch_size, self._val_examples
        batches = [to_tensors(self.recipe.features(examples[i:i + b])) for i in range(0, len(examples), b)]
        return DataLoader(batches, batch_size=None)  # ready-made batches, in order

    # ------------------------------------------------------------------------------------------ resuming
    def _loader_position(self) -> tuple[int, int, int, dict]:
        """(first local batch, rank, world, lane positions) for a new iteration; uses up an armed resume."""
        rank, world = self._world()
        if self._resume is not None:
            done, lanes = self._resume
            self._resume = None
            self._positions = {int(k): list(v) for k, v in lanes.items()}
            return done, rank, world, self._positions
        return 0, rank, world, {}

    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Keep the lane position each training batch carries (the model never sees it)."""
        if isinstance(batch, dict) and "_lane_state" in batch:
            state = batch.pop("_lane_state").tolist()
            self._positions[int(state[0])] = [int(x) for x in state[1:]]
        return batch

    def state_dict(self) -> dict:
        trainer = self.trainer
        if trainer is None:
            return {}
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        positions = _gather(trainer, self._positions)  # every rank consumed its own lanes
        return {"format": DATA_FORMAT, "batches_done": done, "fingerprint": self.fingerprint(),
                "lanes": {str(k): v for k, v in sorted(positions.items())}}

    def load_state_dict(self, state: dict) -> None:
        if not state:
            return
        if state.get("format") != DATA_FORMAT or state.get("fingerprint") != self.fingerprint():
            raise ConfigError("checkpoint's data settings differ from this data module's (corpus, objective, "
                              "seed, lengths, batch size, packing or lanes changed, or it was written by an older "
                              "t5lit); resume with the same data config")
        self._resume = (int(state["batches_done"]), dict(state["lanes"]))


def _first_chunks(shards, want: int, raw: int, vocab, keep_some: bool = False) -> tuple[list[np.ndarray], int]:
    """The first ``want`` chunks of the documents of ``shards`` read in order, and the number of documents they
    used (of the first shard). ``keep_some``: when that would use up the only shard, use its first tenth."""
    from t5lit.data.sources import read_shard

    docs: list[str] = []
    tokens: list[np.ndarray] = []
    have = 0
    for ref in shards:
        for doc in read_shard(ref):
            docs.append(doc)
            ids = vocab.encode(doc, sentinels=False)
            if ids:
                tokens.append(np.append(np.asarray(ids, np.int32), np.int32(vocab.eos_id)))
                have += len(ids) + 1
            if have >= want * raw:
                break
        if have >= want * raw:
            break
    used = len(docs)
    if keep_some and shards:
        rest = next(itertools.islice(read_shard(shards[0]), used, None), None)
        if rest is None:  # the whole (only) shard: hold out its first tenth instead
            used = max(1, len(docs) // 10)
            tokens = [np.append(np.asarray(ids, np.int32), np.int32(vocab.eos_id))
                      for ids in (vocab.encode(d, sentinels=False) for d in docs[:used]) if ids]
    flat = np.concatenate(tokens) if tokens else np.zeros(0, np.int32)
    n = min(want, len(flat) // raw)
    return [flat[i * raw:(i + 1) * raw] for i in range(n)], used


class LaneBatches(IterableDataset):
    """The training batches of one rank: local batch ``k`` is global batch ``k * world + rank``, made by lane
    ``g % lanes`` as its ``g // lanes``-th; DataLoader worker ``w`` of ``W`` makes local batches ``w, w + W, ...``
    from the start (PyTorch's order of collection), so each worker owns whole lanes when lanes is a multiple of
    world x W. The start and the lanes' positions live in shared memory, set by the loader for each iteration."""

    def __init__(self, spec: LaneSpec, recipe, vocab, tokens=None):
        self.spec, self.recipe, self.vocab, self.tokens = spec, recipe, vocab, tokens
        self._start = torch.tensor([0, 0, 1], dtype=torch.long).share_memory_()  # first local batch, rank, world
        # Per lane: [known, lane batch, *position] of the lane after its last consumed batch.
        self._lanes = torch.zeros(spec.lanes, 2 + spec.state_width, dtype=torch.long).share_memory_()

    def set_position(self, start: int, rank: int, world: int, positions: dict[int, list[int]]) -> None:
        self._start.copy_(torch.tensor([start, rank, world], dtype=torch.long))
        self._lanes.zero_()
        for lane, values in positions.items():
            self._lanes[int(lane), 0] = 1
            self._lanes[int(lane), 1:] = torch.tensor(values, dtype=torch.long)

    def __iter__(self):
        start, rank, world = self._start.tolist()
        known = self._lanes.numpy().copy()
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self._batches(start, rank, world, known, worker, workers)

    def _batches(self, start, rank, world, known, worker, workers):
        lanes: dict[int, Lane] = {}
        n = self.spec.lanes
        for k in itertools.count(start + worker, workers):
            g = k * world + rank
            lane_no, j = g % n, g // n
            lane = lanes.get(lane_no)
            if lane is None:
                saved = known[lane_no]
                position = None
                if saved[0]:
                    if int(saved[1]) + 1 != j:
                        raise RuntimeError(f"lane {lane_no}: the checkpoint holds its batch {int(saved[1])}, but the "
                                           f"run resumes at its batch {j}")
                    position = tuple(int(x) for x in saved[2:])
                lane = lanes[lane_no] = Lane(self.spec, lane_no, self.recipe, self.vocab, self.tokens, position)
            batch = lane.next_batch()
            batch["_lane_state"] = np.array([lane_no, j, *lane.position], np.int64)
            yield to_tensors(batch)


class LaneLoader(DataLoader):
    """A DataLoader over LaneBatches that asks its data module where to start each time it is iterated."""

    def __init__(self, dataset: LaneBatches, position, **kwargs):
        super().__init__(dataset, batch_size=None, **kwargs)
        self._position = position

    def __iter__(self):
        self.dataset.set_position(*self._position())  # before the (persistent) workers start this iteration
        return super().__iter__()


@dataclass
class EpochPlan:
    """One epoch of the fine-tuning stream: stream item ``k`` is example ``index[k]`` of member ``names[task[k]]``
    (for the unsupervised member: its ``index[k]``-th draw of the epoch, made when its batch is); row ``r`` holds
    the items ``order[starts[r]:starts[r + 1]]``, in that order. ``unsupervised``: the unsupervised items of
    each whole batch (None without the member)."""

    names: list[str]
    task: np.ndarray
    index: np.ndarray
    order: np.ndarray
    starts: np.ndarray
    unsupervised: np.ndarray | None = None

    @property
    def num_rows(self) -> int:
        return len(self.starts) - 1

    def stream(self) -> list[tuple[str, int]]:
        """``[(member, index)]`` in stream order."""
        return [(self.names[t], int(i)) for t, i in zip(self.task.tolist(), self.index)]


def _merge_rows(groups: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Rows of several packing plans, each ``(stream items in layout order, row sizes)`` with rows in the order
    of their first items, merged into one plan ``(order, starts)`` ordered by first item."""
    flat = np.concatenate([g[0] for g in groups]).astype(np.int64)
    sizes = np.concatenate([g[1] for g in groups]).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    perm = np.argsort(flat[offsets], kind="stable") if len(sizes) else np.zeros(0, np.int64)
    sizes = sizes[perm]
    starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    idx = np.repeat(offsets[perm] - starts[:-1], sizes) + np.arange(starts[-1])
    return flat[idx], starts


def _gather(trainer, positions: dict) -> dict:
    """Every rank's lane positions (each rank consumed its own lanes; a checkpoint keeps them all)."""
    positions = dict(positions)
    if trainer.world_size > 1:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            gathered: list = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, positions)
            for part in gathered:
                positions.update(part)
    return positions


class MixtureBatches(BatchStream):
    """A BatchStream whose batches take the unsupervised member's examples from its lanes (t5lit/data/
    unsupervised.py): each iteration opens them at the positions the loader set (shared memory, read by
    persistent workers too) and carries them on from batch to batch."""

    def __init__(self, make_batch, num_batches, member):
        super().__init__(make_batch, num_batches)
        self.member = member
        # Per lane: [known, epoch, lane batch, *position] after its last consumed batch.
        self._known = torch.zeros(member.lanes, 3 + member.state_width, dtype=torch.long).share_memory_()

    def set_lanes(self, states: dict[int, list[int]]) -> None:
        self._known.zero_()
        for lane, values in states.items():
            self._known[int(lane), 0] = 1
            self._known[int(lane), 1:] = torch.tensor(values, dtype=torch.long)

    def __iter__(self):
        epoch, start, rank, world = self.position
        return self._mixed(epoch, start, rank, world, self.local_batches(), self._known.numpy().copy())

    def _mixed(self, epoch, start, rank, world, stop, known):
        from t5lit.data.unsupervised import LaneCursor

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        cursor = LaneCursor(self.member, known)
        for local in range(start + worker, stop, workers):
            yield to_tensors(self.make_batch(epoch, local * world + rank, cursor))


class MixtureLoader(StreamLoader):
    """A StreamLoader that also sets the unsupervised member's lane positions before each iteration."""

    def __init__(self, stream: MixtureBatches, position, lanes, **kwargs):
        super().__init__(stream, position, **kwargs)
        self._lanes = lanes

    def __iter__(self):
        self.dataset.set_lanes(self._lanes())
        return super().__iter__()


class FinetuneDataModule(ResumableMixin, L.LightningDataModule):
    """Fine-tuning on a task or a mixture (``t5lit list tasks``), validated by generation.

    Args:
        tasks: one name or a list of task / mixture names; mixtures expand to their tasks. ``unsupervised``
            (or a mixture holding it, ``multi_task``) mixes in the pre-training objective on its corpus
            (t5lit/data/unsupervised.py): trained by its rate, never validated.
        mixing: examples_proportional | temperature | equal (paper Section 3.5.2), with ``mixing_limit``
            (K) and ``temperature`` (T).
        data_dir: read the official distribution files from here instead of the Hugging Face hub; a dict
            maps a task name to its directory.
        inputs_length, targets_length: examples are truncated to these (EOS kept last), as T5 does.
        pack: pack several examples into one row (T5 fine-tunes with packing).
        max_val_examples: cap on validation examples per task (None = all).
        num_samples: (input, prediction, target) samples written to TensorBoard per task.
        unsupervised_size: the unsupervised member's size in the rates (None: unlimited, so it counts K).
        corpus, corpus_options, objective, objective_params, lanes: what the unsupervised member is made of (the
            pretrain section's; unused without the member).
    """

    def __init__(self, tasks: str | list[str] = "builtin_kind", vocab: str = "builtin",
                 arch: str = "encoder_decoder", inputs_length: int = 512, targets_length: int = 128,
                 batch_size: int = 128, pack: bool = True, mixing: str = "examples_proportional",
                 mixing_limit: int = 2**19, temperature: float = 1.0, data_dir: str | dict | None = None,
                 max_val_examples: int | None = None, val_batch_size: int | None = None, num_samples: int = 5,
                 seed: int = 0, num_workers: int = 0, unsupervised_size: int | None = None,
                 corpus: str = "builtin", corpus_options: dict | None = None, objective: str = "span_corruption",
                 objective_params: dict | None = None, lanes: int = 64):
        super().__init__()
        self.save_hyperparameters()
        from t5lit.data.mixtures import UNSUPERVISED, mixture_members

        names = [tasks] if isinstance(tasks, str) else list(tasks)
        # mixtures expand to their tasks; a task named twice is trained and scored once
        self.tasks, has_unsupervised = mixture_members(names)
        if not self.tasks:
            raise ConfigError(f"{UNSUPERVISED!r} alone is pre-training (a pretrain stage); fine-tuning mixes it with "
                              "supervised tasks")
        self.converter = converter_for(arch, inputs_length, targets_length, pack=pack)
        self.val_converter = converter_for(arch, inputs_length, targets_length, pack=False)
        self.unsupervised = None
        if has_unsupervised:
            from t5lit.data.unsupervised import UnsupervisedMember

            self.unsupervised = UnsupervisedMember(corpus, corpus_options, objective, objective_params, arch,
                                                   inputs_length, targets_length, lanes, BLOCK_BATCHES * batch_size,
                                                   seed, pack)
        self._lane_states: dict[int, list[int]] = {}  # lane -> [epoch, lane batch, *position] after its last batch
        self.vocab = None
        self.train: dict[str, list[dict]] | None = None

    def fingerprint(self) -> str:
        hp = self.hparams
        parts = [hp.tasks, hp.vocab, hp.arch, hp.inputs_length, hp.targets_length, hp.batch_size, hp.pack, hp.mixing,
                 hp.mixing_limit, hp.temperature, hp.seed]
        if self.unsupervised is not None:
            parts += [hp.unsupervised_size, hp.corpus, hp.corpus_options, hp.objective, hp.objective_params, hp.lanes,
                      BLOCK_BATCHES]
        return _fingerprint(*parts)

    def _data_dir(self, task) -> str | None:
        d = self.hparams.data_dir
        if isinstance(d, dict):
            from t5lit.data.mixtures import task_names

            dirs = {t: v for name, v in d.items() for t in task_names(name)}  # a mixture's dir serves its tasks
            return dirs.get(task.name)
        return d

    def _encode(self, task, raw: list[dict]) -> list[dict]:
        from t5lit.evaluator import tokenize

        hp = self.hparams
        out = []
        for ex in raw:
            f = task.format(ex)
            out.append({"inputs": tokenize(self.vocab, f["inputs"], hp.inputs_length),
                        "targets": tokenize(self.vocab, f["targets"], hp.targets_length), "text": f})
        return out

    def setup(self, stage: str | None = None):
        """Validation examples for every stage (``eval_set``, what the Evaluator scores); training examples
        and mixing rates only for ``fit`` (so that ``t5lit eval`` needs neither the training files nor their
        download)."""
        from t5lit.data.mixtures import UNSUPERVISED, mixture_rates
        from t5lit.data.vocab import load_vocabulary
        from t5lit.evaluator import EvalSet

        hp = self.hparams
        if self.vocab is None:
            self.vocab = load_vocabulary(hp.vocab)
            self.eval_set = EvalSet.load(self.tasks, self.vocab, inputs_length=hp.inputs_length,
                                         targets_length=hp.targets_length, max_examples=hp.max_val_examples,
                                         data_dirs={t.name: self._data_dir(t) for t in self.tasks})
            self.val_raw = self.eval_set.raw
            self.val = {t.name: [{"inputs": i, "targets": o, "text": x} for i, o, x in zip(
                self.eval_set.inputs[t.name], self.eval_set.targets[t.name], self.eval_set.text[t.name])]
                for t in self.tasks}
        if self.train is not None or stage not in (None, "fit"):
            return
        self.train = {t.name: self._encode(t, t.load("train", self._data_dir(t))) for t in self.tasks}
        self._lengths = {name: np.array([(len(e["inputs"]), len(e["targets"])) for e in exs], np.int64).reshape(-1, 2)
                         for name, exs in self.train.items()}
        counts: dict[str, float] = {name: len(exs) for name, exs in self.train.items()}
        if self.unsupervised is not None:
            self._check_lanes()
            self.unsupervised.setup(self.vocab)
            counts[UNSUPERVISED] = hp.unsupervised_size or math.inf  # unlimited: min(inf, K) = K
        self.rates = mixture_rates(hp.mixing, counts, limit=hp.mixing_limit, temperature=hp.temperature)
        self.epoch_examples = epoch_size(counts, hp.mixing_limit)
        self._plans: dict[int, EpochPlan] = {}

    def _check_lanes(self) -> None:
        trainer = self.trainer
        world = trainer.world_size if trainer is not None else 1
        workers = max(1, self.hparams.num_workers)
        if self.hparams.lanes % (world * workers):
            raise ConfigError(f"pretrain.lanes ({self.hparams.lanes}) must be a multiple of devices x "
                              f"finetune.num_workers ({world} x {workers}): the unsupervised member's lanes are read "
                              "whole by each DataLoader worker of each device")

    def _epoch_plan(self, epoch: int) -> EpochPlan:
        """The epoch's stream (members drawn by the rates; each task's examples in a new seeded order per epoch)
        and its packing plan: first-fit over the supervised examples, as many unsupervised examples to a row as
        the objective's length budget fits (their lengths are known only when they are made), rows in the order
        of their first examples."""
        if epoch not in self._plans:
            from t5lit.data.mixtures import UNSUPERVISED, sample_task_indices

            hp = self.hparams
            names = list(self.rates)
            task = sample_task_indices(self.rates, self.epoch_examples, (hp.seed, epoch)).astype(np.int16)
            index = np.zeros(len(task), np.int64)
            u = names.index(UNSUPERVISED) if UNSUPERVISED in names else -1
            for i, name in enumerate(names):
                where = np.flatnonzero(task == i)
                if i == u:
                    index[where] = np.arange(len(where))
                    continue
                order = np.random.default_rng((hp.seed, epoch, i)).permutation(len(self.train[name]))
                index[where] = order[np.arange(len(where)) % len(order)]
            if not hp.pack:
                order, starts = np.arange(len(task)), np.arange(len(task) + 1)
            else:
                sup = np.flatnonzero(task != u)
                lengths = np.zeros((len(sup), 2), np.int64)
                for i, name in enumerate(names):
                    if i != u:
                        m = task[sup] == i
                        lengths[m] = self._lengths[name][index[sup[m]]]
                rows = plan_packing(lengths, self.converter)
                sizes = np.fromiter(map(len, rows), np.int64, count=len(rows))
                groups = [(sup[np.fromiter(itertools.chain.from_iterable(rows), np.int64, count=len(sup))], sizes)]
                if u >= 0:
                    pos, k = np.flatnonzero(task == u), self._unsupervised_per_row()
                    groups.append((pos, np.array([k] * (len(pos) // k) + ([len(pos) % k] if len(pos) % k else []),
                                                 np.int64)))
                order, starts = _merge_rows(groups)
            plan = EpochPlan(names, task, index, order, starts)
            if u >= 0:
                b, n = hp.batch_size, plan.num_rows // hp.batch_size
                seen = np.concatenate([[0], np.cumsum(task[order] == u)])
                plan.unsupervised = np.diff(seen[starts[np.arange(n + 1) * b]])
            self._plans = {epoch: plan}
        return self._plans[epoch]

    def _unsupervised_per_row(self) -> int:
        """Unsupervised examples a packed row holds: as many as its room fits of the objective's budget."""
        c = self.converter
        a, b = c._fit_lengths(np.array([self.unsupervised.lengths[0]]), np.array([self.unsupervised.lengths[1]]))
        need, room = c._needs(a, b), c._capacity()
        return max(1, min(int(r) // int(n[0]) for r, n in zip(room, need) if int(n[0]) > 0))

    def train_batch(self, epoch: int, batch: int, cursor=None) -> dict:
        """Global batch ``batch`` of epoch ``epoch``; ``cursor``: the unsupervised member's open lanes (a
        ``LaneCursor``; None: opened here, replaying the lane from the epoch's start)."""
        plan = self._epoch_plan(epoch)
        b = self.hparams.batch_size
        r0, r1 = batch * b, min((batch + 1) * b, plan.num_rows)
        s0 = int(plan.starts[r0])
        items = plan.order[s0:int(plan.starts[r1])]
        local = [list(range(int(plan.starts[r]) - s0, int(plan.starts[r + 1]) - s0)) for r in range(r0, r1)]
        tasks, indices = plan.task[items].tolist(), plan.index[items].tolist()
        state = None
        if plan.unsupervised is None:
            examples = [self.train[plan.names[t]][i] for t, i in zip(tasks, indices)]
        else:
            from t5lit.data.mixtures import UNSUPERVISED
            from t5lit.data.unsupervised import LaneCursor

            u = plan.names.index(UNSUPERVISED)
            cursor = cursor if cursor is not None else LaneCursor(self.unsupervised)
            made, state = cursor.examples(epoch, batch, int(plan.unsupervised[batch]),
                                          lambda g: int(plan.unsupervised[g]))
            made = iter(made)
            examples = [next(made) if t == u else self.train[plan.names[t]][i] for t, i in zip(tasks, indices)]
        out = self.converter(examples, rows=local) if self.hparams.pack else self.converter(examples)
        out = pad_rows(out, b)
        if state is not None:
            out["_lane_state"] = state
        return out

    def train_dataloader(self):
        hp = self.hparams
        kwargs = dict(num_workers=hp.num_workers, pin_memory=torch.cuda.is_available(),
                      persistent_workers=hp.num_workers > 0)
        count = lambda e: self._epoch_plan(e).num_rows // hp.batch_size  # noqa: E731
        if self.unsupervised is None:
            return StreamLoader(BatchStream(self.train_batch, count), self._trainer_position, **kwargs)
        stream = MixtureBatches(self.train_batch, count, self.unsupervised)
        return MixtureLoader(stream, self._trainer_position, lambda: dict(self._lane_states), **kwargs)

    def val_dataloader(self):
        """One batch per task chunk: the model features (val/loss) plus ``inputs`` (B, L) to decode and
        ``task_index`` / ``example_index`` to score the predictions with the Evaluator."""
        b = self.hparams.val_batch_size or self.hparams.batch_size
        batches = []
        for ti, idx, inputs in self.eval_set.batches(b):
            task = self.tasks[ti]
            feats = self.val_converter([self.val[task.name][i] for i in idx])
            feats.update(inputs=inputs, task_index=np.full(len(idx), ti, np.int64),
                         example_index=np.asarray(idx, dtype=np.int64))
            batches.append(to_tensors(feats))
        return DataLoader(batches, batch_size=None)

    # ------------------------------------------------------------------------------------------ resuming
    def on_before_batch_transfer(self, batch, dataloader_idx: int):
        """Keep the unsupervised lane position a training batch carries (the model never sees it)."""
        if isinstance(batch, dict) and "_lane_state" in batch:
            state = batch.pop("_lane_state").tolist()
            self._lane_states[int(state[0])] = [int(x) for x in state[1:]]
        return batch

    def state_dict(self) -> dict:
        state = super().state_dict()
        if state and self.unsupervised is not None:
            lanes = _gather(self.trainer, self._lane_states)
            state["lanes"] = {str(k): v for k, v in sorted(lanes.items())}
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state and self.unsupervised is not None:
            self._lane_states = {int(k): [int(x) for x in v] for k, v in state.get("lanes", {}).items()}


def epoch_size(counts: dict[str, float], limit: int | None) -> int:
    """Examples an epoch draws: the mixture's limited sizes added up. The unlimited (unsupervised) member counts
    K; with no K (equal mixing) it counts as the largest other member."""
    sizes = [min(c, limit) if limit else c for c in counts.values()]
    finite = [c for c in sizes if not math.isinf(c)]
    return int(sum(finite) + sum(max(finite, default=1) for c in sizes if math.isinf(c)))
