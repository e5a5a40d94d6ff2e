"""Span-corruption throughput on one core: t5lit's objectives beside a straightforward per-example loop.

Every example starts from a pre-tokenized raw chunk (568 tokens: 512 inputs at 15% noise, mean span 3) and
its own generator ``np.random.default_rng((seed, epoch, index))``, as the data module seeds it; an example
is done when it is an {inputs, targets} pair and, when ``t5lit.features`` is importable, a batch of model
features from ``EncDecFeatureConverter(512, 114)``. Three paths are timed:

    ours            get_objective("span_corruption"): the per-example reference, one call per chunk
    ours_batched    the same objective's ``apply_batch`` (vectorised over the batch; identical outputs)
    loop            the algorithm of transformers' Flax ``DataCollatorForT5MLM`` written per example here:
                    random segmentation by shuffling a 0/1 vector, span starts by cumsum, sentinel ids,
                    then filtering

    python benchmarks/objectives_throughput.py [--examples 20000] [--batch 128] [--json out.json]

Prints each rate (examples/s) and the ratios to the loop; ``--json PATH`` writes them.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, before numpy loads
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from t5lit.objectives import SimpleVocab, get_objective, raw_length  # noqa: E402

# --------------------------------------------------------------------------------------------------------------
# The comparison: the Flax T5 MLM collator's algorithm, one example at a time (our own code).


def loop_noise_mask(length: int, noise_density: float, mean_span: float, rng: np.random.Generator) -> np.ndarray:
    num_noise = min(max(int(np.round(length * noise_density)), 1), length - 1)
    num_nonnoise = length - num_noise
    num_spans = max(int(np.round(min(num_noise, num_nonnoise) / mean_span)), 1)

    def segment_lengths(num_items: int, num_segments: int) -> np.ndarray:
        starts_segment = np.arange(num_items - 1) < (num_segments - 1)  # (num_items - 1,) 0/1 gaps
        rng.shuffle(starts_segment)
        segment_id = np.cumsum(np.pad(starts_segment, [[1, 0]]))  # (num_items,)
        return np.unique(segment_id, return_counts=True)[1]

    noise_lengths = segment_lengths(num_noise, num_spans)
    nonnoise_lengths = segment_lengths(num_nonnoise, num_spans)
    interleaved = np.stack([nonnoise_lengths, noise_lengths], axis=1).reshape(-1)  # (2S,)
    span_starts = np.cumsum(interleaved)[:-1]
    indicator = np.zeros(length, np.int8)
    indicator[span_starts] = 1
    return np.cumsum(indicator) % 2 == 1


def loop_sentinel_ids(mask: np.ndarray, vocab_size: int) -> np.ndarray:
    """Sentinel id at the first token of each run of ``mask``, -1 on the rest of the run, 0 elsewhere."""
    m = mask.astype(np.int32)
    first = m - np.roll(m, 1) * m  # (n,) 1 where a run starts
    first[0] = m[0]
    ids = np.where(first != 0, vocab_size - np.cumsum(first), 0)
    return ids - (m - first)


def loop_filter(tokens: np.ndarray, sentinel_ids: np.ndarray, eos_id: int) -> np.ndarray:
    full = np.where(sentinel_ids != 0, sentinel_ids, tokens)
    return np.concatenate([full[full >= 0], [eos_id]]).astype(np.int32)


def loop_span_corruption(tokens, rng, vocab, noise_density=0.15, mean_span=3.0) -> dict:
    mask = loop_noise_mask(len(tokens), noise_density, mean_span, rng)
    inputs = loop_filter(tokens, loop_sentinel_ids(mask, vocab.vocab_size), vocab.eos_id)
    targets = loop_filter(tokens, loop_sentinel_ids(~mask, vocab.vocab_size), vocab.eos_id)
    return {"inputs": inputs, "targets": targets}


# --------------------------------------------------------------------------------------------------------------


def make_converter(inputs_length: int, targets_length: int):
    try:
        from t5lit.features import EncDecFeatureConverter
    except ImportError:
        return None
    return EncDecFeatureConverter(inputs_length, targets_length, pack=False)


def run_path(name, chunks, batch, convert, seed=0, epoch=0):
    """Examples/s of one path over all ``chunks`` (n, raw) in batches of ``batch``."""
    vocab = SimpleVocab(32100)
    obj = get_objective("span_corruption")
    start = time.perf_counter()
    for s in range(0, len(chunks), batch):
        rows = chunks[s:s + batch]
        rngs = [np.random.default_rng((seed, epoch, s + i)) for i in range(len(rows))]
        if name == "ours":
            examples = [obj(t, r, vocab) for t, r in zip(rows, rngs)]
        elif name == "ours_batched":
            examples = obj.apply_batch(rows, rngs, vocab)
        else:
            examples = [loop_span_corruption(t, r, vocab) for t, r in zip(rows, rngs)]
        if convert is not None:
            convert(examples)
    return len(chunks) / (time.perf_counter() - start)


def check_agreement(chunks, vocab=SimpleVocab(32100)) -> None:
    """The three paths make examples of the same lengths; the two of ours make the very same examples."""
    obj = get_objective("span_corruption")
    rngs = [np.random.default_rng((0, 0, i)) for i in range(len(chunks))]
    batched = obj.apply_batch(chunks, rngs, vocab)
    for i, t in enumerate(chunks):
        ours = obj(t, np.random.default_rng((0, 0, i)), vocab)
        loop = loop_span_corruption(t, np.random.default_rng((0, 0, i)), vocab)
        assert np.array_equal(ours["inputs"], batched[i]["inputs"]) and np.array_equal(
            ours["targets"], batched[i]["targets"]), "apply_batch differs from the per-example objective"
        assert ours["inputs"].shape == loop["inputs"].shape and ours["targets"].shape == loop["targets"].shape


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=20000)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--inputs-length", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="best of this many timed passes per path")
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    raw, targets_length = raw_length("span_corruption", a.inputs_length)
    chunks = np.random.default_rng(0).integers(3, 32000, size=(a.examples, raw), dtype=np.int32)
    check_agreement(chunks[:64])
    convert = make_converter(a.inputs_length, targets_length)
    rates = {}
    for name in ("loop", "ours", "ours_batched"):
        run_path(name, chunks[:a.batch * 2], a.batch, convert)  # warm-up
        rates[name] = max(run_path(name, chunks, a.batch, convert) for _ in range(a.repeats))
    result = {
        "examples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "ratio_ours_to_loop": round(rates["ours"] / rates["loop"], 2),
        "ratio_ours_batched_to_loop": round(rates["ours_batched"] / rates["loop"], 2),
        "feature_conversion": convert is not None,
        "raw_length": raw, "inputs_length": a.inputs_length, "targets_length": targets_length,
        "examples": a.examples, "batch": a.batch, "threads": 1,
        "numpy": np.__version__, "python": platform.python_version(), "machine": platform.processor() or
        platform.machine(),
    }
    what = "objective + EncDecFeatureConverter" if convert is not None else "objective only (no t5lit.features)"
    print(f"span corruption, {raw}-token chunks -> {a.inputs_length}/{targets_length}, {what}, one thread")
    for k, v in rates.items():
        print(f"  {k:13s} {v:10,.0f} examples/s")
    print(f"  ours / loop {result['ratio_ours_to_loop']:.2f}x   ours_batched / loop "
          f"{result['ratio_ours_batched_to_loop']:.2f}x")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(result, f, indent=2)
    return result


if __name__ == "__main__":
    main()
