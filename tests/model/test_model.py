"""The model's behaviour: shapes, causality, prefix visibility, packing, incremental decoding, backends,
sharing, parameter counts and input errors. Tiny fp32 models, CPU, deterministic."""

import pytest
import torch
from transformers.models.t5.modeling_t5 import T5Attention

from t5lit.config import preset_config
from t5lit.model.architectures import DecoderOnly, EncoderDecoder, build_model, count_parameters
from t5lit.model.layers import FlexMaskSpec, flex_mask_mod, relative_position_bucket
from t5lit.model.stack import SeqInfo, self_attention_allowed
from t5lit.registry import ConfigError

ARCHS = ("encoder_decoder", "decoder_only", "prefix_lm")
V = 1152  # the tiny preset's vocabulary


def make(arch: str, seed: int = 0, **changes):
    torch.manual_seed(seed)
    model = build_model(preset_config("tiny", arch=arch, **changes)).eval()
    with torch.no_grad():  # non-trivial norms, so a norm applied in the wrong place cannot go unseen
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
    return model


def tokens(*shape, seed: int = 1) -> torch.Tensor:
    return torch.randint(3, V - 100, shape, generator=torch.Generator().manual_seed(seed))


def features(arch: str, B: int = 2, T_in: int = 9, T_dec: int = 8, prefix: int = 4, seed: int = 1) -> dict:
    """Unpacked features; encoder row 1 ends in 3 pads; prefix LM: the first ``prefix`` positions visible."""
    dec = tokens(B, T_dec, seed=seed)
    dec[:, 0] = 0
    if arch == "encoder_decoder":
        enc = tokens(B, T_in, seed=seed + 1)
        enc[1, -3:] = 0
        return {"encoder_input_tokens": enc, "decoder_input_tokens": dec}
    f = {"decoder_input_tokens": dec}
    if arch == "prefix_lm":
        f["decoder_causal_attention"] = (torch.arange(T_dec) < prefix).int().expand(B, -1).clone()
    return f


def run(model, f) -> torch.Tensor:
    with torch.no_grad():
        return model(f)


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("layout", [dict(ffn="relu"), dict(ffn="gated-gelu", tie_word_embeddings=False)])
def test_shapes(arch, layout):
    model = make(arch, **layout)
    f = features(arch)
    logits = run(model, {k: v.int() for k, v in f.items()})  # int32 as the feature converters give
    assert logits.shape == (2, 8, V) and logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    assert hasattr(model, "lm_head") == (not layout.get("tie_word_embeddings", True))


@pytest.mark.parametrize("arch", ARCHS)
def test_future_token_never_changes_past_logits(arch):
    model = make(arch)
    f = features(arch, prefix=4)
    base = run(model, f)
    j = 6  # a target position (after the prefix LM's visible part)
    changed = dict(f, decoder_input_tokens=f["decoder_input_tokens"].clone())
    changed["decoder_input_tokens"][:, j] += 1
    out = run(model, changed)
    torch.testing.assert_close(out[:, :j], base[:, :j], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, j:], base[:, j:])


def test_prefix_is_fully_visible_and_decoder_only_is_not():
    f = features("prefix_lm", prefix=5)
    changed = {k: v.clone() for k, v in f.items()}
    changed["decoder_input_tokens"][:, 3] += 1  # a later input token ...
    prefix_lm = make("prefix_lm")
    assert not torch.allclose(run(prefix_lm, changed)[:, 1], run(prefix_lm, f)[:, 1])  # ... changes position 1
    lm = make("decoder_only")
    f.pop("decoder_causal_attention")
    changed.pop("decoder_causal_attention")
    torch.testing.assert_close(run(lm, changed)[:, :3], run(lm, f)[:, :3], rtol=0, atol=1e-6)


def test_prefix_mask_rule():
    # allowed(i, j) = (j <= i or (cat[i] and cat[j])) and same segment; two packed examples + padding
    seg = torch.tensor([[1, 1, 1, 2, 2, 2, 0]])
    cat = torch.tensor([[1, 1, 0, 1, 0, 0, 0]]).bool()
    seq = SeqInfo(seg, torch.tensor([[0, 1, 2, 0, 1, 2, 0]]), torch.ones_like(cat), cat)
    allowed = self_attention_allowed(seq, seq, 0, causal=True)[0, 0].int()
    expected = torch.tensor([[1, 1, 0, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0, 0, 0],
                             [1, 1, 1, 0, 0, 0, 0],
                             [0, 0, 0, 1, 0, 0, 0],
                             [0, 0, 0, 1, 1, 0, 0],
                             [0, 0, 0, 1, 1, 1, 0],
                             [0, 0, 0, 0, 0, 0, 1]])
    assert torch.equal(allowed, expected)
    # the flex BlockMask's mask_mod follows the same rule (checked on CPU with create_mask)
    from torch.nn.attention.flex_attention import create_mask

    spec = FlexMaskSpec(seg, seg, torch.ones_like(cat), True, cat, cat)
    assert torch.equal(create_mask(flex_mask_mod(spec), 1, None, 7, 7, device="cpu")[0, 0].int(), expected)


def _pack(parts: list[torch.Tensor], length: int):
    """1-D token arrays -> (tokens, segment ids, positions), each (1, length), zero-padded."""
    toks, segs, poss = torch.zeros(length, dtype=torch.long), torch.zeros(length, dtype=torch.long), \
        torch.zeros(length, dtype=torch.long)
    at = 0
    for s, p in enumerate(parts, start=1):
        toks[at:at + len(p)], segs[at:at + len(p)], poss[at:at + len(p)] = p, s, torch.arange(len(p))
        at += len(p)
    return toks[None], segs[None], poss[None]


@pytest.mark.parametrize("arch", ARCHS)
def test_packed_equals_each_alone(arch):
    model = make(arch)
    dec_a, dec_b = tokens(5, seed=3), tokens(4, seed=4)
    dec_a[0] = dec_b[0] = 0
    dt, ds, dp = _pack([dec_a, dec_b], 11)
    packed = {"decoder_input_tokens": dt, "decoder_segment_ids": ds, "decoder_positions": dp}
    alone_a, alone_b = {"decoder_input_tokens": dec_a[None]}, {"decoder_input_tokens": dec_b[None]}
    if arch == "encoder_decoder":
        enc_a, enc_b = tokens(6, seed=5), tokens(3, seed=6)
        et, es, ep = _pack([enc_a, enc_b], 10)
        packed.update(encoder_input_tokens=et, encoder_segment_ids=es, encoder_positions=ep)
        alone_a["encoder_input_tokens"], alone_b["encoder_input_tokens"] = enc_a[None], enc_b[None]
    if arch == "prefix_lm":
        ca, cb = (torch.arange(5) < 3).long(), (torch.arange(4) < 2).long()
        packed["decoder_causal_attention"] = _pack([ca, cb], 11)[0]
        alone_a["decoder_causal_attention"], alone_b["decoder_causal_attention"] = ca[None], cb[None]
    out = run(model, packed)
    assert torch.isfinite(out).all()  # padding rows included
    torch.testing.assert_close(out[:, :5], run(model, alone_a), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out[:, 5:9], run(model, alone_b), rtol=1e-5, atol=1e-5)


def _lm_sequence(arch: str, inputs: torch.Tensor, targets: torch.Tensor) -> dict:
    """Full-pass features of one row: [0, inputs..., targets...] (prefix LM: n + 1 visible)."""
    dec = torch.cat([torch.zeros(1, dtype=torch.long), inputs, targets])[None]
    if arch == "encoder_decoder":
        return {"encoder_input_tokens": inputs[None],
                "decoder_input_tokens": torch.cat([torch.zeros(1, dtype=torch.long), targets])[None]}
    f = {"decoder_input_tokens": dec}
    if arch == "prefix_lm":
        f["decoder_causal_attention"] = (torch.arange(dec.shape[1]) <= len(inputs)).long()[None]
    return f


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("arch", ARCHS)
def test_incremental_decoding_equals_full_pass(arch, attention):
    model = make(arch, attention=attention)
    inputs = tokens(2, 6, seed=7)
    inputs[1, 3:] = 0  # rows of different length (right-padded): decoder-only prefixes get left-padded
    targets = tokens(2, 5, seed=8)
    with torch.no_grad():
        logits, cache = model.begin_decoding(inputs)
        steps = [logits]
        for t in range(targets.shape[1] - 1):
            steps.append(model.decode_step(targets[:, t], cache))
    steps = torch.stack(steps, 1)  # (B, T, V)
    for b in range(2):
        row = inputs[b][inputs[b] != 0]
        full = run(model, _lm_sequence(arch, row, targets[b, :-1]))[0, -targets.shape[1]:]
        torch.testing.assert_close(steps[b], full, rtol=1e-5, atol=1e-5)


def _packed_features(arch: str) -> dict:
    """features(arch, T_dec=9) packed as two segments; the last decoder position is padding (segment 0)."""
    f = features(arch, T_dec=9)
    f.update(decoder_segment_ids=torch.tensor([[1, 1, 1, 1, 2, 2, 2, 2, 0]] * 2),
             decoder_positions=torch.tensor([[0, 1, 2, 3, 0, 1, 2, 3, 0]] * 2))
    if arch == "encoder_decoder":
        f.update(encoder_segment_ids=torch.tensor([[1] * 5 + [2] * 4] * 2),
                 encoder_positions=torch.tensor([[0, 1, 2, 3, 4, 0, 1, 2, 3]] * 2))
    return f


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("packed", [False, True])
def test_eager_and_sdpa_agree(arch, packed):
    f = _packed_features(arch) if packed else features(arch, T_dec=9)
    eager, sdpa = make(arch, attention="eager"), make(arch, attention="sdpa")
    torch.testing.assert_close(run(eager, f), run(sdpa, f), rtol=1e-5, atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="FlexAttention needs CUDA")
@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("packed", [False, True])
def test_flex_matches_eager_on_cuda(arch, packed):
    f = {k: v.cuda() for k, v in (_packed_features(arch) if packed else features(arch, T_dec=9)).items()}
    eager, flex = make(arch, attention="eager").cuda(), make(arch, attention="flex").cuda()
    # real positions only: flex gives 0 for a padding query with no visible key, eager a uniform average
    torch.testing.assert_close(run(flex, f)[:, :8], run(eager, f)[:, :8], rtol=1e-4, atol=1e-4)


def test_flex_on_cpu_is_a_config_error():
    with pytest.raises(ConfigError, match="^attention 'flex' needs CUDA .*use 'sdpa'$"):
        run(make("decoder_only", attention="flex"), features("decoder_only"))


def test_relative_buckets_match_transformers():
    rel = torch.arange(-300, 300)[None]
    for bidirectional in (True, False):
        for buckets, dist in ((32, 128), (8, 16)):
            ours = relative_position_bucket(rel, bidirectional, buckets, dist)
            ref = T5Attention._relative_position_bucket(rel, bidirectional, buckets, dist)
            assert torch.equal(ours, ref)


def test_shared_encoder_decoder():
    shared, plain = make("encoder_decoder", share_encoder_decoder=True), make("encoder_decoder")
    assert count_parameters(shared) < count_parameters(plain)
    for enc, dec in zip(shared.encoder.layers, shared.decoder.layers, strict=True):
        assert dec.self_attn is enc.self_attn and dec.ffn is enc.ffn
        assert dec.self_attn_norm is enc.self_attn_norm and dec.ffn_norm is enc.ffn_norm
    assert shared.decoder.rel_bias is not shared.encoder.rel_bias
    assert shared.decoder.layers[0].cross_attn is not plain.decoder.layers[0].cross_attn
    assert "decoder.layers.0.self_attn.q.weight" in shared.state_dict()
    assert torch.isfinite(run(shared, features("encoder_decoder"))).all()


@pytest.mark.parametrize("name, expected", [("t5-small", 60_506_624), ("t5-base", 222_903_552),
                                            ("t5.1.1-base", 247_577_856)])
def test_preset_parameter_counts(name, expected):
    with torch.device("meta"):
        model = build_model(preset_config(name, vocab_size=32128))
    assert count_parameters(model) == expected


def test_initialisation_follows_t5():
    model = make("encoder_decoder")
    torch.manual_seed(0)
    big = build_model(preset_config("tiny", d_model=64, d_ff=128))
    attn = big.encoder.layers[0].self_attn
    assert abs(attn.q.weight.std().item() - (64 * 8) ** -0.5) < 0.1 * (64 * 8) ** -0.5
    assert abs(big.encoder.layers[0].ffn.wo.weight.std().item() - 128 ** -0.5) < 0.1 * 128 ** -0.5
    assert torch.equal(big.encoder.final_norm.weight, torch.ones(64))
    assert abs(big.embed.weight.std().item() - 1.0) < 0.05
    assert not any(n.endswith(".bias") for n, _ in model.named_parameters())


def test_padding_rows_stay_finite_with_gradients():
    model = make("encoder_decoder")
    model.train()
    f = features("encoder_decoder")
    f["encoder_input_tokens"][1] = 0  # an all-padding encoder row: every key masked
    logits = model(f)
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def _raises(match: str, model, f):
    with pytest.raises(ConfigError) as e:
        run(model, f)
    assert "\n" not in str(e.value)
    assert match in str(e.value), str(e.value)


def test_bad_inputs_raise_one_line_errors():
    ed, lm, plm = make("encoder_decoder"), make("decoder_only"), make("prefix_lm")
    f = features("encoder_decoder")
    big = dict(f, decoder_input_tokens=f["decoder_input_tokens"].clone())
    big["decoder_input_tokens"][0, 2] = V + 5
    _raises(f"token id {V + 5}; valid ids are 0..{V - 1} (vocab_size {V})", ed, big)
    neg = dict(f, encoder_input_tokens=f["encoder_input_tokens"].clone())
    neg["encoder_input_tokens"][1, 1] = -3
    _raises("encoder_input_tokens holds token id -3", ed, neg)
    _raises("needs feature 'encoder_input_tokens'", ed, {"decoder_input_tokens": f["decoder_input_tokens"]})
    _raises("feature 'encoder_input_tokens' is not used by arch='decoder_only'", lm, f)
    _raises("needs feature 'decoder_causal_attention'", plm, features("decoder_only"))
    _raises("feature 'decoder_causal_attention' is not used by arch='decoder_only'", lm, features("prefix_lm"))
    short = dict(features("prefix_lm"))
    short["decoder_causal_attention"] = short["decoder_causal_attention"][:, :5]
    _raises("has shape (2, 5) but 'decoder_input_tokens' has (2, 8)", plm, short)
    one_row = dict(f, encoder_input_tokens=f["encoder_input_tokens"][:1])
    _raises("batch size 1 but decoder_input_tokens has 2", ed, one_row)
    _raises("must be a 2-D integer tensor", lm, {"decoder_input_tokens": torch.zeros(2, 4)})
    _raises("needs 'decoder_positions' too", lm, dict(features("decoder_only"),
                                                     decoder_segment_ids=torch.ones(2, 8, dtype=torch.long)))
    with pytest.raises(ConfigError, match="DecoderOnly needs arch='decoder_only', got arch='encoder_decoder'"):
        DecoderOnly(preset_config("tiny"))
    assert isinstance(build_model(preset_config("tiny")), EncoderDecoder)
