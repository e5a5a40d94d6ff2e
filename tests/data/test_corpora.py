"""The pre-training data sets of Table 8, each read from local files in its Hugging Face dataset's own layout and
format through the same streaming code as the hub; the hub calls they make; mixtures; the one-line errors."""

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from t5lit.checks import check_experiment
from t5lit.data.corpora import HUB_CORPORA
from t5lit.data.sources import (
    CORPORA,
    check_corpus,
    corpus_components,
    corpus_shards,
    iter_documents,
    read_shard,
)
from t5lit.experiment import resolve_experiment
from t5lit.registry import ConfigError

from .hub_fixtures import write_hub_copies

REPO = Path(__file__).resolve().parents[2]
DEBUG = REPO / "experiments" / "debug_run.yaml"
TABLE8 = ("c4", "c4_unfiltered", "c4_realnewslike", "openwebtext", "wikipedia", "bookcorpus", "wikipedia_tbc")


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_hub_copies(tmp_path_factory.mktemp("hub"))


def test_every_table8_corpus_is_registered_after_the_general_ones():
    assert CORPORA.names()[:4] == ["builtin", "c4", "files", "hf"]
    assert set(TABLE8) | {"mixture"} <= set(CORPORA.names())


@pytest.mark.parametrize("corpus", TABLE8)
def test_each_corpus_reads_a_local_copy_in_its_hub_layout(corpus, hub, monkeypatch):
    docs = list(iter_documents(corpus, data_dir=str(hub)))
    assert len(docs) >= 2 and all(d.strip() for d in docs)
    # the same documents as shards (what pre-training streams), and through $T5LIT_DATASETS_DIR
    sharded = [d for c in corpus_components(corpus, {"data_dir": str(hub)}) for ref in corpus_shards(c, "train")
               for d in read_shard(ref)]
    assert sorted(sharded) == sorted(docs)
    monkeypatch.setenv("T5LIT_DATASETS_DIR", str(hub))
    assert sorted(iter_documents(corpus)) == sorted(docs)


def test_local_copies_give_the_files_documents_in_order(hub):
    c4 = sorted((hub / "allenai/c4/en.noclean").glob("c4-train.*"))
    expected = [json.loads(line)["text"] for f in c4 for line in gzip.open(f, "rt")]
    assert list(iter_documents("c4_unfiltered", data_dir=str(hub / "allenai/c4"))) == expected
    validation = hub / "allenai/c4/en.noclean/c4-validation.00000-of-00001.json.gz"
    assert list(iter_documents("c4_unfiltered", "validation", data_dir=str(hub)))[0] == \
        json.loads(gzip.open(validation, "rt").readline())["text"]
    shards = corpus_shards(corpus_components("wikipedia", {"data_dir": str(hub)})[0], "train")
    assert [s.key for s in shards] == ["train-00000-of-00002.parquet", "train-00001-of-00002.parquet"]
    book = list(iter_documents("bookcorpus", data_dir=str(hub), sentences_per_document=5))
    assert all(len(doc.split(". ")) <= 5 for doc in book) and book[0] == book[0].lower()


def test_the_real_c4_sample_in_the_hub_layout(shared_data, tmp_path):
    sample = shared_data / "c4" / "c4-sample.00000-of-00001.json.gz"
    (tmp_path / "en").mkdir()
    shutil.copy(sample, tmp_path / "en" / "c4-train.00000-of-00001.json.gz")
    shutil.copy(sample, tmp_path / "en" / "c4-validation.00000-of-00001.json.gz")
    docs = list(iter_documents("files", paths=[str(sample)]))
    assert list(iter_documents("c4", data_dir=str(tmp_path))) == docs
    (ref,) = corpus_shards(corpus_components("c4", {"data_dir": str(tmp_path)})[0], "validation")
    assert list(read_shard(ref)) == docs


@pytest.mark.parametrize("corpus, call", [
    ("c4", ("allenai/c4", "en", {})),
    ("c4_unfiltered", ("allenai/c4", "en.noclean", {})),
    ("c4_realnewslike", ("allenai/c4", "realnewslike", {})),
    ("openwebtext", ("Skylion007/openwebtext", None, {})),
    ("wikipedia", ("wikimedia/wikipedia", "20231101.en", {})),
    ("bookcorpus", ("bookcorpus/bookcorpus", "plain_text", {"revision": "refs/convert/parquet"})),
])
def test_each_corpus_streams_its_hub_dataset(corpus, call, hub, monkeypatch):
    import datasets

    calls = []
    local = datasets.load_dataset("json", data_files=str(next((hub / "allenai/c4/en").glob("c4-train.*"))),
                                  split="train", streaming=True)

    def fake_load(path, name=None, **kwargs):
        calls.append((path, name, kwargs))
        return local

    monkeypatch.delenv("T5LIT_DATASETS_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", fake_load)
    assert len(list(iter_documents(corpus, shard=False))) >= 1
    path, name, extra = call
    assert calls == [(path, name, {"split": "train", "data_files": None, "streaming": True, **extra})]
    shards = corpus_shards(corpus_components(corpus)[0], "train")
    assert len(shards) == local.n_shards and shards[0].source[:2] == (path, name)


def test_an_unreachable_hub_is_one_line_naming_the_dataset_and_the_way_offline(monkeypatch, tmp_path):
    import datasets

    def offline(path, name=None, **kwargs):
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.delenv("T5LIT_DATASETS_DIR", raising=False)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(ConfigError) as err:
        check_corpus("wikipedia", {}, probe=True)
    message = str(err.value)
    assert "cannot reach the Hugging Face hub for dataset 'wikimedia/wikipedia' (config '20231101.en')" in message
    assert "data_dir" in message and "T5LIT_DATASETS_DIR" in message and "\n" not in message
    exp = resolve_experiment(DEBUG, {"pretrain.corpus": "openwebtext"})
    with pytest.raises(ConfigError, match=r"^stage 'pretrain': cannot reach the Hugging Face hub for dataset "
                                          r"'Skylion007/openwebtext'"):
        check_experiment(exp, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_bad_corpora_are_one_line_before_any_work(hub, tmp_path):
    with pytest.raises(ConfigError, match="unknown corpus 'wikipdia'; did you mean 'wikipedia'"):
        corpus_components("wikipdia")
    with pytest.raises(ConfigError, match="unknown option 'nme' for corpus 'wikipedia'; valid: data_dir, data_files, "
                                          "name, shard"):
        check_corpus("wikipedia", {"nme": "x"})
    with pytest.raises(ConfigError, match="unknown split 'validation' for corpus 'openwebtext'; valid: train"):
        iter_documents("openwebtext", "validation", data_dir=str(hub))
    empty = tmp_path / "empty" / "Skylion007/openwebtext/plain_text"
    empty.mkdir(parents=True)
    shutil.copy(next((hub / "Skylion007/openwebtext/plain_text").glob("*.parquet")), empty / "x.parquet")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["", "  "]}), empty / "train-00000-of-00001.parquet")
    with pytest.raises(ConfigError, match=r"^corpus 'openwebtext' yields no documents in its train split \(read: "
                                          r"train-00000-of-00001.parquet\)"):
        check_corpus("openwebtext", {"data_dir": str(tmp_path / "empty")}, probe=True)
    with pytest.raises(ConfigError, match="no train files of 'wikimedia/wikipedia' found"):
        check_corpus("wikipedia", {"data_dir": str(tmp_path / "empty")}, probe=True)
    exp = resolve_experiment(DEBUG, {"pretrain.max_tokens": 100})
    with pytest.raises(ConfigError, match=r"pretrain.max_tokens \(100\) is less than one batch: 8 chunks of 31 tokens"):
        check_experiment(exp)
    exp = resolve_experiment(DEBUG, {"pretrain.lanes": 3, "pretrain.num_workers": 2})
    with pytest.raises(ConfigError, match=r"lanes \(3\) must be a multiple of devices x num_workers \(1 x 2\)"):
        check_experiment(exp)


def test_mixtures(hub):
    comps = corpus_components("wikipedia_tbc", {"data_dir": str(hub)})
    assert [(c.label, c.rate) for c in comps] == [("wikipedia", 0.8), ("bookcorpus", pytest.approx(0.2))]
    assert all(c.options["data_dir"] == str(hub) for c in comps)
    mix = {"corpora": [{"corpus": "builtin", "rate": 3}, {"corpus": "wikipedia", "rate": 1,
                                                          "options": {"data_dir": str(hub)}}]}
    assert [c.rate for c in corpus_components("mixture", mix)] == [0.75, 0.25]
    docs = list(iter_documents("mixture", **mix))
    wiki = set(iter_documents("wikipedia", data_dir=str(hub)))
    assert len(docs) == len(list(iter_documents("builtin"))) + len(wiki) and wiki <= set(docs)
    assert docs != list(iter_documents("builtin")) + list(wiki)  # interleaved by the rates
    for bad, message in ((None, "needs the option corpora"), ([{"corpus": "builtin", "rate": 0}], "rate must be"),
                         ([{"corpus": "wikipedia_tbc"}], "is itself a mixture"),
                         ([{"corpus": "builtin"}, {"corpus": "builtin"}], "appears twice")):
        with pytest.raises(ConfigError, match=message):
            corpus_components("mixture", {"corpora": bad})
    with pytest.raises(ConfigError, match="unknown option 'pth' for corpus 'files'"):
        corpus_components("mixture", {"corpora": [{"corpus": "files", "options": {"pth": "x"}}]})


def test_table8_rows_name_their_corpora():
    from t5lit.sweep.spec import load_sweep

    spec = load_sweep(REPO / "sweeps" / "table8_datasets.yaml", check_rows=False)
    corpora = {r.name: spec.experiment(r.overrides, 0, "x")["pretrain"]["corpus"] for r in spec.rows}
    assert corpora == {"c4": "c4", "c4_unfiltered": "c4_unfiltered", "realnews_like": "c4_realnewslike",
                       "webtext_like": "openwebtext", "wikipedia": "wikipedia", "wikipedia_tbc": "wikipedia_tbc"}
    assert {r.paper_row for r in spec.rows} == set(corpora)
    assert HUB_CORPORA["wikipedia"].name == "20231101.en" and os.sep not in HUB_CORPORA["wikipedia"].name
