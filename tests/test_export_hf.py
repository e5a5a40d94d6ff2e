"""`t5lit export-hf` writes a Hugging Face model directory that transformers uses as it is: the weights, T5's
SentencePiece model with a tokenizer that gives the ids t5lit trained on (pad 0, EOS 1, unk 2, sentinels
from the top, byte fallback), and a model card. Checked with transformers itself: AutoTokenizer,
AutoModelForSeq2SeqLM (greedy generation equals t5lit's) and, where this transformers version has it,
pipeline("text2text-generation"). The decoder-only architectures are refused in one line."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")

from t5lit.cli import main  # noqa: E402
from t5lit.config import preset_config  # noqa: E402
from t5lit.data.vocab import load_vocabulary  # noqa: E402
from t5lit.model.architectures import build_model  # noqa: E402
from t5lit.model.generate import generate  # noqa: E402

TEXTS = ["kind docstring: Return the number of items in the deque.", "Return a comma-separated list & more.",
         "héllo wörld ∑ 日本 🙂", "  spaces  and\nnewlines\ttabs ", "a <extra_id_0> b <extra_id_99> c"]


def fake_checkpoint(tmp_path, arch="encoder_decoder", seed=0):
    """A t5lit checkpoint of a tiny random model, as `t5lit run` writes it (what export-hf reads)."""
    torch.manual_seed(seed)
    cfg = preset_config("tiny", arch=arch)
    model = build_model(cfg)
    with torch.no_grad():  # perturbed norms: a swapped weight cannot go unseen
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.3 * torch.randn_like(p))
    run = tmp_path / "run"
    (run / "pretrain").mkdir(parents=True)
    (run / "config.yaml").write_text("name: tiny_run\npretrain: {objective: span_corruption, corpus: builtin}\n")
    (run / "results.json").write_text(json.dumps({"summary": {"builtin_kind": 55.5}}))
    path = run / "pretrain" / "final.ckpt"
    torch.save({"hyper_parameters": {"model_config": cfg.to_dict(), "preset": "tiny", "model_overrides": {},
                                     "optimizer": "adafactor", "lr": 0.01, "schedule": "inverse_sqrt"},
                "state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "datamodule_hyper_parameters": {"vocab": "builtin", "corpus": "builtin", "objective": "span_corruption",
                                                "objective_params": {"noise_density": 0.15}, "inputs_length": 32,
                                                "batch_size": 8},
                "global_step": 6}, path)
    return path, model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("export")
    ckpt, model = fake_checkpoint(tmp)
    out = tmp / "hf"
    main(["export-hf", str(ckpt), str(out)])
    return out, model


def test_the_directory_holds_model_tokenizer_and_card(exported):
    out, _ = exported
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "generation_config.json", "model.safetensors", "spiece.model", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "README.md"} <= names
    card = (out / "README.md").read_text()
    for fact in ("encoder_decoder", "preset tiny", "span_corruption", "corpus `builtin`", "steps: 6",
                 "builtin_kind 55.50", "pipeline_tag: text2text-generation"):
        assert fact in card, fact
    assert (out / "spiece.model").read_bytes() == open(load_vocabulary("builtin").model_path, "rb").read()


def test_auto_tokenizer_gives_the_ids_t5lit_trained_on(exported):
    from t5lit.data.sources import builtin_records

    out, _ = exported
    vocab = load_vocabulary("builtin")
    tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == vocab.sentinel_id(0) == vocab.vocab_size - 1
    assert tok.convert_tokens_to_ids("<extra_id_99>") == vocab.sentinel_id(99)
    for text in TEXTS + [r["text"] for r in builtin_records("validation")]:
        ids = vocab.encode(text) + [1]
        assert tok(text)["input_ids"] == ids, text  # byte fallback included: no <unk> for é, &, 日本
        if "<extra_id_" not in text:
            assert tok.decode(ids, skip_special_tokens=True) == vocab.decode(ids)


def test_auto_model_generates_as_t5lit(exported):
    out, model = exported
    tok = transformers.AutoTokenizer.from_pretrained(out)
    hf = transformers.AutoModelForSeq2SeqLM.from_pretrained(out).eval()
    assert type(hf).__name__ == "T5ForConditionalGeneration"
    batch = tok(TEXTS[:3], return_tensors="pt", padding=True)
    with torch.no_grad():
        theirs = hf.generate(**batch, max_new_tokens=8, do_sample=False, num_beams=1)
    ours = generate(model, batch["input_ids"], max_new_tokens=8)
    for row in range(3):
        a = [t for t in theirs[row, 1:].tolist() if t != 0]  # transformers starts with the decoder start (0)
        b = [t for t in ours[row].tolist() if t != 0]
        assert a[:len(b)] == b, (row, a, b)


def test_pipeline_text2text_generation(exported):
    from transformers.pipelines import SUPPORTED_TASKS

    if "text2text-generation" not in SUPPORTED_TASKS:
        pytest.skip(f"transformers {transformers.__version__} has no text2text-generation pipeline (removed in 5)")
    out, _ = exported
    pipe = transformers.pipeline("text2text-generation", model=str(out))
    result = pipe(TEXTS[0], max_new_tokens=8, do_sample=False)
    assert isinstance(result[0]["generated_text"], str)


@pytest.mark.parametrize("arch", ["decoder_only", "prefix_lm"])
def test_one_stack_models_are_refused_in_one_line(tmp_path, capsys, arch):
    ckpt, _ = fake_checkpoint(tmp_path, arch=arch)
    with pytest.raises(SystemExit) as err:
        main(["export-hf", str(ckpt), str(tmp_path / "hf")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert err.value.code == 2 and len(lines) == 1, lines
    assert f"arch '{arch}' has no transformers equivalent" in lines[0] and "only arch 'encoder_decoder'" in lines[0]
    assert not (tmp_path / "hf").exists()
