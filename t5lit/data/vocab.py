"""SentencePiece vocabulary with T5's conventions (paper Section 3.1.3; T5's SentencePieceVocabulary).

Ids: pad 0, EOS 1, unk 2 (no BOS), then the SentencePiece pieces, then ``num_extra_ids`` sentinels counted
down from the top: ``<extra_id_0>`` is the LAST id. With 32,000 pieces and 100 extra ids (T5):

    vocab_size = 32100, <extra_id_0> = 32099, <extra_id_1> = 32098, ..., <extra_id_99> = 32000

``encode`` appends no EOS (the objectives and tasks add it); ``decode`` stops at the first EOS.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import sentencepiece as spm

from t5lit.data.cache import cache_root, check_cache_dir
from t5lit.io import atomic_write_bytes, check_can_create, file_lock
from t5lit.registry import ConfigError

PAD_ID, EOS_ID, UNK_ID = 0, 1, 2
DEFAULT_EXTRA_IDS = 100
_SENTINEL = re.compile(r"<extra_id_(\d+)>")


class Vocabulary:
    """A SentencePiece model plus ``num_extra_ids`` sentinels above its pieces.

    >>> v = Vocabulary("spiece.model", num_extra_ids=100)  # doctest: +SKIP  (T5's own 32,000 pieces)
    >>> v.vocab_size, v.sentinel_id(0), v.sentinel_id(99), v.eos_id  # doctest: +SKIP
    (32100, 32099, 32000, 1)
    >>> v.decode([*v.encode("What is"), 32099, 1, 55])  # doctest: +SKIP  (stops at EOS)
    'What is <extra_id_0>'
    """

    pad_id = PAD_ID
    eos_id = EOS_ID
    unk_id = UNK_ID

    def __init__(self, path: str | os.PathLike, num_extra_ids: int = DEFAULT_EXTRA_IDS):
        path = Path(path)
        if path.is_dir():
            raise ConfigError(f"vocabulary {path} is a directory, not a SentencePiece .model file")
        if not path.is_file():
            raise ConfigError(f"vocabulary file not found: {path}")
        if not isinstance(num_extra_ids, int) or num_extra_ids < 0:
            raise ConfigError(f"num_extra_ids must be an integer >= 0, got {num_extra_ids!r}")
        self.model_path = str(path)
        self.num_extra_ids = num_extra_ids
        try:
            proto = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"cannot read vocabulary {path}: {err.strerror or err}") from None
        self._load(proto)

    def _load(self, proto: bytes) -> None:
        self._proto = proto
        try:
            self._sp = spm.SentencePieceProcessor(model_proto=proto)
        except Exception:  # noqa: BLE001 - SentencePiece raises RuntimeError or OSError on a bad proto
            raise ConfigError(f"vocabulary {self.model_path} is not a SentencePiece model (it does not parse as "
                              "one); use 'builtin', 'builtin:<pieces>' or a .model file written by `t5lit vocab "
                              "train` or SentencePiece") from None
        ids = (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id())
        if ids != (PAD_ID, EOS_ID, UNK_ID):
            raise ConfigError(f"SentencePiece model {self.model_path} has pad/eos/unk ids {ids[0]}/{ids[1]}/{ids[2]};"
                              " T5 needs 0/1/2 (train it with pad_id=0 eos_id=1 unk_id=2 bos_id=-1)")
        self.num_pieces = self._sp.get_piece_size()
        self.vocab_size = self.num_pieces + self.num_extra_ids
        self.fingerprint = hashlib.sha256(proto + f"|extra_ids={self.num_extra_ids}".encode()).hexdigest()[:16]

    # SentencePieceProcessor is rebuilt from the model bytes, so a Vocabulary can go to DataLoader workers.
    def __getstate__(self) -> dict:
        return {"model_path": self.model_path, "num_extra_ids": self.num_extra_ids, "proto": self._proto}

    def __setstate__(self, state: dict) -> None:
        self.model_path, self.num_extra_ids = state["model_path"], state["num_extra_ids"]
        self._load(state["proto"])

    def __repr__(self) -> str:
        return (f"Vocabulary({self.model_path!r}, pieces={self.num_pieces}, num_extra_ids={self.num_extra_ids}, "
                f"vocab_size={self.vocab_size})")

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and other.fingerprint == self.fingerprint

    def __hash__(self) -> int:
        return hash(self.fingerprint)

    # ---- ids ------------------------------------------------------------------------------------------
    def sentinel_id(self, i: int) -> int:
        """Id of ``<extra_id_i>``: ``vocab_size - 1 - i`` (T5 counts sentinels down from the top)."""
        if not 0 <= i < self.num_extra_ids:
            raise ConfigError(f"sentinel <extra_id_{i}> does not exist; this vocabulary has {self.num_extra_ids} "
                              f"extra ids (0..{self.num_extra_ids - 1})")
        return self.vocab_size - 1 - i

    def is_sentinel(self, token_id: int) -> bool:
        return self.num_pieces <= token_id < self.vocab_size

    def _check_id(self, token_id: int) -> int:
        token_id = int(token_id)
        if not 0 <= token_id < self.vocab_size:
            raise ConfigError(f"token id {token_id} is out of range for a vocabulary of {self.vocab_size} ids "
                              f"(0..{self.vocab_size - 1})")
        return token_id

    def id_to_piece(self, token_id: int) -> str:
        """The piece of ``token_id``: ``'<pad>'``, ``'</s>'``, ``'▁the'``, ``'<0x41>'``, ``'<extra_id_0>'``..."""
        token_id = self._check_id(token_id)
        if self.is_sentinel(token_id):
            return f"<extra_id_{self.vocab_size - 1 - token_id}>"
        return self._sp.id_to_piece(token_id)

    def pieces(self, ids: Iterable[int]) -> list[str]:
        """Every id as its piece, pad and EOS included (``t5lit data show``)."""
        return [self.id_to_piece(i) for i in ids]

    # ---- text -----------------------------------------------------------------------------------------
    def encode(self, text: str, *, sentinels: bool = True) -> list[int]:
        """Ids of ``text``, without EOS. With ``sentinels``, literal ``<extra_id_i>`` become sentinel ids.

        For a vocabulary of 1000 pieces and 100 extra ids, ``encode("a <extra_id_0> b")`` is
        ``encode("a") + [1099] + encode("b")``.
        """
        if not sentinels or "<extra_id_" not in text:
            return self._sp.encode(text, out_type=int)
        ids: list[int] = []
        pos = 0
        for match in _SENTINEL.finditer(text):
            i = int(match.group(1))
            if i >= self.num_extra_ids:
                continue  # not a sentinel of this vocabulary: left as text
            ids += self._sp.encode(text[pos:match.start()], out_type=int)
            ids.append(self.sentinel_id(i))
            pos = match.end()
        return ids + self._sp.encode(text[pos:], out_type=int)

    def encode_batch(self, texts: list[str], *, sentinels: bool = True) -> list[list[int]]:
        """``[encode(t) for t in texts]``, with SentencePiece's batched (multi-threaded) encoder."""
        if sentinels and any("<extra_id_" in t for t in texts):
            return [self.encode(t) for t in texts]
        return self._sp.encode(list(texts), out_type=int, num_threads=min(os.cpu_count() or 1, 8))

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids``: stops at the first EOS, skips pad, renders sentinels as ``<extra_id_i>``.

        >>> v.decode([0, 37, 1099, 44, 1, 99])  # doctest: +SKIP  (vocab_size 1100)
        'a <extra_id_0> b'
        """
        parts: list[str] = []
        run: list[int] = []
        for token_id in ids:
            token_id = self._check_id(token_id)
            if token_id == EOS_ID:
                break
            if token_id == PAD_ID:
                continue
            if self.is_sentinel(token_id):
                parts += [self._sp.decode(run), self.id_to_piece(token_id)]
                run = []
            else:
                run.append(token_id)
        parts.append(self._sp.decode(run))
        return " ".join(p for p in parts if p)


# ---- training ---------------------------------------------------------------------------------------------

MAX_TRAINING_CHARACTERS = 20_000_000  # input bound for training (T5 sampled its 32k vocab from 10 C4 shards)
_MAX_LINE_CHARACTERS = 2000  # SentencePiece drops sentences longer than max_sentence_length (bytes)


def _training_lines(documents: Iterable[str], max_characters: int) -> Iterator[str]:
    """Non-empty lines of the documents, truncated, until ``max_characters`` have been given."""
    total = 0
    for doc in documents:
        for line in doc.splitlines():
            line = line.strip()[:_MAX_LINE_CHARACTERS]
            if not line:
                continue
            yield line
            total += len(line)
            if total >= max_characters:
                return


def train_vocabulary(documents: Iterable[str], size: int, out_path: str | os.PathLike, *,
                     num_extra_ids: int = DEFAULT_EXTRA_IDS, seed: int = 0,
                     max_characters: int = MAX_TRAINING_CHARACTERS) -> Vocabulary:
    """Train a unigram SentencePiece model of ``size`` pieces with T5's ids and write it to ``out_path``.

    Byte fallback keeps every string encodable (256 of the pieces are bytes, so ``size`` must exceed about
    256 + the corpus's required characters). Deterministic: one thread, no input shuffling, a fixed seed.
    The file is written atomically (a temporary file, then ``os.replace``).
    """
    if not isinstance(size, int) or size < 1:
        raise ConfigError(f"vocabulary size must be a positive integer, got {size!r}")
    out_path = Path(out_path)
    check_output_file(out_path, "vocabulary")  # before hours of reading: nothing is written on any error
    # Read first (bounded by max_characters): a corpus error is then a one-line ConfigError, not an exception
    # re-raised from inside SentencePiece's C++ trainer.
    lines = list(_training_lines(documents, max_characters))
    if not lines:
        raise ConfigError("the corpus gave no text to train a vocabulary on (every document is empty)")
    model = io.BytesIO()
    spm.set_random_generator_seed(seed)
    try:
        spm.SentencePieceTrainer.train(
            sentence_iterator=iter(lines), model_writer=model, vocab_size=size,
            model_type="unigram", pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1, byte_fallback=True,
            character_coverage=0.9999, num_threads=1, shuffle_input_sentence=False,
            max_sentence_length=4 * _MAX_LINE_CHARACTERS + 16, minloglevel=2,
        )
    except RuntimeError as err:
        raise ConfigError(_training_error(str(err), size)) from None
    try:
        atomic_write_bytes(out_path, model.getvalue())
    except OSError as err:
        raise ConfigError(f"cannot write the vocabulary {out_path}: {err.strerror or err}") from None
    return Vocabulary(out_path, num_extra_ids=num_extra_ids)


def _training_error(message: str, size: int) -> str:
    """SentencePiece's trainer error as one line in t5lit's terms (its own advice names its own flags)."""
    text = " ".join(message.split())
    if m := re.search(r"Vocabulary size too high \((\d+)\)\. Please set it to a value <= (\d+)", text):
        return (f"training a {size}-piece vocabulary failed: this corpus has room for at most {m.group(2)} "
                "pieces; lower the size or give more text")
    if m := re.search(r"Vocabulary size is smaller than required_chars\. (\d+) vs (\d+)", text):
        return (f"training a {size}-piece vocabulary failed: this corpus needs at least {m.group(2)} pieces "
                "(256 byte pieces, the special ids and the corpus's characters)")
    text = re.sub(r"^(INTERNAL: )?\S+\(\d+\) \[.*?\] ", "", text)[:300]
    return f"training a {size}-piece vocabulary failed: {text}"


def check_output_file(path: Path, what: str) -> None:
    """A one-line ConfigError unless ``path`` can be written as a file: not a directory, and its nearest
    existing parent a writable directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ConfigError(f"{what} output {path} is a directory; give a file path such as {path / 'spiece.model'}")
    check_can_create(path.absolute().parent, f"{what} output {path}")


def builtin_vocabulary_path(size: int = 1000, cache_dir: str | os.PathLike | None = None) -> Path:
    """Where the built-in vocabulary of ``size`` pieces is cached (it exists once trained)."""
    return cache_root(cache_dir) / "vocab" / f"builtin-{size}.model"


def default_vocabulary(cache_dir: str | os.PathLike | None = None, size: int = 1000) -> Vocabulary:
    """The vocabulary of the builtin corpus (``size`` pieces + 100 extra ids), trained once and cached at
    ``<cache_dir>/vocab/builtin-<size>.model`` (cache dir: ``$T5LIT_CACHE`` or ``~/.cache/t5lit``).

    A file lock makes concurrent processes train it once; the others wait and load it."""
    path = builtin_vocabulary_path(size, cache_dir)
    if not path.is_file():
        check_cache_dir(path.parent)
        with file_lock(path):
            if not path.is_file():  # another process may have written it while we waited
                from t5lit.data.sources import iter_documents

                train_vocabulary(iter_documents("builtin", "train"), size, path)
    return Vocabulary(path, num_extra_ids=DEFAULT_EXTRA_IDS)


def load_vocabulary(spec: str | os.PathLike | Vocabulary, cache_dir: str | os.PathLike | None = None) -> Vocabulary:
    """``"builtin"`` (1000 pieces), ``"builtin:<pieces>"``, or a path to a SentencePiece ``.model``."""
    if isinstance(spec, Vocabulary):
        return spec
    text = str(spec)
    if text == "builtin":
        return default_vocabulary(cache_dir)
    if text.startswith("builtin:"):
        size = text.split(":", 1)[1]
        if not size.isdigit() or int(size) < 1:
            raise ConfigError(f"bad vocabulary {text!r}; use 'builtin', 'builtin:<pieces>' (e.g. builtin:1000) "
                              "or a SentencePiece .model path")
        return default_vocabulary(cache_dir, size=int(size))
    path = Path(text).expanduser()
    if path.is_dir():
        raise ConfigError(f"vocabulary {path} is a directory, not a SentencePiece .model file")
    if not path.is_file():
        raise ConfigError(f"vocabulary file not found: {path} (use 'builtin', 'builtin:<pieces>' or a "
                          "SentencePiece .model path)")
    return Vocabulary(path)
