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

import json
import re
from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import Example, Source, Task, expect_file, load_hub, register_task, text_postprocessor

FILES = {"train": "train-v1.1.json", "validation": "dev-v1.1.json"}


def pad_punctuation(text: str) -> str:
    """``pad_punctuation("Who's there?") == "Who ' s there ?"`` (T5's ``_pad_punctuation``, ends stripped)."""
    text = re.sub(r"(\W)", r" \1 ", text, flags=re.ASCII)
    return re.sub(r"\s+", " ", text).strip()


def read_squad_file(path: Path) -> list[Example]:
    """The official nested JSON -> one hub-style row per question."""
    with open(expect_file(path), encoding="utf-8") as f:
        data = json.load(f)["data"]
    rows = []
    for article in data:
        for paragraph in article["paragraphs"]:
            for qa in paragraph["qas"]:
                answers = qa.get("answers", [])
                rows.append({"id": qa["id"], "title": article.get("title", ""), "context": paragraph["context"],
                             "question": qa["question"],
                             "answers": {"text": [a["text"] for a in answers],
                                         "answer_start": [a["answer_start"] for a in answers]}})
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
