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
referent, and is scored by whether the prediction names the candidate, compared with the label (a prediction
that names nothing is wrong either way).

Sources: the hub's ``aps/super_glue`` (WSC: ``wsc.fixed``), or with ``data_dir`` the official layout
``<data_dir>/<Task>/{train,val,test}.jsonl`` with Task in BoolQ, CB, COPA, MultiRC, ReCoRD, RTE, WiC, WSC;
the official nested MultiRC / ReCoRD records are flattened to the hub's rows.

The diagnostics, test only and cast as RTE as T5 does (``glue_utils``: "Cast the SuperGLUE diagnostic tasks as
RTE"), predicted with the RTE model, in no mixture and no average:

    axb      hypothesis: <sentence2> premise: <sentence1>      -> entailment | not_entailment (MCC)
    axg      hypothesis: ... premise: ...                      -> entailment | not_entailment (accuracy)

from ``<data_dir>/AX-b/AX-b.jsonl`` and ``<data_dir>/AX-g/AX-g.jsonl`` (the hub's ``axb`` / ``axg``). Their
files carry labels, so ``t5lit predict`` also scores them.

DPR, the Definite Pronoun Resolution data set (Rahman & Ng, 2012), which the paper adds to SuperGLUE's training
mixture (Section 2.3) in WSC's format (T5's ``dpr_v001_simple``): the first ``pronoun`` after a space (and
before a space, "." or ",") is marked, the target is the correct candidate:

    dpr      wsc: Bob asked Tom if *he* can lend some money.       -> Tom               (accuracy)

Its splits are ``train`` (1,322) and ``test`` (564): no validation split, so like T5 (which skips evaluating
a task without the split) it trains and is never scored. Sources: the hub's
``community-datasets/definite_pronoun_resolution``, or the authors' files ``<data_dir>/DPR/{train,test}.c.txt``:
examples of four lines (sentence, pronoun, the two candidates separated by a comma, the correct one), a blank
line after each.
"""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

from t5lit import metrics as M
from t5lit.data.tasks.base import (
    Example,
    Source,
    Task,
    classification_formatter,
    iter_lines,
    join_fields,
    json_type,
    label_postprocessor,
    label_text,
    load_hub,
    read_jsonl_records,
    register_task,
    require_field,
    text_postprocessor,
)
from t5lit.registry import ConfigError

HUB_PATH = "aps/super_glue"
FILE_STEMS = {"train": "train", "validation": "val", "test": "test"}
BOOL = ("False", "True")

# name -> (official folder, hub config, label names)
SPECS = {
    "boolq": ("BoolQ", "boolq", BOOL), "cb": ("CB", "cb", ("entailment", "contradiction", "neutral")),
    "copa": ("COPA", "copa", ("choice1", "choice2")), "multirc": ("MultiRC", "multirc", BOOL),
    "record": ("ReCoRD", "record", ()), "rte": ("RTE", "rte", ("entailment", "not_entailment")),
    "wic": ("WiC", "wic", BOOL), "wsc": ("WSC", "wsc.fixed", BOOL),
    "axb": ("AX-b", "axb", ("entailment", "not_entailment")), "axg": ("AX-g", "axg", ("entailment", "not_entailment")),
}
KEYS = {"boolq": ("passage", "question"), "cb": ("hypothesis", "premise"), "rte": ("hypothesis", "premise"),
        "copa": ("choice1", "choice2", "premise", "question"), "wic": ("sentence1", "sentence2", "word"),
        "axb": ("sentence1", "sentence2"), "axg": ("hypothesis", "premise")}
DIAGNOSTICS = ("axb", "axg")  # test only: one file <Folder>/<Folder>.jsonl each


# ------------------------------------------------------------------------------------- official files
def _label_id(value, label_names: tuple[str, ...], where: str = "label") -> int:
    """Official labels are bools, ints or label names; absent (test) or -1 -> -1. Anything else is a one-line
    error naming ``where`` (``file:line``) and the valid labels."""
    if value is None or (type(value) is int and value == -1):
        return -1
    if label_names == BOOL and isinstance(value, bool):
        return int(value)
    if isinstance(value, str) and value in label_names:
        return label_names.index(value)
    if type(value) is int and 0 <= value < len(label_names):
        return value
    valid = f"{', '.join(label_names)} or 0..{len(label_names) - 1}" + (" or true/false" if label_names == BOOL else "")
    raise ConfigError(f"{where}: unexpected label {json.dumps(value)}; valid: {valid}")


def _at(loc: str, path: str) -> str:
    """``file:line`` and the path of a value inside its record: ``val.jsonl:3: passage.questions[0]``."""
    return f"{loc}: {path}" if path else loc


def _objects(record: Example, key: str, loc: str, path: str) -> list[tuple[str, Example]]:
    """``(path of the item, item)`` for the JSON objects of the array ``record[key]``."""
    items = require_field(record, key, _at(loc, path), list)
    out = []
    for i, item in enumerate(items):
        item_path = f"{path + '.' if path else ''}{key}[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(f"{_at(loc, item_path)}: expected a JSON object, got a JSON {json_type(item)}")
        out.append((item_path, item))
    return out


_ID = (int, str)  # an official idx


def _flatten_multirc(record: Example, loc: str = "record") -> list[Example]:
    """One official passage record -> one hub row per (question, answer option)."""
    idx = require_field(record, "idx", loc, _ID)
    p = require_field(record, "passage", loc, dict)
    text = require_field(p, "text", _at(loc, "passage"))
    rows = []
    for qp, q in _objects(p, "questions", loc, "passage"):
        question, q_idx = require_field(q, "question", _at(loc, qp)), require_field(q, "idx", _at(loc, qp), _ID)
        for ap, a in _objects(q, "answers", loc, qp):
            where = _at(loc, ap)
            rows.append({"paragraph": text, "question": question, "answer": require_field(a, "text", where),
                         "idx": {"paragraph": idx, "question": q_idx, "answer": require_field(a, "idx", where, _ID)},
                         "label": _label_id(a.get("label"), BOOL, f"{where}.label")})
    return rows


def _flatten_record(record: Example, loc: str = "record") -> list[Example]:
    """One official passage record -> one hub row per query; entities are the unique span texts, sorted
    (the span ends are inclusive in the official files)."""
    idx = require_field(record, "idx", loc, _ID)
    passage = require_field(record, "passage", loc, dict)
    text = require_field(passage, "text", _at(loc, "passage"))
    entities = set()
    for ep, e in _objects(passage, "entities", loc, "passage"):
        start, end = require_field(e, "start", _at(loc, ep), int), require_field(e, "end", _at(loc, ep), int)
        if not 0 <= start <= end < len(text):
            raise ConfigError(f"{_at(loc, ep)}: span {start}..{end} is outside the passage text (0..{len(text) - 1})")
        entities.add(text[start:end + 1])
    rows = []
    for qp, qa in _objects(record, "qas", loc, ""):
        answers = {require_field(a, "text", _at(loc, ap))
                   for ap, a in (_objects(qa, "answers", loc, qp) if "answers" in qa else [])}
        rows.append({"passage": text, "query": require_field(qa, "query", _at(loc, qp)), "entities": sorted(entities),
                     "answers": sorted(answers),
                     "idx": {"passage": idx, "query": require_field(qa, "idx", _at(loc, qp), _ID)}})
    return rows


def read_superglue_file(name: str, path: Path) -> list[Example]:
    """The examples of one official SuperGLUE JSON-lines file, with the hub's field names. A record without a
    field the task needs, or with a label outside the task's labels, is an error naming the file and line."""
    label_names = SPECS[name][2]
    out: list[Example] = []
    for line, record in read_jsonl_records(path):
        where = f"{path}:{line}"
        if name == "multirc":
            out += _flatten_multirc(record, where)
        elif name == "record":
            out += _flatten_record(record, where)
        else:
            ex = dict(record)
            if name == "wsc":
                target = require_field(ex, "target", where, dict)
                for key in ("span1_text", "span2_text"):
                    require_field(target, key, f"{where}: target")
                require_field(target, "span2_index", f"{where}: target", int)
                ex.pop("target")
                ex.update(target)
                require_field(ex, "text", where)
            for key in KEYS.get(name, ()):
                require_field(ex, key, where)
            ex["label"] = _label_id(ex.get("label"), label_names, f"{where}: label")
            out.append(ex)
    return out


def _file(name: str, data_dir: Path, split: str) -> Path:
    folder = SPECS[name][0]
    return data_dir / folder / (f"{folder}.jsonl" if name in DIAGNOSTICS else f"{FILE_STEMS[split]}.jsonl")


def _load(name: str, data_dir: Path | None, split: str) -> list[Example]:
    if data_dir is None:
        return load_hub(HUB_PATH, SPECS[name][1], split)
    return read_superglue_file(name, _file(name, data_dir, split))


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
    """1 when the prediction names the candidate (``span1_text``), 0 when it names something else, and -1
    (always wrong) when it names nothing: empty, or determiners only (T5's ``wsc_simple``).

    Case and determiners are ignored; either word set may contain the other ("fuzzy bunny" ~ "bunny"), but a
    possessive on one side only never matches ("Bob" vs "Bob's hat"). Without the -1, an empty prediction
    would read as "not the candidate" and score the share of label-0 examples (63% of the validation set).
    """
    pred = _clean_referent(prediction)
    if not pred:
        return -1
    referent = _clean_referent(example["span1_text"])
    if ("'" in pred) != ("'" in referent):
        return 0
    p, r = set(pred.split(" ")), set(referent.split(" "))
    return int(p <= r or r <= p)


# ------------------------------------------------------------------------------------- DPR
DPR_HUB = ("community-datasets/definite_pronoun_resolution", "plain_text")
DPR_FILES = {"train": "train.c.txt", "test": "test.c.txt"}


def read_dpr_file(path: Path) -> list[Example]:
    """The authors' DPR file: per example four lines (sentence, pronoun, "candidate1,candidate2", the correct
    candidate) and a blank line -> ``{"sentence", "pronoun", "candidates", "label"}`` as the hub has them. An
    example that is not four lines, or whose answer is not one of its candidates, names its file and line."""
    blocks: list[tuple[int, list[str]]] = []
    for number, line in iter_lines(path):
        if not line.strip():
            continue
        if blocks and number == blocks[-1][0] + len(blocks[-1][1]):  # the line right after the block's last
            blocks[-1][1].append(line.strip())
        else:
            blocks.append((number, [line.strip()]))
    if not blocks:
        raise ConfigError(f"{path}: no examples (the file is empty); expected blocks of four lines: sentence, "
                          "pronoun, the two candidates separated by a comma, the correct one")
    out = []
    for number, lines in blocks:
        if len(lines) != 4:
            raise ConfigError(f"{path}:{number}: an example of {len(lines)} line(s); each has four (sentence, pronoun, "
                              "candidates separated by a comma, the correct one) and a blank line after it")
        sentence, pronoun, candidates, answer = lines
        names = [c.strip() for c in candidates.split(",")]
        folded = [c.lower() for c in names]
        if answer not in names and answer.lower() not in folded:
            raise ConfigError(f"{path}:{number + 3}: the answer {answer!r} is not one of the candidates "
                              f"{', '.join(map(repr, names))}")
        label = names.index(answer) if answer in names else folded.index(answer.lower())
        out.append({"sentence": sentence, "pronoun": pronoun, "candidates": names, "label": label})
    return out


def _load_dpr(data_dir: Path | None, split: str) -> list[Example]:
    if data_dir is None:
        return load_hub(*DPR_HUB, split)
    return read_dpr_file(data_dir / "DPR" / DPR_FILES[split])


def dpr_formatter(example: Example) -> dict[str, str]:
    """T5's ``definite_pronoun_resolution_simple``: the first `` <pronoun>`` followed by a space, "." or "," is
    marked ``*<pronoun>*``; the target is the correct candidate."""
    pronoun = re.escape(example["pronoun"])
    text = re.sub(rf" ({pronoun})( |\.|,)", r" *\1*\2", example["sentence"], count=1)
    label = example.get("label", -1)
    return {"inputs": f"wsc: {text}", "targets": "<unk>" if label == -1 else example["candidates"][int(label)]}


def _dpr_target(example: Example) -> str:
    return example["candidates"][int(example["label"])]


register_task(Task(
    name="dpr", source=Source(default=partial(_load_dpr, None), local=_load_dpr,
                              layout="<data_dir>/DPR/{train,test}.c.txt",
                              files=lambda d, split: [d / "DPR" / DPR_FILES[split]]),
    formatter=dpr_formatter, postprocessor=text_postprocessor, metrics=(M.accuracy,), splits=("train", "test"),
    target=_dpr_target, description="Definite Pronoun Resolution (Rahman & Ng 2012) in WSC's format; SuperGLUE's "
                                    "extra training data (no validation split)"))


# ------------------------------------------------------------------------------------- registration
def _record_labelled(example: Example) -> bool:
    return bool(example.get("answers"))


def _register(name: str) -> Task:
    folder, _, label_names = SPECS[name]
    layout = (f"<data_dir>/{folder}/{folder}.jsonl" if name in DIAGNOSTICS
              else f"<data_dir>/{folder}/{{train,val,test}}.jsonl")
    source = Source(default=partial(_load, name, None), local=lambda d, split: _load(name, d, split),
                    layout=layout, files=lambda d, split: [_file(name, d, split)])
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
    elif name in DIAGNOSTICS:  # cast as RTE (its prefix and label names); test only, in no average
        keys = ("hypothesis", "premise")
        fields = {"hypothesis": "sentence2", "premise": "sentence1"} if name == "axb" else {k: k for k in keys}

        def formatter(example: Example, _format=classification_formatter("rte", keys, label_names)):
            return _format({**{k: example[v] for k, v in fields.items()}, "label": example.get("label", -1)})

        metric = M.matthews_corrcoef if name == "axb" else M.accuracy
        return register_task(Task(
            name=f"super_glue_{name}", source=source, formatter=formatter,
            postprocessor=label_postprocessor(label_names), metrics=(metric,), splits=("test",),
            description=f"SuperGLUE diagnostic {folder}, cast as RTE and predicted with the RTE model"))
    else:
        metrics = (M.mean_multiclass_f1(3), M.accuracy) if name == "cb" else (M.accuracy,)
        kwargs.update(formatter=classification_formatter(name, KEYS[name], label_names),
                      postprocessor=label_postprocessor(label_names), metrics=metrics)
    return register_task(Task(name=f"super_glue_{name}", source=source, description=f"SuperGLUE {folder}",
                              headline=M.SUPER_GLUE_AVERAGE[f"super_glue_{name}"], column="SGLUE", **kwargs))


for _name in SPECS:
    _register(_name)
