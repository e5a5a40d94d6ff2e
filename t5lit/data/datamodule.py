"""The two DataModules: pre-training (corpus x objective x architecture) and fine-tuning (task or mixture).

Pre-training builds examples the way T5 does (paper Section 3.1.2, T5's span_corruption task): documents
are tokenized once into a cached token array with EOS after each document, the concatenation is split into
chunks of the objective's raw length (``raw_length``: 568 tokens for 512 inputs of span corruption), each
chunk goes through the objective with its own RNG seeded by (seed, epoch, chunk index), and the feature
converter of the architecture turns {inputs, targets} into model features.

Fine-tuning tokenizes each task's formatted {inputs, targets} strings (EOS appended, truncated to the
lengths as T5 does), draws the training stream from the tasks by the mixture's rates, packs it with a
plan computed per epoch, and validates by generation, scored by each task's metrics.
"""

from __future__ import annotations

import hashlib
import json

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from t5lit.data.examples import PretrainFeatures
from t5lit.data.stream import BatchStream, ResumableMixin, StreamLoader, to_tensors
from t5lit.features import converter_for, pad_rows, plan_packing
from t5lit.registry import ConfigError

# Corpora that ship a validation split; for the others the last chunks of the train cache are held out.
CORPORA_WITH_VALIDATION = ("builtin", "c4")


def _fingerprint(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class PretrainDataModule(ResumableMixin, L.LightningDataModule):
    """Pre-training batches for ``objective`` on ``corpus`` for the architecture ``arch``.

    Args:
        corpus: a corpus name (``t5lit list corpora``); corpus_options: its options (e.g. paths).
        vocab: "builtin", "builtin:<pieces>" or a SentencePiece .model path (extra ids are added).
        objective: an objective name (``t5lit list objectives``); objective_params: its parameters.
        arch: linked to ``model.arch`` by the CLI. inputs_length: the encoder length (T5: 512); the raw
            chunk and targets lengths follow from the objective (T5's random_spans_helper); decoder-only
            rows hold inputs + targets. targets_length: pad targets to this length instead (an error when
            the objective's targets can be longer).
        batch_size: rows per device. max_tokens: tokenize at most this many tokens of the corpus.
        val_examples: held-out examples for val/loss. seed: seeds the order and every example.
    """

    def __init__(self, corpus: str = "builtin", corpus_options: dict | None = None, vocab: str = "builtin",
                 objective: str = "span_corruption", objective_params: dict | None = None,
                 arch: str = "encoder_decoder", inputs_length: int = 512, batch_size: int = 128,
                 max_tokens: int | None = None, val_examples: int = 256, seed: int = 0, num_workers: int = 0,
                 cache_dir: str | None = None, targets_length: int | None = None):
        super().__init__()
        self.save_hyperparameters()
        # objective x architecture: the length budget and the feature converter (shared with `t5lit data show`)
        self.recipe = PretrainFeatures.build(objective, objective_params, arch, inputs_length, targets_length)
        self.objective_fn, self.converter = self.recipe.objective, self.recipe.converter
        self.raw_length, self.targets_length = self.recipe.budget.raw, self.recipe.budget.targets
        self.vocab = None

    def fingerprint(self) -> str:
        hp = self.hparams
        extra = () if hp.targets_length is None else (hp.targets_length,)  # unset: the fingerprint of old runs
        return _fingerprint(hp.corpus, hp.corpus_options, hp.vocab, hp.objective, hp.objective_params, hp.arch,
                            hp.inputs_length, hp.batch_size, hp.max_tokens, hp.seed, *extra)

    def setup(self, stage: str | None = None):
        if self.vocab is not None:
            return
        from t5lit.data.cache import token_cache
        from t5lit.data.vocab import load_vocabulary

        hp = self.hparams
        self.vocab = load_vocabulary(hp.vocab, cache_dir=hp.cache_dir)
        model_vocab = getattr(getattr(self.trainer, "lightning_module", None), "config", None)
        if model_vocab is not None and self.vocab.vocab_size > model_vocab.vocab_size:
            raise ConfigError(f"vocabulary has {self.vocab.vocab_size} ids but the model's vocab_size is "
                              f"{model_vocab.vocab_size}; raise model vocab_size or use a smaller vocabulary")
        opts = dict(cache_dir=hp.cache_dir, corpus_options=hp.corpus_options)
        self.train_tokens = token_cache(hp.corpus, "train", self.vocab, max_tokens=hp.max_tokens, **opts)
        n_train = self.train_tokens.num_chunks(self.raw_length)
        if hp.corpus in CORPORA_WITH_VALIDATION:
            self.val_tokens = token_cache(hp.corpus, "validation", self.vocab, max_tokens=hp.max_tokens, **opts)
            self.val_offset = 0
            n_val = min(hp.val_examples, self.val_tokens.num_chunks(self.raw_length))
        else:  # hold out the last chunks of the train split
            n_val = min(hp.val_examples, n_train // 10)
            self.val_tokens, self.val_offset = self.train_tokens, n_train - n_val
            n_train -= n_val
        self.num_train_chunks, self.num_val_examples = n_train, n_val
        if n_train < hp.batch_size:
            raise ConfigError(f"corpus {hp.corpus!r} gives {n_train} training chunks of {self.raw_length} tokens, "
                              f"fewer than one batch of {hp.batch_size}; use more data or a smaller batch")
        # One batch now, so that an objective that cannot work with this vocabulary (too few extra ids for
        # its sentinels) fails here in one line, not later inside a DataLoader worker.
        self.examples(self.train_tokens, [0], 0)

    def examples(self, tokens, chunks: list[int], epoch: int) -> list[dict]:
        """Chunks ``chunks`` through the objective, each with its own RNG (seed, epoch, chunk index); the
        vectorised path gives the same examples as per-example calls."""
        rows = np.stack([tokens.chunk(c, self.raw_length) for c in chunks])
        rngs = [np.random.default_rng((self.hparams.seed, epoch, c)) for c in chunks]
        return self.recipe.examples(rows, rngs, self.vocab)

    def train_batch(self, epoch: int, batch: int) -> dict:
        b, seed = self.hparams.batch_size, self.hparams.seed
        order = np.random.default_rng((seed, epoch)).permutation(self.num_train_chunks)
        chunks = [int(c) for c in order[batch * b:(batch + 1) * b]]
        return self.recipe.features(self.examples(self.train_tokens, chunks, epoch))

    def train_dataloader(self):
        stream = BatchStream(self.train_batch, lambda epoch: self.num_train_chunks // self.hparams.batch_size)
        return StreamLoader(stream, self._trainer_position, num_workers=self.hparams.num_workers,
                            pin_memory=torch.cuda.is_available(), persistent_workers=self.hparams.num_workers > 0)

    def val_dataloader(self):
        b, n = self.hparams.batch_size, self.num_val_examples
        examples = self.examples(self.val_tokens, [self.val_offset + i for i in range(n)], 0) if n else []
        batches = [to_tensors(self.recipe.features(examples[i:i + b])) for i in range(0, n, b)]
        return DataLoader(batches, batch_size=None)  # ready-made batches, in order


class FinetuneDataModule(ResumableMixin, L.LightningDataModule):
    """Fine-tuning on a task or a mixture (``t5lit list tasks``), validated by generation.

    Args:
        tasks: one name or a list of task / mixture names; mixtures expand to their tasks.
        mixing: examples_proportional | temperature | equal (paper Section 3.5.2), with ``mixing_limit``
            (K) and ``temperature`` (T).
        data_dir: read the official distribution files from here instead of the Hugging Face hub; a dict
            maps a task name to its directory.
        inputs_length, targets_length: examples are truncated to these (EOS kept last), as T5 does.
        pack: pack several examples into one row (T5 fine-tunes with packing).
        max_val_examples: cap on validation examples per task (None = all).
        num_samples: (input, prediction, target) samples written to TensorBoard per task.
    """

    def __init__(self, tasks: str | list[str] = "builtin_kind", vocab: str = "builtin",
                 arch: str = "encoder_decoder", inputs_length: int = 512, targets_length: int = 128,
                 batch_size: int = 128, pack: bool = True, mixing: str = "examples_proportional",
                 mixing_limit: int = 2**19, temperature: float = 1.0, data_dir: str | dict | None = None,
                 max_val_examples: int | None = None, val_batch_size: int | None = None, num_samples: int = 5,
                 seed: int = 0, num_workers: int = 0):
        super().__init__()
        self.save_hyperparameters()
        from t5lit.data.mixtures import get_task_or_mixture

        names = [tasks] if isinstance(tasks, str) else list(tasks)
        seen: dict[str, object] = {}
        for name in names:  # mixtures expand to their tasks; a task named twice is trained and scored once
            for t in get_task_or_mixture(name):
                seen.setdefault(t.name, t)
        self.tasks = list(seen.values())
        self.converter = converter_for(arch, inputs_length, targets_length, pack=pack)
        self.val_converter = converter_for(arch, inputs_length, targets_length, pack=False)
        self.vocab = None
        self.train: dict[str, list[dict]] | None = None

    def fingerprint(self) -> str:
        hp = self.hparams
        return _fingerprint(hp.tasks, hp.vocab, hp.arch, hp.inputs_length, hp.targets_length, hp.batch_size,
                            hp.pack, hp.mixing, hp.mixing_limit, hp.temperature, hp.seed)

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
        from t5lit.data.mixtures import mixture_rates
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
        counts = {name: len(exs) for name, exs in self.train.items()}
        self.rates = mixture_rates(hp.mixing, counts, limit=hp.mixing_limit, temperature=hp.temperature)
        # An epoch draws as many examples as the mixture's limited sizes add up to.
        self.epoch_examples = sum(min(c, hp.mixing_limit) if hp.mixing_limit else c for c in counts.values())
        self._plans: dict[int, tuple[list, list]] = {}

    def _epoch_plan(self, epoch: int) -> tuple[list[tuple[str, int]], list[list[int]]]:
        """The epoch's example stream [(task, index)] and its packing plan [[stream positions] per row]."""
        if epoch not in self._plans:
            from t5lit.data.mixtures import sample_task_sequence

            seed = self.hparams.seed
            seq = sample_task_sequence(self.rates, self.epoch_examples, (seed, epoch))
            cursors = {name: 0 for name in self.train}
            orders = {name: np.random.default_rng((seed, epoch, i)).permutation(len(exs))
                      for i, (name, exs) in enumerate(self.train.items())}
            stream = []
            for name in seq:
                stream.append((name, int(orders[name][cursors[name] % len(orders[name])])))
                cursors[name] += 1
            lengths = [(len(self.train[n][i]["inputs"]), len(self.train[n][i]["targets"])) for n, i in stream]
            rows = plan_packing(lengths, self.converter) if self.hparams.pack else [[k] for k in range(len(stream))]
            self._plans = {epoch: (stream, rows)}
        return self._plans[epoch]

    def train_batch(self, epoch: int, batch: int) -> dict:
        stream, rows = self._epoch_plan(epoch)
        b = self.hparams.batch_size
        picked = rows[batch * b:(batch + 1) * b]
        examples = [self.train[stream[k][0]][stream[k][1]] for row in picked for k in row]
        local, start = [], 0
        for row in picked:  # the plan's rows, renumbered over this batch's examples
            local.append(list(range(start, start + len(row))))
            start += len(row)
        out = self.converter(examples, rows=local) if self.hparams.pack else self.converter(examples)
        return pad_rows(out, b)

    def train_dataloader(self):
        stream = BatchStream(self.train_batch, lambda e: len(self._epoch_plan(e)[1]) // self.hparams.batch_size)
        return StreamLoader(stream, self._trainer_position, num_workers=self.hparams.num_workers,
                            pin_memory=torch.cuda.is_available(), persistent_workers=self.hparams.num_workers > 0)

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
