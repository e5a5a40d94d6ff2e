"""The offline tasks built from the built-in corpus: deterministic, non-empty, balanced, scorable."""

from collections import Counter

import pytest

from t5lit.data.sources import BUILTIN_MODULES
from t5lit.data.tasks import get_task
from t5lit.data.tasks.builtin import MAX_CHARS, TOPICS, clip, object_name


@pytest.mark.parametrize("name", ["builtin_kind", "builtin_topic", "builtin_name", "builtin_summary"])
def test_builtin_tasks_are_deterministic_and_scorable(name):
    task = get_task(name)
    for split in ("train", "validation"):
        examples = task.load(split)
        assert len(examples) >= (500 if split == "train" else 50)
        assert examples == task.load(split)
        formatted = [task.format(ex) for ex in examples]
        assert all(f["targets"] and len(f["inputs"]) <= MAX_CHARS + 20 for f in formatted)
    val = task.load("validation")
    gold = [task.format(ex)["targets"] for ex in val]
    perfect = task.evaluate(val, gold)
    assert all(v >= 99 for k, v in perfect.items() if k != "rouge2")  # one-word targets have no bigrams
    assert all(v == 0 for v in task.evaluate(val, [""] * len(val)).values())


def test_builtin_kind_labels_are_balanced():
    task = get_task("builtin_kind")
    for split in ("train", "validation"):
        counts = Counter(task.format(ex)["targets"] for ex in task.load(split))
        assert set(counts) == {"module", "class", "function"}
        assert counts["function"] == counts["class"] and counts["module"] >= 5
        assert max(counts.values()) / sum(counts.values()) < 0.5  # a constant guess scores under 50%
    val = task.load("validation")
    out = task.evaluate(val, ["function"] * len(val))
    assert out["accuracy"] < 50 and out["f1"] < 25
    train_names = {(ex["module"], ex["qualname"]) for ex in task.load("train")}
    assert not train_names & {(ex["module"], ex["qualname"]) for ex in val}


def test_helpers():
    assert clip("a  b\ncd", 4) == "a b"
    assert clip("abcdefgh", 4) == "abcd"
    assert object_name({"kind": "function", "module": "collections", "qualname": "Counter.most_common"}) == (
        "most_common")
    assert object_name({"kind": "module", "module": "os.path", "qualname": "os.path"}) == "os.path"
    name = get_task("builtin_name")
    ex = [{"docstring": "d", "name": "read_text"}]
    assert name.evaluate(ex, ["read"]) == pytest.approx({"exact_match": 0.0, "rouge1": 100 * 2 / 3})


def test_builtin_topic_covers_the_library_and_no_guess_wins():
    named = [m for modules in TOPICS.values() for m in modules]
    assert len(named) == len(set(named))  # each module in one topic
    assert {m.split(".")[0] for m in BUILTIN_MODULES} - set(named) == {"builtins"}  # spans every topic: left out
    task = get_task("builtin_topic")
    for split in ("train", "validation"):
        counts = Counter(task.format(ex)["targets"] for ex in task.load(split))
        assert set(counts) == set(TOPICS) and min(counts.values()) >= 10
        assert max(counts.values()) / sum(counts.values()) < 0.4  # the majority topic scores under 40%
    val = task.load("validation")
    assert all(task.evaluate(val, [t] * len(val))["f1"] < 10 for t in TOPICS)  # macro F1 of a constant guess
    train = {(ex["module"], ex["qualname"]) for ex in task.load("train")}
    assert not train & {(ex["module"], ex["qualname"]) for ex in val}


def test_the_summary_score_is_its_rouge_not_exact_match():
    task = get_task("builtin_summary")
    assert task.headline == ("rouge1", "rouge2", "rougeLsum")
