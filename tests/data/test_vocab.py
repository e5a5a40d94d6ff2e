"""Vocabulary: T5's id conventions, sentinels, round trips, loading, training and the cached default."""

import pickle
import threading
from itertools import islice

import pytest
import sentencepiece as spm

from t5lit.data import vocab as vocab_module
from t5lit.data.sources import iter_documents
from t5lit.data.vocab import Vocabulary, default_vocabulary, load_vocabulary, train_vocabulary
from t5lit.registry import ConfigError

PIECES = 400


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "tiny.model"
    train_vocabulary(islice(iter_documents("builtin", "train"), 800), PIECES, path)
    return path


@pytest.fixture(scope="module")
def vocab(model_path):
    return Vocabulary(model_path)


def test_id_conventions(vocab):
    assert (vocab.pad_id, vocab.eos_id, vocab.unk_id) == (0, 1, 2)
    assert vocab.num_extra_ids == 100 and vocab.vocab_size == PIECES + 100 == 500
    assert vocab.sentinel_id(0) == 499 == vocab.vocab_size - 1
    assert vocab.sentinel_id(1) == 498 and vocab.sentinel_id(99) == 400
    assert vocab.pieces([0, 1, 2, 499, 400]) == ["<pad>", "</s>", "<unk>", "<extra_id_0>", "<extra_id_99>"]
    with pytest.raises(ConfigError, match="extra ids"):
        vocab.sentinel_id(100)


@pytest.mark.parametrize("text", ["Return the number of items in a container.", "x = f(a, b) + 3",
                                  "Größe naïve café ✓ 日本語"])
def test_round_trip_of_plain_text(vocab, text):
    ids = vocab.encode(text)
    assert ids and ids[-1] != vocab.eos_id  # no EOS appended
    assert all(3 <= i < PIECES for i in ids)  # no specials, no sentinels
    assert vocab.decode(ids) == text  # byte fallback: unseen characters survive (NFKC-normal text)


def test_sentinels_encode_and_decode(vocab):
    ids = vocab.encode("the <extra_id_0> of <extra_id_7> list")
    assert ids.count(499) == 1 and ids.count(492) == 1
    assert vocab.decode(ids) == "the <extra_id_0> of <extra_id_7> list"
    assert vocab.encode("a <extra_id_0> b") == vocab.encode("a") + [499] + vocab.encode("b")
    assert vocab.decode([499, 498]) == "<extra_id_0> <extra_id_1>"
    assert 499 not in vocab.encode("<extra_id_0>", sentinels=False)


def test_decode_stops_at_eos_and_skips_pad(vocab):
    ids = vocab.encode("hello world")
    assert vocab.decode([0, 0, *ids, 1, *vocab.encode("ignored"), 1]) == "hello world"
    assert vocab.decode([1, *ids]) == ""


def test_out_of_range_ids_are_one_line_errors(vocab):
    for bad in (500, -1):
        with pytest.raises(ConfigError, match="out of range") as err:
            vocab.decode([5, bad])
        assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="out of range"):
        vocab.id_to_piece(10_000)


def test_encode_batch_equals_encode(vocab):
    texts = ["first document", "", "second one <extra_id_2> here", "third"]
    assert vocab.encode_batch(texts) == [vocab.encode(t) for t in texts]
    assert vocab.encode_batch(texts, sentinels=False) == [vocab.encode(t, sentinels=False) for t in texts]


def test_loading_with_other_extra_ids_and_fingerprint(model_path, vocab, tmp_path):
    ten = Vocabulary(model_path, num_extra_ids=10)
    assert ten.vocab_size == 410 and ten.sentinel_id(0) == 409 and ten.sentinel_id(9) == 400
    assert ten.fingerprint != vocab.fingerprint
    copy = tmp_path / "copy.model"
    copy.write_bytes(model_path.read_bytes())
    assert Vocabulary(copy).fingerprint == vocab.fingerprint
    clone = pickle.loads(pickle.dumps(vocab))
    assert clone == vocab and clone.encode("some text") == vocab.encode("some text")


def test_model_with_other_special_ids_is_rejected(tmp_path):
    path = tmp_path / "bad.model"
    spm.SentencePieceTrainer.train(sentence_iterator=iter(["abc def ghi"] * 50), model_prefix=str(tmp_path / "bad"),
                                   vocab_size=20, model_type="unigram", minloglevel=2, hard_vocab_limit=False)
    with pytest.raises(ConfigError, match="pad/eos/unk ids") as err:
        Vocabulary(path)
    assert "\n" not in str(err.value)


def test_training_is_deterministic_and_atomic(model_path, tmp_path):
    out = tmp_path / "again.model"
    train_vocabulary(islice(iter_documents("builtin", "train"), 800), PIECES, out)
    assert out.read_bytes() == model_path.read_bytes()
    assert [p.name for p in tmp_path.iterdir()] == ["again.model"]  # no temporary file left
    with pytest.raises(ConfigError, match="failed"):
        train_vocabulary(["just a few words"] * 10, 5, tmp_path / "small.model")
    assert not (tmp_path / "small.model").exists()


def test_default_vocabulary_is_trained_once_and_cached(tmp_path, monkeypatch):
    calls = []
    real = vocab_module.train_vocabulary

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(vocab_module, "train_vocabulary", counting)
    results = [None, None]

    def build(i):
        results[i] = default_vocabulary(tmp_path, size=PIECES)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(2)]  # concurrent: trained once
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    path = tmp_path / "vocab" / f"builtin-{PIECES}.model"
    assert len(calls) == 1 and path.is_file()
    assert results[0].fingerprint == results[1].fingerprint
    mtime = path.stat().st_mtime_ns
    again = load_vocabulary(f"builtin:{PIECES}", cache_dir=tmp_path)
    assert len(calls) == 1 and path.stat().st_mtime_ns == mtime and again == results[0]
    assert again.vocab_size == PIECES + 100
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]


def test_load_vocabulary_specs(model_path, vocab):
    assert load_vocabulary(str(model_path)) == vocab
    assert load_vocabulary(vocab) is vocab
    with pytest.raises(ConfigError, match="not found: .*missing.model"):
        load_vocabulary("/nowhere/missing.model")
    with pytest.raises(ConfigError, match="builtin:<pieces>"):
        load_vocabulary("builtin:many")
