"""Pre-training data throughput, end to end on one core: raw C4 JSON lines (gzip) -> SentencePiece (32k pieces)
-> objective -> model features, the path a DataLoader worker runs (t5lit/data/lanes.py); and the time to the
first batch on a corpus 100 times larger than the token cache tokenizes in a minute.

    python benchmarks/data_throughput.py [--c4 PATH] [--vocab spiece.model] [--seconds 20] [--json out.json]
    python benchmarks/data_throughput.py --vocab builtin --seconds 0.5 --times 0.5 --skip-padding   # a smoke run

What is measured:

- ``examples/s/core``: examples (one chunk each: 568 raw tokens for span corruption, 511 for the i.i.d. baseline)
  made into encoder-decoder features at 512 inputs, batch 128, packed, by one lane in this process pinned to one
  core: reading the gzip JSON lines, tokenizing, chunking, the objective, the features. Two readers: the
  ``files`` corpus (t5lit's JSON-lines reader) and ``c4`` on a local copy in the hub's layout (datasets'
  streaming json reader, the code that streams the hub). Target: >= 1,000 examples of 568 tokens per second
  per core (an H100 at 45% MFU trains t5-base on about 930).
- ``cache``: tokens per second of the token cache's one-process build (what every run did before step 1).
- ``first batch``: seconds from the data module's creation to the first training batch, on one C4 shard and on
  a corpus of 100x the tokens the cache builds in a minute (shards that are links to the sample: no disk), with
  the baseline's 64 lanes.
- ``padding``: the share of padding positions per objective and architecture at 512 inputs, unpacked and packed.

The C4 sample is 1,000 documents of C4 en (../shared/data/c4); without ``--vocab`` a 32,000-piece vocabulary is
trained on it and the other text samples there (cached in /tmp).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
C4_SAMPLE = REPO.parent / "shared" / "data" / "c4" / "c4-sample.00000-of-00001.json.gz"
ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
OBJECTIVES = ("iid_denoising", "span_corruption", "prefix_lm", "deshuffle", "drop_tokens", "bert_style",
              "mass_style")


def one_core() -> None:
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})


def vocabulary(path: str | None, c4: Path):
    from itertools import chain

    from t5lit.data.sources import iter_documents
    from t5lit.data.vocab import Vocabulary, load_vocabulary, train_vocabulary

    if path:
        return load_vocabulary(path)
    cached = Path(tempfile.gettempdir()) / "t5lit-bench-c4-32k.model"
    if cached.is_file():
        return Vocabulary(cached)
    extra = (p.read_text(errors="replace") for p in sorted(c4.parents[1].rglob("*")) if p.suffix in (".tsv", ".jsonl"))
    docs = chain(iter_documents("files", paths=[str(c4)]), iter_documents("builtin"), extra)
    return train_vocabulary(docs, 32000, cached)


def shards(folder: Path, c4: Path, count: int, layout: str = "{i:05d}-of-{n:05d}.json.gz") -> Path:
    """``count`` C4 shards, each a link to the sample."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"c4-train.{layout.format(i=i, n=count)}").symlink_to(c4.resolve())
    return folder


def steady_rate(module, seconds: float) -> tuple[float, int]:
    """Examples per second of one lane, after its first block (a lane reads a block of 8 batches at a time)."""
    from t5lit.data.lanes import Lane

    lane = Lane(module.spec, 0, module.recipe, module.vocab, module.train_tokens)
    lane.next_batch()
    start_examples, block = lane.block_no * module.spec.block + lane.q, module.spec.block
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or lane.block_no < 2:
        lane.next_batch()
    elapsed = time.perf_counter() - started
    done = lane.block_no * block + lane.q - start_examples
    return done / elapsed, done


def throughput(vocab, corpus: str, options: dict, objective: str, seconds: float) -> dict:
    from t5lit.data.datamodule import PretrainDataModule

    module = PretrainDataModule(corpus=corpus, corpus_options=options, vocab=vocab, objective=objective,
                                objective_params={}, inputs_length=512, batch_size=128, val_examples=8, lanes=1)
    module.setup("fit")
    rate, done = steady_rate(module, seconds)
    return {"corpus": corpus, "objective": objective, "raw_tokens": module.raw_length,
            "examples_per_s": round(rate, 1), "tokens_per_s": round(rate * module.raw_length), "examples": done}


def cache_rate(vocab, c4: Path, tmp: Path) -> float:
    from t5lit.data.cache import token_cache

    started = time.perf_counter()
    tokens = token_cache("files", "train", vocab, cache_dir=tmp / "cache", corpus_options={"paths": [str(c4)]},
                         progress=False)
    return tokens.num_tokens / (time.perf_counter() - started)


def first_batch(vocab, paths: str, lanes: int = 64) -> float:
    from t5lit.data.datamodule import LaneBatches, PretrainDataModule

    started = time.perf_counter()
    module = PretrainDataModule(corpus="files", corpus_options={"paths": paths}, vocab=vocab, inputs_length=512,
                                batch_size=128, val_examples=1024, lanes=lanes)
    module.setup("fit")
    next(iter(LaneBatches(module.spec, module.recipe, module.vocab, module.train_tokens)))
    return time.perf_counter() - started


def padding(vocab, c4: Path) -> list[dict]:
    from t5lit.data.datamodule import PretrainDataModule
    from t5lit.data.lanes import padding_fraction

    out = []
    for objective in OBJECTIVES:
        for arch in ARCHS:
            row = {"objective": objective, "arch": arch}
            for pack in (False, True):
                module = PretrainDataModule(corpus="files", corpus_options={"paths": [str(c4)]}, vocab=vocab,
                                            objective=objective, objective_params={}, arch=arch, inputs_length=512,
                                            batch_size=32, val_examples=1, lanes=1, pack=pack)
                module.setup("fit")
                row["packed" if pack else "unpacked"] = round(float(np.mean(
                    [padding_fraction(module.train_batch(0, g)) for g in range(4)])), 3)
            out.append(row)
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--c4", default=str(C4_SAMPLE), help="a C4 shard (gzipped JSON lines)")
    parser.add_argument("--vocab", default=None, help="a SentencePiece model (default: 32k trained on the sample)")
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds per throughput measurement")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--times", type=float, default=100.0,
                        help="the large corpus holds this many times what the token cache tokenizes in a minute")
    parser.add_argument("--skip-padding", action="store_true")
    args = parser.parse_args(argv)
    c4 = Path(args.c4)
    if not c4.is_file():
        parser.error(f"--c4 {c4}: no such file (the C4 sample is ../shared/data/c4/c4-sample.00000-of-00001.json.gz)")
    one_core()
    vocab = vocabulary(args.vocab, c4)
    tmp = Path(tempfile.mkdtemp(prefix="t5lit-data-bench-"))
    results: dict = {"machine": platform.processor() or platform.machine(), "python": platform.python_version(),
                     "vocab_size": vocab.vocab_size, "throughput": []}
    try:
        hub = shards(tmp / "hub" / "allenai" / "c4" / "en", c4, 8)  # a local copy of allenai/c4 en, hub layout
        (hub / "c4-validation.00000-of-00001.json.gz").symlink_to(c4.resolve())
        for objective in ("span_corruption", "iid_denoising"):
            for corpus, options in (("files", {"paths": [str(c4)]}), ("c4", {"data_dir": str(tmp / "hub")})):
                row = throughput(vocab, corpus, options, objective, args.seconds)
                results["throughput"].append(row)
                print(f"{objective:16s} {corpus:6s} {row['examples_per_s']:8.1f} examples/s/core "
                      f"({row['tokens_per_s']:,} tokens/s, {row['raw_tokens']} per example)", flush=True)
        rate = cache_rate(vocab, c4, tmp)
        minute = rate * 60
        from t5lit.data.cache import token_cache

        sample_tokens = token_cache("files", "train", vocab, cache_dir=tmp / "cache",
                                    corpus_options={"paths": [str(c4)]}, progress=False).num_tokens
        large = int(np.ceil(args.times * minute / sample_tokens))
        results["cache"] = {"tokens_per_s": round(rate), "tokens_in_a_minute": round(minute)}
        print(f"token cache: {rate:,.0f} tokens/s in one process: {minute:,.0f} tokens in a minute", flush=True)
        small_dir, large_dir = shards(tmp / "small", c4, 1), shards(tmp / "large", c4, large)
        small_t = first_batch(vocab, str(small_dir / "*.json.gz"))
        large_t = first_batch(vocab, str(large_dir / "*.json.gz"))
        results["first_batch"] = {"small": {"shards": 1, "tokens": sample_tokens, "seconds": round(small_t, 2)},
                                  "large": {"shards": large, "tokens": large * sample_tokens,
                                            "seconds": round(large_t, 2)},
                                  "cache_seconds_for_large": round(large * sample_tokens / rate)}
        print(f"first batch: {small_t:.1f} s on 1 shard ({sample_tokens:,} tokens); {large_t:.1f} s on {large} shards "
              f"({large * sample_tokens:,} tokens; the cache would take {large * sample_tokens / rate / 60:,.1f} min)")
        if not args.skip_padding:
            results["padding"] = padding(vocab, c4)
            for row in results["padding"]:
                print(f"padding {row['objective']:16s} {row['arch']:16s} unpacked {row['unpacked']:.3f} "
                      f"packed {row['packed']:.3f}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
