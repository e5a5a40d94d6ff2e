"""Nothing lost, nothing silent (issue #11): every mistake a user can make is one line on stderr (what, where,
what is valid), exit code 2, no traceback and no file written; an internal error keeps its traceback and ends
with one line saying it is a bug.

One table of cases, each a broken input of one category: experiment files and overrides, task files of every
format (GLUE TSV, SuperGLUE JSON lines, SQuAD JSON, WMT text pairs, CNN/DM JSON lines), corpora, vocabularies,
the cache, checkpoints, sweep files and storages, output directories, and the arguments of every subcommand.
The broken task files are real samples of the official formats (../shared/data, skipped when absent) cut,
edited or re-encoded the way files really break. Each case runs ``t5lit.cli.main`` in-process in an empty
working directory; a few run the real command in a subprocess.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from t5lit.cli import main

REPO = Path(__file__).resolve().parents[1]
DEBUG_RUN = str(REPO / "experiments" / "debug_run.yaml")
DEBUG = str(REPO / "experiments" / "debug.yaml")


# ------------------------------------------------------------------------------------------ fixtures
def _tiny_config(**changes):
    from t5lit.config import preset_config

    sizes = dict(vocab_size=448, d_model=16, d_kv=4, d_ff=16, num_heads=2, num_encoder_layers=1,
                 num_decoder_layers=1)
    return preset_config("tiny", **{**sizes, **changes})


def _save_ckpt(path: Path, cfg, weights=None, *, vocab: Path | None = None, config: dict | None = None) -> Path:
    from t5lit.model.architectures import build_model

    torch.manual_seed(0)
    weights = build_model(cfg).state_dict() if weights is None else weights
    ckpt = {"state_dict": {f"model.{k}": v for k, v in weights.items()},
            "hyper_parameters": {"model_config": config or cfg.to_dict()}}
    if vocab is not None:
        ckpt["datamodule_hyper_parameters"] = {"vocab": str(vocab), "inputs_length": 64, "targets_length": 8}
    torch.save(ckpt, path)
    return path


@pytest.fixture(scope="module")
def fx(tmp_path_factory) -> SimpleNamespace:
    """A tiny SentencePiece vocabulary (330 pieces + 100 extra ids), one with SentencePiece's default special
    ids, and t5lit checkpoints of a tiny encoder-decoder (naming that vocabulary) and decoder-only model."""
    import io

    import sentencepiece as spm

    root = tmp_path_factory.mktemp("bad-inputs-fixtures")
    text = [f"the quick brown fox number {i} jumps over the lazy dog and sits on a mat" for i in range(200)]
    common = dict(vocab_size=330, hard_vocab_limit=False, model_type="unigram", byte_fallback=True, minloglevel=2,
                  num_threads=1)
    for name, ids in (("v.model", dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1)), ("default-ids.model", {})):
        model = io.BytesIO()
        spm.SentencePieceTrainer.train(sentence_iterator=iter(text), model_writer=model, **common, **ids)
        (root / name).write_bytes(model.getvalue())
    cfg, lm = _tiny_config(), _tiny_config(arch="decoder_only", num_encoder_layers=0)
    return SimpleNamespace(root=root, vocab=root / "v.model", default_ids=root / "default-ids.model", cfg=cfg,
                           ckpt=_save_ckpt(root / "ok.ckpt", cfg, vocab=root / "v.model"),
                           decoder_only=_save_ckpt(root / "lm.ckpt", lm))


def write(path: Path, data: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data, encoding="utf-8")
    return path


def sample_lines(fx, rel: str, n: int = 8) -> list[bytes]:
    """The first ``n`` lines of a real data sample (../shared/data/<rel>)."""
    return (fx.shared / rel).read_bytes().split(b"\n")[:n]


def edit_tsv(line: bytes, column: int, value: bytes) -> bytes:
    cols = line.split(b"\t")
    cols[column] = value
    return b"\t".join(cols)


def eval_argv(fx, task: str, data_dir: Path) -> list[str]:
    return ["eval", "--checkpoint", str(fx.ckpt), "--task", task, "--data_dir", str(data_dir), "--accelerator", "cpu"]


def vocab_train_argv(paths: str, size: str = "300") -> list[str]:
    return ["vocab", "train", "--corpus", "files", "--option", f"paths={paths}", "--size", size, "--out", "out.model"]


# ------------------------------------------------------------------------------------------ the table
@dataclass
class Case:
    id: str
    setup: Callable[[Path, SimpleNamespace], list[str]]  # writes the broken input under tmp, returns argv
    expect: tuple[str, ...]  # fragments of the one line ("{tmp}" is the case's directory)
    shared: bool = False  # needs ../shared/data
    env: dict | None = None
    xfail: str | None = None  # a known failure in a file this suite's author does not own: who must change what


CASES: list[Case] = []


def case(id: str, *expect: str, shared: bool = False, env: dict | None = None, xfail: str | None = None):
    def register(setup):
        CASES.append(Case(id, setup, expect, shared, env, xfail))
        return setup
    return register


def fill(text: str, **values) -> str:
    """``text`` with each ``{name}`` replaced (other braces kept: ``{train,dev,test}``)."""
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def simple(id: str, argv: list[str], *expect: str) -> None:
    """A case whose argv is all there is (``{ckpt}``, ``{lm}``, ``{vocab}``, ``{tmp}`` filled in)."""
    CASES.append(Case(id, lambda tmp, fx: [fill(a, ckpt=fx.ckpt, lm=fx.decoder_only, vocab=fx.vocab, tmp=tmp)
                                           for a in argv], expect))


# ---- experiment files and overrides -------------------------------------------------------------------
simple("experiment-missing", ["run", "nope.yaml"], "experiment file not found: {tmp}/nope.yaml")


@case("experiment-bad-yaml", "x.yaml:3: not valid YAML (found character '\\t' that cannot start any token)")
def _(tmp, fx):
    write(tmp / "x.yaml", f"base: {DEBUG_RUN}\nmodel:\n\tpreset: tiny\n")
    return ["check", "x.yaml"]


@case("experiment-not-a-mapping", "x.yaml: the file must be a mapping of keys to values, got list")
def _(tmp, fx):
    write(tmp / "x.yaml", "- pretrain\n- finetune\n")
    return ["run", "x.yaml"]


@case("experiment-not-utf8", "x.yaml: not a UTF-8 text file")
def _(tmp, fx):
    write(tmp / "x.yaml", f"base: {DEBUG_RUN}\nname: caf\xe9\n".encode("latin-1"))
    return ["check", "x.yaml"]


@case("experiment-typo-key", "x.yaml", "unknown key 'pretrian' at the top level; did you mean 'pretrain'?")
def _(tmp, fx):
    write(tmp / "x.yaml", f"base: {DEBUG_RUN}\npretrian:\n  steps: 3\n")
    return ["check", "x.yaml"]


@case("experiment-base-loop", "'base' chain loops back to itself")
def _(tmp, fx):
    write(tmp / "a.yaml", "base: b.yaml\n")
    write(tmp / "b.yaml", "base: a.yaml\n")
    return ["check", "a.yaml"]


simple("override-without-equals", ["check", DEBUG_RUN, "finetune.lr"],
       "override 'finetune.lr' must look like path.to.key=value")
simple("override-out-of-range", ["check", DEBUG_RUN, "finetune.batch_size=0"],
       "finetune.batch_size must be an integer >= 1, got 0")
simple("override-typo-key", ["run", DEBUG_RUN, "pretrain.objectve=lm"],
       "unknown key 'objectve' under 'pretrain'; did you mean 'objective'?")
simple("override-bad-yaml", ["check", DEBUG_RUN, "finetune.lr=[1"], "the value is not valid YAML; quote it")
simple("override-objective-parameter", ["check", DEBUG_RUN, "pretrain.objective_params.noise_rate=0.5"],
       "has no parameter 'noise_rate'; valid: noise_density, surplus_sentinels")
simple("override-unknown-task", ["check", DEBUG_RUN, "finetune.tasks=[glue_rtee]"],
       "unknown task or mixture 'glue_rtee'; did you mean 'glue_rte'?")
simple("experiment-task-files-missing", ["check", DEBUG_RUN, "finetune.tasks=[glue_rte]", "finetune.data_dir={tmp}"],
       "task glue_rte: data file not found: {tmp}/RTE/train.tsv", "<data_dir>/RTE/{train,dev,test}.tsv")
@case("experiment-task-file-broken", "RTE/train.tsv:3: unexpected label 'maybe'")
def _(tmp, fx):
    head = "index\tsentence1\tsentence2\tlabel\n"
    write(tmp / "d" / "RTE" / "train.tsv", head + "0\tA dog ran.\tAn animal ran.\tentailment\n1\tA.\tB.\tmaybe\n")
    write(tmp / "d" / "RTE" / "dev.tsv", head + "0\tA dog ran.\tAn animal ran.\tentailment\n")
    return ["check", DEBUG_RUN, "finetune.tasks=[glue_rte]", f"finetune.data_dir={tmp / 'd'}"]


simple("fit-config-error", ["fit", "--config", DEBUG, "--model.preset", "t5-bass"],
       "unknown preset 't5-bass'; did you mean")
simple("fit-unknown-stage", ["fit", "--config", DEBUG, "--stage", "pretrian"],
       "unknown stage 'pretrian'; did you mean 'pretrain'?")


# ---- task files: GLUE TSV (real samples) ---------------------------------------------------------------
@case("glue-label-not-a-name", "RTE/dev.tsv:3: unexpected label 'maybe' for GLUE rte; valid: entailment, "
      "not_entailment", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/RTE/dev.tsv")
    lines[2] = edit_tsv(lines[2], 3, b"maybe")
    write(tmp / "d" / "RTE" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_rte", tmp / "d")


@case("glue-int-label-out-of-range", "MRPC/dev.tsv:4: unexpected label '7' for GLUE mrpc; valid: 0 "
      "(not_equivalent), 1 (equivalent)", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/MRPC/dev.tsv")
    lines[3] = edit_tsv(lines[3], 0, b"7")
    write(tmp / "d" / "MRPC" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_mrpc", tmp / "d")


@case("glue-score-out-of-range", "STS-B/dev.tsv:2: label '7.500' of GLUE stsb must be a number from 0 to 5",
      shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/STS-B/dev.tsv")
    lines[1] = edit_tsv(lines[1], 9, b"7.500")
    write(tmp / "d" / "STS-B" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_stsb", tmp / "d")


@case("glue-missing-column", "RTE/dev.tsv:1: no column 'label' in the header (index, sentence1, sentence2)",
      shared=True)
def _(tmp, fx):
    lines = [b"\t".join(line.split(b"\t")[:3]) for line in sample_lines(fx, "glue/RTE/dev.tsv")]
    write(tmp / "d" / "RTE" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_rte", tmp / "d")


@case("glue-truncated-mid-line", "RTE/dev.tsv:6: 2 tab-separated fields, expected 4 (index, sentence1, sentence2, "
      "label); a truncated file?", shared=True)
def _(tmp, fx):
    data = (fx.shared / "glue/RTE/dev.tsv").read_bytes()
    start = [i for i, b in enumerate(data) if b == ord("\n")][4] + 1  # line 6 starts here
    write(tmp / "d" / "RTE" / "dev.tsv", data[:start + 30])
    return eval_argv(fx, "glue_rte", tmp / "d")


@case("glue-not-utf8", "SST-2/dev.tsv:5: byte 0xe9 at column 5 is not UTF-8; the file must be UTF-8 text",
      shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/SST-2/dev.tsv")
    lines[4] = lines[4][:4] + b"\xe9" + lines[4][4:]  # a Latin-1 e-acute
    write(tmp / "d" / "SST-2" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_sst2", tmp / "d")


@case("glue-empty-file", "RTE/dev.tsv: empty file; expected a header line")
def _(tmp, fx):
    write(tmp / "d" / "RTE" / "dev.tsv", b"")
    return eval_argv(fx, "glue_rte", tmp / "d")


@case("glue-no-header-short-row", "CoLA/dev.tsv:3: 3 tab-separated fields, expected 4", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/CoLA/dev.tsv")
    lines[2] = b"\t".join(lines[2].split(b"\t")[:2] + lines[2].split(b"\t")[3:])
    write(tmp / "d" / "CoLA" / "dev.tsv", b"\n".join(lines))
    return eval_argv(fx, "glue_cola", tmp / "d")


@case("glue-line-numbers-count-blank-lines", "CoLA/dev.tsv:5: unexpected label 'x' for GLUE cola; valid: 0 "
      "(unacceptable), 1 (acceptable)", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "glue/CoLA/dev.tsv")
    lines[3] = edit_tsv(lines[3], 1, b"x")
    write(tmp / "d" / "CoLA" / "dev.tsv", b"\n".join(lines[:1] + [b""] + lines[1:]))  # file line 5
    return eval_argv(fx, "glue_cola", tmp / "d")


@case("glue-file-is-a-directory", "data file {tmp}/d/RTE/dev.tsv is a directory, not a file")
def _(tmp, fx):
    (tmp / "d" / "RTE" / "dev.tsv").mkdir(parents=True)
    return eval_argv(fx, "glue_rte", tmp / "d")


@case("glue-file-missing", "data file not found: {tmp}/d/MNLI/dev_matched.tsv")
def _(tmp, fx):
    (tmp / "d").mkdir()
    return eval_argv(fx, "glue_mnli", tmp / "d")


# ---- task files: SuperGLUE JSON lines (real samples) ---------------------------------------------------
@case("superglue-truncated", "RTE/val.jsonl:5: not valid JSON (Unterminated string", "a truncated file?",
      shared=True)
def _(tmp, fx):
    data = b"\n".join(sample_lines(fx, "superglue/RTE/val.jsonl", 5))
    write(tmp / "d" / "RTE" / "val.jsonl", data[:-40])
    return eval_argv(fx, "super_glue_rte", tmp / "d")


@case("superglue-label-not-a-name", 'CB/val.jsonl:3: label: unexpected label "maybe"; valid: entailment, '
      "contradiction, neutral or 0..2", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/CB/val.jsonl", 5)
    record = json.loads(lines[2])
    lines[2] = json.dumps({**record, "label": "maybe"}).encode()
    write(tmp / "d" / "CB" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_cb", tmp / "d")


@case("superglue-int-label-out-of-range", "BoolQ/val.jsonl:2: label: unexpected label 7; valid: False, True or 0..1 "
      "or true/false", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/BoolQ/val.jsonl", 4)
    lines[1] = json.dumps({**json.loads(lines[1]), "label": 7}).encode()
    write(tmp / "d" / "BoolQ" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_boolq", tmp / "d")


@case("superglue-array-not-object", "COPA/val.jsonl:2: expected a JSON object, got a JSON array", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/COPA/val.jsonl", 4)
    lines[1] = json.dumps(list(json.loads(lines[1]).values())).encode()
    write(tmp / "d" / "COPA" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_copa", tmp / "d")


@case("superglue-missing-field", "COPA/val.jsonl:3: no field 'premise' (has: choice1, choice2, question, label, "
      "idx)", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/COPA/val.jsonl", 4)
    record = json.loads(lines[2])
    del record["premise"]
    lines[2] = json.dumps(record).encode()
    write(tmp / "d" / "COPA" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_copa", tmp / "d")


@case("superglue-field-not-a-string", "WiC/val.jsonl:1: field 'word' must be a JSON string, got a JSON number",
      shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/WiC/val.jsonl", 3)
    lines[0] = json.dumps({**json.loads(lines[0]), "word": 5}).encode()
    write(tmp / "d" / "WiC" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_wic", tmp / "d")


@case("superglue-not-utf8", "WiC/val.jsonl:4: byte 0xe9", "is not UTF-8", shared=True)
def _(tmp, fx):
    lines = sample_lines(fx, "superglue/WiC/val.jsonl", 6)
    lines[3] = lines[3].replace(b'"word": "', b'"word": "\xe9', 1)
    write(tmp / "d" / "WiC" / "val.jsonl", b"\n".join(lines))
    return eval_argv(fx, "super_glue_wic", tmp / "d")


@case("superglue-empty-file", "RTE/val.jsonl: no examples (the file is empty); expected one JSON object per line")
def _(tmp, fx):
    write(tmp / "d" / "RTE" / "val.jsonl", "\n")
    return eval_argv(fx, "super_glue_rte", tmp / "d")


@case("superglue-multirc-nested-field", "MultiRC/val.jsonl:2: passage.questions[0].answers[1]: no field 'text'")
def _(tmp, fx):
    ok = {"idx": 0, "passage": {"text": "Tom ran.", "questions": [
        {"idx": 0, "question": "Who ran?", "answers": [{"idx": 0, "text": "Tom", "label": 1}]}]}}
    bad = json.loads(json.dumps(ok))
    bad["passage"]["questions"][0]["answers"].append({"idx": 1, "label": 0})
    write(tmp / "d" / "MultiRC" / "val.jsonl", json.dumps(ok) + "\n" + json.dumps(bad) + "\n")
    return eval_argv(fx, "super_glue_multirc", tmp / "d")


@case("superglue-record-entity-span", "ReCoRD/val.jsonl:1: passage.entities[1]: field 'start' must be a JSON "
      "number, got a JSON string")
def _(tmp, fx):
    record = {"idx": 2, "passage": {"text": "Storm hits Boston.", "entities": [{"start": 11, "end": 16},
                                                                               {"start": "0", "end": 4}]},
              "qas": [{"idx": 9, "query": "@placeholder was hit.", "answers": [{"start": 11, "end": 16,
                                                                                "text": "Boston"}]}]}
    write(tmp / "d" / "ReCoRD" / "val.jsonl", json.dumps(record) + "\n")
    return eval_argv(fx, "super_glue_record", tmp / "d")


@case("superglue-wsc-missing-target", "WSC/val.jsonl:1: no field 'target' (has: text, idx, label)")
def _(tmp, fx):
    write(tmp / "d" / "WSC" / "val.jsonl", json.dumps({"text": "Tom hit Al.", "idx": 0, "label": True}) + "\n")
    return eval_argv(fx, "super_glue_wsc", tmp / "d")


# ---- task files: SQuAD JSON, WMT text pairs, CNN/DM JSON lines ------------------------------------------
SQUAD = {"version": "1.1", "data": [{"title": "Paris", "paragraphs": [{"context": "Paris is in France.", "qas": [
    {"id": "q1", "question": "Where is Paris?", "answers": [{"text": "France", "answer_start": 12}]},
    {"id": "q2", "question": "What is in France?", "answers": [{"text": "Paris", "answer_start": 0}]}]}]}]}


@case("squad-truncated", "dev-v1.1.json:", "not valid JSON", "a truncated file?")
def _(tmp, fx):
    text = json.dumps(SQUAD, indent=1)
    write(tmp / "d" / "dev-v1.1.json", text[: len(text) * 2 // 3])
    return eval_argv(fx, "squad", tmp / "d")


@case("squad-top-level-array", "dev-v1.1.json: the top level: expected a JSON object, got a JSON array")
def _(tmp, fx):
    write(tmp / "d" / "dev-v1.1.json", json.dumps(SQUAD["data"]))
    return eval_argv(fx, "squad", tmp / "d")


@case("squad-missing-field", "dev-v1.1.json: data[0].paragraphs[0].qas[1]: no field 'question' (has: id, answers)")
def _(tmp, fx):
    data = json.loads(json.dumps(SQUAD))
    del data["data"][0]["paragraphs"][0]["qas"][1]["question"]
    write(tmp / "d" / "dev-v1.1.json", json.dumps(data))
    return eval_argv(fx, "squad", tmp / "d")


@case("squad-answer-start-not-a-number", "qas[0].answers[0]: field 'answer_start' must be a JSON number, got a JSON "
      "string")
def _(tmp, fx):
    data = json.loads(json.dumps(SQUAD))
    data["data"][0]["paragraphs"][0]["qas"][0]["answers"][0]["answer_start"] = "12"
    write(tmp / "d" / "dev-v1.1.json", json.dumps(data))
    return eval_argv(fx, "squad", tmp / "d")


@case("wmt-not-sentence-aligned", "validation.en has 3 lines but validation.de has 2; they must be sentence-aligned")
def _(tmp, fx):
    write(tmp / "d" / "validation.en", "Hello.\nGood day.\nThanks.\n")
    write(tmp / "d" / "validation.de", "Hallo.\nGuten Tag.\n")
    return eval_argv(fx, "wmt14_ende", tmp / "d")


@case("wmt-not-utf8", "validation.ro:2: byte 0xe3 at column 4 is not UTF-8")
def _(tmp, fx):
    write(tmp / "d" / "validation.en", "Hello.\nGood day.\n")
    write(tmp / "d" / "validation.ro", b"Salut.\nBun\xe3 ziua.\n")  # Windows-1250, not UTF-8
    return eval_argv(fx, "wmt16_enro", tmp / "d")


@case("wmt-file-missing", "data file not found: {tmp}/d/validation.fr")
def _(tmp, fx):
    write(tmp / "d" / "validation.en", "Hello.\n")
    return eval_argv(fx, "wmt14_enfr", tmp / "d")


@case("cnndm-truncated", "validation.jsonl:3: not valid JSON")
def _(tmp, fx):
    lines = [json.dumps({"article": f"Story {i} happened today.", "highlights": f"Story {i} ."}) for i in range(3)]
    write(tmp / "d" / "validation.jsonl", "\n".join(lines)[:-12])
    return eval_argv(fx, "cnn_dailymail", tmp / "d")


@case("cnndm-missing-field", "validation.jsonl:2: no field 'highlights' (has: article, id)")
def _(tmp, fx):
    write(tmp / "d" / "validation.jsonl", json.dumps({"article": "A.", "highlights": "B.", "id": "1"}) + "\n"
          + json.dumps({"article": "C.", "id": "2"}) + "\n")
    return eval_argv(fx, "cnn_dailymail", tmp / "d")


@case("cnndm-field-not-a-string", "validation.jsonl:1: field 'article' must be a JSON string, got a JSON null")
def _(tmp, fx):
    write(tmp / "d" / "validation.jsonl", json.dumps({"article": None, "highlights": "B."}) + "\n")
    return eval_argv(fx, "cnn_dailymail", tmp / "d")


# ---- corpora (t5lit vocab train --corpus files) ----------------------------------------------------------
@case("corpus-truncated-gzip", "c4-sample.json.gz: truncated gzip file: it ends after line", shared=True)
def _(tmp, fx):
    data = (fx.shared / "c4" / "c4-sample.00000-of-00001.json.gz").read_bytes()
    write(tmp / "c4-sample.json.gz", data[: len(data) // 2])
    return vocab_train_argv(str(tmp / "c4-sample.json.gz"))


@case("corpus-not-gzip", "x.jsonl.gz: not a valid gzip file (Not a gzipped file", "gzip-compressed JSON lines")
def _(tmp, fx):
    write(tmp / "x.jsonl.gz", json.dumps({"text": "plain, not compressed"}) + "\n")
    return vocab_train_argv(str(tmp / "x.jsonl.gz"))


@case("corpus-bad-json-line", "docs.jsonl:3: not a JSON line", "each line must be one JSON object with a 'text' field")
def _(tmp, fx):
    write(tmp / "docs.jsonl", '{"text": "one"}\n{"text": "two"}\n{"text": "thr\n')
    return vocab_train_argv(str(tmp / "docs.jsonl"))


@case("corpus-missing-text-field", "docs.jsonl:2: no field 'text' (has: body)")
def _(tmp, fx):
    write(tmp / "docs.jsonl", '{"text": "one"}\n{"body": "two"}\n')
    return vocab_train_argv(str(tmp / "docs.jsonl"))


@case("corpus-text-not-a-string", "docs.jsonl.gz:1: field 'text' must be a string, got a JSON number")
def _(tmp, fx):
    write(tmp / "docs.jsonl.gz", gzip.compress(b'{"text": 5}\n'))
    return vocab_train_argv(str(tmp / "docs.jsonl.gz"))


@case("corpus-not-parquet", "x.parquet: not a readable Parquet file")
def _(tmp, fx):
    write(tmp / "x.parquet", "text\nhello\n")
    return vocab_train_argv(str(tmp / "x.parquet"))


@case("corpus-parquet-without-text", "x.parquet: no column 'text' (has: body)")
def _(tmp, fx):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"body": ["hello there"]}), tmp / "x.parquet")
    return vocab_train_argv(str(tmp / "x.parquet"))


@case("corpus-unsupported-extension", "unsupported file", "supported extensions: .txt, .jsonl, .jsonl.gz")
def _(tmp, fx):
    write(tmp / "x.csv", "text\nhello\n")
    return vocab_train_argv(str(tmp / "x.csv"))


simple("corpus-no-files-match", vocab_train_argv("{tmp}/*.txt"), "no files match '{tmp}/*.txt'")


@case("corpus-directory", "is a directory; give its files")
def _(tmp, fx):
    (tmp / "texts").mkdir()
    return vocab_train_argv(str(tmp / "texts"))


@case("corpus-empty", "the corpus gave no text to train a vocabulary on")
def _(tmp, fx):
    write(tmp / "empty.txt", "\n\n")
    return vocab_train_argv(str(tmp / "empty.txt"))


simple("corpus-unknown-option", ["vocab", "train", "--corpus", "builtin", "--option", "path=x", "--size", "300",
                                 "--out", "o.model"], "unknown option 'path' for corpus 'builtin'; valid: none")


# ---- vocabularies and the cache -------------------------------------------------------------------------
@case("vocab-not-sentencepiece", "vocabulary x.model is not a SentencePiece model (it does not parse as one); use "
      "'builtin', 'builtin:<pieces>' or a .model file")
def _(tmp, fx):
    write(tmp / "x.model", b"\x00not a model\xff" * 10)
    return ["data", "show", "--objective", "span_corruption", "--vocab", "x.model"]


@case("vocab-wrong-special-ids", "has pad/eos/unk ids -1/2/0; T5 needs 0/1/2")
def _(tmp, fx):
    return ["data", "show", "--objective", "span_corruption", "--vocab", str(fx.default_ids)]


simple("vocab-missing", ["data", "show", "--objective", "span_corruption", "--vocab", "nope.model"],
       "vocabulary file not found: nope.model")
simple("vocab-bad-builtin-size", ["data", "show", "--objective", "span_corruption", "--vocab", "builtin:abc"],
       "bad vocabulary 'builtin:abc'; use 'builtin', 'builtin:<pieces>'")


@case("vocab-directory", "vocabulary vocab is a directory, not a SentencePiece .model file")
def _(tmp, fx):
    (tmp / "vocab").mkdir()
    return ["data", "show", "--objective", "span_corruption", "--vocab", "vocab"]


@case("vocab-in-experiment-not-a-model", "model.vocab: vocabulary x.model is not a SentencePiece model")
def _(tmp, fx):
    write(tmp / "x.model", "not a model")
    return ["check", DEBUG_RUN, "model.vocab=x.model"]


@case("vocab-train-size-too-small", "training a 10-piece vocabulary failed: this corpus needs at least")
def _(tmp, fx):
    write(tmp / "a.txt", "the quick brown fox jumps over the lazy dog\n")
    return vocab_train_argv(str(tmp / "a.txt"), size="10")


simple("vocab-train-size-zero", ["vocab", "train", "--corpus", "builtin", "--size", "0", "--out", "o.model"],
       "vocabulary size must be a positive integer, got 0")


@case("cache-dir-is-a-file", "cannot create the cache folder {tmp}/cache/vocab", "set T5LIT_CACHE to a writable "
      "directory", env={"T5LIT_CACHE": "{tmp}/cache"})
def _(tmp, fx):
    write(tmp / "cache", "a file where the cache folder should be")
    return ["data", "show", "--objective", "span_corruption"]


# ---- checkpoints --------------------------------------------------------------------------------------
simple("ckpt-missing", ["eval", "--checkpoint", "nope.ckpt", "--task", "builtin_kind"],
       "checkpoint not found: nope.ckpt")


@case("ckpt-directory", "checkpoint is a directory, not a .ckpt file: runs")
def _(tmp, fx):
    (tmp / "runs").mkdir()
    return ["eval", "--checkpoint", "runs", "--task", "builtin_kind"]


@case("ckpt-truncated", "cannot read checkpoint cut.ckpt", "it is truncated or not a checkpoint; expected a .ckpt "
      "written by t5lit run or t5lit fit")
def _(tmp, fx):
    data = fx.ckpt.read_bytes()
    write(tmp / "cut.ckpt", data[: len(data) // 2])
    return ["eval", "--checkpoint", "cut.ckpt", "--task", "builtin_kind"]


@case("ckpt-empty", "checkpoint empty.ckpt is empty (0 bytes)")
def _(tmp, fx):
    write(tmp / "empty.ckpt", b"")
    return ["eval", "--checkpoint", "empty.ckpt", "--task", "builtin_kind"]


@case("ckpt-foreign-text", "cannot read checkpoint notes.ckpt (UnpicklingError")
def _(tmp, fx):
    write(tmp / "notes.ckpt", "these are my notes, not a checkpoint\n")
    return ["eval", "--checkpoint", "notes.ckpt", "--task", "builtin_kind"]


@case("ckpt-foreign-zip", "cannot read checkpoint data.ckpt", "truncated or not a checkpoint")
def _(tmp, fx):
    import zipfile

    with zipfile.ZipFile(tmp / "data.ckpt", "w") as z:
        z.writestr("data.txt", "a zip file, not a torch archive")
    return ["eval", "--checkpoint", "data.ckpt", "--task", "builtin_kind"]


@case("ckpt-plain-state-dict", "weights.pt is not a t5lit checkpoint (no model_config in its hyper_parameters)")
def _(tmp, fx):
    from t5lit.model.architectures import build_model

    torch.save(build_model(fx.cfg).state_dict(), tmp / "weights.pt")
    return ["eval", "--checkpoint", "weights.pt", "--task", "builtin_kind"]


@case("ckpt-wrong-architecture", "wide.ckpt: its weights do not fit its own model config (encoder_decoder, d_model "
      "16)", "shapes")
def _(tmp, fx):
    from t5lit.model.architectures import build_model

    weights = build_model(_tiny_config(d_model=32)).state_dict()
    _save_ckpt(tmp / "wide.ckpt", fx.cfg, weights)
    return ["eval", "--checkpoint", "wide.ckpt", "--task", "builtin_kind"]


@case("ckpt-bad-model-config", "odd.ckpt: its model_config is not valid (unknown ModelConfig field 'd_modle'")
def _(tmp, fx):
    _save_ckpt(tmp / "odd.ckpt", fx.cfg, config={**fx.cfg.to_dict(), "d_modle": 16})
    return ["eval", "--checkpoint", "odd.ckpt", "--task", "builtin_kind"]


@case("export-hf-truncated-ckpt", "cannot read checkpoint cut.ckpt")
def _(tmp, fx):
    data = fx.ckpt.read_bytes()
    write(tmp / "cut.ckpt", data[: len(data) - 100])
    return ["export-hf", "cut.ckpt", "hf_out"]


simple("export-hf-decoder-only", ["export-hf", "{lm}", "hf_out"], "export-hf: arch 'decoder_only' has no "
       "transformers equivalent")


# ---- sweep files and storages -------------------------------------------------------------------------
simple("sweep-file-missing", ["sweep", "run", "nope.yaml", "--out", "out"], "sweep file not found: nope.yaml")


@case("sweep-bad-yaml", "sweep s.yaml:3: not valid YAML (found character '\\t' that cannot start any token)")
def _(tmp, fx):
    write(tmp / "s.yaml", f"base: {DEBUG_RUN}\nrows:\n\t- {{name: a}}\n")
    return ["sweep", "run", "s.yaml", "--out", "out"]


@case("sweep-row-typo", "row 'a': override 'pretrain.objectve': unknown key 'objectve' under 'pretrain'; did you mean "
      "'objective'?")
def _(tmp, fx):
    write(tmp / "s.yaml", f"base: {DEBUG_RUN}\nrows:\n  - {{name: a, overrides: {{pretrain.objectve: lm}}}}\n")
    return ["sweep", "run", "s.yaml", "--out", "out"]


simple("sweep-storage-unreachable", ["sweep", "run", str(REPO / "sweeps" / "quickstart.yaml"), "--out", "out",
                                     "--storage", "postgresql://u:secret@127.0.0.1:1/db"],
       "cannot open sweep storage postgresql://u:***@127.0.0.1:1/db")
simple("sweep-report-unknown-study", ["sweep", "report", "--study", "nope", "--out", "out"], "no sweep journal")


@case("sweep-out-is-a-file", "cannot open sweep storage {tmp}/out/quickstart/quickstart.journal", "Not a directory")
def _(tmp, fx):
    write(tmp / "out", "a file")
    return ["sweep", "run", str(REPO / "sweeps" / "quickstart.yaml"), "--out", "out"]


simple("sweep-storage-unknown-scheme", ["sweep", "run", str(REPO / "sweeps" / "quickstart.yaml"), "--out", "out",
                                        "--storage", "mongodb://localhost/x"], "mongodb://localhost/x")
ONE_ROW_SWEEP = f"base: {DEBUG_RUN}\nstudy: s\nrows:\n  - {{name: a, overrides: {{}}}}\n"


@case("sweep-workers-zero", "--workers must be at least 1, got 0")
def _(tmp, fx):
    write(tmp / "s.yaml", ONE_ROW_SWEEP)
    return ["sweep", "run", "s.yaml", "--out", "out", "--workers", "0"]


@case("sweep-devices-not-ids", "--devices", "gpu0, gpu1")
def _(tmp, fx):
    write(tmp / "s.yaml", ONE_ROW_SWEEP)
    return ["sweep", "run", "s.yaml", "--out", "out", "--devices", "gpu0,gpu1"]


@case("sweep-journal-damaged", "s.journal: line 1 is not an Optuna journal record")
def _(tmp, fx):
    write(tmp / "s.yaml", ONE_ROW_SWEEP)
    write(tmp / "out" / "s" / "s.journal", "{not a journal\n")
    return ["sweep", "report", "s.yaml", "--out", "out"]


simple("sweep-report-sqlite-missing", ["sweep", "report", "--study", "s", "--storage", "sqlite:///nodir/x.db",
                                       "--out", "out"], "no sweep database at sqlite:///nodir/x.db")


@case("run-cpu-fast-paths-unknown", "CPU fast paths 'onednn,flash'", "use auto, all, none or a comma-separated list "
      "of onednn_linear, cpu_attention", env={"T5LIT_CPU_FAST_PATHS": "onednn,flash"})
def _(tmp, fx):
    return ["run", DEBUG_RUN, "--run-dir", "out"]


# ---- output directories -------------------------------------------------------------------------------
@case("run-dir-is-a-file", "run directory out exists and is not a directory")
def _(tmp, fx):
    write(tmp / "out", "a file")
    return ["run", DEBUG_RUN, "--run-dir", "out"]


@case("run-dir-under-a-file", "run directory out/run: {tmp}/out is a file, not a directory")
def _(tmp, fx):
    write(tmp / "out", "a file")
    return ["check", DEBUG_RUN, "--run-dir", "out/run"]


@case("fit-run-dir-is-a-file", "run directory out exists and is not a directory")
def _(tmp, fx):
    write(tmp / "out", "a file")
    return ["fit", "--config", DEBUG, "--trainer.default_root_dir", "out"]


@case("vocab-out-is-a-directory", "vocabulary output models is a directory; give a file path such as "
      "models/spiece.model")
def _(tmp, fx):
    (tmp / "models").mkdir()
    write(tmp / "a.txt", "the quick brown fox\n")
    return ["vocab", "train", "--corpus", "files", "--option", f"paths={tmp / 'a.txt'}", "--size", "300",
            "--out", "models"]


@case("vocab-out-under-a-file", "vocabulary output models/v.model: {tmp}/models is a file, not a directory")
def _(tmp, fx):
    write(tmp / "models", "a file")
    return ["vocab", "train", "--corpus", "builtin", "--size", "300", "--out", "models/v.model"]


@case("export-hf-into-a-file", "Hugging Face output model.bin exists and is not a directory")
def _(tmp, fx):
    write(tmp / "model.bin", "a file")
    return ["export-hf", str(fx.ckpt), "model.bin"]


@case("export-hf-under-a-file", "Hugging Face output model.bin/hf: {tmp}/model.bin is a file, not a directory")
def _(tmp, fx):
    write(tmp / "model.bin", "a file")
    return ["export-hf", str(fx.ckpt), "model.bin/hf"]


# ---- command-line arguments of every subcommand -----------------------------------------------------------
simple("args-no-command", [],
       "t5lit needs a command: fit, list, run, check, sweep, eval, predict, vocab, data, export-hf")
simple("args-unknown-command", ["frobnicate"], "invalid choice: 'frobnicate'", "see t5lit --help")
simple("args-run-no-experiment", ["run"], "the following arguments are required: experiment; see t5lit run --help")
simple("args-run-unknown-option", ["run", DEBUG_RUN, "--run-dri", "out"],
       "unrecognized arguments: --run-dri out; see t5lit run --help")
simple("args-check-unknown-option", ["check", DEBUG_RUN, "--verbose"],
       "unrecognized arguments: --verbose; see t5lit check --help")
simple("args-eval-missing-checkpoint", ["eval", "--task", "glue_rte"], "required: --checkpoint; see t5lit eval --help")
simple("args-eval-not-an-int", ["eval", "--checkpoint", "{ckpt}", "--task", "builtin_kind", "--batch_size", "abc"],
       "argument --batch_size: invalid int value: 'abc'; see t5lit eval --help")
simple("args-eval-zero-batch", ["eval", "--checkpoint", "{ckpt}", "--task", "builtin_kind", "--batch_size", "0"],
       "--batch_size must be a positive integer, got 0")
simple("args-eval-unknown-task", ["eval", "--checkpoint", "{ckpt}", "--task", "glue_rtee"],
       "unknown task or mixture 'glue_rtee'; did you mean 'glue_rte'?")
simple("args-list-no-kind", ["list"], "required: kind; see t5lit list --help")
simple("args-list-unknown-kind", ["list", "objectivs"], "unknown list kind 'objectivs'; did you mean 'objectives'?")
simple("args-no-subcommand", ["vocab"], "t5lit vocab needs a command: train; see t5lit vocab --help")
simple("args-vocab-train-size", ["vocab", "train", "--corpus", "builtin", "--size", "big", "--out", "o.model"],
       "argument --size: invalid int value: 'big'; see t5lit vocab train --help")
simple("args-data-show-no-objective", ["data", "show"], "required: --objective; see t5lit data show --help")
simple("args-data-show-length", ["data", "show", "--objective", "span_corruption", "--inputs-length", "x"],
       "argument --inputs-length: invalid int value: 'x'")
simple("args-data-show-unknown-objective", ["data", "show", "--objective", "span_corrupton"],
       "unknown objective 'span_corrupton'; did you mean 'span_corruption'?")
simple("args-sweep-no-subcommand", ["sweep"], "t5lit sweep needs a command: run, report", "see t5lit sweep --help")
simple("args-sweep-run-workers", ["sweep", "run", "s.yaml", "--workers", "two"],
       "argument --workers: invalid int value: 'two'; see t5lit sweep run --help")
simple("args-sweep-report-unknown-option", ["sweep", "report", "--studdy", "s"],
       "unrecognized arguments: --studdy; see t5lit sweep report --help")
simple("args-export-hf-no-out", ["export-hf", "a.ckpt"], "required: out_dir; see t5lit export-hf --help")
simple("args-fit-no-config", ["fit"], "required: --config; see t5lit fit --help")
simple("args-fit-stray-word", ["fit", "--config", DEBUG, "oops"], "unrecognized argument 'oops'; changes are "
       "--section.key VALUE", "see t5lit fit --help")
simple("args-fit-flag-without-value", ["fit", "--config", DEBUG, "--trainer.max_steps"],
       "--trainer.max_steps needs a value; see t5lit fit --help")


# ------------------------------------------------------------------------------------------ the tests
def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in root.rglob("*")}


def test_the_table_covers_every_category():
    prefixes = {c.id.split("-")[0] for c in CASES}
    assert {"experiment", "override", "fit", "glue", "superglue", "squad", "wmt", "cnndm", "corpus", "vocab",
            "cache", "ckpt", "export", "sweep", "run", "args"} <= prefixes
    assert len(CASES) >= 60 and len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id, marks=[pytest.mark.xfail(reason=c.xfail, strict=True)]
                                               if c.xfail else []) for c in CASES])
def test_a_bad_input_is_one_line_exit_2_and_nothing_written(case, fx, tmp_path, monkeypatch, capsys, request):
    if case.shared:
        fx = SimpleNamespace(**vars(fx), shared=request.getfixturevalue("shared_data"))
    work = tmp_path
    monkeypatch.chdir(work)
    for key, value in (case.env or {}).items():
        monkeypatch.setenv(key, fill(value, tmp=work))
    argv = case.setup(work, fx)
    before = snapshot(work)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    out = capsys.readouterr()
    lines = [line for line in out.err.splitlines() if line.strip()]
    assert exit_.value.code == 2, out.err[-3000:]
    assert "Traceback" not in out.err
    assert len(lines) == 1 and lines[0].startswith("t5lit: error: "), lines
    for fragment in case.expect:
        assert fill(fragment, tmp=work) in lines[0], lines[0]
    assert snapshot(work) == before, "the error left files behind"


@pytest.mark.parametrize("args, fragment", [
    (["fit", "--config", DEBUG, "--model.arch", "prefx_lm"], "unknown arch 'prefx_lm'; did you mean 'prefix_lm'?"),
    (["eval", "--checkpoint", "CUT", "--task", "builtin_kind"], "cannot read checkpoint"),
    (["eval", "--task", "glue_rte"], "the following arguments are required: --checkpoint; see t5lit eval --help"),
    (["eval", "--checkpoint", "CKPT", "--task", "glue_rte", "--data_dir", "DATA"],
     "RTE/dev.tsv:3: unexpected label '7' for GLUE rte; valid: entailment, not_entailment"),
])
def test_the_real_command_prints_the_same_one_line(args, fragment, fx, tmp_path):
    data = fx.ckpt.read_bytes()
    write(tmp_path / "cut.ckpt", data[: len(data) // 3])
    write(tmp_path / "data" / "RTE" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA.\tB.\tentailment\n"
          "1\tC.\tD.\t7\n")
    args = [{"CUT": str(tmp_path / "cut.ckpt"), "CKPT": str(fx.ckpt), "DATA": str(tmp_path / "data")}.get(a, a)
            for a in args]
    before = snapshot(tmp_path)
    out = subprocess.run([sys.executable, "-m", "t5lit.cli", *args], capture_output=True, text=True, cwd=tmp_path,
                         timeout=300)
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert out.returncode == 2 and out.stdout == "", out.stderr[-3000:]
    assert len(lines) == 1 and lines[0].startswith("t5lit: error: ") and fragment in lines[0], lines
    assert snapshot(tmp_path) == before


def test_an_internal_error_keeps_its_traceback_and_says_it_is_a_bug(monkeypatch, capsys):
    import t5lit.cli

    def broken(kind):
        raise KeyError("a bug")

    monkeypatch.setattr(t5lit.cli, "list_main", broken)
    with pytest.raises(SystemExit) as exit_:
        main(["list", "tasks"])
    err = capsys.readouterr().err
    assert exit_.value.code == 1
    assert err.startswith("Traceback (most recent call last):") and 'raise KeyError("a bug")' in err
    assert err.strip().splitlines()[-1] == ("t5lit: internal error: KeyError: 'a bug' -- this is a bug in t5lit; "
                                            "please report it with the traceback above and the command: "
                                            "t5lit list tasks")


def test_a_full_disk_is_one_line_not_a_bug(monkeypatch, capsys):
    import errno

    import t5lit.cli

    def full(kind):
        raise OSError(errno.ENOSPC, "No space left on device", "runs/x/pretrain/last.ckpt")

    monkeypatch.setattr(t5lit.cli, "list_main", full)
    with pytest.raises(SystemExit) as exit_:
        main(["list", "tasks"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == ("t5lit: error: No space left on device: runs/x/pretrain/last.ckpt; "
                                               "free space or fix the permissions, then run the same command again")


def test_a_damaged_token_cache_is_built_again_not_a_traceback(fx, tmp_path):
    """A cache whose metadata was cut short (a copy interrupted, a full disk) is rebuilt, never read."""
    from t5lit.data.cache import token_cache
    from t5lit.data.vocab import Vocabulary

    write(tmp_path / "a.txt", "the quick brown fox\n\njumps over the lazy dog\n")
    options = {"paths": [str(tmp_path / "a.txt")]}
    vocab = Vocabulary(fx.vocab)
    first = token_cache("files", "train", vocab, cache_dir=tmp_path / "cache", corpus_options=options, progress=False)
    (meta,) = (tmp_path / "cache" / "tokens").glob("*.json")
    meta.write_text(meta.read_text()[:20])
    again = token_cache("files", "train", vocab, cache_dir=tmp_path / "cache", corpus_options=options, progress=False)
    assert again.tokens.tolist() == first.tokens.tolist() and json.loads(meta.read_text())["num_documents"] == 2
