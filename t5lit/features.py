"""Feature converters: examples ``{"inputs", "targets"}`` -> the model features of DESIGN.md section 2.

One converter per architecture, with seqio's semantics (``EncDecFeatureConverter``, ``LMFeatureConverter``,
``PrefixLMFeatureConverter``) and seqio's feature names; the code is NumPy, vectorised over a whole list of
examples (no per-token Python loops). Every output is int32 of shape (rows, length) except
``decoder_loss_weights`` (float32). Token 0 is padding and also the first decoder input token (shift right).

Packing (T5 pre-trains and fine-tunes with it, Section 3.1.2): several examples share one row, told apart by
segment ids 1, 2, 3, ... (0 on padding) with positions restarting at 0 in each segment. The policy, used by
``__call__`` and by ``plan_packing`` alike, is **first-fit in order**: examples are taken in their given
order and each goes into the lowest-numbered row opened so far where it still fits (for the encoder-decoder:
its inputs fit the encoder row AND its targets fit the decoder row), else into a new row. Rows are numbered
in the order they open; within a row, segments follow the examples' order. First-fit has a property that
data modules rely on: converting the examples of any run of planned rows, flattened row by row, packs them
into exactly those rows again.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from t5lit.config import ARCHITECTURES
from t5lit.registry import ConfigError, check_choice

EOS_ID = 1


def _truncate(tokens: np.ndarray, n: int) -> np.ndarray:
    """First ``n`` tokens, EOS kept last: ``_truncate([5, 6, 7, 1], 3) -> [5, 6, 1]``."""
    if len(tokens) <= n:
        return tokens
    if n > 0 and tokens[-1] == EOS_ID:
        return np.concatenate([tokens[: n - 1], tokens[-1:]])
    return tokens[:n]


def _first_fit(need_a: np.ndarray, need_b: np.ndarray, cap_a: int, cap_b: int) -> list[list[int]]:
    """First-fit of items with two sizes into rows of capacity (cap_a, cap_b); each item must fit an empty row.

    A segment tree over rows holds each node's largest remaining capacity in both dimensions; rows not yet
    opened are full, so the leftmost row with room is either an open row or the next new one. About
    log2(n) steps per item (Python), so an epoch of 10^5 examples plans in about a second.
    """
    n = len(need_a)
    size = 1
    while size < max(n, 1):
        size *= 2
    room_a, room_b = [cap_a] * (2 * size), [cap_b] * (2 * size)
    rows: list[list[int]] = []
    for i, (a, b) in enumerate(zip(need_a.tolist(), need_b.tolist())):
        stack = [1]
        while True:  # depth-first, left child first: the leftmost leaf with room for (a, b)
            node = stack.pop()
            if room_a[node] < a or room_b[node] < b:
                continue
            if node >= size:
                break
            stack += (2 * node + 1, 2 * node)
        r = node - size
        if r == len(rows):
            rows.append([])
        rows[r].append(i)
        room_a[node] -= a
        room_b[node] -= b
        node //= 2
        while node:
            room_a[node] = max(room_a[2 * node], room_a[2 * node + 1])
            room_b[node] = max(room_b[2 * node], room_b[2 * node + 1])
            node //= 2
    return rows


def _place(seqs: list, lens: np.ndarray, row_of: np.ndarray, n_rows: int, length: int):
    """Write the sequences (in layout order) back to back from column 0 of their rows: a row's tokens are a
    prefix of it, so a boolean mask (rows, length) places all of them at once, in row-major order."""
    totals = np.bincount(row_of, weights=lens, minlength=n_rows) if len(lens) else np.zeros(n_rows)
    mask = np.arange(length) < totals[:, None]  # (rows, length)
    tokens = np.zeros((n_rows, length), np.int32)
    if mask.any():
        tokens[mask] = np.concatenate(seqs)
    return tokens, mask


def _fill(mask: np.ndarray, values: np.ndarray) -> np.ndarray:
    """(rows, length) int32 zeros with ``values`` (one per True of ``mask``, row-major) written in."""
    out = np.zeros(mask.shape, np.int32)
    out[mask] = values
    return out


def _packed_ids(lens: np.ndarray, seg: np.ndarray, mask: np.ndarray):
    """Segment ids and positions (rows, length) of packed sequences, and per token (total,) its example."""
    example = np.repeat(np.arange(len(lens)), lens)  # (total,)
    within = np.arange(len(example)) - np.repeat(np.cumsum(lens) - lens, lens)  # (total,) restarts at 0
    return _fill(mask, seg[example]), _fill(mask, within), example


class FeatureConverter(ABC):
    """Base: validation, truncation and packing shared by every converter; subclasses build the features.

    ``converter(examples)`` takes a sequence of ``{"inputs", "targets"}`` (1-D int arrays) and returns a dict
    of (rows, length) arrays: one row per example unpacked, as many rows as first-fit needs packed. Pass
    ``rows=[[example indices], ...]`` to lay out a packing planned elsewhere (``plan_packing``).
    """

    def __init__(self, pack: bool = False, truncate: bool = False):
        self.pack, self.truncate = pack, truncate

    # -- what subclasses define ---------------------------------------------------------------------------
    encoder_length: int = 0  # 0: no encoder
    decoder_length: int = 0

    @property
    @abstractmethod
    def feature_names(self) -> tuple[str, ...]:
        """The output features, in the order of the returned dict."""

    @abstractmethod
    def _capacity(self) -> tuple[int, int]:
        """The row's room in the two packing dimensions (encoder, decoder); decoder-only: (0, length)."""

    @abstractmethod
    def _needs(self, li: np.ndarray, lt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each example's use of the two packing dimensions, from its input and target lengths (n,)."""

    @abstractmethod
    def _fit_lengths(self, li: np.ndarray, lt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lengths after truncation; raises on the first example that does not fit when not truncating."""

    @abstractmethod
    def _build(self, inputs: list, targets: list, li, lt, row_of, seg, n_rows: int) -> dict:
        """Features of the examples in layout order (row by row); ``row_of`` (n,) their rows, ``seg`` (n,)
        their segment ids (None unpacked: one example per row)."""

    # -- shared ---------------------------------------------------------------------------------------------
    @property
    def feature_lengths(self) -> dict[str, int]:
        """Each output feature's length (its arrays are (rows, length))."""
        return {k: self.encoder_length if k.startswith("encoder") else self.decoder_length
                for k in self.feature_names}

    def _too_long(self, i: int, what: str, n: int, limit_name: str, limit: int) -> ConfigError:
        return ConfigError(f"{type(self).__name__}: example {i} has {what} of {n} tokens but {limit_name} is "
                           f"{limit}; raise the length or pass truncate=True (keeps EOS last)")

    def plan(self, lengths) -> list[list[int]]:
        """First-fit packing plan ``[[example indices] per row]`` for ``[(len(inputs), len(targets)), ...]``."""
        if len(lengths) == 0:
            return []
        arr = np.asarray(lengths, dtype=np.int64).reshape(len(lengths), -1)
        if arr.shape[1] == 1 and self.encoder_length == 0:  # plain sequence lengths: all of it decoder tokens
            arr = np.concatenate([np.zeros_like(arr), arr], axis=1)
        if arr.shape[1] != 2:
            raise ConfigError(f"{type(self).__name__} plans from (len(inputs), len(targets)) pairs, got lengths "
                              f"of shape {tuple(np.shape(lengths))}")
        li, lt = self._fit_lengths(arr[:, 0], arr[:, 1])
        return _first_fit(*self._needs(li, lt), *self._capacity())

    def __call__(self, examples: Sequence[Mapping], rows: Sequence[Sequence[int]] | None = None) -> dict:
        inputs, targets = _fields(examples, "inputs"), _fields(examples, "targets")
        n = len(examples)
        li = np.fromiter(map(len, inputs), np.int64, count=n)
        lt = np.fromiter(map(len, targets), np.int64, count=n)
        fi, ft = self._fit_lengths(li, lt)
        for i in np.flatnonzero((fi < li) | (ft < lt)).tolist():  # only truncated examples: per example, rare
            inputs[i], targets[i] = _truncate(np.asarray(inputs[i]), fi[i]), _truncate(np.asarray(targets[i]), ft[i])
        if not self.pack:
            if rows is not None:
                raise ConfigError(f"rows= lays out a packing; this {type(self).__name__} was made with pack=False")
            return self._build(inputs, targets, fi, ft, np.arange(n), None, n)
        if rows is None:
            rows = _first_fit(*self._needs(fi, ft), *self._capacity())
        else:
            rows = [list(r) for r in rows]
            self._check_rows(rows, n, *self._needs(fi, ft))
        order = [i for row in rows for i in row]
        sizes = np.fromiter(map(len, rows), np.int64, count=len(rows))
        row_of = np.repeat(np.arange(len(rows)), sizes)  # (n,) in layout order
        seg = np.arange(n) - np.repeat(np.cumsum(sizes) - sizes, sizes) + 1  # 1, 2, ... within each row
        return self._build([inputs[i] for i in order], [targets[i] for i in order], fi[order], ft[order], row_of,
                           seg, len(rows))

    def _check_rows(self, rows: list[list[int]], n: int, need_a, need_b) -> None:
        flat = sorted(i for row in rows for i in row)
        if flat != list(range(n)):
            raise ConfigError(f"rows must use each of the {n} examples exactly once; got indices {flat[:20]}")
        cap_a, cap_b = self._capacity()
        for r, row in enumerate(rows):
            if need_a[row].sum() > cap_a or need_b[row].sum() > cap_b:
                raise ConfigError(f"row {r} ({row}) needs {int(need_a[row].sum())}/{int(need_b[row].sum())} tokens "
                                  f"but the row holds {cap_a}/{cap_b} (encoder/decoder)")


def _fields(examples: Sequence[Mapping], key: str) -> list:
    try:
        return [e[key] for e in examples]
    except (KeyError, TypeError):
        i = next(i for i, e in enumerate(examples) if not isinstance(e, Mapping) or key not in e)
        have = ", ".join(map(str, examples[i])) if isinstance(examples[i], Mapping) else type(examples[i]).__name__
        raise ConfigError(f"example {i} has no {key!r} (it has: {have or 'nothing'}); every example needs "
                          f"'inputs' and 'targets'") from None


class EncDecFeatureConverter(FeatureConverter):
    """Encoder-decoder features (Section 3.2.1): inputs to the encoder, targets to the decoder.

    Unpacked, inputs_length 5, targets_length 4, ``{"inputs": [7, 8, 1], "targets": [3, 9, 1]}`` ->
        encoder_input_tokens  [[7, 8, 1, 0, 0]]
        decoder_target_tokens [[3, 9, 1, 0]]
        decoder_input_tokens  [[0, 3, 9, 1]]     targets shifted right, 0 first (seqio shifts the whole row)
        decoder_loss_weights  [[1, 1, 1, 0]]
    Packed, inputs_length 6, targets_length 5, with ``{"inputs": [4, 1], "targets": [6, 1]}`` after it:
        encoder_input_tokens  [[7, 8, 1, 4, 1, 0]]   encoder_segment_ids [[1, 1, 1, 2, 2, 0]]
        encoder_positions     [[0, 1, 2, 0, 1, 0]]
        decoder_target_tokens [[3, 9, 1, 6, 1]]      decoder_segment_ids [[1, 1, 1, 2, 2]]
        decoder_input_tokens  [[0, 3, 9, 0, 6]]      each segment starts with 0
        decoder_positions     [[0, 1, 2, 0, 1]]      decoder_loss_weights [[1, 1, 1, 1, 1]]
    """

    def __init__(self, inputs_length: int, targets_length: int, pack: bool = False, truncate: bool = False):
        super().__init__(pack, truncate)
        _check_length("inputs_length", inputs_length, 0)
        _check_length("targets_length", targets_length, 1)
        self.inputs_length, self.targets_length = int(inputs_length), int(targets_length)
        self.encoder_length, self.decoder_length = self.inputs_length, self.targets_length

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = ("encoder_input_tokens", "decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")
        packed = ("encoder_segment_ids", "encoder_positions", "decoder_segment_ids", "decoder_positions")
        return names + packed if self.pack else names

    def _capacity(self):
        return self.inputs_length, self.targets_length

    def _needs(self, li, lt):
        return li, lt

    def _fit_lengths(self, li, lt):
        for name, lens, limit in (("inputs", li, self.inputs_length), ("targets", lt, self.targets_length)):
            over = np.flatnonzero(lens > limit)
            if len(over) and not self.truncate:
                i = int(over[0])
                raise self._too_long(i, name, int(lens[i]), f"{name}_length", limit)
        return np.minimum(li, self.inputs_length), np.minimum(lt, self.targets_length)

    def _build(self, inputs, targets, li, lt, row_of, seg, n_rows):
        enc, mask = _place(inputs, li, row_of, n_rows, self.inputs_length)
        out = {"encoder_input_tokens": enc}
        out.update(_decoder_features(targets, lt, row_of, seg, n_rows, self.targets_length))
        if seg is not None:
            out["encoder_segment_ids"], out["encoder_positions"], _ = _packed_ids(li, seg, mask)
        return {k: out[k] for k in self.feature_names}


class DecoderOnlyFeatureConverter(FeatureConverter):
    """Decoder-only language model features (Section 3.2.1): one causal stack over inputs + targets.

    Length 8, ``{"inputs": [9, 4, 1], "targets": [3, 1]}`` ->
        decoder_target_tokens [[9, 4, 1, 3, 1, 0, 0, 0]]
        decoder_input_tokens  [[0, 9, 4, 1, 3, 1, 0, 0]]
        decoder_loss_weights  [[0, 0, 0, 1, 1, 0, 0, 0]]   with loss_on_inputs=True: [[1, 1, 1, 1, 1, 0, 0, 0]]
    The LM objective has empty inputs and loss_on_inputs=True. Packed adds decoder_segment_ids and
    decoder_positions (per segment: [[1, 1, 1, 1, 1, 2, ...]], [[0, 1, 2, 3, 4, 0, ...]]).

    inputs_length (optional, ``converter_for`` sets it): the inputs' share of the row when truncating; an
    example that does not fit keeps min(len(inputs), inputs_length) input tokens and gives the targets the
    rest, and either part takes what the other leaves free. Without it the targets come first.
    """

    def __init__(self, length: int, loss_on_inputs: bool = False, pack: bool = False, truncate: bool = False,
                 inputs_length: int | None = None):
        super().__init__(pack, truncate)
        _check_length("length", length, 1)
        self.length, self.loss_on_inputs = int(length), loss_on_inputs
        self.inputs_length = 0 if inputs_length is None else int(inputs_length)
        if not 0 <= self.inputs_length <= self.length:
            raise ConfigError(f"inputs_length must be in [0, {self.length}] (the row length), got {inputs_length}")
        self.decoder_length = self.length

    @property
    def feature_names(self) -> tuple[str, ...]:
        names = ("decoder_input_tokens", "decoder_target_tokens", "decoder_loss_weights")
        return names + ("decoder_segment_ids", "decoder_positions") if self.pack else names

    def _capacity(self):
        return 0, self.length

    def _needs(self, li, lt):
        return np.zeros_like(li), li + lt

    def _fit_lengths(self, li, lt):
        over = np.flatnonzero(li + lt > self.length)
        if len(over) and not self.truncate:
            i = int(over[0])
            raise self._too_long(i, f"inputs + targets ({li[i]} + {lt[i]})", int(li[i] + lt[i]), "the row length",
                                 self.length)
        keep_t = np.minimum(lt, self.length - np.minimum(li, self.inputs_length))  # identity when it fits
        return np.minimum(li, self.length - keep_t), keep_t

    def _build(self, inputs, targets, li, lt, row_of, seg, n_rows):
        seqs = [part for pair in zip(inputs, targets) for part in pair]  # [in0, tg0, in1, tg1, ...]
        out = _decoder_features(seqs, li + lt, row_of, seg, n_rows, self.length,
                                loss_from=None if self.loss_on_inputs else li,
                                prefix=li if "decoder_causal_attention" in self.feature_names else None)
        return {k: out[k] for k in self.feature_names}


class PrefixLMFeatureConverter(DecoderOnlyFeatureConverter):
    """Prefix LM features (Section 3.2.1): the decoder-only sequence, fully visible attention over the prefix.

    decoder_causal_attention is 1 over the decoder input positions that hold the inputs, len(inputs) + 1 of
    them (the 0 that starts the row, then the inputs). seqio's example, length 9,
    ``{"inputs": [9, 4, 6, 1], "targets": [3, 9, 1]}`` ->
        decoder_target_tokens    [[9, 4, 6, 1, 3, 9, 1, 0, 0]]
        decoder_input_tokens     [[0, 9, 4, 6, 1, 3, 9, 1, 0]]
        decoder_loss_weights     [[0, 0, 0, 0, 1, 1, 1, 0, 0]]
        decoder_causal_attention [[1, 1, 1, 1, 1, 0, 0, 0, 0]]
    Packed, the same per segment: with ``{"inputs": [5, 1], "targets": [2, 1]}`` after it in a row of 11,
    decoder_causal_attention [[1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0]].
    """

    def __init__(self, length: int, pack: bool = False, truncate: bool = False, inputs_length: int | None = None,
                 loss_on_inputs: bool = False):
        super().__init__(length, loss_on_inputs, pack, truncate, inputs_length)

    @property
    def feature_names(self) -> tuple[str, ...]:
        return super().feature_names + ("decoder_causal_attention",)


def _check_length(name: str, value, least: int) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(f"{name} must be an integer >= {least}, got {value!r}")


def _decoder_features(seqs, lens, row_of, seg, n_rows, length, loss_from=None, prefix=None) -> dict:
    """Decoder features of token sequences ``seqs`` (lens (n,)) laid out as in ``_build``. The loss covers
    every token, or those at index >= loss_from[i] of sequence i; ``prefix`` (n,) adds
    decoder_causal_attention over the first prefix[i] + 1 positions of each sequence."""
    tgt, mask = _place(seqs, lens, row_of, n_rows, length)  # (rows, length)
    dec_in = np.zeros_like(tgt)
    dec_in[:, 1:] = tgt[:, :-1]  # unpacked, seqio's plain shift: the EOS lands in the first padding position
    out = {"decoder_input_tokens": dec_in, "decoder_target_tokens": tgt}
    if seg is None:  # one sequence per row, from column 0: positions are the columns
        pos, per_seq = np.arange(length)[None, :], (lambda v: v[:, None])
    else:
        out["decoder_segment_ids"], pos, example = _packed_ids(lens, seg, mask)
        dec_in *= pos > 0  # each segment starts with 0 (and padding gets 0, not the last EOS)
        out["decoder_positions"] = pos

        def per_seq(v):
            return _fill(mask, v[example])
    weights = mask if loss_from is None else mask & (pos >= per_seq(loss_from))
    out["decoder_loss_weights"] = weights.astype(np.float32)
    if prefix is not None:
        out["decoder_causal_attention"] = (mask & (pos <= per_seq(prefix))).astype(np.int32)
    return out


# ----------------------------------------------------------------------------------------------------------------
# One factory per architecture, ``(inputs_length, targets_length, *, pack, truncate, loss_on_inputs)``; each
# architecture's ArchSpec (t5lit.model.architectures) names its own, and ``converter_for`` goes through it.

def encoder_decoder_converter(inputs_length: int, targets_length: int, *, pack: bool = False, truncate: bool = False,
                              loss_on_inputs: bool = False) -> FeatureConverter:
    """EncDecFeatureConverter of the given lengths. An objective with no inputs part (``lm``: inputs [],
    inputs_length 0) still gets one encoder position: padding, so every encoder row is all padding, its
    attention rows stay finite (masked uniformly) and the decoder's cross-attention sees no key."""
    if loss_on_inputs:
        raise ConfigError("loss_on_inputs applies to decoder_only and prefix_lm; an encoder_decoder's decoder "
                          "never sees the inputs")
    _check_length("inputs_length", inputs_length, 0)
    return EncDecFeatureConverter(max(int(inputs_length), 1), targets_length, pack=pack, truncate=truncate)


def _one_stack(cls: type[DecoderOnlyFeatureConverter]) -> Callable[..., FeatureConverter]:
    def make(inputs_length: int, targets_length: int, *, pack: bool = False, truncate: bool = False,
             loss_on_inputs: bool = False) -> FeatureConverter:
        _check_length("inputs_length", inputs_length, 0)
        _check_length("targets_length", targets_length, 1)
        return cls(inputs_length + targets_length, loss_on_inputs=loss_on_inputs, pack=pack, truncate=truncate,
                   inputs_length=inputs_length)
    return make


decoder_only_converter = _one_stack(DecoderOnlyFeatureConverter)
prefix_lm_converter = _one_stack(PrefixLMFeatureConverter)


def converter_for(arch: str, inputs_length: int, targets_length: int, pack: bool = False, truncate: bool = False,
                  loss_on_inputs: bool = False) -> FeatureConverter:
    """The feature converter of architecture ``arch`` (a key of ``t5lit.config.ARCHITECTURES``); decoder-only
    rows hold inputs + targets, so their length is inputs_length + targets_length."""
    check_choice("architecture", arch, sorted(ARCHITECTURES.names()))
    return ARCHITECTURES.get(arch).converter(inputs_length, targets_length, pack=pack, truncate=truncate,
                                             loss_on_inputs=loss_on_inputs)


def row_lengths(converter: FeatureConverter) -> dict[str, int]:
    """``{feature name: length}``, e.g. encoder features 512 and decoder features 114 for T5's baseline."""
    return converter.feature_lengths


def plan_packing(lengths: Sequence[tuple[int, int]] | Sequence[int],
                 converter: FeatureConverter | int | tuple[int, int]) -> list[list[int]]:
    """Deterministic first-fit packing plan: ``[[example indices] per row]``, rows in opening order.

    ``lengths`` are ``(len(inputs), len(targets))`` pairs, or plain sequence lengths for one-dimensional rows.
    ``converter`` is a converter (its row lengths and truncation apply) or a row capacity: an int (one
    dimension; pairs are summed) or an (inputs, targets) pair. Capacity 5, lengths [3, 4, 2, 1, 2] ->
    [[0, 2], [1, 3], [4]] (the 2 joins row 0, the 1 fills row 1, the last 2 opens row 2). ``converter(examples)``
    with the examples of any run of these rows, flattened row by row, gives exactly those rows.
    """
    if not isinstance(converter, FeatureConverter):  # a bare capacity: the converter that packs rows of it
        converter = (DecoderOnlyFeatureConverter(converter) if isinstance(converter, (int, np.integer))
                     else EncDecFeatureConverter(*converter))
    return converter.plan(lengths)


def pad_rows(batch: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
    """Append all-padding rows (zeros in every feature) up to ``rows`` rows, for static batch shapes."""
    have = {len(v) for v in batch.values()}
    if len(have) > 1:
        raise ConfigError(f"features have different row counts {sorted(have)}; pad_rows needs one batch")
    n = have.pop() if have else 0
    if n > rows:
        raise ConfigError(f"batch has {n} rows, more than the {rows} asked for; raise the row count or pack less")
    return {k: np.concatenate([v, np.zeros((rows - n, *v.shape[1:]), v.dtype)]) for k, v in batch.items()}
