"""Offline downstream tasks built from the built-in corpus (``t5lit.data.sources.builtin_records``): docstrings
of the standard library, so that the quickstart fine-tunes and scores with no network.

    builtin_kind     kind docstring: Return the number of items ...    -> function | class | module
                     (accuracy, macro F1 over the 3 kinds)
    builtin_name     name docstring: Return the number of items ...    -> count  (the object's own name)
                     (exact match, ROUGE-1 on the name split at "_" and ".")
    builtin_summary  summarize: <docstring after its summary paragraph> -> <the summary paragraph>
                     (ROUGE-1/2/Lsum, exact match)

Inputs are the docstring with runs of whitespace squashed to one space, cut to at most ``MAX_CHARS`` at a
word boundary, so that tiny CPU models see whole examples. ``builtin_kind`` is balanced: functions (three in
four records) are cut to as many as the classes, chosen by a stable hash, so a constant guess scores poorly
and the labels are learnable. Every list is the same on every run of the same Python version. Splits are
``train`` and ``validation`` (``data_dir`` is ignored).
"""

from __future__ import annotations

import hashlib
import re

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    classification_formatter,
    label_postprocessor,
    register_task,
    text_postprocessor,
)

MAX_CHARS = 300
MAX_SUMMARY_CHARS = 160
KINDS = ("module", "class", "function")


def clip(text: str, max_chars: int = MAX_CHARS) -> str:
    """Whitespace squashed, then cut at the last space within ``max_chars``: ``clip("a  b\\ncd", 4) == "a b"``."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    cut = text[: max_chars + 1].rfind(" ")
    return text[: cut if cut > 0 else max_chars]


def _records(split: str) -> list[Example]:
    from t5lit.data.sources import builtin_records

    return builtin_records(split)


def _stable_key(record: Example) -> bytes:
    return hashlib.sha1(f"{record['module']}:{record['qualname']}".encode()).digest()


# ------------------------------------------------------------------------------------- builtin_kind
def kind_examples(split: str) -> list[Example]:
    """Records with ``label`` = index in KINDS; functions cut to the number of classes (stable-hash order)."""
    records = _records(split)
    by_kind = {k: [r for r in records if r["kind"] == k] for k in KINDS}
    keep_functions = {id(r) for r in sorted(by_kind["function"], key=_stable_key)[: len(by_kind["class"])]}
    return [{"docstring": clip(r["text"]), "label": KINDS.index(r["kind"]), "module": r["module"],
             "qualname": r["qualname"]}
            for r in records if r["kind"] != "function" or id(r) in keep_functions]


# ------------------------------------------------------------------------------------- builtin_name
def object_name(record: Example) -> str:
    """A module's dotted name, else the last part of the qualname: ``Counter.most_common`` -> ``most_common``."""
    return record["module"] if record["kind"] == "module" else record["qualname"].rsplit(".", 1)[-1]


def name_examples(split: str) -> list[Example]:
    return [{"docstring": clip(r["text"]), "name": object_name(r), "kind": r["kind"]} for r in _records(split)]


def name_formatter(example: Example) -> dict[str, str]:
    return {"inputs": f"name docstring: {example['docstring']}", "targets": example["name"]}


def _name_words(name: str) -> str:
    return re.sub(r"[._]+", " ", name).strip()


def name_rouge1(targets: list[str], predictions: list[str]) -> dict[str, float]:
    """ROUGE-1 on names split into words at ``_`` and ``.`` (partial credit for ``read_text`` vs ``read``)."""
    return {"rouge1": M.rouge([_name_words(t) for t in targets], [_name_words(p) for p in predictions],
                              keys=("rouge1",))["rouge1"]}


# ------------------------------------------------------------------------------------- builtin_summary
def summary_examples(split: str) -> list[Example]:
    """Docstrings with a summary paragraph (at most ``MAX_SUMMARY_CHARS``) and a body after a blank line; the
    body is the input, the summary (whitespace squashed) the target."""
    out = []
    for r in _records(split):
        head, _, body = r["text"].partition("\n\n")
        summary, body = " ".join(head.split()), body.strip()
        if body and 0 < len(summary) <= MAX_SUMMARY_CHARS:
            out.append({"body": clip(body), "summary": summary})
    return out


def summary_formatter(example: Example) -> dict[str, str]:
    return {"inputs": f"summarize: {example['body']}", "targets": example["summary"]}


# ------------------------------------------------------------------------------------- registration
_SPLITS = ("train", "validation")

register_task(Task(
    name="builtin_kind", source=Source(default=kind_examples),
    formatter=classification_formatter("kind", ("docstring",), KINDS), postprocessor=label_postprocessor(KINDS),
    metrics=(M.accuracy, M.mean_multiclass_f1(len(KINDS))), splits=_SPLITS,
    description="offline: docstring -> module / class / function"))

register_task(Task(
    name="builtin_name", source=Source(default=name_examples), formatter=name_formatter,
    postprocessor=text_postprocessor, metrics=(M.exact_match, name_rouge1), splits=_SPLITS,
    target=lambda ex: ex["name"], is_labelled=lambda ex: True,
    description="offline: docstring -> the documented object's name"))

register_task(Task(
    name="builtin_summary", source=Source(default=summary_examples), formatter=summary_formatter,
    postprocessor=text_postprocessor, metrics=(M.rouge, M.exact_match), splits=_SPLITS,
    target=lambda ex: ex["summary"], is_labelled=lambda ex: True,
    description="offline: docstring body -> its first line"))
