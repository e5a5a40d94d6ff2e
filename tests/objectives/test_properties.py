"""Property tests over random lengths, densities and seeds: nothing lost, lengths within the helper's."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from t5lit.objectives import SimpleVocab, get_objective, raw_length
from t5lit.objectives.noise import random_spans_counts

VOCAB = SimpleVocab(2000, num_extra_ids=1000)  # ordinary tokens below 1000, sentinels 1999 down to 1000
MODES = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
PROPS = settings(max_examples=50, deadline=None, derandomize=True)

seeds = st.integers(0, 2**32 - 1)
densities = st.floats(0.01, 0.95)
means = st.floats(1.0, 12.0)


def chunk(n, seed):
    return np.random.default_rng(seed).integers(3, 1000, size=n).astype(np.int32)


def is_sentinel(a):
    return a >= VOCAB.vocab_size - VOCAB.num_extra_ids


def pieces(seq):
    """Split a sequence (EOS dropped) at its sentinels: ``[5, S, 6, 7, S] -> [[5], [6, 7], []]``."""
    out, cur = [], []
    for t in seq[:-1].tolist():
        if is_sentinel(np.int32(t)):
            out.append(cur)
            cur = []
        else:
            cur.append(t)
    return out + [cur]


def fill_sentinels(inputs, targets):
    """Put back the tokens each input sentinel stands for: the target tokens after the same sentinel."""
    follow, cur = {}, None
    for t in targets[:-1].tolist():
        if is_sentinel(np.int32(t)):
            cur = follow.setdefault(t, [])
        else:
            cur.append(t)
    return [x for t in inputs[:-1].tolist() for x in (follow[t] if is_sentinel(np.int32(t)) else [t])]


@PROPS
@given(n=st.integers(1, 400), density=densities, mean=means, seed=seeds)
def test_span_corruption_inputs_and_targets_restore_the_chunk(n, density, mean, seed):
    tokens = chunk(n, seed)
    ex = get_objective("span_corruption", noise_density=density, mean_noise_span_length=mean)(
        tokens, np.random.default_rng(seed), VOCAB)
    assert ex["inputs"][-1] == 1 and ex["targets"][-1] == 1
    assert fill_sentinels(ex["inputs"], ex["targets"]) == tokens.tolist()  # sentinel i <-> span i
    if n >= 2:
        k, s = random_spans_counts(n, density, mean)
        assert (len(ex["inputs"]), len(ex["targets"])) == (n - k + s + 1, k + s + 1)
        sent_in = ex["inputs"][is_sentinel(ex["inputs"])].tolist()
        assert sent_in == ex["targets"][is_sentinel(ex["targets"])].tolist() == [1999 - i for i in range(s)]


@PROPS
@given(n=st.integers(1, 300), density=densities, seed=seeds)
def test_iid_denoising_restores_the_chunk(n, density, seed):
    tokens = chunk(n, seed)
    ex = get_objective("iid_denoising", noise_density=density)(tokens, np.random.default_rng(seed), VOCAB)
    kept, dropped = pieces(ex["inputs"]), pieces(ex["targets"])  # non-noise runs / noise runs
    # Runs alternate. Starting with non-noise: kept[0], dropped[1], kept[1], dropped[2], ...
    # starting with noise (kept[0] empty): dropped[0], kept[1], dropped[1], kept[2], ...
    first, second = (kept, dropped[1:]) if kept[0] else (dropped, kept[1:])
    merged = []
    for i in range(max(len(first), len(second))):
        merged += (first[i] if i < len(first) else []) + (second[i] if i < len(second) else [])
    assert merged == tokens.tolist()


@PROPS
@given(n=st.integers(1, 300), density=densities, seed=seeds)
def test_other_denoisers_keep_every_token(n, density, seed):
    tokens, rng_seed = chunk(n, seed), seed
    full = tokens.tolist() + [1]
    drop = get_objective("drop_tokens", noise_density=density)(tokens, np.random.default_rng(rng_seed), VOCAB)
    assert sorted(drop["inputs"][:-1].tolist() + drop["targets"][:-1].tolist()) == sorted(tokens.tolist())
    for name in ("bert_style", "mass_style"):
        ex = get_objective(name, noise_density=density)(tokens, np.random.default_rng(rng_seed), VOCAB)
        assert ex["targets"].tolist() == full and len(ex["inputs"]) == n + 1
        changed = ex["inputs"][:-1] != tokens
        new = ex["inputs"][:-1][changed]
        assert np.all((new == 1999) | ((new >= 3) & (new < 1000)))  # the mask token or an ordinary token
        # The same mask as drop_tokens (same rng, mask drawn first): corrupted positions are the dropped ones.
        assert set(tokens[is_sentinel(ex["inputs"][:-1])].tolist()) <= set(drop["targets"].tolist())
        if name == "mass_style":
            assert ex["inputs"][:-1][is_sentinel(ex["inputs"][:-1])].tolist() == [1999] * int(
                is_sentinel(ex["inputs"][:-1]).sum())
            assert np.array_equal(ex["inputs"][:-1][~changed], tokens[~changed])
    shuffled = get_objective("deshuffle")(tokens, np.random.default_rng(rng_seed), VOCAB)
    assert sorted(shuffled["inputs"][:-1].tolist()) == sorted(tokens.tolist()) and shuffled["targets"].tolist() == full
    prefix = get_objective("prefix_lm")(tokens, np.random.default_rng(rng_seed), VOCAB)
    assert prefix["inputs"][:-1].tolist() + prefix["targets"][:-1].tolist() == tokens.tolist()
    assert n < 2 or len(prefix["inputs"]) >= 2 and len(prefix["targets"]) >= 2  # both sides get a token


NAMES = ["bert_style", "deshuffle", "drop_tokens", "iid_denoising", "lm", "mass_style", "prefix_lm",
         "span_corruption", "ul2"]


@PROPS
@given(name=st.sampled_from(NAMES), inputs_length=st.integers(4, 300), density=st.floats(0.05, 0.5),
       mean=means, frac=st.floats(0.0, 1.0), seed=seeds)
def test_examples_fit_the_lengths_raw_length_gives(name, inputs_length, density, mean, frac, seed):
    params = {"span_corruption": {"noise_density": density, "mean_noise_span_length": mean},
              "iid_denoising": {"noise_density": density}, "prefix_lm": {"noise_density": density},
              "ul2": {"mode_token_ids": MODES}}.get(name, {})
    raw, targets_length = raw_length(name, inputs_length, **params)
    obj = get_objective(name, **params)
    for n in {raw, max(1, int(frac * raw))}:  # a full chunk and a shorter last chunk
        ex = obj(chunk(n, seed), np.random.default_rng(seed), VOCAB)
        assert len(ex["inputs"]) <= inputs_length and len(ex["targets"]) <= targets_length
    if name == "span_corruption":  # a full chunk's targets are exactly the helper's, and one token more overflows
        ex = obj(chunk(raw, seed), np.random.default_rng(seed), VOCAB)
        assert len(ex["targets"]) == targets_length
        k, s = random_spans_counts(raw + 1, density, mean)
        assert raw + 1 - k + s + 1 > inputs_length or density == 0.5


@PROPS
@given(b=st.integers(1, 5), n=st.integers(2, 200), density=densities, mean=means, seed=seeds)
def test_apply_batch_matches_per_example(b, n, density, mean, seed):
    obj = get_objective("span_corruption", noise_density=density, mean_noise_span_length=mean)
    tokens = np.random.default_rng(seed).integers(3, 1000, size=(b, n)).astype(np.int32)
    out = obj.apply_batch(tokens, [np.random.default_rng((seed, i)) for i in range(b)], VOCAB)
    for i in range(b):
        ref = obj(tokens[i], np.random.default_rng((seed, i)), VOCAB)
        assert np.array_equal(out[i]["inputs"], ref["inputs"]) and np.array_equal(out[i]["targets"], ref["targets"])
