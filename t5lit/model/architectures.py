"""The paper's architectures (Section 3.2.1, Table 2) as thin classes over the one ``Stack``.

    EncoderDecoder   encoder (fully visible) + causal decoder with cross-attention; optionally shared
    DecoderOnly      one causal stack over inputs + targets (a language model)
    PrefixLM         one stack, fully visible over the inputs part, causal over the targets

Each maps the model features of DESIGN.md (seqio's names) to stack calls, and exposes the same decoding
interface for ``generate``: ``begin_decoding(inputs) -> (logits (B, V), cache)`` and
``decode_step(tokens (B,), cache) -> logits (B, V)``. What differs between them is class attributes
(``arch``, the features they take, ``prefix_visible``), never a test of the architecture's name.

The bottom of the file registers each class's ``ArchSpec`` (t5lit.config): its feature converter, FLOPs and
Hugging Face export. A new architecture is a subclass of ``BaseModel`` and one ``register_architecture``.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn

from t5lit.config import ARCHITECTURES, ArchSpec, ModelConfig
from t5lit.features import decoder_only_converter, encoder_decoder_converter, prefix_lm_converter
from t5lit.model.layers import Adapter, RMSNorm, TiedOutput, init_weights
from t5lit.model.stack import SeqInfo, Stack, StackCache, stack_flops
from t5lit.registry import ConfigError

# Features of the data contract the model accepts but does not read (the loss uses them).
IGNORED_FEATURES = ("decoder_target_tokens", "decoder_loss_weights")
_PACKING = {"encoder": ("encoder_segment_ids", "encoder_positions"),
            "decoder": ("decoder_segment_ids", "decoder_positions")}


class BaseModel(nn.Module):
    """Embedding, output layer, input checks and initialisation shared by the architectures.

    Class attributes of a subclass: ``arch``, the name its ArchSpec is registered under; ``required`` and
    ``optional``, the model features it takes; ``prefix_visible``, whether the decoder side reads
    decoder_causal_attention (a fully visible prefix).
    """

    arch: str
    required: tuple[str, ...]
    optional: tuple[str, ...]
    prefix_visible: bool = False

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.arch != self.arch:
            raise ConfigError(f"{type(self).__name__} needs arch={self.arch!r}, got arch={cfg.arch!r}; "
                              "use build_model(cfg) to pick the class")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        if cfg.tie_word_embeddings:
            self.tied_head = TiedOutput(self.embed, cfg.d_model)  # reads embed.weight; owns no parameter
        else:
            self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def init_weights(self) -> None:
        """transformers' T5 initialisation: embedding and untied head N(0, factor^2), the rest per layer."""
        f = self.cfg.initializer_factor
        with torch.no_grad():
            self.embed.weight.normal_(0.0, f * 1.0)
            if not self.cfg.tie_word_embeddings:
                self.lm_head.weight.normal_(0.0, f * 1.0)
        for module in self.modules():
            init_weights(module, self.cfg)

    def embed_tokens(self, tokens: Tensor) -> Tensor:  # (B, T) -> (B, T, D)
        return self.dropout(self.embed(tokens.long()))

    def logits(self, h: Tensor) -> Tensor:  # (B, T, D) -> (B, T, V)
        # tied (T5 1.0): rescaled by d_model**-0.5 before the embedding's transpose; untied (T5 1.1): lm_head
        return self.tied_head(h) if self.cfg.tie_word_embeddings else self.lm_head(h)

    # ------------------------------------------------------------------------------------- input checks
    def check_features(self, features: Mapping[str, Tensor]) -> None:
        """One-line ConfigError for a missing/extra feature, a non-integer or mis-shaped array, a bad token id."""
        valid = self.required + self.optional
        for name in features:
            if name not in valid and name not in IGNORED_FEATURES:
                raise ConfigError(f"feature {name!r} is not used by arch={self.arch!r}; it takes: {', '.join(valid)}")
        for name in self.required:
            if name not in features:
                raise ConfigError(f"arch={self.arch!r} needs feature {name!r} (got: {', '.join(features) or 'none'})")
        for name in valid:
            t = features.get(name)
            if t is None:
                continue
            if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dim() != 2:
                raise ConfigError(f"feature {name!r} must be a 2-D integer tensor (batch, length), got "
                                  f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
            side = "encoder_input_tokens" if name.startswith("encoder_") else "decoder_input_tokens"
            if t.shape != features[side].shape:
                raise ConfigError(f"feature {name!r} has shape {tuple(t.shape)} but {side!r} has "
                                  f"{tuple(features[side].shape)}; they must match")
        if "encoder_input_tokens" in features:
            enc, dec = features["encoder_input_tokens"], features["decoder_input_tokens"]
            if enc.shape[0] != dec.shape[0]:
                raise ConfigError(f"encoder_input_tokens has batch size {enc.shape[0]} but decoder_input_tokens "
                                  f"has {dec.shape[0]}; they must match")
        for seg, pos in _PACKING.values():
            if seg in features and pos not in features:
                raise ConfigError(f"feature {seg!r} (packing) needs {pos!r} too")
        for name in ("encoder_input_tokens", "decoder_input_tokens"):
            if name in features:
                self.check_token_ids(name, features[name])

    def check_token_ids(self, name: str, t: Tensor) -> None:
        """One-line ConfigError when ``t`` holds an id outside 0..vocab_size-1 (skipped while compiling)."""
        if not isinstance(t, Tensor) or t.is_floating_point() or t.is_complex() or t.dim() != 2:
            raise ConfigError(f"{name} must be a 2-D integer tensor (batch, length), got "
                              f"{getattr(t, 'dtype', type(t).__name__)} of shape {tuple(getattr(t, 'shape', ()))}")
        if torch.compiler.is_compiling() or t.numel() == 0:  # value checks would break the graph
            return
        if t.device.type != "cpu":  # checked on the device: no host synchronisation in the training step
            torch._assert_async(((t >= 0) & (t < self.cfg.vocab_size)).all(),
                                f"{name} holds a token id outside 0..{self.cfg.vocab_size - 1}")
            return
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= self.cfg.vocab_size:
            raise ConfigError(f"{name} holds token id {lo if lo < 0 else hi}; valid ids are "
                              f"0..{self.cfg.vocab_size - 1} (vocab_size {self.cfg.vocab_size})")

    def seq_info(self, features: Mapping[str, Tensor], side: str, mask_pad_tokens: bool) -> SeqInfo:
        """Attention metadata of one side from its features (packed or not); see ``SeqInfo``."""
        tokens = features[f"{side}_input_tokens"]  # (B, T)
        seg_name, pos_name = _PACKING[side]
        B, T = tokens.shape
        prefix = None
        if self.prefix_visible and side == "decoder":
            prefix = features["decoder_causal_attention"] != 0
        if seg_name in features:
            # packing: segment 0 is padding, which attends only to padding (finite, and never seen by real rows)
            segments = features[seg_name].long()
            key_ok = torch.ones_like(tokens, dtype=torch.bool)
        else:
            segments = torch.ones_like(tokens, dtype=torch.long)
            key_ok = tokens != 0 if mask_pad_tokens else torch.ones_like(tokens, dtype=torch.bool)
        if pos_name in features:
            positions = features[pos_name].long()
        else:
            positions = torch.arange(T, device=tokens.device)[None]  # (1, T), shared by every row
        return SeqInfo(segments, positions, key_ok, prefix, plain=pos_name not in features)

    def decode_step(self, tokens: Tensor, cache: StackCache) -> Tensor:
        """tokens (B,) at the next position of every row -> logits (B, V) for the position after it."""
        past = cache.past
        B = tokens.shape[0]
        last = past.positions.expand(B, -1)[:, -1:]  # (B, 1)
        seq = SeqInfo(torch.ones(B, 1, dtype=torch.long, device=tokens.device), last + 1,
                      torch.ones(B, 1, dtype=torch.bool, device=tokens.device),
                      None if past.prefix is None else torch.zeros(B, 1, dtype=torch.bool, device=tokens.device))
        h = self.decoder(self.embed_tokens(tokens[:, None]), seq, cache=cache)  # (B, 1, D)
        return self.logits(h)[:, -1]


class EncoderDecoder(BaseModel):
    """Encoder + decoder (Table 2 rows 1-2); ``share_encoder_decoder`` makes decoder block i reuse encoder block
    i's self-attention, FFN and their norms (the same module objects), keeping its own cross-attention and
    norm. The two stacks keep their own relative-bias tables, since their bucketing differs."""

    arch = "encoder_decoder"
    required = ("encoder_input_tokens", "decoder_input_tokens")
    optional = ("encoder_segment_ids", "encoder_positions", "decoder_segment_ids", "decoder_positions")

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        self.encoder = Stack(cfg, cfg.num_encoder_layers, causal=False, cross_attention=False, bidirectional_bias=True)
        self.decoder = Stack(cfg, cfg.num_decoder_layers, causal=True, cross_attention=True, bidirectional_bias=False)
        if cfg.share_encoder_decoder:
            for enc, dec in zip(self.encoder.layers, self.decoder.layers, strict=True):
                dec.self_attn_norm, dec.self_attn = enc.self_attn_norm, enc.self_attn
                dec.ffn_norm, dec.ffn, dec.adapter = enc.ffn_norm, enc.ffn, enc.adapter
        self.init_weights()

    def check_features(self, features: Mapping[str, Tensor]) -> None:
        super().check_features(features)
        if ("encoder_segment_ids" in features) != ("decoder_segment_ids" in features):
            raise ConfigError("packed encoder-decoder features need both encoder_segment_ids and decoder_segment_ids")

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """Model features -> logits (B, T_dec, V)."""
        self.check_features(features)
        enc_seq = self.seq_info(features, "encoder", mask_pad_tokens=True)
        memory = self.encoder(self.embed_tokens(features["encoder_input_tokens"]), enc_seq)  # (B, T_enc, D)
        dec_seq = self.seq_info(features, "decoder", mask_pad_tokens=False)
        h = self.decoder(self.embed_tokens(features["decoder_input_tokens"]), dec_seq, memory, enc_seq)
        return self.logits(h)

    def begin_decoding(self, inputs: Tensor) -> tuple[Tensor, StackCache]:
        """inputs (B, L) right-padded with 0 -> (logits (B, V) of the first target token, cache).

        Encodes once; the decoder starts from token 0 at position 0 (targets shifted right).
        """
        self.check_token_ids("inputs", inputs)
        enc_seq = self.seq_info({"encoder_input_tokens": inputs}, "encoder", mask_pad_tokens=True)
        memory = self.encoder(self.embed_tokens(inputs), enc_seq)
        B = inputs.shape[0]
        start = torch.zeros(B, 1, dtype=torch.long, device=inputs.device)
        seq = SeqInfo(torch.ones_like(start), torch.zeros_like(start), torch.ones_like(start, dtype=torch.bool))
        cache = StackCache()
        h = self.decoder(self.embed_tokens(start), seq, memory, enc_seq, cache=cache)
        return self.logits(h)[:, -1], cache


class DecoderOnly(BaseModel):
    """A causal language model over inputs + targets shifted right (Table 2 "LM" rows)."""

    arch = "decoder_only"
    required = ("decoder_input_tokens",)
    optional = ("decoder_segment_ids", "decoder_positions")

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg)
        # A visible prefix takes bidirectional buckets: inside it, keys after the query exist.
        self.decoder = Stack(cfg, cfg.num_decoder_layers, causal=True, cross_attention=False,
                             bidirectional_bias=self.prefix_visible)
        self.init_weights()

    def forward(self, features: Mapping[str, Tensor]) -> Tensor:
        """Model features -> logits (B, T, V)."""
        self.check_features(features)
        seq = self.seq_info(features, "decoder", mask_pad_tokens=False)
        return self.logits(self.decoder(self.embed_tokens(features["decoder_input_tokens"]), seq))

    def begin_decoding(self, inputs: Tensor) -> tuple[Tensor, StackCache]:
        """inputs (B, L) right-padded with 0 -> (logits (B, V) of the first target token, cache).

        Feeds [0, in_1 .. in_n] as the feature converters do (inputs + targets shifted right), LEFT-aligned to
        the longest row so every row's next token sits at the same index: pads get segment 0, which real
        positions never attend to, and positions count from each row's own start, so a row decodes exactly
        as it would alone. E.g. inputs [[5, 6], [7, 0]] -> tokens [[0, 5, 6], [0, 0, 7]], segments
        [[1, 1, 1], [0, 1, 1]], positions [[0, 1, 2], [0, 0, 1]].
        """
        self.check_token_ids("inputs", inputs)
        B, L = inputs.shape
        device = inputs.device
        lengths = (inputs != 0).sum(1)  # (B,)
        P = int(lengths.max()) + 1 if B else 1  # prefix length: start token + longest input
        idx = torch.arange(P, device=device)[None]  # (1, P)
        pad = (P - 1 - lengths)[:, None]  # (B, 1) left pads per row
        src = (idx - pad - 1).clamp(min=0)  # index into inputs of each prefix slot
        tokens = torch.where(idx > pad, inputs.long().gather(1, src.clamp(max=L - 1)), 0)  # (B, P)
        real = idx >= pad  # (B, P): the start token and the inputs
        seq = SeqInfo(real.long(), (idx - pad).clamp(min=0), torch.ones_like(real),
                      real if self.prefix_visible else None)
        cache = StackCache()
        h = self.decoder(self.embed_tokens(tokens), seq, cache=cache)
        return self.logits(h)[:, -1], cache


class PrefixLM(DecoderOnly):
    """Decoder-only with a fully visible prefix: allowed(i, j) = j <= i or (prefix[i] and prefix[j]), within a
    segment, where prefix = decoder_causal_attention (Section 3.2.1, Table 2 "Prefix LM" rows)."""

    arch = "prefix_lm"
    required = ("decoder_input_tokens", "decoder_causal_attention")
    prefix_visible = True


def build_model(cfg: ModelConfig) -> nn.Module:
    """The architecture named by ``cfg.arch``, freshly initialised (T5's initialisation)."""
    return cfg.spec.model(cfg)


def count_parameters(model: nn.Module) -> int:
    """Number of unique parameters (tied embeddings and shared encoder/decoder blocks counted once)."""
    return sum(p.numel() for p in model.parameters())  # parameters() already skips repeated tensors


def parameter_counts(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) unique parameters; trainable: ``requires_grad``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad), count_parameters(model)


# ---------------------------------------------------------------------------------------------------------
# Fine-tuning only some parameters (Section 3.5.1, Table 10): what adapters train, and gradual unfreezing's
# groups. Freezing itself is the training loop's business (t5lit.lit_module, t5lit.callbacks).
# ---------------------------------------------------------------------------------------------------------

def adapter_weight_names(model: nn.Module) -> list[str]:
    """The state-dict names of the model's adapter weights (none without ``adapter_dim``); a shared
    encoder-decoder's adapters under both of their names, as its state dict lists them."""
    return [f"{name}.{key}" for name, module in model.named_modules(remove_duplicate=False)
            if isinstance(module, Adapter) for key in module.state_dict()]


def freeze_all_but_adapters(model: nn.Module) -> None:
    """"When fine-tuning, only the adapter layer and layer normalization parameters are updated" (Section
    3.5.1): every other parameter (embedding = output layer, attention, FFN, relative position bias) gets
    ``requires_grad=False``. For a whole stage, before any optimizer or DDP wrapper sees the model."""
    if not any(isinstance(m, Adapter) for m in model.modules()):
        raise ConfigError("the model has no adapters (adapter_dim 0): build it with adapter_dim > 0")
    trainable = {id(p) for m in model.modules() if isinstance(m, (Adapter, RMSNorm)) for p in m.parameters()}
    for p in model.parameters():
        p.requires_grad_(id(p) in trainable)


def blocks_from_top(model: nn.Module) -> list[list[nn.Parameter]]:
    """Gradual unfreezing's groups (Section 3.5.1): entry k holds the parameters of block k counted from the
    top of every stack, the encoder's and the decoder's together ("in parallel, starting from the top in both
    cases"); each stack's relative position bias goes with its bottom block, where T5 keeps it (block 0's
    self-attention). Parameters outside the blocks are in no group and train throughout: the embedding, which
    is the output layer too ("we update them throughout fine-tuning"), an untied output layer, the final norms.
    E.g. 12+12 blocks: 12 groups, group 0 = encoder.layers.11 + decoder.layers.11, group 11 = the two
    layers.0 and the two rel_bias tables. A stack shallower than another has empty entries below its bottom."""
    stacks = [m for m in model.modules() if isinstance(m, Stack)]
    depth = max((len(s.layers) for s in stacks), default=0)
    groups: list[list[nn.Parameter]] = [[] for _ in range(depth)]
    seen: set[int] = set()
    for stack in stacks:
        n = len(stack.layers)
        for i, layer in enumerate(stack.layers):
            params = list(layer.parameters()) + (list(stack.rel_bias.parameters()) if i == 0 else [])
            for p in params:
                if id(p) not in seen:  # a shared encoder/decoder's blocks hold the same parameters
                    seen.add(id(p))
                    groups[n - 1 - i].append(p)
    return groups


# ---------------------------------------------------------------------------------------------------------
# The specs. FLOPs: matmuls of forward + backward (backward = 2 x forward), see ``stack_flops``.
# ---------------------------------------------------------------------------------------------------------

def output_flops(cfg: ModelConfig, length: int) -> float:
    """Forward FLOPs of the output layer (d_model -> vocab) over ``length`` positions."""
    return float(2 * cfg.d_model * cfg.vocab_size * length)


def encoder_decoder_flops(cfg: ModelConfig, encoder_length: int, decoder_length: int) -> float:
    """Encoder over encoder_length, decoder over decoder_length with cross-attention to the encoder."""
    forward = (stack_flops(cfg, encoder_length, encoder_length, cfg.num_encoder_layers)
               + stack_flops(cfg, decoder_length, decoder_length, cfg.num_decoder_layers, cross_len=encoder_length)
               + output_flops(cfg, decoder_length))
    return 3.0 * forward


def one_stack_flops(cfg: ModelConfig, encoder_length: int, decoder_length: int) -> float:
    """One stack over the decoder row (inputs + targets); encoder_length is 0 (there is no encoder)."""
    return 3.0 * (stack_flops(cfg, decoder_length, decoder_length, cfg.num_decoder_layers)
                  + output_flops(cfg, decoder_length))


def register_architecture(spec: ArchSpec) -> ArchSpec:
    """Add ``spec`` to ``ARCHITECTURES`` under its name (a duplicate name is a ConfigError)."""
    return ARCHITECTURES.add(spec.name, spec)


register_architecture(ArchSpec(
    "encoder_decoder", EncoderDecoder, has_encoder=True, converter=encoder_decoder_converter,
    train_flops=encoder_decoder_flops, hf_class="T5ForConditionalGeneration",
    description="encoder (fully visible) + causal decoder with cross-attention: T5's baseline (Table 2)"))
register_architecture(ArchSpec(
    "decoder_only", DecoderOnly, has_encoder=False, converter=decoder_only_converter,
    train_flops=one_stack_flops,
    no_hf_reason="transformers' T5 classes all have an encoder; a decoder-only T5 has no counterpart",
    description="one causal stack over inputs + targets: a language model (Table 2, LM)"))
register_architecture(ArchSpec(
    "prefix_lm", PrefixLM, has_encoder=False, converter=prefix_lm_converter,
    train_flops=one_stack_flops,
    no_hf_reason="transformers' T5 classes have no fully visible prefix in a single stack",
    description="one stack, fully visible over the inputs, causal over the targets (Table 2, prefix LM)"))


__all__ = ["BaseModel", "EncoderDecoder", "DecoderOnly", "PrefixLM", "build_model", "count_parameters",
           "parameter_counts", "adapter_weight_names", "freeze_all_but_adapters", "blocks_from_top",
           "register_architecture", "encoder_decoder_flops", "one_stack_flops", "ARCHITECTURES"]
