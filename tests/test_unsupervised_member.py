"""The unsupervised member of a multi-task mixture (Tables 11-12): its rate follows the paper's formula (it counts
K, or its size), its examples are the pre-training objective's on the corpus, a stage that mixes it in trains and
scores only its supervised tasks, its batches do not depend on the DataLoader workers, and a run killed mid-stage
resumes to the uninterrupted run's results."""

import json
import math
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from t5lit.data.datamodule import FinetuneDataModule
from t5lit.data.mixtures import UNSUPERVISED
from t5lit.data.unsupervised import LaneCursor, UnsupervisedMember
from t5lit.experiment import resolve_experiment
from t5lit.pipeline import run_experiment
from t5lit.registry import ConfigError

REPO = Path(__file__).resolve().parents[1]
DEBUG = REPO / "experiments" / "debug_run.yaml"
MIX = ["builtin_kind", "builtin_topic", UNSUPERVISED]
SIZES = {"builtin_kind": 1689, "builtin_topic": 3460}


def data(tasks=MIX, **kwargs) -> FinetuneDataModule:
    settings = dict(inputs_length=32, targets_length=32, batch_size=4, mixing_limit=2000, lanes=4, seed=1)
    dm = FinetuneDataModule(tasks=tasks, **{**settings, **kwargs})
    dm.setup("fit")
    return dm


def formula(method, sizes, limit, temperature) -> dict[str, float]:
    capped = {t: min(n, limit) if limit else n for t, n in sizes.items()}
    if method == "equal":
        return {t: 1 / len(sizes) for t in sizes}
    total = sum(capped.values())
    r = {t: (n / total) ** (1 / temperature) for t, n in capped.items()}
    return {t: v / sum(r.values()) for t, v in r.items()}


@pytest.mark.parametrize("mixing, limit, temperature, size", [
    ("examples_proportional", 2000, 1.0, None),  # unlimited: min(inf, K) = K
    ("examples_proportional", 2000, 1.0, 700),  # unsupervised_size
    ("temperature", 3000, 4.0, None),
    ("equal", None, 1.0, None),
])
def test_the_unsupervised_members_rate_follows_the_formula_over_the_epochs_draws(mixing, limit, temperature, size):
    dm = data(mixing=mixing, mixing_limit=limit, temperature=temperature, unsupervised_size=size)
    members = {**SIZES, UNSUPERVISED: size or limit or max(SIZES.values())}
    expected = formula(mixing, members, limit, temperature)
    assert dm.rates == pytest.approx(expected, rel=1e-12)
    plan = dm._epoch_plan(0)
    n = len(plan.task)
    assert n == sum(min(v, limit) if limit else v for v in members.values())  # the epoch: the limited sizes
    counts = Counter(plan.names[t] for t in plan.task.tolist())
    for member, p in expected.items():
        assert abs(counts[member] / n - p) <= 4 * math.sqrt(p * (1 - p) / n), (member, counts[member] / n, p)
    assert sorted(plan.order.tolist()) == list(range(n))  # every draw is in exactly one row


@pytest.mark.parametrize("objective", ["span_corruption", "iid_denoising"])
def test_the_unsupervised_examples_are_the_objectives_on_the_corpus(objective):
    dm = data(objective=objective)
    vocab, member = dm.vocab, dm.unsupervised
    sentinel = vocab.vocab_size - vocab.num_extra_ids
    cursor = LaneCursor(member)
    plan = dm._epoch_plan(0)
    made, state = cursor.examples(0, 0, int(plan.unsupervised[0]), lambda g: int(plan.unsupervised[g]))
    assert len(made) == plan.unsupervised[0] > 0 and state[:3].tolist() == [0, 0, 0]
    same = member.take(member.lane(0, 0), len(made))  # the lane's examples, as pre-training makes them
    assert all((a["inputs"] == b["inputs"]).all() and (a["targets"] == b["targets"]).all() for a, b in zip(made, same))
    for ex in made:
        assert (ex["inputs"] >= sentinel).any() and ex["inputs"][-1] == ex["targets"][-1] == vocab.eos_id
        assert len(ex["inputs"]) <= 32 and len(ex["targets"]) <= 32
        if objective == "span_corruption":
            assert ex["targets"][0] == vocab.vocab_size - 1  # <extra_id_0>: the first dropped span
    # span corruption's inputs and targets put back together are a chunk of the corpus: whole documents
    # between EOS tokens are documents of the built-in corpus
    if objective == "span_corruption":
        from t5lit.data.sources import corpus_components, corpus_shards, read_shard

        docs = set()
        for comp in corpus_components("builtin", {}):
            for shard in corpus_shards(comp, "train"):
                docs |= {tuple(vocab.encode(d, sentinels=False)) for d in read_shard(shard)}
        whole = 0
        for ex in made:
            spans = _spans(ex["targets"][:-1], sentinel)
            chunk = [t for s in ex["inputs"][:-1] for t in (spans.get(int(s), []) if s >= sentinel else [int(s)])]
            pieces = np.split(np.asarray(chunk), np.flatnonzero(np.asarray(chunk) == vocab.eos_id))
            for piece in pieces[1:-1]:  # between two EOS: a whole document
                assert tuple(piece[1:].tolist()) in docs
                whole += 1
        assert whole > 0


def _spans(targets: np.ndarray, sentinel: int) -> dict[int, list[int]]:
    out, current = {}, None
    for t in targets.tolist():
        if t >= sentinel:
            current = out.setdefault(t, [])
        else:
            current.append(t)
    return out


def test_the_unsupervised_member_is_never_validated_and_bad_settings_are_one_line():
    dm = data(tasks=["builtin_kind", UNSUPERVISED])
    assert [t.name for t in dm.tasks] == ["builtin_kind"] and list(dm.val) == ["builtin_kind"]
    assert dm.unsupervised.recipe.inputs_length == 32  # span corruption at 32 fits 32 / 32: pre-training's examples
    # targets shorter than the objective's at the stage's inputs length: pre-training's examples of shorter chunks
    short = data(targets_length=8, objective="iid_denoising")
    assert short.unsupervised.recipe.inputs_length == 8 and short.unsupervised.lengths[1] <= 8
    plan = short._epoch_plan(0)
    made, _ = LaneCursor(short.unsupervised).examples(0, 0, int(plan.unsupervised[0]), None)
    assert made and all(len(ex["targets"]) <= 8 for ex in made)
    for kwargs, fragment in [
        (dict(tasks=[UNSUPERVISED]), "'unsupervised' alone is pre-training"),
        (dict(targets_length=1), "makes no examples that fit the stage's lengths (inputs_length 32, targets_length 1)"),
        (dict(objective="no_such_objective"), "no_such_objective"),
    ]:
        with pytest.raises(ConfigError) as err:
            FinetuneDataModule(**{**dict(tasks=MIX, inputs_length=32, targets_length=32), **kwargs})
        assert fragment in str(err.value) and "\n" not in str(err.value)


def test_batches_are_the_same_with_any_workers_and_resume_from_the_lane_positions(monkeypatch):
    """Batch g of an epoch: the same made in order, made directly (lanes replayed), by 2 DataLoader workers,
    and after a resume from the lane positions the consumed batches carried."""
    dm = data(num_workers=0)
    loader = dm.train_dataloader()
    whole = []
    for k, batch in enumerate(loader):
        if k == 12:
            break
        whole.append(dm.on_before_batch_transfer(batch, 0))

    def same(a, b):
        return set(a) == set(b) and all((a[k] == b[k]).all() for k in a)

    for g in (0, 5, 11):
        direct = dm.train_batch(0, g)
        direct.pop("_lane_state")
        assert same({k: np.asarray(v) for k, v in whole[g].items()}, direct)
    two = data(num_workers=2)
    it = iter(two.train_dataloader())
    assert all(same(whole[k], two.on_before_batch_transfer(next(it), 0)) for k in range(12))
    # resumed after 7 batches, with the lane positions those 7 carried
    first, again = data(num_workers=0), data(num_workers=0)
    it = iter(first.train_dataloader())
    for _ in range(7):
        first.on_before_batch_transfer(next(it), 0)
    again._resume, again._lane_states = (0, 7), dict(first._lane_states)
    opened = []
    lane = UnsupervisedMember.lane
    monkeypatch.setattr(UnsupervisedMember, "lane", lambda self, *a: opened.append(a) or lane(self, *a))
    rest = [again.on_before_batch_transfer(b, 0) for _, b in zip(range(5), again.train_dataloader())]
    assert all(same(a, b) for a, b in zip(whole[7:], rest))
    assert sorted(a[0] for a in opened) == [0, 1, 2, 3] and all(len(a) == 3 for a in opened)  # at their positions


def test_a_multi_task_stage_with_the_unsupervised_member_trains_and_scores_only_its_task(tmp_path):
    exp = resolve_experiment(DEBUG, {"stages": [
        {"name": "mixture", "kind": "finetune", "init": "random", "task": ["builtin_kind", "unsupervised"]}],
        "finetune.steps": 3, "finetune.eval_every": 3, "finetune.inputs_length": 32, "finetune.targets_length": 32,
        "finetune.mixing_limit": 2000, "pretrain.objective": "span_corruption", "pretrain.lanes": 4,
        "evaluation.max_val_examples": 4, "evaluation.max_decode_length": 4})
    results = run_experiment(exp, tmp_path)
    assert list(results["scores"]) == ["builtin_kind"] and results["reported"] == ["builtin_kind"]
    scores = json.loads((tmp_path / "finetune" / "mixture" / "scores.json").read_text())
    assert list(scores["best"]) == ["builtin_kind"]


KILLER = '''
import json, os, signal, sys
import lightning as L
from t5lit.experiment import resolve_experiment
from t5lit.pipeline import run_experiment

path, overrides, run_dir, step = sys.argv[1:]

class Kill(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == int(step):
            os.kill(os.getpid(), signal.SIGKILL)

run_experiment(resolve_experiment(path, json.loads(overrides)), run_dir, callbacks=[Kill()])
'''


def test_a_run_killed_mid_stage_resumes_to_the_uninterrupted_result(tmp_path):
    from t5lit.checkpoint import model_weights, read_checkpoint

    overrides = {"stages": [{"name": "mixture", "kind": "finetune", "init": "random",
                             "task": ["builtin_kind", "unsupervised"]}],
                 "model.overrides": {"dropout_rate": 0.1}, "finetune.steps": 6, "finetune.eval_every": 2,
                 "finetune.inputs_length": 32, "finetune.targets_length": 32, "finetune.mixing_limit": 2000,
                 "finetune.batch_size": 4, "pretrain.objective": "span_corruption", "pretrain.lanes": 2,
                 "evaluation.max_val_examples": 4, "evaluation.max_decode_length": 4}
    whole = run_experiment(resolve_experiment(DEBUG, overrides), tmp_path / "whole")
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    run_dir = tmp_path / "killed"
    proc = subprocess.run([sys.executable, str(script), str(DEBUG), json.dumps(overrides), str(run_dir), "5"],
                          capture_output=True, text=True, timeout=600, cwd=REPO)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    stage = run_dir / "finetune" / "mixture"
    assert (stage / "last.ckpt").is_file() and not (stage / "done.json").exists()
    lanes = read_checkpoint(stage / "last.ckpt")["FinetuneDataModule"]["lanes"]
    assert set(lanes) == {"0", "1"}  # both lanes' positions, after the 4 batches before the checkpoint
    resumed = run_experiment(resolve_experiment(DEBUG, overrides), run_dir)
    assert resumed == whole
    got = model_weights(read_checkpoint(stage / "best-builtin_kind.ckpt"))
    expected = model_weights(read_checkpoint(tmp_path / "whole" / "finetune" / "mixture" / "best-builtin_kind.ckpt"))
    assert all((got[k] == v).all() for k, v in expected.items())
