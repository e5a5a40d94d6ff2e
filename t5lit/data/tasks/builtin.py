"""Offline downstream tasks built from the built-in corpus (``t5lit.data.sources.builtin_records``): docstrings
of the standard library, so that the quickstart fine-tunes and scores with no network.

    builtin_kind     kind docstring: Return the number of items ...    -> function | class | module
                     (accuracy, macro F1 over the 3 kinds)
    builtin_topic    topic docstring: Open a socket to ...             -> network | files | text | numbers |
                     concurrency | python  (the part of the library the documented module belongs to;
                     accuracy, macro F1 over the 6 topics)
    builtin_name     name docstring: Return the number of items ...    -> count  (the object's own name)
                     (exact match, ROUGE-1 on the name split at "_" and ".")
    builtin_summary  summarize: <docstring after its summary paragraph> -> <the summary paragraph>
                     (ROUGE-1/2/Lsum, the score; exact match, reported only)

The quickstart fine-tunes on ``builtin_kind`` and ``builtin_topic``: a 2+2-layer model of width 64 learns both
in a few hundred steps (about 72% and 60% accuracy after the quickstart's 400 steps, where the majority class
scores 44% and 33%, and a constant guess 20% and under 10% macro F1), and every validation example is scored.
The two generative tasks need larger models and longer training: after 600 steps such a model still wrote
one constant string for every input (0 exact match, 0 ROUGE-1).

Inputs are the docstring with runs of whitespace squashed to one space, cut to at most ``MAX_CHARS`` at a
word boundary, so that tiny CPU models see whole examples. ``builtin_kind`` is balanced: functions (three in
four records) are cut to as many as the classes, chosen by a stable hash, so a constant guess scores poorly
and the labels are learnable; ``builtin_topic`` keeps every record (the ``builtins`` module, whose objects
span every topic, is left out) and scores with macro F1 beside accuracy. Every list is the same on every run
of the same Python version. Splits are ``train`` and ``validation``, the corpus's own (``data_dir`` is
ignored): pre-training never sees a validation docstring.
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


# ------------------------------------------------------------------------------------- builtin_topic
# The part of the standard library each top-level module belongs to (its documentation's own grouping, broadly).
TOPICS: dict[str, tuple[str, ...]] = {
    "text": tuple("""base64 binascii codecs configparser csv difflib fnmatch gettext html json locale pprint quopri re
        reprlib shlex string stringprep textwrap tomllib unicodedata xml""".split()),
    "files": tuple("""bz2 filecmp fileinput glob gzip io linecache lzma mailbox marshal netrc os pathlib pickle
        pickletools plistlib shelve shutil sqlite3 stat tarfile tempfile wave zipapp zipfile zipimport zlib""".split()),
    "network": tuple("""email ftplib hashlib hmac http imaplib ipaddress mimetypes poplib secrets selectors smtplib
        socket socketserver ssl urllib uuid webbrowser wsgiref xmlrpc""".split()),
    "concurrency": tuple("""asyncio concurrent contextvars multiprocessing queue sched signal subprocess
        threading""".split()),
    "numbers": tuple("""array bisect calendar cmath collections colorsys datetime decimal fractions graphlib heapq
        itertools math numbers random statistics struct time zoneinfo""".split()),
    "python": tuple("""abc argparse ast bdb cmd code codeop compileall contextlib copy copyreg dataclasses dis doctest
        enum functools gc getopt importlib inspect keyword logging modulefinder operator optparse pdb pkgutil
        platform profile pstats py_compile pyclbr pydoc rlcompleter runpy site symtable sys sysconfig tabnanny
        timeit token tokenize trace traceback tracemalloc types typing unittest warnings weakref""".split()),
}
TOPIC_NAMES = tuple(TOPICS)
_TOPIC_OF = {module: topic for topic, modules in TOPICS.items() for module in modules}


def topic_of(record: Example) -> str | None:
    """The topic of a record's top-level module (``email.utils`` -> network); None for ``builtins`` and any
    module not in ``TOPICS``."""
    return _TOPIC_OF.get(record["module"].split(".")[0])


def topic_examples(split: str) -> list[Example]:
    """Records with ``label`` = index in TOPIC_NAMES (the corpus's own proportions: python, the largest topic, is
    a third of both splits)."""
    records = [r for r in _records(split) if topic_of(r) is not None]
    return [{"docstring": clip(r["text"]), "label": TOPIC_NAMES.index(topic_of(r)), "module": r["module"],
             "qualname": r["qualname"]} for r in records]


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
    name="builtin_topic", source=Source(default=topic_examples),
    formatter=classification_formatter("topic", ("docstring",), TOPIC_NAMES),
    postprocessor=label_postprocessor(TOPIC_NAMES), metrics=(M.accuracy, M.mean_multiclass_f1(len(TOPIC_NAMES))),
    splits=_SPLITS, description="offline: docstring -> the part of the standard library it documents"))

register_task(Task(
    name="builtin_name", source=Source(default=name_examples), formatter=name_formatter,
    postprocessor=text_postprocessor, metrics=(M.exact_match, name_rouge1), splits=_SPLITS,
    target=lambda ex: ex["name"], is_labelled=lambda ex: True,
    description="offline: docstring -> the documented object's name"))

register_task(Task(
    name="builtin_summary", source=Source(default=summary_examples), formatter=summary_formatter,
    postprocessor=text_postprocessor, metrics=(M.rouge, M.exact_match), splits=_SPLITS,
    target=lambda ex: ex["summary"], is_labelled=lambda ex: True, headline=("rouge1", "rouge2", "rougeLsum"),
    description="offline: docstring body -> its summary paragraph (for models larger than the quickstart's)"))

