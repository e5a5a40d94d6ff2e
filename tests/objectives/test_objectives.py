"""Named objectives: golden examples (fixed seeds), the length helper, parameters, errors, the batched path."""

from dataclasses import dataclass

import numpy as np
import pytest

from t5lit.objectives import OBJECTIVES, SimpleVocab, get_objective, random_spans_helper, raw_length
from t5lit.registry import ConfigError

VOCAB = SimpleVocab(200)
CHUNK = np.arange(10, 30, dtype=np.int32)  # 20 tokens
MODES = {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}
ALL = ["bert_style", "deshuffle", "drop_tokens", "iid_denoising", "lm", "mass_style", "prefix_lm",
       "span_corruption", "ul2"]


def params_for(name):
    return {"mode_token_ids": MODES} if name == "ul2" else {}


def run(name, tokens=CHUNK, seed=0, **params):
    return get_objective(name, **{**params_for(name), **params})(tokens, np.random.default_rng(seed), VOCAB)


def test_registry_lists_every_objective():
    assert set(ALL) <= set(OBJECTIVES.names())  # plug-ins (a new file here, an entry point) may add more


GOLDEN = [
    ("span_corruption", {}, 0, [*range(10, 27), 199, 1], [199, 27, 28, 29, 1]),
    ("span_corruption", {"noise_density": 0.3, "mean_noise_span_length": 2}, 0,
     [10, 11, 12, 13, 14, 15, 16, 199, 20, 21, 198, 23, 24, 25, 26, 27, 197, 1],
     [199, 17, 18, 19, 198, 22, 197, 28, 29, 1]),
    ("iid_denoising", {}, 0, [10, 11, 199, 14, 15, 16, 17, 18, 19, 20, 198, 22, 197, 24, 25, 26, 27, 28, 29, 1],
     [199, 12, 13, 198, 21, 197, 23, 196, 1]),
    ("bert_style", {}, 1, [10, 11, 199, 13, 14, 15, 16, 17, 18, 199, 20, 21, 22, 23, 24, 25, 47, 27, 28, 29, 1],
     [*range(10, 30), 1]),
    ("mass_style", {}, 0, [10, 11, 199, 199, 14, 15, 16, 17, 18, 19, 20, 199, 22, 199, 24, 25, 26, 27, 28, 29, 1],
     [*range(10, 30), 1]),
    ("drop_tokens", {}, 0, [10, 11, 14, 15, 16, 17, 18, 19, 20, 22, 24, 25, 26, 27, 28, 29, 1], [12, 13, 21, 23, 1]),
    ("deshuffle", {}, 0, [14, 29, 16, 12, 23, 26, 13, 21, 20, 18, 10, 22, 17, 15, 28, 27, 24, 19, 11, 25, 1],
     [*range(10, 30), 1]),
    ("prefix_lm", {}, 0, [*range(10, 27), 1], [27, 28, 29, 1]),
    ("lm", {}, 0, [], [*range(10, 30), 1]),
    ("ul2", {}, 0, [4, *range(10, 20), 199, 1], [199, *range(20, 30), 1]),  # "[NLG]": 50% in one span
    ("ul2", {}, 9, [4, 10, 11, 199, 13, 198, *range(21, 28), 197, 1],  # "[NLG]": 50% in spans of 3
     [199, 12, 198, *range(14, 21), 197, 28, 29, 1]),
    ("ul2", {}, 11, [3, *range(10, 27), 199, 1], [199, 27, 28, 29, 1]),  # "[NLU]": span corruption at 15%
    ("ul2", {}, 7, [5, *range(10, 26), 1], [26, 27, 28, 29, 1]),  # "[S2S]": prefix LM
]


@pytest.mark.parametrize("name,params,seed,inputs,targets", GOLDEN)
def test_golden(name, params, seed, inputs, targets):
    ex = run(name, seed=seed, **params)
    assert set(ex) == {"inputs", "targets"}
    assert ex["inputs"].dtype == np.int32 and ex["targets"].dtype == np.int32
    assert ex["inputs"].tolist() == inputs
    assert ex["targets"].tolist() == targets


def test_same_seed_same_example_and_no_hidden_state():
    for name in ALL:
        a, b = run(name, seed=3), run(name, seed=3)
        assert np.array_equal(a["inputs"], b["inputs"]) and np.array_equal(a["targets"], b["targets"])
    differ = [not np.array_equal(run("span_corruption", np.arange(3, 103, dtype=np.int32), seed=s)["inputs"],
                                 run("span_corruption", np.arange(3, 103, dtype=np.int32), seed=0)["inputs"])
              for s in range(1, 6)]
    assert any(differ)


@pytest.mark.parametrize("density,mean,expected", [(0.15, 3, (568, 114)), (0.15, 2, (552, 126)),
                                                   (0.15, 10, (591, 99)), (0.5, 3, (766, 512))])
def test_random_spans_helper_numbers(density, mean, expected):
    assert random_spans_helper(512, density, mean) == expected
    assert raw_length("span_corruption", 512, noise_density=density, mean_noise_span_length=mean) == expected


def test_full_span_corruption_chunk_fills_inputs_exactly():
    tokens = np.random.default_rng(0).integers(3, 100, size=568).astype(np.int32)
    ex = get_objective("span_corruption")(tokens, np.random.default_rng(1), VOCAB)
    assert (len(ex["inputs"]), len(ex["targets"])) == (512, 114)


def test_raw_length_of_the_other_objectives():
    assert raw_length("iid_denoising", 512) == (511, 192)  # T5's targets length at 15% (iid_15_u_u.gin)
    assert raw_length("bert_style", 512) == (511, 512)
    assert raw_length("deshuffle", 512) == (511, 512)
    assert raw_length("prefix_lm", 512) == (512, 512)
    assert raw_length("prefix_lm", 512, noise_density=0.25) == (512, 257)
    assert raw_length("lm", 512) == (511, 512)
    assert raw_length("ul2", 512, mode_token_ids=MODES) == (511, 342)  # 50% at span 3 gives the longest targets
    assert raw_length("ul2", 512) == (504, 337)  # 8 ids kept for a mode token encoded by the vocabulary
    obj = get_objective("span_corruption", noise_density=0.5)
    assert raw_length(obj, 512) == obj.raw_length(512) == (766, 512)


def test_configured_targets_length():
    assert raw_length("span_corruption", 512, targets_length=128) == (568, 128)
    with pytest.raises(ConfigError, match=r"^expected targets length for span_corruption \(114\) is greater than "
                                          r"the configured targets_length \(100\)"):
        raw_length("span_corruption", 512, targets_length=100)
    with pytest.raises(ConfigError, match="inputs_length must be an integer >= 2"):
        raw_length("span_corruption", 1)


def test_parameter_errors_are_one_line():
    with pytest.raises(ConfigError, match="no parameter 'noise_rate'; valid: noise_density, mean_noise_span_length"):
        get_objective("span_corruption", noise_rate=0.1)
    with pytest.raises(ConfigError, match="did you mean 'span_corruption'"):
        get_objective("span_coruption")
    with pytest.raises(ConfigError, match=r"noise_density must be a number in \(0.0, 1.0\), got 1.5"):
        get_objective("iid_denoising", noise_density=1.5)
    with pytest.raises(ConfigError, match="mean_noise_span_length must be a number >= 1"):
        get_objective("span_corruption", mean_noise_span_length=0.5)
    with pytest.raises(ConfigError, match="noise_density must be a number in"):
        get_objective("prefix_lm", noise_density=0.75)
    with pytest.raises(ConfigError, match="rates must be 7 non-negative"):
        get_objective("ul2", rates=[1, 2])
    with pytest.raises(ConfigError, match="objective 'lm' has no parameter 'noise_density'; valid: none"):
        get_objective("lm", noise_density=0.1)


@pytest.mark.parametrize("name", ALL)
def test_empty_chunk_is_an_error_and_short_chunks_work(name):
    obj = get_objective(name, **params_for(name))
    with pytest.raises(ConfigError, match="at least 1 token"):
        obj(np.zeros(0, np.int32), np.random.default_rng(0), VOCAB)
    for n in (1, 2, 3):
        ex = obj(np.arange(10, 10 + n, dtype=np.int32), np.random.default_rng(n), VOCAB)
        assert ex["targets"][-1] == 1 and (name == "lm" or ex["inputs"][-1] == 1)


def test_too_few_extra_ids_names_how_many_the_example_needs():
    tokens = np.arange(3, 571, dtype=np.int32) % 90 + 3  # 568 tokens -> 28 spans
    with pytest.raises(ConfigError, match="^this example needs 28 sentinels but the vocabulary has 10 extra ids"):
        get_objective("span_corruption")(tokens, np.random.default_rng(0), SimpleVocab(200, num_extra_ids=10))
    with pytest.raises(ConfigError, match="needs 28 sentinels"):
        get_objective("span_corruption").apply_batch(np.stack([tokens] * 2), [np.random.default_rng(0)] * 2,
                                                     SimpleVocab(200, num_extra_ids=10))


@pytest.mark.parametrize("n,params", [(568, {}), (100, {"noise_density": 0.5, "mean_noise_span_length": 2}),
                                      (12, {"mean_noise_span_length": 10}), (2, {})])
def test_apply_batch_equals_the_per_example_objective(n, params):
    obj = get_objective("span_corruption", **params)
    chunks = np.random.default_rng(0).integers(3, 100, size=(9, n)).astype(np.int32)
    batch = obj.apply_batch(chunks, [np.random.default_rng((0, 0, i)) for i in range(9)], VOCAB)
    for i, ex in enumerate(batch):
        ref = obj(chunks[i], np.random.default_rng((0, 0, i)), VOCAB)
        assert ex["inputs"].tolist() == ref["inputs"].tolist() and ex["targets"].tolist() == ref["targets"].tolist()


def test_apply_batch_falls_back_for_ragged_chunks_and_other_objectives():
    chunks = [np.arange(10, 30, dtype=np.int32), np.arange(10, 15, dtype=np.int32)]
    for name in ("span_corruption", "prefix_lm"):
        obj = get_objective(name)
        out = obj.apply_batch(chunks, [np.random.default_rng(i) for i in range(2)], VOCAB)
        assert [x["targets"].tolist() for x in out] == [
            obj(c, np.random.default_rng(i), VOCAB)["targets"].tolist() for i, c in enumerate(chunks)]


@dataclass
class TextVocab:
    """A vocabulary with encode(): each character of a mode token is one id."""

    vocab_size: int = 200
    num_extra_ids: int = 100
    eos_id: int = 1
    pad_id: int = 0
    unk_id: int = 2

    def sentinel_id(self, i):
        return self.vocab_size - 1 - i

    def encode(self, text):
        return [ord(c) % 90 + 3 for c in text]


def test_ul2_mode_tokens_from_encode_or_ids():
    ex = get_objective("ul2")(CHUNK, np.random.default_rng(11), TextVocab())
    assert ex["inputs"][:5].tolist() == TextVocab().encode("[NLU]")
    modes = {tuple(get_objective("ul2", mode_token_ids=MODES)(CHUNK, np.random.default_rng(s), VOCAB)["inputs"][:1])
             for s in range(60)}
    assert modes == {(3,), (4,), (5,)}
    with pytest.raises(ConfigError, match="ul2 needs a vocabulary with encode"):
        get_objective("ul2")(CHUNK, np.random.default_rng(0), VOCAB)
    with pytest.raises(ConfigError, match=r"mode token '\[NLU\]' encodes to 5 ids, more than max_mode_tokens=2"):
        get_objective("ul2", max_mode_tokens=2)(CHUNK, np.random.default_rng(11), TextVocab())
    with pytest.raises(ConfigError, match="mode_token_ids must give ids for"):
        get_objective("ul2", mode_token_ids={"[NLU]": [3]})


def test_ul2_rates_pick_the_denoiser():
    only_s = [0, 0, 0, 0, 0, 0, 1]
    for s in range(5):
        ex = get_objective("ul2", mode_token_ids=MODES, rates=only_s)(CHUNK, np.random.default_rng(s), VOCAB)
        assert ex["inputs"][0] == 5 and 199 not in ex["inputs"]  # prefix LM: no sentinels
        assert ex["inputs"][1:-1].tolist() + ex["targets"][:-1].tolist() == CHUNK.tolist()


class TiedRng:
    """Stands in for a Generator whose uniforms all tie (about once in 10^11 real examples)."""

    def random(self, n):
        return np.full(n, 0.5)


def test_ties_in_the_keys_give_the_same_example_on_both_paths():
    obj = get_objective("span_corruption", noise_density=0.3, mean_noise_span_length=2)
    chunks = np.stack([CHUNK, CHUNK + 50])
    batch = obj.apply_batch(chunks, [TiedRng(), TiedRng()], VOCAB)
    for i in range(2):
        ref = obj(chunks[i], TiedRng(), VOCAB)
        assert batch[i]["inputs"].tolist() == ref["inputs"].tolist()
    # ties broken by position: the first gaps cut, so noise runs 1, 1, 4 and non-noise runs 1, 1, 12
    assert ref["inputs"].tolist() == [60, 199, 62, 198, *range(64, 76), 197, 1]
    assert ref["targets"].tolist() == [199, 61, 198, 63, 197, 76, 77, 78, 79, 1]


def test_ul2_denoiser_table_is_checked():
    with pytest.raises(ConfigError, match="at least one denoiser"):
        get_objective("ul2", denoisers=[], mode_token_ids=MODES)
    with pytest.raises(ConfigError, match=r"a ul2 denoiser is \(mode token"):
        get_objective("ul2", denoisers=[["[NLU]", "three", 0.15]], mode_token_ids=MODES)
    custom = get_objective("ul2", denoisers=[["[NLU]", 3, 0.15]], mode_token_ids={"[NLU]": [7, 8]})
    assert custom(CHUNK, np.random.default_rng(0), VOCAB)["inputs"][:2].tolist() == [7, 8]
    assert raw_length(custom, 512) == random_spans_helper(510, 0.15, 3)
