"""Tokenize a corpus once; reuse it from disk as a memory-mapped token array.

Pre-training uses it for a capped corpus (``pretrain.max_tokens`` or ``repeats``: Table 9's truncated C4, small
corpora repeated exactly); an uncapped corpus is streamed instead (t5lit/data/lanes.py), so that no run waits for
a whole corpus to be tokenized before its first step.

``token_cache(corpus, split, vocab)`` concatenates every document's ids, each followed by EOS (T5's
``reduce_concat_tokens``), in ``<cache>/tokens/<corpus>-<split>-<key>.bin`` (uint16 when the vocabulary
has fewer than 65,536 ids, else int32) with its metadata in ``.json`` beside it. Pre-training then cuts
the concatenation into chunks of the objective's raw length (T5's ``split_tokens``); the last partial chunk
is dropped, and a document shorter than a chunk simply shares it with its neighbours:

    documents [5, 6, 7] and [8, 9]  ->  tokens [5, 6, 7, 1, 8, 9, 1]
    chunk(0, raw_length=3) = [5, 6, 7]; chunk(1, 3) = [1, 8, 9]; num_chunks(3) = 2 (the last [1] dropped)

The key hashes the corpus, its options, the split, ``max_tokens`` and the vocabulary's fingerprint, so a
changed vocabulary or option never reuses a stale cache. Files are written to temporary names and renamed
(``os.replace``), the metadata last: a crash leaves either a whole cache or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from t5lit.io import atomic_open, atomic_write_text, file_lock
from t5lit.registry import ConfigError


class VocabularyLike(Protocol):
    """What the cache needs of a ``t5lit.data.vocab.Vocabulary`` (the cache never imports the vocabulary
    module: ``vocab.py`` uses ``cache_root``)."""

    vocab_size: int
    eos_id: int
    fingerprint: str
    model_path: str

    def encode_batch(self, texts: list[str], *, sentinels: bool = ...) -> list[list[int]]: ...

CACHE_FORMAT = 1  # bump when the layout changes: old caches get new keys
ENCODE_BATCH = 256  # documents per batched SentencePiece call


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    """``cache_dir``, else ``$T5LIT_CACHE``, else ``~/.cache/t5lit``."""
    if cache_dir is None:
        cache_dir = os.environ.get("T5LIT_CACHE") or Path.home() / ".cache" / "t5lit"
    return Path(cache_dir).expanduser()


def check_cache_dir(folder: Path) -> None:
    """Make ``folder`` (under the cache root); a place where it cannot be is a one-line ConfigError naming it
    and ``$T5LIT_CACHE``, instead of an OSError from deep inside a build."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"cannot create the cache folder {folder} ({err.strerror or err}); set T5LIT_CACHE "
                          "to a writable directory") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ConfigError(f"the cache folder {folder} is not writable; set T5LIT_CACHE to a writable directory")


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 2**16 else np.dtype(np.int32)


@dataclass
class TokenArray:
    """A corpus split as one array of ids (documents each followed by EOS) plus its metadata.

    ``tokens`` is a read-only ``np.memmap`` (or an empty array); pickling keeps only the path, so DataLoader
    workers reopen the map instead of copying the data."""

    path: Path
    meta: dict
    tokens: np.ndarray

    @classmethod
    def open(cls, path: Path, meta: dict) -> TokenArray:
        dtype, n = np.dtype(meta["dtype"]), int(meta["num_tokens"])
        tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype)
        return cls(path, meta, tokens)

    def __getstate__(self) -> dict:
        return {"path": self.path, "meta": self.meta}

    def __setstate__(self, state: dict) -> None:
        opened = TokenArray.open(state["path"], state["meta"])
        self.path, self.meta, self.tokens = opened.path, opened.meta, opened.tokens

    def __len__(self) -> int:
        return int(self.meta["num_tokens"])

    @property
    def num_tokens(self) -> int:
        return len(self)

    @property
    def num_documents(self) -> int:
        return int(self.meta["num_documents"])

    def num_chunks(self, raw_length: int) -> int:
        """Whole chunks of ``raw_length`` tokens (the last partial one is dropped)."""
        if raw_length < 1:
            raise ValueError(f"raw_length must be >= 1, got {raw_length}")
        return len(self) // raw_length

    def chunk(self, i: int, raw_length: int) -> np.ndarray:
        """Chunk ``i``: ``tokens[i * raw_length:(i + 1) * raw_length]`` as int32, shape (raw_length,)."""
        n = self.num_chunks(raw_length)
        if not 0 <= i < n:
            raise IndexError(f"chunk {i} out of range: {n} chunks of {raw_length} tokens")
        return np.asarray(self.tokens[i * raw_length:(i + 1) * raw_length], dtype=np.int32)


def cache_key(corpus: str, split: str, vocab: VocabularyLike, max_tokens: int | None,
              corpus_options: dict | None) -> str:
    spec = {"format": CACHE_FORMAT, "corpus": corpus, "split": split, "options": corpus_options or {},
            "max_tokens": max_tokens, "vocab": vocab.fingerprint, "content": _content_signature(corpus, split,
                                                                                                corpus_options)}
    return hashlib.sha256(json.dumps(spec, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _content_signature(corpus: str, split: str, options: dict | None) -> object:
    """What else decides the documents: local files' sizes and times (an edited file is re-tokenized), the
    Python version for the builtin corpus (stdlib docstrings change between versions)."""
    options = options or {}
    if corpus == "builtin":
        return platform.python_version()
    if corpus == "files":
        from t5lit.data.sources import expand_paths

        paths = options.get("paths") if split == "train" else options.get("validation_paths")
        if paths is None:
            return None  # iter_documents reports the missing option
        return [(p, os.stat(p).st_size, os.stat(p).st_mtime_ns) for p in expand_paths(paths)]
    return None


def token_cache(corpus: str, split: str, vocab: VocabularyLike, *, cache_dir: str | os.PathLike | None = None,
                max_tokens: int | None = None, corpus_options: dict | None = None,
                progress: bool = True) -> TokenArray:
    """The tokens of ``corpus``/``split`` under ``vocab``: read from the cache, or tokenized once and cached.

    ``max_tokens`` stops after that many tokens (the last document is cut there). Concurrent processes
    (DDP ranks) build a cache once: the others wait on a file lock and then read it."""
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ConfigError(f"max_tokens must be a positive integer or None, got {max_tokens!r}")
    key = cache_key(corpus, split, vocab, max_tokens, corpus_options)
    base = cache_root(cache_dir) / "tokens" / f"{corpus}-{split}-{key}"
    bin_path, meta_path = base.with_suffix(".bin"), base.with_suffix(".json")
    cached = _read_cache(bin_path, meta_path)
    if cached is not None:
        return cached
    check_cache_dir(base.parent)
    with file_lock(base):
        cached = _read_cache(bin_path, meta_path)
        if cached is not None:
            return cached
        _build(corpus, split, vocab, max_tokens, corpus_options or {}, bin_path, meta_path, progress)
    return TokenArray.open(bin_path, json.loads(meta_path.read_text()))


def _read_cache(bin_path: Path, meta_path: Path) -> TokenArray | None:
    """The cache when whole (metadata present and the array of its stated size), else None."""
    if not meta_path.is_file() or not bin_path.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        size = int(meta["num_tokens"]) * np.dtype(meta["dtype"]).itemsize
    except (OSError, ValueError, KeyError, TypeError):  # damaged metadata (a copy cut short): built again
        return None
    if bin_path.stat().st_size != size:
        return None
    return TokenArray.open(bin_path, meta)


def _build(corpus: str, split: str, vocab: VocabularyLike, max_tokens: int | None, options: dict,
           bin_path: Path, meta_path: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    from t5lit.data.sources import SourceStats, iter_documents

    dtype = token_dtype(vocab.vocab_size)
    stats = SourceStats()
    # The cache holds the whole split, so Hugging Face sources are read unsharded in this process.
    documents = iter_documents(corpus, split, stats=stats, **_unsharded(corpus, options))
    num_tokens = num_documents = 0
    start = time.time()
    bar = tqdm(desc=f"tokenizing {corpus}/{split}", unit="doc", disable=not progress, leave=False)
    try:
        with atomic_open(bin_path, "wb") as out:
            batch: list[str] = []
            for doc in _then_none(documents):
                if doc is not None:
                    batch.append(doc)
                    if len(batch) < ENCODE_BATCH:
                        continue
                if not batch:
                    break
                # Literal "<extra_id_i>" in a corpus is text, not a sentinel: only objectives place sentinels.
                encoded = vocab.encode_batch(batch, sentinels=False)
                flat, starts = _concat_with_eos(encoded, vocab.eos_id, dtype)
                if max_tokens is not None:
                    flat = flat[:max_tokens - num_tokens]
                out.write(flat.tobytes())
                num_tokens += len(flat)
                num_documents += int(np.count_nonzero(starts < len(flat)))  # documents (partly) kept
                bar.update(len(batch))
                bar.set_postfix_str(f"{num_tokens:,} tokens")
                batch = []
                if max_tokens is not None and num_tokens >= max_tokens:
                    break
        meta = {"corpus": corpus, "split": split, "corpus_options": options, "max_tokens": max_tokens,
                "num_documents": num_documents, "num_tokens": num_tokens, "replaced_bytes": stats.replaced_bytes,
                "dtype": dtype.name, "vocab_fingerprint": vocab.fingerprint, "vocab_path": vocab.model_path,
                "vocab_size": vocab.vocab_size, "eos_id": vocab.eos_id, "format": CACHE_FORMAT,
                "seconds": round(time.time() - start, 3)}
        # Last: the metadata's presence marks a whole cache (and _read_cache checks the array's size against it).
        atomic_write_text(meta_path, json.dumps(meta, indent=2, sort_keys=True, default=str))
    finally:
        bar.close()
        documents.close()


def _then_none(iterable):
    """The items, then one None (flushes the last partial batch)."""
    yield from iterable
    yield None


def _concat_with_eos(encoded: list[list[int]], eos_id: int, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, start of each document): [[5, 6, 7], [], [8, 9]] -> ([5, 6, 7, EOS, 8, 9, EOS], [0, 4]).

    A document that encodes to nothing is skipped."""
    kept = [ids for ids in encoded if ids]
    if not kept:
        return np.zeros(0, dtype), np.zeros(0, np.int64)
    lengths = np.fromiter((len(ids) + 1 for ids in kept), dtype=np.int64, count=len(kept))
    flat = np.empty(int(lengths.sum()), dtype)
    ends = np.cumsum(lengths)
    flat[ends - 1] = eos_id
    body = np.ones(len(flat), dtype=bool)
    body[ends - 1] = False
    flat[body] = np.fromiter((t for ids in kept for t in ids), dtype=np.int64, count=int(body.sum()))
    return flat, ends - lengths


def _unsharded(corpus: str, options: dict) -> dict:
    """Every document in this process: a corpus that splits itself between ranks and workers (the Hugging Face
    ones, option ``shard``) is told not to."""
    from t5lit.data.sources import CORPORA, _option_names

    takes_shard = "shard" in _option_names(CORPORA.get(corpus))
    return {**options, "shard": False} if takes_shard and "shard" not in options else dict(options)
