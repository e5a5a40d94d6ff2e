"""SuperGLUE (Wang et al., 2019) as T5 casts it (t5/data/preprocessors.py ``glue``, ``record``, ``wsc_simple``).

    boolq    passage: ... question: ...                        -> True | False          (accuracy)
    cb       hypothesis: ... premise: ...                      -> entailment | contradiction | neutral
                                                                                        (macro F1, accuracy)
    copa     choice1: ... choice2: ... premise: ... question: cause -> choice1 | choice2 (accuracy)
    multirc  question: ... answer: ... paragraph: ...          -> True | False  (F1 over answers, EM per question)
    record   query: ... entities: a, b passage: ...            -> an answer entity      (max-over-answers EM, F1)
    rte      hypothesis: ... premise: ...                      -> entailment | not_entailment (accuracy)
    wic      sentence1: ... sentence2: ... word: ...           -> True | False          (accuracy)
    wsc:     The city councilmen refused ... because *they* feared violence. -> The city councilmen (accuracy)

Each input starts with the task name (``"boolq passage: ..."``), except WSC's ``"wsc: "``. T5's choices kept:
MultiRC drops ``<br>`` and ``<b>`` markup; ReCoRD trains on one example per gold answer (its ``validation``
keeps one example per query, scored against every answer) and turns ``@highlight`` lines into sentences;
WSC ("wsc_simple") predicts the referent's text, trains only on examples whose candidate is the correct
referent, and is scored by whether the prediction names the candidate, compared with the label.

Sources: the hub's ``aps/super_glue`` (WSC: ``wsc.fixed``), or with ``data_dir`` the official layout
``<data_dir>/<Task>/{train,val,test}.jsonl`` with Task in BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC;
the official nested MultiRC / ReCoRD records are flattened to the hub's rows.
"""

from __future__ import annotations

import re
from functools import partial
from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    classification_formatter,
    join_fields,
    label_postprocessor,
    label_text,
    load_hub,
    read_jsonl,
    register_task,
    text_postprocessor,
)

HUB_PATH = "aps/super_glue"
FILE_STEMS = {"train": "train", "validation": "val", "test": "test"}
BOOL = ("False", "True")

# name -> (official folder, hub config, label names)
SPECS = {
    "boolq": ("BoolQ", "boolq", BOOL), "cb": ("CB", "cb", ("entailment", "contradiction", "neutral")),
    "copa": ("COPA", "copa", ("choice1", "choice2")), "multirc": ("MultiRC", "multirc", BOOL),
    "record": ("ReCoRD", "record", ()), "rte": ("RTE", "rte", ("entailment", "not_entailment")),
    "wic": ("WiC", "wic", BOOL), "wsc": ("WSC", "wsc.fixed", BOOL),
}
KEYS = {"boolq": ("passage", "question"), "cb": ("hypothesis", "premise"), "rte": ("hypothesis", "premise"),
        "copa": ("choice1", "choice2", "premise", "question"), "wic": ("sentence1", "sentence2", "word")}


# ------------------------------------------------------------------------------------- official files
def _label_id(value, label_names: tuple[str, ...]) -> int:
    """Official labels are bools, ints or label names; absent (test) -> -1."""
    if value is None:
        return -1
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        return label_names.index(value)
    return int(value)


def _flatten_multirc(record: Example) -> list[Example]:
    """One official passage record -> one hub row per (question, answer option)."""
    p = record["passage"]
    return [{"paragraph": p["text"], "question": q["question"], "answer": a["text"],
             "idx": {"paragraph": record["idx"], "question": q["idx"], "answer": a["idx"]},
             "label": _label_id(a.get("label"), BOOL)}
            for q in p["questions"] for a in q["answers"]]


def _flatten_record(record: Example) -> list[Example]:
    """One official passage record -> one hub row per query; entities are the unique span texts, sorted
    (the span ends are inclusive in the official files)."""
    text = record["passage"]["text"]
    entities = sorted({text[e["start"]:e["end"] + 1] for e in record["passage"]["entities"]})
    return [{"passage": text, "query": qa["query"], "entities": entities,
             "answers": sorted({a["text"] for a in qa.get("answers", [])}),
             "idx": {"passage": record["idx"], "query": qa["idx"]}}
            for qa in record["qas"]]


def read_superglue_file(name: str, path: Path) -> list[Example]:
    """The examples of one official SuperGLUE JSON-lines file, with the hub's field names."""
    label_names = SPECS[name][2]
    out: list[Example] = []
    for record in read_jsonl(path):
        if name == "multirc":
            out += _flatten_multirc(record)
        elif name == "record":
            out += _flatten_record(record)
        else:
            ex = dict(record)
            if name == "wsc":
                ex.update(ex.pop("target"))
            ex["label"] = _label_id(ex.get("label"), label_names)
            out.append(ex)
    return out


def _load(name: str, data_dir: Path | None, split: str) -> list[Example]:
    folder, config, _ = SPECS[name]
    if data_dir is None:
        return load_hub(HUB_PATH, config, split)
    return read_superglue_file(name, data_dir / folder / f"{FILE_STEMS[split]}.jsonl")


# ------------------------------------------------------------------------------------- MultiRC
def multirc_formatter(example: Example) -> dict[str, str]:
    inputs = join_fields("multirc", example, ("question", "answer", "paragraph"))
    inputs = re.sub(r"<(/)?b>", "", inputs.replace("<br>", " "))
    return {"inputs": inputs, "targets": label_text(example, BOOL)}


def _multirc_group(example: Example):
    idx = example["idx"]
    return (idx["paragraph"], idx["question"])


def multirc_target(example: Example) -> dict:
    return {"value": example["label"], "group": _multirc_group(example)}


def multirc_postprocessor(prediction: str, example: Example) -> dict:
    """``{"value": class id (-1 outside True/False), "group": (paragraph, question)}``."""
    return {"value": label_postprocessor(BOOL)(prediction, example), "group": _multirc_group(example)}


# ------------------------------------------------------------------------------------- ReCoRD
def record_passage(passage: str) -> str:
    """``"Storm hits.\\n@highlight\\nTrees fell"`` -> ``"Storm hits. Trees fell"`` (T5's two regexes)."""
    passage = re.sub(r"(\.|\?|\!|\"|\')\n@highlight\n", r"\1 ", passage)
    return re.sub(r"\n@highlight\n", ". ", passage)


def record_formatter(example: Example) -> dict[str, str]:
    answers = example.get("answers") or []
    target = example.get("answer", answers[0] if answers else "<unk>")
    inputs = (f"record query: {example['query']} entities: {', '.join(example['entities'])} "
              f"passage: {record_passage(example['passage'])}")
    return {"inputs": inputs, "targets": target}


def record_train_examples(examples: list[Example], split: str) -> list[Example]:
    """Training: one copy of a query per gold answer, its ``answer`` the target (T5's ``record``)."""
    if split != "train":
        return examples
    out = []
    for ex in examples:
        for answer in ex.get("answers") or ["<unk>"]:
            out.append({**ex, "answer": answer})
    return out


# ------------------------------------------------------------------------------------- WSC
def wsc_marked_text(example: Example) -> str:
    """The text with the pronoun (``span2``) between asterisks; punctuation glued to it is moved after it.

    ``"Good for him," he said.`` with span2 "him" -> ``"Good for *him* ," he said.`` (as T5's special case).
    Where ``span2_index`` does not point at the pronoun, the nearest word that is the pronoun is marked.
    """
    words = example["text"].split(" ")
    i, pronoun = int(example["span2_index"]), example["span2_text"]
    if not (0 <= i < len(words) and words[i].startswith(pronoun)):
        exact = [j for j, w in enumerate(words) if w == pronoun]
        close = exact or [j for j, w in enumerate(words) if w.startswith(pronoun)]
        if close:
            i = min(close, key=lambda j: (abs(j - i), j))
    if 0 <= i < len(words) and words[i].startswith(pronoun):
        rest = words[i][len(pronoun):]
        words[i] = f"*{pronoun}*" + (f" {rest}" if rest else "")
    return " ".join(words)


def wsc_formatter(example: Example) -> dict[str, str]:
    return {"inputs": f"wsc: {wsc_marked_text(example)}", "targets": example["span1_text"]}


def wsc_train_examples(examples: list[Example], split: str) -> list[Example]:
    """Training keeps only examples whose candidate is the correct referent (T5's ``correct_referent_only``)."""
    return [ex for ex in examples if ex.get("label") == 1] if split == "train" else examples


_DETERMINERS = frozenset("a an few her his each every many much my our some that the their these this those "
                         "which whose your".split())


def _clean_referent(s: str) -> str:
    return " ".join(w for w in s.strip().lower().split(" ") if w not in _DETERMINERS)


def wsc_postprocessor(prediction: str, example: Example) -> int:
    """1 when the prediction names the candidate (``span1_text``), else 0 (T5's ``wsc_simple``).

    Case and determiners are ignored; either word set may contain the other ("fuzzy bunny" ~ "bunny"), but a
    possessive on one side only never matches ("Bob" vs "Bob's hat").
    """
    referent, pred = _clean_referent(example["span1_text"]), _clean_referent(prediction)
    if ("'" in pred) != ("'" in referent):
        return 0
    p, r = set(pred.split(" ")), set(referent.split(" "))
    return int(p <= r or r <= p)


# ------------------------------------------------------------------------------------- registration
def _record_labelled(example: Example) -> bool:
    return bool(example.get("answers"))


def _register(name: str) -> Task:
    folder, _, label_names = SPECS[name]
    source = Source(default=partial(_load, name, None), local=lambda d, split: _load(name, d, split),
                    layout=f"<data_dir>/{folder}/{{train,val,test}}.jsonl",
                    files=lambda d, split: [d / folder / f"{FILE_STEMS[split]}.jsonl"])
    kwargs: dict = {}
    if name == "multirc":
        kwargs.update(formatter=multirc_formatter, postprocessor=multirc_postprocessor, target=multirc_target,
                      metrics=(M.multirc_f1_em,))
    elif name == "record":
        kwargs.update(formatter=record_formatter, postprocessor=text_postprocessor, metrics=(M.squad,),
                      target=lambda ex: list(ex["answers"]), is_labelled=_record_labelled,
                      preprocess=record_train_examples)
    elif name == "wsc":
        kwargs.update(formatter=wsc_formatter, postprocessor=wsc_postprocessor, metrics=(M.accuracy,),
                      preprocess=wsc_train_examples)
    else:
        metrics = (M.mean_multiclass_f1(3), M.accuracy) if name == "cb" else (M.accuracy,)
        kwargs.update(formatter=classification_formatter(name, KEYS[name], label_names),
                      postprocessor=label_postprocessor(label_names), metrics=metrics)
    return register_task(Task(name=f"super_glue_{name}", source=source, description=f"SuperGLUE {folder}",
                              headline=M.SUPER_GLUE_AVERAGE[f"super_glue_{name}"], column="SGLUE", **kwargs))


for _name in SPECS:
    _register(_name)
