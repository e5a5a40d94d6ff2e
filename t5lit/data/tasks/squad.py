"""SQuAD v1.1 (Rajpurkar et al., 2016) as T5 casts it (t5/data/preprocessors.py ``squad``; paper Section 2.3).

    question: What is the capital of France ? context: Paris is the capital of France .  ->  Paris

T5 puts spaces around every non-word character (ASCII ``\\W``, as TensorFlow's RE2 reads it) of the question,
context and answers and squashes runs of whitespace; the model is trained on the first answer and scored
against all of them (exact match and token F1 after the official normalization, max over answers).

Sources: the hub's ``rajpurkar/squad``, or with ``data_dir`` the official ``<data_dir>/train-v1.1.json`` and
``<data_dir>/dev-v1.1.json`` (nested ``data[].paragraphs[].qas[]``), flattened to the hub's rows:
``{"id", "title", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``. There is no
test split.
"""

from __future__ import annotations

import re
from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    load_hub,
    read_json,
    register_task,
    require_field,
    text_postprocessor,
)

FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}


def pad_punctuation(text: str) -> str:
    """``pad_punctuation("Who's there?") == "Who ' s there ?"`` (T5's ``_pad_punctuation``, ends stripped)."""
    text = re.sub(r"(\W)", r" \1 ", text, flags=re.ASCII)
    return re.sub(r"\s+", " ", text).strip()


def read_squad_file(path: Path) -> list[Example]:
    """The official nested JSON -> one hub-style row per question. Invalid JSON is an error naming its line
    and column; a missing or mistyped field, the path of the record (``data[0].paragraphs[2].qas[1]``)."""
    top = read_json(path)
    data = require_field(top, "data", f"{path}: the top level", list)
    rows = []
    for a, article in enumerate(data):
        where = f"{path}: data[{a}]"
        title = article.get("title", "") if isinstance(article, dict) else ""
        for p, paragraph in enumerate(require_field(article, "paragraphs", where, list)):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            context = require_field(paragraph, "context", where)
            for q, qa in enumerate(require_field(paragraph, "qas", where, list)):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                question, qid = require_field(qa, "question", where), require_field(qa, "id", where, (str, int))
                answers = require_field(qa, "answers", where, list) if "answers" in qa else []
                for n, answer in enumerate(answers):
                    require_field(answer, "text", f"{where}.answers[{n}]")
                    require_field(answer, "answer_start", f"{where}.answers[{n}]", int)
                rows.append({"id": qid, "title": title, "context": context, "question": question,
                             "answers": {"text": [x["text"] for x in answers],
                                         "answer_start": [x["answer_start"] for x in answers]}})
    return rows


def squad_formatter(example: Example) -> dict[str, str]:
    answers = example["answers"]["text"]
    inputs = f"question: {pad_punctuation(example['question'])} context: {pad_punctuation(example['context'])}"
    return {"inputs": inputs, "targets": pad_punctuation(answers[0]) if answers else "<unk>"}


def squad_target(example: Example) -> list[str]:
    return [pad_punctuation(a) for a in example["answers"]["text"]]


def _labelled(example: Example) -> bool:
    return bool(example["answers"]["text"])


def _load(data_dir: Path | None, split: str) -> list[Example]:
    if data_dir is None:
        return load_hub("rajpurkar/squad", None, split)
    return read_squad_file(data_dir / FILES[split])


register_task(Task(
    name="squad", source=Source(default=lambda split: _load(None, split), local=_load,
                                layout="<data_dir>/{train-v1.1,dev-v1.1}.json",
                                files=lambda d, split: [d / FILES[split]]),
    formatter=squad_formatter, postprocessor=text_postprocessor, metrics=(M.squad,),
    splits=("train", "validation"), target=squad_target, is_labelled=_labelled,
    description="SQuAD v1.1 extractive question answering", headline=("exact_match",), column="SQuAD"))
