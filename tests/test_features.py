"""Feature converters: golden arrays per architecture, packed and unpacked, truncation, errors, packing plans."""

import numpy as np
import pytest

from t5lit.features import (
    DecoderOnlyFeatureConverter,
    EncDecFeatureConverter,
    PrefixLMFeatureConverter,
    converter_for,
    pad_rows,
    plan_packing,
    row_lengths,
)
from t5lit.registry import ConfigError


def ex(inputs, targets):
    return {"inputs": np.asarray(inputs, np.int32), "targets": np.asarray(targets, np.int32)}


def check(out, expected):
    assert list(out) == list(expected)
    for name, want in expected.items():
        dtype = np.float32 if name == "decoder_loss_weights" else np.int32
        assert out[name].dtype == dtype, name
        np.testing.assert_array_equal(out[name], np.asarray(want, dtype), err_msg=name)


def test_enc_dec_unpacked():
    out = EncDecFeatureConverter(4, 3)([ex([7, 8, 1], [3, 9, 1]), ex([5, 6, 4, 1], [2, 1])])
    check(out, {
        "encoder_input_tokens": [[7, 8, 1, 0], [5, 6, 4, 1]],
        "decoder_input_tokens": [[0, 3, 9], [0, 2, 1]],
        "decoder_target_tokens": [[3, 9, 1], [2, 1, 0]],
        "decoder_loss_weights": [[1, 1, 1], [1, 1, 0]],
    })


def test_enc_dec_packed_first_fit_goes_back_to_an_open_row():
    # Example 1's inputs do not fit row 0 (3 + 4 > 6): it opens row 1; example 2 still fits row 0.
    out = EncDecFeatureConverter(6, 4, pack=True)([ex([7, 8, 1], [3, 9, 1]), ex([5, 6, 4, 1], [2, 1]),
                                                   ex([4, 1], [1])])
    check(out, {
        "encoder_input_tokens": [[7, 8, 1, 4, 1, 0], [5, 6, 4, 1, 0, 0]],
        "decoder_input_tokens": [[0, 3, 9, 0], [0, 2, 0, 0]],  # each segment starts with 0; no EOS in padding
        "decoder_target_tokens": [[3, 9, 1, 1], [2, 1, 0, 0]],
        "decoder_loss_weights": [[1, 1, 1, 1], [1, 1, 0, 0]],
        "encoder_segment_ids": [[1, 1, 1, 2, 2, 0], [1, 1, 1, 1, 0, 0]],
        "encoder_positions": [[0, 1, 2, 0, 1, 0], [0, 1, 2, 3, 0, 0]],
        "decoder_segment_ids": [[1, 1, 1, 2], [1, 1, 0, 0]],
        "decoder_positions": [[0, 1, 2, 0], [0, 1, 0, 0]],
    })


@pytest.mark.parametrize("loss_on_inputs, weights", [
    (False, [[0, 0, 0, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]]),
    (True, [[1, 1, 1, 1, 1, 0, 0], [1, 1, 1, 0, 0, 0, 0]]),
])
def test_decoder_only_unpacked_loss_weights(loss_on_inputs, weights):
    conv = DecoderOnlyFeatureConverter(7, loss_on_inputs=loss_on_inputs)
    out = conv([ex([9, 4, 1], [3, 1]), ex([], [5, 6, 1])])  # the second is an LM example: no inputs
    check(out, {
        "decoder_input_tokens": [[0, 9, 4, 1, 3, 1, 0], [0, 5, 6, 1, 0, 0, 0]],
        "decoder_target_tokens": [[9, 4, 1, 3, 1, 0, 0], [5, 6, 1, 0, 0, 0, 0]],
        "decoder_loss_weights": weights,
    })


def test_decoder_only_packed():
    out = converter_for("decoder_only", 4, 5, pack=True)([ex([9, 4, 1], [3, 1]), ex([], [5, 6, 1])])
    check(out, {
        "decoder_input_tokens": [[0, 9, 4, 1, 3, 0, 5, 6, 0]],
        "decoder_target_tokens": [[9, 4, 1, 3, 1, 5, 6, 1, 0]],
        "decoder_loss_weights": [[0, 0, 0, 1, 1, 1, 1, 1, 0]],
        "decoder_segment_ids": [[1, 1, 1, 1, 1, 2, 2, 2, 0]],
        "decoder_positions": [[0, 1, 2, 3, 4, 0, 1, 2, 0]],
    })


def test_prefix_lm_unpacked_seqio_example():
    out = PrefixLMFeatureConverter(9)([ex([9, 4, 6, 1], [3, 9, 1])])
    check(out, {
        "decoder_input_tokens": [[0, 9, 4, 6, 1, 3, 9, 1, 0]],
        "decoder_target_tokens": [[9, 4, 6, 1, 3, 9, 1, 0, 0]],
        "decoder_loss_weights": [[0, 0, 0, 0, 1, 1, 1, 0, 0]],
        "decoder_causal_attention": [[1, 1, 1, 1, 1, 0, 0, 0, 0]],
    })


def test_prefix_lm_packed_per_segment():
    out = converter_for("prefix_lm", 7, 8, pack=True)([ex([7, 8, 5, 1], [3, 9, 1]), ex([8, 4, 1], [4, 1])])
    check(out, {
        "decoder_input_tokens": [[0, 7, 8, 5, 1, 3, 9, 0, 8, 4, 1, 4, 0, 0, 0]],
        "decoder_target_tokens": [[7, 8, 5, 1, 3, 9, 1, 8, 4, 1, 4, 1, 0, 0, 0]],
        "decoder_loss_weights": [[0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 0, 0, 0]],
        "decoder_segment_ids": [[1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 0, 0, 0]],
        "decoder_positions": [[0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 0, 0, 0]],
        "decoder_causal_attention": [[1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0]],
    })


@pytest.mark.parametrize("arch", ["encoder_decoder", "decoder_only", "prefix_lm"])
def test_packed_segments_equal_unpacked_rows(arch):
    rng = np.random.default_rng(0)
    exs = [ex(rng.integers(3, 50, rng.integers(0 if arch != "encoder_decoder" else 1, 6)),
              [*rng.integers(3, 50, rng.integers(0, 4)), 1]) for _ in range(12)]
    unpacked = converter_for(arch, 6, 4)(exs)
    packed = converter_for(arch, 6, 4, pack=True)(exs)
    assert len(packed["decoder_target_tokens"]) < len(exs)
    rows = plan_packing([(len(e["inputs"]), len(e["targets"])) for e in exs], converter_for(arch, 6, 4))
    for r, row in enumerate(rows):
        for seg, i in enumerate(row, start=1):
            for name, value in unpacked.items():
                side = name.split("_")[0]
                cols = packed[f"{side}_segment_ids"][r] == seg
                n = int(cols.sum())
                np.testing.assert_array_equal(packed[name][r, cols], value[i, :n], err_msg=f"{name} of {i}")
                np.testing.assert_array_equal(packed[f"{side}_positions"][r, cols], np.arange(n))
                assert not value[i, n:].any() or name == "decoder_input_tokens"  # the shifted EOS may follow


def test_truncate_keeps_eos_last():
    conv = EncDecFeatureConverter(4, 3, truncate=True)
    out = conv([ex([5, 6, 7, 8, 9, 1], [3, 4, 5, 1]), ex([5, 6, 7, 8, 9], [2, 1])])
    np.testing.assert_array_equal(out["encoder_input_tokens"], [[5, 6, 7, 1], [5, 6, 7, 8]])  # no EOS: plain cut
    np.testing.assert_array_equal(out["decoder_target_tokens"], [[3, 4, 1], [2, 1, 0]])


def test_truncate_decoder_only_shares_the_row():
    # inputs_length 3 of a row of 5: long inputs keep 3 tokens; short inputs leave their room to the targets.
    conv = converter_for("prefix_lm", 3, 2, truncate=True)
    out = conv([ex([5, 6, 7, 8, 1], [3, 1]), ex([5, 1], [3, 4, 9, 1])])
    np.testing.assert_array_equal(out["decoder_target_tokens"], [[5, 6, 1, 3, 1], [5, 1, 3, 4, 1]])
    np.testing.assert_array_equal(out["decoder_causal_attention"], [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])
    # Without an inputs share the targets come first.
    out = DecoderOnlyFeatureConverter(5, truncate=True)([ex([5, 1], [3, 4, 9, 8, 7, 1])])
    np.testing.assert_array_equal(out["decoder_target_tokens"], [[3, 4, 9, 8, 1]])
    np.testing.assert_array_equal(out["decoder_loss_weights"], [[1, 1, 1, 1, 1]])


@pytest.mark.parametrize("conv, examples, message", [
    (EncDecFeatureConverter(4, 3), [ex([1], [1]), ex([5, 6, 7, 8, 9, 1], [1])],
     "EncDecFeatureConverter: example 1 has inputs of 6 tokens but inputs_length is 4; raise the length or pass "
     r"truncate=True \(keeps EOS last\)$"),
    (EncDecFeatureConverter(4, 3, pack=True), [ex([1], [5, 6, 7, 1])],
     "example 0 has targets of 4 tokens but targets_length is 3"),
    (DecoderOnlyFeatureConverter(5), [ex([5, 6, 1], [3, 4, 1])],
     r"example 0 has inputs \+ targets \(3 \+ 3\) of 6 tokens but the row length is 5"),
    (EncDecFeatureConverter(4, 3), [ex([1], [1]), {"inputs": np.array([1])}],
     r"example 1 has no 'targets' \(it has: inputs\); every example needs 'inputs' and 'targets'"),
    (PrefixLMFeatureConverter(5), [{"targets": np.array([1])}], "example 0 has no 'inputs'"),
])
def test_one_line_errors(conv, examples, message):
    with pytest.raises(ConfigError, match=message) as err:
        conv(examples)
    assert "\n" not in str(err.value)


def test_converter_for_and_row_lengths():
    conv = converter_for("encoder_decoder", 8, 4, pack=True)
    lengths = row_lengths(conv)
    assert lengths["encoder_input_tokens"] == lengths["encoder_positions"] == 8
    assert lengths["decoder_input_tokens"] == lengths["decoder_segment_ids"] == 4
    out = conv([ex([5, 1], [3, 1])])
    assert {k: v.shape[1] for k, v in out.items()} == lengths
    assert row_lengths(converter_for("decoder_only", 8, 4)) == dict.fromkeys(
        ["decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights"], 12)
    assert "decoder_causal_attention" in row_lengths(converter_for("prefix_lm", 8, 4))
    with pytest.raises(ConfigError, match="unknown architecture 'encoder_decoderr'; did you mean 'encoder_decoder'"
                                          r"\? valid: decoder_only, encoder_decoder, prefix_lm$"):
        converter_for("encoder_decoderr", 8, 4)
    with pytest.raises(ConfigError, match="loss_on_inputs applies to decoder_only and prefix_lm"):
        converter_for("encoder_decoder", 8, 4, loss_on_inputs=True)
    with pytest.raises(ConfigError, match="targets_length must be an integer >= 1, got 0"):
        EncDecFeatureConverter(8, 0)



def test_no_inputs_still_give_the_encoder_one_padding_position():
    """The lm objective's examples have inputs []: the encoder-decoder row gets one encoder position, padding."""
    check(converter_for("encoder_decoder", 0, 4)([ex([], [3, 9, 1])]), {
        "encoder_input_tokens": [[0]], "decoder_input_tokens": [[0, 3, 9, 1]],
        "decoder_target_tokens": [[3, 9, 1, 0]], "decoder_loss_weights": [[1, 1, 1, 0]]})
    packed = converter_for("encoder_decoder", 0, 5, pack=True)([ex([], [3, 1]), ex([], [4, 1])])
    check(packed, {"encoder_input_tokens": [[0]], "decoder_input_tokens": [[0, 3, 0, 4, 0]],
                   "decoder_target_tokens": [[3, 1, 4, 1, 0]], "decoder_loss_weights": [[1, 1, 1, 1, 0]],
                   "encoder_segment_ids": [[0]], "encoder_positions": [[0]],
                   "decoder_segment_ids": [[1, 1, 2, 2, 0]], "decoder_positions": [[0, 1, 0, 1, 0]]})
    assert row_lengths(converter_for("decoder_only", 0, 4))["decoder_input_tokens"] == 4

def test_empty_batch_keeps_its_width():
    out = converter_for("prefix_lm", 3, 2, pack=True)([])
    assert all(v.shape == (0, 5) for v in out.values())


def test_plan_packing_golden():
    assert plan_packing([3, 4, 2, 1, 2], 5) == [[0, 2], [1, 3], [4]]
    # Both dimensions must fit in the same row: (1, 1) fits neither row 0 (room 3/0) nor row 1 (room 0/3).
    assert plan_packing([(1, 4), (4, 1), (1, 1)], (4, 4)) == [[0], [1], [2]]
    assert plan_packing([(3, 1), (1, 3), (2, 2), (1, 1)], (4, 4)) == [[0, 1], [2, 3]]
    conv = converter_for("encoder_decoder", 4, 4)
    assert plan_packing([(3, 1), (1, 3), (2, 2), (1, 1)], conv) == [[0, 1], [2, 3]]
    assert plan_packing([(3, 1), (1, 3)], converter_for("decoder_only", 2, 2)) == [[0], [1]]
    assert plan_packing([], conv) == []
    with pytest.raises(ConfigError, match="example 1 has inputs of 5 tokens but inputs_length is 4"):
        plan_packing([(3, 1), (5, 1)], conv)
    assert plan_packing([(3, 1), (5, 1)], converter_for("encoder_decoder", 4, 4, truncate=True)) == [[0], [1]]
    with pytest.raises(ConfigError, match=r"example 0 has inputs \+ targets \(0 \+ 6\) of 6 tokens but the row "
                                          "length is 5"):
        plan_packing([6], 5)


def test_plan_packing_is_deterministic_and_repacks_to_the_same_rows():
    rng = np.random.default_rng(1)
    exs = [ex(rng.integers(3, 50, rng.integers(1, 9)), [*rng.integers(3, 50, rng.integers(0, 5)), 1])
           for _ in range(300)]
    conv = converter_for("encoder_decoder", 16, 8, pack=True)
    lengths = [(len(e["inputs"]), len(e["targets"])) for e in exs]
    plan = plan_packing(lengths, conv)
    assert plan == plan_packing(np.array(lengths), conv)
    assert sorted(i for row in plan for i in row) == list(range(300))
    for row in plan:
        assert sum(lengths[i][0] for i in row) <= 16 and sum(lengths[i][1] for i in row) <= 8
    # What a data module does: convert the examples of a run of planned rows, flattened row by row.
    for start in (0, 7, 40):
        rows = plan[start:start + 16]
        flat = [exs[i] for row in rows for i in row]
        relabelled, k = [], 0
        for row in rows:
            relabelled.append(list(range(k, k + len(row))))
            k += len(row)
        out = conv(flat)
        assert len(out["encoder_input_tokens"]) == len(rows)
        for name, value in conv(flat, rows=relabelled).items():
            np.testing.assert_array_equal(out[name], value)


def test_explicit_rows():
    conv = EncDecFeatureConverter(4, 3, pack=True)
    exs = [ex([7, 1], [3, 1]), ex([5, 6, 1], [2, 1]), ex([4, 1], [1])]
    out = conv(exs, rows=[[1], [0, 2]])
    np.testing.assert_array_equal(out["encoder_input_tokens"], [[5, 6, 1, 0], [7, 1, 4, 1]])
    np.testing.assert_array_equal(out["decoder_segment_ids"], [[1, 1, 0], [1, 1, 2]])
    with pytest.raises(ConfigError, match=r"row 0 \(\[0, 1\]\) needs 5/4 tokens but the row holds 4/3"):
        conv(exs, rows=[[0, 1], [2]])
    with pytest.raises(ConfigError, match="rows must use each of the 3 examples exactly once"):
        conv(exs, rows=[[0], [2]])
    with pytest.raises(ConfigError, match="was made with pack=False"):
        EncDecFeatureConverter(4, 3)(exs, rows=[[0], [1], [2]])


def test_pad_rows():
    batch = converter_for("prefix_lm", 3, 2)([ex([5, 1], [3, 1]), ex([1], [4, 1])])
    padded = pad_rows(batch, 4)
    for name, value in padded.items():
        assert value.shape == (4, 5) and value.dtype == batch[name].dtype
        np.testing.assert_array_equal(value[:2], batch[name])
        assert not value[2:].any()
    assert all(np.array_equal(pad_rows(batch, 2)[k], v) for k, v in batch.items())
    with pytest.raises(ConfigError, match="batch has 2 rows, more than the 1 asked for"):
        pad_rows(batch, 1)
