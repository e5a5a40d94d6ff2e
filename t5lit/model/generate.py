"""Greedy decoding and beam search with a key/value cache, for every architecture.

The model supplies ``begin_decoding(inputs) -> (logits (B, V), cache)`` (encode, or feed the prefix
[0, in_1 .. in_n] of a decoder-only model) and ``decode_step(tokens (B,), cache) -> logits (B, V)``; the
cache has ``select(index)`` to reorder rows. The paper decodes greedily (Section 3.1.2) and uses beam
search with width 4 and length penalty alpha 0.6 for its final models (Section 3.7).

Output: the generated target tokens only, (B, <= max_new_tokens), EOS included, 0 after it, trimmed to
the longest row. E.g. rows generating [7, 9, 1] and [4, 1] -> [[7, 9, 1], [4, 1, 0]].
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from t5lit.registry import ConfigError


def brevity_penalty(length: int | Tensor, alpha: float) -> float | Tensor:
    """T5X's length penalty ((5 + length) / 6) ** alpha (decoding.beam_search, after GNMT)."""
    return ((5.0 + length) / 6.0) ** alpha


def _check(inputs: Tensor, max_new_tokens: int, num_beams: int) -> None:
    if not isinstance(inputs, Tensor) or inputs.dim() != 2 or inputs.is_floating_point() or inputs.shape[1] < 1:
        raise ConfigError(f"generate needs inputs as a (batch, length >= 1) integer tensor, got "
                          f"{getattr(inputs, 'dtype', type(inputs).__name__)} {tuple(getattr(inputs, 'shape', ()))}")
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ConfigError(f"generate: max_new_tokens must be an integer >= 1, got {max_new_tokens!r}")
    if not isinstance(num_beams, int) or num_beams < 1:
        raise ConfigError(f"generate: num_beams must be an integer >= 1, got {num_beams!r}")


@torch.no_grad()
def generate(model: nn.Module, inputs: Tensor, *, max_new_tokens: int, num_beams: int = 1,
             length_penalty_alpha: float = 0.6, eos_id: int = 1) -> Tensor:
    """Decode targets for ``inputs`` (B, L) right-padded with 0 -> (B, <= max_new_tokens) long.

    num_beams=1 is greedy (argmax each step); more is beam search ranked by log p / brevity_penalty. The
    model runs in eval mode (no dropout) and gets its previous mode back afterwards.
    """
    _check(inputs, max_new_tokens, num_beams)
    was_training = model.training
    model.eval()
    try:
        if num_beams == 1:
            return greedy(model, inputs, max_new_tokens, eos_id)
        return beam_search(model, inputs, max_new_tokens, num_beams, length_penalty_alpha, eos_id)
    finally:
        model.train(was_training)


def _trim(tokens: Tensor) -> Tensor:
    """Drop trailing columns that are 0 in every row. (B, T) -> (B, T')."""
    nonzero = (tokens != 0).any(0).nonzero()
    return tokens[:, : int(nonzero.max()) + 1] if len(nonzero) else tokens[:, :1]


def greedy(model: nn.Module, inputs: Tensor, max_new_tokens: int, eos_id: int = 1) -> Tensor:
    """Argmax decoding; a row stops at its EOS (later slots 0). (B, L) -> (B, <= max_new_tokens)."""
    logits, cache = model.begin_decoding(inputs)  # (B, V)
    B = inputs.shape[0]
    out = torch.zeros(B, max_new_tokens, dtype=torch.long, device=inputs.device)
    done = torch.zeros(B, dtype=torch.bool, device=inputs.device)
    for t in range(max_new_tokens):
        token = torch.where(done, 0, logits.argmax(-1))  # (B,)
        out[:, t] = token
        done = done | (token == eos_id)
        if bool(done.all()) or t == max_new_tokens - 1:
            break
        logits = model.decode_step(token, cache)
    return _trim(out)


def beam_search(model: nn.Module, inputs: Tensor, max_new_tokens: int, num_beams: int, alpha: float = 0.6,
                eos_id: int = 1) -> Tensor:
    """Beam search as T5X's: K alive beams ranked by log-probability, K finished ones ranked by
    log p / brevity_penalty(length, alpha), length counting the EOS. A beam still alive at max_new_tokens
    finishes there (scored with the penalty of max_new_tokens). A row stops early once its worst finished
    score beats the best score an alive beam could still reach (its log p over the max-length penalty).
    (B, L) -> (B, <= max_new_tokens): the best finished sequence of each row.
    """
    K, device = num_beams, inputs.device
    logits, cache = model.begin_decoding(inputs)  # (B, V)
    B, V = logits.shape
    rows = torch.arange(B, device=device)
    cache = cache.select(rows.repeat_interleave(K))  # every row repeated K times: (B*K, ...)
    logp = logits.float().log_softmax(-1).repeat_interleave(K, 0)  # (B*K, V)
    neg = float("-inf")
    alive_lp = torch.full((B, K), neg, device=device)
    alive_lp[:, 0] = 0.0  # the first step expands one beam only, so the K beams start distinct
    alive_seq = torch.zeros(B, K, max_new_tokens, dtype=torch.long, device=device)
    fin_score = torch.full((B, K), neg, device=device)
    fin_seq = torch.zeros(B, K, max_new_tokens, dtype=torch.long, device=device)
    best_alive_bound = brevity_penalty(max_new_tokens, alpha)
    for t in range(max_new_tokens):
        cand = (alive_lp[:, :, None] + logp.view(B, K, V)).view(B, K * V)  # (B, K*V)
        # 2K candidates hold at least K that do not end (each beam has one EOS)
        top_lp, top_idx = cand.topk(2 * K, dim=-1)  # (B, 2K)
        beam, token = top_idx // V, top_idx % V
        seq = alive_seq.gather(1, beam[:, :, None].expand(-1, -1, max_new_tokens)).clone()  # (B, 2K, T)
        seq[:, :, t] = token
        ends = (token == eos_id) | (t == max_new_tokens - 1)
        # finished: merge the new ones with the old, keep the K best by length-penalised score
        new_fin = torch.where(ends & (top_lp > neg), top_lp / brevity_penalty(t + 1, alpha), neg)  # (B, 2K)
        all_score = torch.cat([fin_score, new_fin], 1)  # (B, 3K)
        fin_score, keep = all_score.topk(K, dim=-1)
        fin_seq = torch.cat([fin_seq, seq], 1).gather(1, keep[:, :, None].expand(-1, -1, max_new_tokens))
        if t == max_new_tokens - 1:
            break
        # alive: the K best that did not end
        alive_cand = torch.where(ends, neg, top_lp)
        alive_lp, keep = alive_cand.topk(K, dim=-1)  # (B, K)
        alive_seq = seq.gather(1, keep[:, :, None].expand(-1, -1, max_new_tokens))
        alive_beam = beam.gather(1, keep)  # (B, K) which old beam each new one extends
        worst_fin = fin_score.min(-1).values  # -inf while fewer than K have finished
        if bool((worst_fin > alive_lp.max(-1).values / best_alive_bound).all()):
            break
        cache = cache.select((rows[:, None] * K + alive_beam).view(-1))
        logits = model.decode_step(alive_seq[:, :, t].reshape(-1), cache)  # (B*K, V)
        logp = logits.float().log_softmax(-1)
    return _trim(fin_seq[:, 0])


@torch.no_grad()
def sequence_score(model: nn.Module, inputs: Tensor, targets: Tensor, alpha: float = 0.6, eos_id: int = 1) -> Tensor:
    """log p(targets | inputs) / brevity_penalty(length, alpha) per row, with length counting up to and
    including the first EOS (or all of ``targets``), from step-by-step cached decoding. (B,) float."""
    model.eval()
    logits, cache = model.begin_decoding(inputs)
    B, T = targets.shape
    total = torch.zeros(B, device=inputs.device)
    length = torch.full((B,), T, device=inputs.device)
    done = torch.zeros(B, dtype=torch.bool, device=inputs.device)
    for t in range(T):
        lp = logits.float().log_softmax(-1).gather(1, targets[:, t:t + 1].long())[:, 0]
        total = total + torch.where(done, 0.0, lp)
        ended = ~done & (targets[:, t] == eos_id)
        length = torch.where(ended, t + 1, length)
        done = done | ended
        if t < T - 1:
            logits = model.decode_step(targets[:, t], cache)
    return total / brevity_penalty(length.float(), alpha)


__all__ = ["generate", "greedy", "beam_search", "brevity_penalty", "sequence_score"]
