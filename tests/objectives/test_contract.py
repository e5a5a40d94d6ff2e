"""The contract between objectives and architectures: every registered objective (plug-ins included, with its
default parameters) through every registered architecture gives valid model features at its length budget,
and one training step on them is finite. Nothing here names an objective or an architecture."""

import numpy as np
import pytest
import torch

from t5lit.config import ARCHITECTURES, preset_config
from t5lit.data.examples import PretrainFeatures
from t5lit.lit_module import weighted_cross_entropy
from t5lit.model.architectures import build_model
from t5lit.objectives import OBJECTIVES

INPUTS_LENGTH = 32
ROWS = 4


class TinyVocab:
    """Ids only, T5's conventions (100 sentinels at the top), and an ``encode`` for objectives that put text
    into their examples (UL2's mode tokens): one id per 4 characters."""

    pad_id, eos_id, unk_id, num_extra_ids = 0, 1, 2, 100

    def __init__(self, vocab_size: int):
        self.vocab_size = vocab_size

    def sentinel_id(self, i: int) -> int:
        return self.vocab_size - 1 - i

    def encode(self, text: str) -> list[int]:
        return [3 + i for i in range(max(1, (len(text) + 3) // 4))]


@pytest.mark.parametrize("arch", ARCHITECTURES.names())
@pytest.mark.parametrize("objective", OBJECTIVES.names())
def test_every_objective_trains_every_architecture(objective, arch):
    cfg = preset_config("tiny", arch=arch, dropout_rate=0.0)
    vocab = TinyVocab(1100)
    recipe = PretrainFeatures.build(objective, {}, arch, INPUTS_LENGTH)
    b = recipe.budget
    assert b.raw >= 1 and b.targets >= 1 and b.inputs <= max(INPUTS_LENGTH, b.inputs)
    rng = np.random.default_rng(0)
    chunks = rng.integers(3, vocab.vocab_size - vocab.num_extra_ids, size=(ROWS, b.raw)).astype(np.int32)
    examples = recipe.examples(chunks, [np.random.default_rng((0, 0, i)) for i in range(ROWS)], vocab)
    for ex in examples:  # the budget the objective declared holds, and both sides end with EOS
        assert len(ex["inputs"]) <= b.inputs and 1 <= len(ex["targets"]) <= b.targets
        assert ex["targets"][-1] == vocab.eos_id and (len(ex["inputs"]) == 0 or ex["inputs"][-1] == vocab.eos_id)
    feats = recipe.features(examples)
    assert set(feats) == set(recipe.converter.feature_names)
    lengths = recipe.converter.feature_lengths
    for name, arr in feats.items():
        assert arr.shape == (ROWS, lengths[name]), name
        assert arr.dtype == (np.float32 if name == "decoder_loss_weights" else np.int32), name
        if name.endswith("_tokens"):
            assert arr.min() >= 0 and arr.max() < cfg.vocab_size, name
    assert (feats["decoder_loss_weights"].sum(1) > 0).all()  # every row has something to learn
    assert ARCHITECTURES.get(arch).has_encoder == ("encoder_input_tokens" in feats)

    torch.manual_seed(0)
    model = build_model(cfg)
    batch = {k: torch.from_numpy(v).long() if v.dtype == np.int32 else torch.from_numpy(v) for k, v in feats.items()}
    logits = model(batch)
    loss, _ = weighted_cross_entropy(logits, batch["decoder_target_tokens"], batch["decoder_loss_weights"])
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    opt.step()
    assert all(torch.isfinite(p).all() for p in model.parameters())
