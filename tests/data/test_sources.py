"""Text sources (builtin, files, hf, c4) and the on-disk token cache."""

import gzip
import json
import pickle
import types
from itertools import islice
from pathlib import Path

import numpy as np
import pytest

from t5lit.data import sources
from t5lit.data.cache import TokenArray, token_cache, token_dtype
from t5lit.data.sources import SourceStats, builtin_records, decode_utf8, iter_documents
from t5lit.data.vocab import train_vocabulary
from t5lit.registry import ConfigError

C4_SAMPLE = Path(__file__).resolve().parents[2] / ".." / "shared/data/c4/c4-sample.00000-of-00001.json.gz"


@pytest.fixture(scope="module")
def vocab(tmp_path_factory):
    path = tmp_path_factory.mktemp("vocab") / "tiny.model"
    return train_vocabulary(islice(iter_documents("builtin", "train"), 800), 400, path)


@pytest.fixture
def c4_sample():
    if not C4_SAMPLE.is_file():
        pytest.skip(f"C4 sample not found at {C4_SAMPLE}")
    return str(C4_SAMPLE.resolve())


def write_jsonl(path, texts, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for t in texts:
            f.write(json.dumps({"text": t, "url": "x"}) + "\n")
    return path


# ---- builtin ----------------------------------------------------------------------------------------------

def test_builtin_corpus_is_deterministic_with_disjoint_splits():
    train, val = builtin_records("train"), builtin_records("validation")
    sources._all_builtin_records.cache_clear()
    assert builtin_records("train") == train  # rebuilt from scratch, identical
    assert set(train[0]) == {"text", "module", "qualname", "kind", "first_line"}
    assert {r["kind"] for r in train} == {"module", "class", "function"}
    names = lambda rs: {(r["module"], r["qualname"]) for r in rs}  # noqa: E731
    assert not names(train) & names(val) and not {r["text"] for r in train} & {r["text"] for r in val}
    assert 0.02 < len(val) / (len(train) + len(val)) < 0.10
    chars = sum(len(r["text"]) for r in train)
    assert 200_000 < chars < 5_000_000
    assert all(r["text"].startswith(r["first_line"]) for r in train)
    docs = list(iter_documents("builtin", "validation"))
    assert docs == [r["text"] for r in val]


def test_unknown_corpus_option_and_split_are_one_line_errors():
    with pytest.raises(ConfigError, match="unknown corpus 'bultin'.*valid: builtin, c4, files, hf"):
        iter_documents("bultin")
    with pytest.raises(ConfigError, match="unknown option 'pth' for corpus 'files'; valid: paths"):
        iter_documents("files", pth="x.txt")
    with pytest.raises(ConfigError, match="unknown split 'test'.*valid: train, validation"):
        iter_documents("builtin", "test")


# ---- files ------------------------------------------------------------------------------------------------

def test_files_txt_jsonl_gz_and_parquet(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.txt").write_text("first doc\nstill first\n\n\n  \nsecond doc\n\nthird")
    write_jsonl(tmp_path / "b.jsonl", ["j1", "", "j2"])
    write_jsonl(tmp_path / "c.jsonl.gz", ["g1"], gzip.open)
    write_jsonl(tmp_path / "d.json.gz", ["c4-style"], gzip.open)
    pq.write_table(pa.table({"text": ["p1", None, "p2"], "id": [1, 2, 3]}), tmp_path / "e.parquet")
    paths = [str(tmp_path / "a.txt"), str(tmp_path / "[b-e].*")]  # a file, then a glob (sorted)
    stats = SourceStats()
    docs = list(iter_documents("files", paths=paths, stats=stats))
    assert docs == ["first doc\nstill first", "second doc", "third", "j1", "j2", "g1", "c4-style", "p1", "p2"]
    assert stats.documents == 9 and stats.replaced_bytes == 0


def test_files_errors(tmp_path):
    with pytest.raises(ConfigError, match=f"file not found: {tmp_path / 'nope.txt'}"):
        iter_documents("files", paths=[str(tmp_path / "nope.txt")])  # raised before reading anything
    with pytest.raises(ConfigError, match="no files match"):
        iter_documents("files", paths=str(tmp_path / "*.jsonl"))
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ConfigError, match="unsupported file .*x.csv.*supported extensions: .txt"):
        iter_documents("files", paths=[str(tmp_path / "x.csv")])
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{"body": "no text"}\n')
    with pytest.raises(ConfigError, match=r"bad.jsonl:2: no field 'text' \(has: body\)"):
        list(iter_documents("files", paths=[str(tmp_path / "bad.jsonl")]))
    with pytest.raises(ConfigError, match="no validation split"):
        iter_documents("files", "validation", paths=[str(tmp_path / "x.csv")])


def test_non_utf8_bytes_are_replaced_counted_and_warned(tmp_path):
    assert decode_utf8(b"caf\xc3\xa9") == ("café", 0)
    assert decode_utf8(b"caf\xe9 \xff\xfe!") == ("caf\ufffd \ufffd\ufffd!", 3)
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 one\n\ntwo \xff\xfe")
    (tmp_path / "b.jsonl").write_bytes(b'{"text": "bad \xc3"}\n')
    stats = SourceStats()
    with pytest.warns(UserWarning) as warned:
        docs = list(iter_documents("files", paths=[str(tmp_path / "a.txt"), str(tmp_path / "b.jsonl")],
                                   stats=stats))
    assert [str(w.message).split(": ", 1)[1] for w in warned] == [
        "3 bytes that are not UTF-8 were replaced with U+FFFD", "1 bytes that are not UTF-8 were replaced with U+FFFD"]
    assert docs == ["caf\ufffd one", "two \ufffd\ufffd", "bad \ufffd"]
    assert stats.replaced_bytes == 4


# ---- Hugging Face and C4 (the real sample, no network) -----------------------------------------------------

def test_c4_sample_through_files_hf_and_c4(c4_sample, monkeypatch):
    docs = list(iter_documents("files", paths=[c4_sample]))
    assert len(docs) == 1000 and all(d.strip() for d in docs)
    assert list(iter_documents("hf", path="json", data_files=c4_sample)) == docs
    assert list(iter_documents("c4", data_files=c4_sample)) == docs
    # Rank 1 of 2 DDP ranks (from the environment): one shard, so every other example.
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert list(iter_documents("c4", data_files=c4_sample)) == docs[1::2]
    assert list(iter_documents("c4", data_files=c4_sample, shard=False)) == docs
    assert list(iter_documents("c4", "validation", data_files={"validation": c4_sample}, shard=False)) == docs
    with pytest.raises(ConfigError, match="train split only"):
        iter_documents("c4", "validation", data_files=[c4_sample])


def test_c4_shards_across_ranks_and_workers(c4_sample, tmp_path, monkeypatch):
    docs = list(iter_documents("files", paths=[c4_sample]))
    shards = [write_jsonl(tmp_path / f"c4-train.{i:05d}-of-00004.json.gz", docs[i * 250:(i + 1) * 250], gzip.open)
              for i in range(4)]
    files = [str(p) for p in shards]
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")  # whole shards per rank: 1 and 3
    assert list(iter_documents("c4", data_files=files)) == docs[250:500] + docs[750:]
    # ... and, in DataLoader worker 1 of 2 on that rank, shard 3 only: each document read once in all.
    monkeypatch.setattr("torch.utils.data.get_worker_info", lambda: types.SimpleNamespace(id=1, num_workers=2))
    assert list(iter_documents("c4", data_files=files)) == docs[750:]


def test_c4_calls_the_hub_dataset(c4_sample, monkeypatch):
    import datasets

    calls = []
    local = datasets.load_dataset("json", data_files=c4_sample, split="train", streaming=True)

    def fake_load(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return local

    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert len(list(islice(iter_documents("c4", "validation"), 3))) == 3
    assert calls == [("allenai/c4", "en", {"split": "validation", "data_files": None, "streaming": True})]
    with pytest.raises(ConfigError, match="needs the option path"):
        iter_documents("hf")
    with pytest.raises(ConfigError, match="no field 'body'"):
        list(iter_documents("hf", path="json", data_files=c4_sample, text_field="body"))


# ---- token cache ------------------------------------------------------------------------------------------

def test_token_cache_concatenates_with_eos_and_is_reused(vocab, tmp_path, monkeypatch):
    texts = ["Return the sum of two numbers.", "A short one.", "x", "Raise an error when the file is missing."]
    write_jsonl(tmp_path / "docs.jsonl", texts)
    opts = {"paths": [str(tmp_path / "docs.jsonl")]}
    cache = tmp_path / "cache"
    tokens = token_cache("files", "train", vocab, cache_dir=cache, corpus_options=opts, progress=False)
    expected = [t for text in texts for t in vocab.encode(text) + [1]]
    assert tokens.tokens.dtype == np.uint16 and tokens.tokens.tolist() == expected
    assert (tokens.num_documents, tokens.num_tokens, tokens.meta["replaced_bytes"]) == (4, len(expected), 0)
    assert tokens.meta["vocab_fingerprint"] == vocab.fingerprint
    files = sorted(p.name for p in (cache / "tokens").iterdir() if not p.name.endswith(".lock"))
    assert [Path(f).suffix for f in files] == [".bin", ".json"]  # no temporary files left
    stamps = {f: (cache / "tokens" / f).stat().st_mtime_ns for f in files}

    def no_reading(*args, **kwargs):
        raise AssertionError("the cache should have been reused")

    monkeypatch.setattr(sources, "iter_documents", no_reading)
    again = token_cache("files", "train", vocab, cache_dir=cache, corpus_options=opts, progress=False)
    assert again.tokens.tolist() == expected and again.meta == tokens.meta
    assert stamps == {f: (cache / "tokens" / f).stat().st_mtime_ns for f in files}
    clone = pickle.loads(pickle.dumps(again))  # workers reopen the memory map
    assert isinstance(clone.tokens, np.memmap) and clone.tokens.tolist() == expected
    monkeypatch.undo()
    write_jsonl(tmp_path / "docs.jsonl", texts[:2])  # an edited file is tokenized again
    edited = token_cache("files", "train", vocab, cache_dir=cache, corpus_options=opts, progress=False)
    assert edited.num_documents == 2 and edited.path != again.path


def test_chunks_and_max_tokens(vocab, tmp_path):
    tokens = token_cache("builtin", "validation", vocab, cache_dir=tmp_path, max_tokens=1000, progress=False)
    assert tokens.num_tokens == 1000 and tokens.num_chunks(300) == 3  # last partial chunk (100) dropped
    assert tokens.chunk(2, 300).dtype == np.int32
    assert tokens.chunk(2, 300).tolist() == tokens.tokens[600:900].tolist()
    with pytest.raises(IndexError, match="chunk 3 out of range: 3 chunks"):
        tokens.chunk(3, 300)
    whole = token_cache("builtin", "validation", vocab, cache_dir=tmp_path, progress=False)
    first = vocab.encode(next(iter_documents("builtin", "validation")))
    assert whole.tokens[:len(first) + 1].tolist() == first + [1]
    assert whole.num_tokens > 1000 and whole.path != tokens.path  # max_tokens is part of the key
    assert whole.tokens[:1000].tolist() == tokens.tokens.tolist()
    assert whole.num_documents == len(builtin_records("validation")) and whole.tokens[-1] == 1
    assert token_dtype(65_535) == np.uint16 and token_dtype(70_000) == np.int32


def test_failed_build_leaves_no_cache(vocab, tmp_path):
    lines = [json.dumps({"text": f"document number {i}"}) for i in range(600)] + ["{not json"]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines))
    opts = {"paths": [str(tmp_path / "docs.jsonl")]}
    with pytest.raises(ConfigError, match="docs.jsonl:601: not a JSON line"):
        token_cache("files", "train", vocab, cache_dir=tmp_path / "cache", corpus_options=opts, progress=False)
    left = [p.name for p in (tmp_path / "cache" / "tokens").iterdir() if not p.name.endswith(".lock")]
    assert left == []


def test_replaced_bytes_are_stored_in_the_cache_metadata(vocab, tmp_path):
    (tmp_path / "a.txt").write_bytes(b"caf\xe9 one\n\ntwo")
    with pytest.warns(UserWarning, match="1 bytes"):
        tokens = token_cache("files", "train", vocab, cache_dir=tmp_path, progress=False,
                             corpus_options={"paths": [str(tmp_path / "a.txt")]})
    assert tokens.meta["replaced_bytes"] == 1 and tokens.num_documents == 2
    assert isinstance(tokens, TokenArray)
