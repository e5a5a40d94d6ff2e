"""A t5lit checkpoint as a Hugging Face model directory: ``t5lit export-hf CKPT DIR``.

    DIR/config.json, generation_config.json, model.safetensors   the weights (t5lit/model/hf.py, checkpoint.py)
    DIR/spiece.model              the run's SentencePiece model (T5's tokenizer file: pad 0, EOS 1, unk 2)
    DIR/tokenizer.json            the same vocabulary for transformers' tokenizers: the pieces, then the 100
                                  sentinels counted down from the top (<extra_id_0> the last id, as T5's), the
                                  SentencePiece normalizer, byte fallback when the model has it, EOS appended
    DIR/tokenizer_config.json, special_tokens_map.json
    DIR/README.md                 the model card: architecture, objective, data, steps, scores

so that ``AutoTokenizer.from_pretrained(DIR)``, ``AutoModelForSeq2SeqLM.from_pretrained(DIR)`` and
``pipeline("text2text-generation", DIR)`` work on it, and the tokenizer gives the ids t5lit trained on
(tests/test_export_hf.py). The tokenizer class is transformers' generic fast tokenizer
(``PreTrainedTokenizerFast``) reading tokenizer.json: transformers 5's ``T5Tokenizer`` rebuilds its model
without byte fallback, which would turn every character outside the pieces into ``<unk>``.

Only the encoder-decoder exports (transformers' T5 has no decoder-only or prefix-LM counterpart): the other
architectures are refused in one line saying why (their ``ArchSpec.no_hf_reason``).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from t5lit.registry import ConfigError

SPECIAL = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}


def tokenizer_files(vocab, model_max_length: int = 512) -> dict[str, bytes]:
    """The tokenizer files of a ``t5lit.data.vocab.Vocabulary`` (name -> bytes; see the module docstring),
    built with transformers' own SentencePiece conversion."""
    from sentencepiece import sentencepiece_model_pb2
    from transformers import AutoTokenizer

    proto = Path(vocab.model_path).read_bytes()
    spm = sentencepiece_model_pb2.ModelProto()
    spm.ParseFromString(proto)
    extra = [f"<extra_id_{i}>" for i in range(vocab.num_extra_ids)]
    with tempfile.TemporaryDirectory() as src:
        Path(src, "spiece.model").write_bytes(proto)
        Path(src, "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": "T5Tokenizer", "extra_ids": vocab.num_extra_ids, **SPECIAL}))
        converted = AutoTokenizer.from_pretrained(src)  # SentencePiece -> tokenizers (needs protobuf)
        spec = json.loads(converted.backend_tokenizer.to_str())
    if spm.trainer_spec.byte_fallback:  # t5lit's vocabularies spell unknown characters as <0xNN> byte pieces
        spec["model"]["byte_fallback"] = True
        spec["decoder"] = {"type": "Sequence", "decoders": [{"type": "ByteFallback"}, spec["decoder"]]}
    config = {"tokenizer_class": "PreTrainedTokenizerFast", **SPECIAL, "additional_special_tokens": extra,
              "extra_ids": vocab.num_extra_ids, "model_max_length": model_max_length,
              "clean_up_tokenization_spaces": False}
    special = {**SPECIAL, "additional_special_tokens": extra}
    return {"spiece.model": proto, "tokenizer.json": json.dumps(spec, ensure_ascii=False).encode(),
            "tokenizer_config.json": json.dumps(config, indent=2).encode(),
            "special_tokens_map.json": json.dumps(special, indent=2).encode()}


def run_dir_of(checkpoint: Path) -> Path | None:
    """The run directory a checkpoint belongs to (the nearest folder above it with a config.yaml), or None."""
    for folder in list(Path(checkpoint).resolve().parents)[:4]:
        if (folder / "config.yaml").is_file():
            return folder
    return None


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def model_card(checkpoint: Path, ckpt: dict, cfg, vocab) -> str:
    """The model card (README.md): what the model is, how it was trained, and what it scored."""
    from t5lit.experiment import yaml_load

    data = ckpt.get("datamodule_hyper_parameters") or {}
    hp = ckpt.get("hyper_parameters") or {}
    run = run_dir_of(checkpoint)
    config = yaml_load((run / "config.yaml").read_text()) if run is not None else {}
    pretrain = (config or {}).get("pretrain") or {}
    from t5lit.config import preset_parameters

    try:
        params = f"{preset_parameters(hp['preset']):,d}" if hp.get("preset") and not hp.get("model_overrides") \
            else None
    except ConfigError:
        params = None
    lines = ["---", "library_name: transformers", "pipeline_tag: text2text-generation", "tags: [t5, t5lit]", "---",
             "", f"# {checkpoint.stem} ({config.get('name', 'a t5lit run') if config else 'a t5lit run'})", "",
             "A T5-family encoder-decoder trained with t5lit (a PyTorch Lightning suite reproducing the study of "
             "Raffel et al. 2020, arXiv 1910.10683) and exported with `t5lit export-hf`.", "",
             "## Model", "",
             f"- architecture: {cfg.arch} (preset {hp.get('preset', '?')}; d_model {cfg.d_model}, "
             f"{cfg.num_encoder_layers}+{cfg.num_decoder_layers} layers, {cfg.num_heads} heads of {cfg.d_kv}, "
             f"d_ff {cfg.d_ff} {cfg.ffn}, {'tied' if cfg.tie_word_embeddings else 'untied'} embeddings"
             + (f"; {params} parameters" if params else "") + ")",
             f"- vocabulary: {vocab.num_pieces} SentencePiece pieces + {vocab.num_extra_ids} sentinels "
             f"(`{data.get('vocab', Path(vocab.model_path).name)}`); the model's embedding has {cfg.vocab_size} rows",
             "", "## Training", ""]
    if "objective" in data:
        lines.append(f"- pre-training objective: {data['objective']} {data.get('objective_params') or ''}".rstrip())
        lines.append(f"- data: corpus `{data.get('corpus')}`, inputs of {data.get('inputs_length')} tokens, "
                     f"batches of {data.get('batch_size')}")
    else:
        if pretrain:
            lines.append(f"- pre-trained with {pretrain.get('objective')} on `{pretrain.get('corpus')}` for "
                         f"{pretrain.get('steps')} steps")
        lines.append(f"- fine-tuned on: {', '.join(data.get('tasks') or ['?'])}")
    lines.append(f"- steps: {ckpt.get('global_step', '?')} (this checkpoint, `{checkpoint.name}`); optimizer "
                 f"{hp.get('optimizer', '?')}, lr {hp.get('lr', '?')} ({hp.get('schedule', '?')})")
    scores = _read_json(checkpoint.parent / "scores.json")
    results = _read_json(run / "results.json") if run is not None else None
    rows = []
    for task, best in ((scores or {}).get("best") or {}).items():
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in (best.get("metrics") or {}).items())
        rows.append(f"| {task} | {best.get('step', '–')} | {metrics} |")
    if rows:
        lines += ["", "## Scores", "", "Validation, at each task's best checkpoint:", "",
                  "| task | step | metrics |", "|:---|---:|:---|", *rows]
    if results and results.get("summary"):
        lines += ["", "The run's summary columns: " + ", ".join(f"{k} {v:.2f}" for k, v in results["summary"].items())
                  + "."]
    lines += ["", "## Use", "", "```python", "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer", "",
              'tokenizer = AutoTokenizer.from_pretrained("path/to/this/folder")',
              'model = AutoModelForSeq2SeqLM.from_pretrained("path/to/this/folder")',
              'ids = model.generate(**tokenizer("kind docstring: Return the number of items.", return_tensors="pt"))',
              "print(tokenizer.decode(ids[0], skip_special_tokens=True))", "```", ""]
    return "\n".join(lines)


def export_checkpoint(checkpoint: str | os.PathLike, out_dir: str | os.PathLike, vocab: str | None = None) -> Path:
    """Write a t5lit checkpoint as a Hugging Face directory with its tokenizer and model card (see the module
    docstring); ``vocab`` overrides the vocabulary the checkpoint names (its data module's ``vocab``)."""
    from t5lit.checkpoint import model_config, model_weights, read_checkpoint, save_hf
    from t5lit.config import ModelConfig
    from t5lit.data.vocab import load_vocabulary

    path = Path(checkpoint)
    ckpt = read_checkpoint(path)
    cfg = ModelConfig.from_dict(model_config(ckpt))
    if cfg.spec.hf_class is None:
        raise ConfigError(f"export-hf: arch {cfg.arch!r} has no transformers equivalent: {cfg.spec.no_hf_reason}; "
                          "only arch 'encoder_decoder' exports")
    data = ckpt.get("datamodule_hyper_parameters") or {}
    spec = vocab or data.get("vocab")
    if spec is None:
        raise ConfigError(f"export-hf: {path} does not name its vocabulary; give --vocab (a SentencePiece .model, "
                          "'builtin' or 'builtin:<pieces>')")
    try:
        vocabulary = load_vocabulary(spec)
    except ConfigError as err:
        raise ConfigError(f"export-hf: the checkpoint's vocabulary: {err}; give --vocab PATH") from None
    if vocabulary.vocab_size > cfg.vocab_size:
        raise ConfigError(f"export-hf: the vocabulary {spec!r} has {vocabulary.vocab_size} ids but the model only "
                          f"{cfg.vocab_size}: it is not the vocabulary the model was trained with; give --vocab")
    length = max(int(data.get("inputs_length") or 0), 512)
    files = tokenizer_files(vocabulary, length)
    files["README.md"] = model_card(path, ckpt, cfg, vocabulary).encode()
    return save_hf(model_weights(ckpt), cfg, out_dir, files=files)


__all__ = ["export_checkpoint", "model_card", "tokenizer_files", "run_dir_of"]
