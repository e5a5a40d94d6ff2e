"""Packing in pre-training: several examples per row, told apart by segment ids, give exactly the loss of the same
examples one per row, for every objective on every architecture; packing halves the rows of the prefix LM on a
one-stack model, whose examples fill half a row."""

import numpy as np
import pytest
import torch

from t5lit.config import preset_config
from t5lit.data.examples import PretrainFeatures
from t5lit.data.stream import to_tensors
from t5lit.lit_module import weighted_cross_entropy
from t5lit.model.architectures import build_model
from t5lit.objectives import OBJECTIVES, SimpleVocab

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
VOCAB = SimpleVocab(1152)  # the tiny preset's vocabulary size, 100 sentinels at the top


def loss(model, features):
    batch = to_tensors(features)
    logits = model(batch)
    return weighted_cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])[0]


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("objective", sorted(set(OBJECTIVES.names()) - {"ul2"}) + ["ul2"])
def test_packed_equals_unpacked_loss(objective, arch):
    params = {"mode_token_ids": {"[NLU]": [3], "[NLG]": [4], "[S2S]": [5]}} if objective == "ul2" else {}
    pf = PretrainFeatures.build(objective, params, arch, 32)
    raw = pf.raw_length(pack=True)
    n = max(4, raw // 3)  # short chunks, so that several examples share a row whatever the objective
    chunks = np.random.default_rng(0).integers(3, 1000, size=(12, n)).astype(np.int32)
    examples = pf.examples(chunks, [np.random.default_rng((0, i)) for i in range(12)], VOCAB)
    unpacked, packed = pf.converter(examples), pf.converter_packed(examples)
    assert len(packed["decoder_target_tokens"]) < len(unpacked["decoder_target_tokens"])  # rows were shared
    assert packed["decoder_segment_ids"].max() >= 2
    torch.manual_seed(0)
    model = build_model(preset_config("tiny", arch=arch, dropout_rate=0.0)).eval()
    with torch.no_grad():
        a, b = loss(model, unpacked), loss(model, packed)
    assert torch.allclose(a, b, atol=1e-5, rtol=1e-5), (objective, arch, float(a), float(b))


@pytest.mark.parametrize("arch", ["decoder_only", "prefix_lm"])
def test_prefix_lm_packs_two_examples_per_one_stack_row_at_paper_lengths(arch):
    """At 512 inputs a one-stack row holds 1,024 tokens and the prefix LM makes examples of its chunk + 2 tokens:
    a chunk 2 tokens shorter puts exactly two examples in a row, instead of one and half a row of padding."""
    objective = "prefix_lm"
    pf = PretrainFeatures.build(objective, {}, arch, 512)
    raw = pf.raw_length(pack=True)
    assert pf.raw_length(pack=False) - raw <= 2 and raw == 510
    chunks = np.random.default_rng(1).integers(3, 1000, size=(8, raw)).astype(np.int32)
    examples = pf.examples(chunks, [np.random.default_rng((1, i)) for i in range(8)], VOCAB)
    packed = pf.converter_packed(examples)
    assert packed["decoder_target_tokens"].shape == (4, 1024) and (packed["decoder_target_tokens"] != 0).all()
