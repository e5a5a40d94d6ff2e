"""The pre-training data sets of the paper's Table 8 (Section 3.4.1), each the Hugging Face dataset it streams,
and corpus mixtures.

| corpus          | Table 8 row     | Hugging Face dataset (config)                    | splits       |
|-----------------|-----------------|--------------------------------------------------|--------------|
| c4              | ★ C4            | allenai/c4 (en), t5lit/data/sources.py           | train, val.  |
| c4_unfiltered   | C4, unfiltered  | allenai/c4 (en.noclean)                          | train, val.  |
| c4_realnewslike | RealNews-like   | allenai/c4 (realnewslike)                        | train, val.  |
| openwebtext     | WebText-like    | Skylion007/openwebtext (see below)               | train        |
| wikipedia       | Wikipedia       | wikimedia/wikipedia (20231101.en: a dated dump)  | train        |
| bookcorpus      | (TBC)           | bookcorpus/bookcorpus (plain_text, parquet)      | train        |
| wikipedia_tbc   | Wikipedia + TBC | the two above, mixed 0.8 : 0.2                   | train        |

Substitutions, because the paper's own sets are not public:

- WebText-like: the paper kept the C4 pages whose URLs appeared in OpenWebText's list (Reddit submissions with
  a score of at least 3; TFDS ``c4/webtextlike``, which needs the URL list). The nearest public stand-in is
  OpenWebText itself, the pages behind that list: the same selection rule over a different crawl (2019 Reddit
  URLs, fetched by the OpenWebText authors, not filtered by C4's heuristics).
- Wikipedia: the paper used TFDS ``wikipedia/20190301.en`` (markup and references removed). The hub's
  maintained copy is ``wikimedia/wikipedia``, also stripped of markup; its dated dumps are configs (the option
  ``name``, default 20231101.en, the newest English one on the hub).
- TBC: the Toronto Books Corpus (BookCorpus, Zhu et al. 2015) as the hub has it, one sentence per record and
  lower-cased; consecutive sentences are joined into documents of ``sentences_per_document`` (64) so that EOS
  does not fall after every sentence. The hub repository ships a loading script; its data are read from the
  hub's parquet export (revision ``refs/convert/parquet``).
- Wikipedia + TBC: the paper says only that it combined them (as BERT did), 16 GB + about 4 GB = 20 GB; the
  union of the two is a mixture with rates proportional to their sizes, 0.8 : 0.2 (``rates`` changes it).

Every hub corpus reads a local copy instead of the hub with the option ``data_dir`` (the copy itself, or a folder
of copies by hub id, ``<data_dir>/wikimedia/wikipedia``) or ``$T5LIT_DATASETS_DIR``; a copy keeps the hub's layout
(``huggingface-cli download wikimedia/wikipedia --repo-type dataset --include "20231101.en/*" --local-dir DIR``)
and is read by the same streaming code.

``mixture`` mixes any corpora: ``corpus_options: {corpora: [{corpus: wikipedia, rate: 0.8}, {corpus: bookcorpus,
rate: 0.2, options: {...}}]}``. Pre-training draws each example's corpus by the rates (each corpus makes its own
chunks; T5's ``sample_from_datasets`` over tasks).
"""

from __future__ import annotations

from collections.abc import Iterator

from t5lit.data.sources import (
    C4,
    CORPORA,
    HubDataset,
    Mixture,
    SourceStats,
    check_split,
    hub_documents,
    hub_shards,
    iter_documents,
    mixture,
    sharded,
)
from t5lit.registry import ConfigError

PARQUET_TRAIN = {"train": ("**/train-*.parquet", "**/train/*.parquet")}

HUB_CORPORA: dict[str, HubDataset] = {
    "c4_unfiltered": HubDataset(C4.path, "en.noclean", C4.layout, "json"),
    "c4_realnewslike": HubDataset(C4.path, "realnewslike", C4.layout, "json"),
    "openwebtext": HubDataset("Skylion007/openwebtext", None, PARQUET_TRAIN, "parquet"),
    "wikipedia": HubDataset("wikimedia/wikipedia", "20231101.en", {"train": ("{name}/train-*.parquet",)},
                            "parquet"),
    "bookcorpus": HubDataset("bookcorpus/bookcorpus", "plain_text", {"train": ("{name}/train/*.parquet",
                                                                               "**/train-*.parquet")},
                             "parquet", revision="refs/convert/parquet", join=64),
}
DEFAULT_SENTENCES_PER_DOCUMENT = 64


def _register_hub(corpus: str, dataset: HubDataset, named: bool) -> None:
    """Register ``corpus`` reading ``dataset``; ``named`` corpora take the option ``name`` (a config or dump)."""

    def check(split: str, sentences_per_document: int | None) -> HubDataset:
        check_split(corpus, split, dataset.splits)
        if sentences_per_document is None:
            return dataset
        if not isinstance(sentences_per_document, int) or sentences_per_document < 1:
            raise ConfigError(f"sentences_per_document must be an integer >= 1, got {sentences_per_document!r}")
        return HubDataset(dataset.path, dataset.name, dataset.layout, dataset.builder, dataset.text_field,
                          dataset.revision, sentences_per_document)

    if dataset.join > 1:  # BookCorpus: documents of consecutive sentences
        def documents(split: str, stats: SourceStats, data_dir=None, data_files=None, shard: bool = True,
                      sentences_per_document: int = DEFAULT_SENTENCES_PER_DOCUMENT) -> Iterator[str]:
            return hub_documents(check(split, sentences_per_document), split, data_dir=data_dir,
                                 data_files=data_files, shard=shard)

        def shards(split: str, data_dir=None, data_files=None, shard: bool = True,
                   sentences_per_document: int = DEFAULT_SENTENCES_PER_DOCUMENT):
            return hub_shards(check(split, sentences_per_document), split, data_dir=data_dir, data_files=data_files)
    elif named:
        def documents(split: str, stats: SourceStats, name: str = dataset.name, data_dir=None, data_files=None,
                      shard: bool = True) -> Iterator[str]:
            return hub_documents(check(split, None), split, name=name, data_dir=data_dir, data_files=data_files,
                                 shard=shard)

        def shards(split: str, name: str = dataset.name, data_dir=None, data_files=None, shard: bool = True):
            return hub_shards(check(split, None), split, name=name, data_dir=data_dir, data_files=data_files)
    else:
        def documents(split: str, stats: SourceStats, data_dir=None, data_files=None,
                      shard: bool = True) -> Iterator[str]:
            return hub_documents(check(split, None), split, data_dir=data_dir, data_files=data_files, shard=shard)

        def shards(split: str, data_dir=None, data_files=None, shard: bool = True):
            return hub_shards(check(split, None), split, data_dir=data_dir, data_files=data_files)

    documents.__doc__ = f"{dataset.path}" + (f" ({dataset.name})" if dataset.name else "") + ", streamed."
    CORPORA.add(corpus, documents)
    sharded(corpus, shards, lambda **_: "validation" in dataset.splits)


for _name, _dataset in HUB_CORPORA.items():
    _register_hub(_name, _dataset, named=_name == "wikipedia")


# --------------------------------------------------------------------------------------------------------
# Mixtures
# --------------------------------------------------------------------------------------------------------

def _components(corpora, data_dir=None) -> Mixture:
    """``[{corpus, rate, options?}, ...]`` -> a Mixture; ``data_dir`` goes to every component without one."""
    if not isinstance(corpora, (list, tuple)) or not corpora:
        raise ConfigError("corpus 'mixture' needs the option corpora: a list of {corpus: NAME, rate: R, options: "
                          "{...}}")
    parts, labels = [], set()
    for i, entry in enumerate(corpora):
        if not isinstance(entry, dict) or "corpus" not in entry or not set(entry) <= {"corpus", "rate", "options",
                                                                                    "label"}:
            raise ConfigError(f"mixture corpora[{i}] must be {{corpus: NAME, rate: R, options: {{...}}}}, got "
                              f"{entry!r}")
        rate = entry.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ConfigError(f"mixture corpora[{i}] ({entry['corpus']}): rate must be a number > 0, got {rate!r}")
        options = dict(entry.get("options") or {})
        if data_dir is not None and "data_dir" not in options and entry["corpus"] not in ("builtin", "files", "hf"):
            options["data_dir"] = data_dir
        label = str(entry.get("label") or entry["corpus"])
        if label in labels:
            raise ConfigError(f"mixture corpora[{i}]: {label!r} appears twice; give each a distinct label")
        labels.add(label)
        parts.append((label, str(entry["corpus"]), options, float(rate)))
    return Mixture(tuple(parts))


def _mixed_documents(mix: Mixture, split: str, stats: SourceStats) -> Iterator[str]:
    """The components' documents interleaved by their rates (a fixed, seeded order), until every one ends."""
    import numpy as np

    streams = [iter_documents(corpus, split, stats=stats, **opts) for _, corpus, opts, _ in mix.components]
    rates = np.asarray([rate for *_, rate in mix.components], np.float64)
    rng = np.random.default_rng(0)
    live = list(range(len(streams)))
    while live:
        p = rates[live] / rates[live].sum()
        k = live[int(rng.choice(len(live), p=p))]
        doc = next(streams[k], None)
        if doc is None:
            live.remove(k)
        else:
            yield doc


@CORPORA.add("mixture")
def _mixture(split: str, stats: SourceStats, corpora=None, data_dir=None) -> Iterator[str]:
    """Corpora mixed by rates: ``corpora: [{corpus: NAME, rate: R, options: {...}}, ...]``."""
    return _mixed_documents(_components(corpora, data_dir), split, stats)


WIKIPEDIA_TBC_RATES = (0.8, 0.2)  # 16 GB of Wikipedia and ~4 GB of TBC (Table 8's sizes: 16 GB, 20 GB together)


def _wikipedia_tbc_mix(wikipedia=None, bookcorpus=None, rates=WIKIPEDIA_TBC_RATES, data_dir=None) -> Mixture:
    if not isinstance(rates, (list, tuple)) or len(rates) != 2:
        raise ConfigError(f"wikipedia_tbc rates must be two numbers (Wikipedia, TBC), got {rates!r}")
    return _components([{"corpus": "wikipedia", "rate": rates[0], "options": dict(wikipedia or {})},
                        {"corpus": "bookcorpus", "rate": rates[1], "options": dict(bookcorpus or {})}], data_dir)


@CORPORA.add("wikipedia_tbc")
def _wikipedia_tbc(split: str, stats: SourceStats, wikipedia=None, bookcorpus=None, rates=WIKIPEDIA_TBC_RATES,
                   data_dir=None) -> Iterator[str]:
    """Wikipedia + the Toronto Books Corpus (Table 8), mixed 0.8 : 0.2 by size; ``wikipedia`` and ``bookcorpus``
    are each one's options."""
    return _mixed_documents(_wikipedia_tbc_mix(wikipedia, bookcorpus, rates, data_dir), split, stats)


mixture("mixture", lambda corpora=None, data_dir=None: _components(corpora, data_dir))
mixture("wikipedia_tbc", _wikipedia_tbc_mix)
