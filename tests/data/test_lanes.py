"""The pre-training data path (t5lit/data/lanes.py): a batch is a function of the seed and the data settings,
never of the DataLoader workers or DDP ranks; a stream resumed from the lane positions that the consumed batches
carried continues with exactly the uninterrupted run's batches; a capped corpus repeats exactly; memory holds a
block per lane."""

import gzip
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from t5lit.data.datamodule import LaneLoader, PretrainDataModule, tokens_for_repeats, training_tokens
from t5lit.data.lanes import padding_fraction
from t5lit.data.stream import to_tensors
from t5lit.registry import ConfigError

from .hub_fixtures import texts, write_hub_copies


def dm(**kw):
    args = dict(corpus="builtin", objective="iid_denoising", inputs_length=32, batch_size=2, val_examples=4, lanes=4)
    args.update(kw)
    module = PretrainDataModule(**args)
    module.setup("fit")
    return module


def batches(module, count, *, workers=0, rank=0, world=1, start=0, positions=None, keep_state=False):
    """``count`` local batches of one rank, read through the real loader (DataLoader workers included)."""
    loader = LaneLoader(module_dataset(module), lambda: (start, rank, world, positions or {}), num_workers=workers)
    out = []
    for batch in loader:
        if not keep_state:
            batch.pop("_lane_state")
        out.append(batch)
        if len(out) == count:
            break
    return out


def module_dataset(module):
    from t5lit.data.datamodule import LaneBatches

    return LaneBatches(module.spec, module.recipe, module.vocab, module.train_tokens)


def same(a, b):
    return len(a) == len(b) and all(x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x)
                                    for x, y in zip(a, b))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    return write_hub_copies(tmp_path_factory.mktemp("hub"))


@pytest.fixture(scope="module")
def one_file(tmp_path_factory):
    """A files corpus of one gzipped C4-style shard (no validation split: held out of its first documents)."""
    path = tmp_path_factory.mktemp("files") / "c4-train.00000-of-00001.json.gz"
    with gzip.open(path, "wt") as f:
        for t in texts(300, 700):
            f.write(json.dumps({"text": t}) + "\n")
    return str(path)


def test_order_does_not_depend_on_workers_and_ranks_split_the_global_batches():
    module = dm()
    alone = batches(module, 12)
    assert same(batches(module, 12, workers=2), alone)
    rank0, rank1 = batches(module, 6, rank=0, world=2), batches(module, 6, rank=1, world=2, workers=2)
    assert same(rank0, alone[0::2]) and same(rank1, alone[1::2])
    assert same([to_tensors(module.train_batch(0, g)) for g in (0, 5, 9)], [alone[0], alone[5], alone[9]])


@pytest.mark.parametrize("case", ["streamed", "cached", "mixture", "held_out", "unpacked"])
def test_resume_from_the_consumed_positions_with_two_workers_and_two_ranks(case, hub, one_file):
    """Two ranks with two workers each read 5 batches each (the lanes cross their blocks), keep the positions
    of what they consumed, and start again: every next batch equals the uninterrupted run's."""
    kw = {"streamed": {}, "cached": {"max_tokens": 3000}, "unpacked": {"pack": False},
          "mixture": {"corpus": "mixture", "corpus_options": {"data_dir": str(hub), "corpora": [
              {"corpus": "wikipedia", "rate": 0.7}, {"corpus": "builtin", "rate": 0.3}]}},
          "held_out": {"corpus": "files", "corpus_options": {"paths": one_file}}}[case]
    module = dm(**kw)
    whole = [batches(module, 14, rank=r, world=2, workers=2) for r in (0, 1)]
    done, positions = 9, {}
    for r in (0, 1):  # what on_before_batch_transfer keeps of the consumed batches; the checkpoint merges ranks
        for batch in batches(module, done, rank=r, world=2, workers=2, keep_state=True):
            state = batch["_lane_state"].tolist()
            positions[state[0]] = state[1:]
    assert max(v[0] for v in positions.values()) >= 2  # lanes were revisited: positions really restored
    for r in (0, 1):
        resumed = batches(module, 14 - done, rank=r, world=2, workers=2, start=done, positions=positions)
        assert same(resumed, whole[r][done:]), (case, r)


def test_the_checkpoint_state_round_trips_through_the_data_module():
    module = dm()
    module._positions = {1: [0, 0, 2, 0, 0, 0, 0]}
    module.trainer = type("T", (), {"world_size": 1, "global_rank": 0, "fit_loop": type("F", (), {
        "epoch_loop": type("E", (), {"batch_progress": type("B", (), {"current": type("C", (), {
            "processed": 5})()})()})()})()})()
    state = module.state_dict()
    assert state["batches_done"] == 5 and state["lanes"] == {"1": [0, 0, 2, 0, 0, 0, 0]}
    fresh = dm()
    fresh.load_state_dict(state)
    assert fresh._loader_position() == (5, 0, 1, {1: [0, 0, 2, 0, 0, 0, 0]})
    with pytest.raises(ConfigError, match="checkpoint's data settings differ"):
        dm(lanes=8).load_state_dict(state)


def test_a_capped_corpus_repeats_exactly_and_the_repeats_are_derived():
    module = dm(max_tokens=2000)
    n = module.num_train_chunks
    lanes = module.spec.lanes
    from t5lit.data.lanes import Lane

    seen = []
    for lane in range(lanes):  # an epoch: every lane's chunks of the first n of the endless sequence
        count = len(range(lane, n, lanes))
        seen += [Lane(module.spec, lane, module.recipe, module.vocab, module.train_tokens)._chunk_id(i)
                 for i in range(count)]
    assert sorted(c for e, c in seen) == list(range(n)) and {e for e, c in seen} == {0}
    assert training_tokens(2**19, 128, 1, 512) == 2**35
    assert tokens_for_repeats(4096, 2**19, 128, 1, 512, 511) == (2**23, False)  # Table 9's smallest row
    assert tokens_for_repeats(4096, 10, 2, 1, 32, 31) == (62, True)  # too short a run: one batch
    repeated = dm(repeats=4.0, steps=100)
    assert repeated.train_tokens.num_tokens == 100 * 2 * 32 // 4
    assert repeated.info["repeats"] == pytest.approx(6400 / (repeated.num_train_chunks * 31))
    with pytest.raises(ConfigError, match="give max_tokens .* or repeats"):
        dm(max_tokens=100, repeats=2)


def test_lanes_must_split_between_devices_and_workers():
    with pytest.raises(ConfigError, match=r"lanes \(3\) must be a multiple of devices x num_workers \(1 x 2\)"):
        dm(lanes=3, num_workers=2)


def test_packing_fills_rows_with_the_lanes_examples_in_order():
    from t5lit.data.lanes import Lane

    module = dm(objective="prefix_lm", objective_params={}, arch="decoder_only", batch_size=4)
    lane = Lane(module.spec, 0, module.recipe, module.vocab)
    first = [np.concatenate([e["inputs"], e["targets"]]).tolist() for e in lane.examples[:8]]
    batch = lane.next_batch()
    assert lane.q == 8 and padding_fraction(batch) == 0.0  # two examples of 30 + 2 tokens in each row of 64
    seg, tokens = batch["decoder_segment_ids"], batch["decoder_target_tokens"]
    packed = [tokens[r][seg[r] == s].tolist() for r in range(4) for s in (1, 2)]
    assert packed == first
    plain = dm(objective="prefix_lm", objective_params={}, arch="decoder_only", batch_size=4, pack=False)
    assert padding_fraction(plain.train_batch(0, 0)) > 0.45


def test_memory_is_bounded_by_the_block(monkeypatch):
    """A lane holds one block of examples and a few documents' tokens, however long the stream."""
    module = dm(batch_size=2)
    from t5lit.data.lanes import Lane

    lane = Lane(module.spec, 0, module.recipe, module.vocab)
    sizes = []
    for _ in range(60):
        lane.next_batch()
        sizes.append(len(lane.examples) + sum(len(r.segments) for r in lane._readers))
    assert max(sizes) <= module.spec.block + 2 * 64 and lane.block_no >= 5


@pytest.mark.slow
def test_time_to_first_batch_does_not_grow_with_the_corpus(tmp_path):
    """The first batch of a corpus 100 times larger comes as fast: nothing is read ahead of it."""
    import time

    def corpus(n_files):
        for i in range(n_files):
            with gzip.open(tmp_path / f"c{n_files}-{i:05d}.json.gz", "wt") as f:
                for t in texts(200, 37 * i):
                    f.write(json.dumps({"text": t}) + "\n")
        return str(tmp_path / f"c{n_files}-*.json.gz")

    small, large = corpus(1), corpus(100)
    times = {}
    for name, paths in (("small", small), ("large", large)):
        started = time.perf_counter()
        module = dm(corpus="files", corpus_options={"paths": paths}, lanes=4)
        batches(module, 1)
        times[name] = time.perf_counter() - started
    assert times["large"] < 3 * times["small"] + 1.0, times


DDP_DRIVER = '''
import sys
import lightning as L
import torch
from t5lit.experiment import load_experiment
from t5lit.pipeline import run_experiment

run_dir, crash = sys.argv[1], sys.argv[2] == "crash"

class CrashAt(L.Callback):
    def on_train_batch_end(self, trainer, *args):  # every rank, after the step-4 checkpoint
        if trainer.global_step == 5:
            raise SystemExit(3)

cfg = load_experiment(sys.argv[3], {"finetune": None, "pretrain.steps": 8, "pretrain.checkpoint_every": 4,
                                    "pretrain.batch_size": 2, "pretrain.lanes": 4, "pretrain.num_workers": 2,
                                    "pretrain.val_examples": 4, "model.overrides": {"dropout_rate": 0.1},
                                    "trainer.devices": 2, "trainer.strategy": "ddp", "trainer.accelerator": "cpu"})
run_experiment(cfg, run_dir, callbacks=[CrashAt()] if crash else [])
'''


@pytest.mark.slow
def test_a_ddp_pretraining_with_workers_resumes_to_the_uninterrupted_weights(tmp_path):
    """Two CPU ranks with two DataLoader workers each, four lanes (each revisited after the resume): killed after
    the step-4 checkpoint and started again, pre-training ends with the uninterrupted run's weights."""
    import os
    import signal

    from t5lit.checkpoint import model_weights, read_checkpoint

    driver = tmp_path / "driver.py"
    driver.write_text(DDP_DRIVER)
    experiment = Path(__file__).resolve().parents[2] / "experiments" / "debug_run.yaml"

    def run(name, mode):
        proc = subprocess.Popen([sys.executable, str(driver), str(tmp_path / name), mode, str(experiment)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                                start_new_session=True)
        try:
            _, err = proc.communicate(timeout=400)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail("the DDP run hung")
        return proc.returncode, err

    code, err = run("whole", "whole")
    assert code == 0, err[-3000:]
    code, err = run("crashed", "crash")
    assert code != 0 and (tmp_path / "crashed" / "pretrain" / "last.ckpt").exists()
    code, err = run("crashed", "whole")
    assert code == 0, err[-3000:]
    a = model_weights(read_checkpoint(tmp_path / "whole" / "pretrain" / "final.ckpt"))
    b = model_weights(read_checkpoint(tmp_path / "crashed" / "pretrain" / "final.ckpt"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not np.isnan(float(next(iter(a.values())).float().sum()))


def test_a_lane_reads_each_document_once(monkeypatch, tmp_path):
    """Blocks after blocks, a lane keeps its readers open: reading is linear in what it consumes."""
    import t5lit.data.lanes as lanes

    for i in range(4):
        with gzip.open(tmp_path / f"c4-train.{i:05d}-of-00004.json.gz", "wt") as f:
            for t in texts(120, 120 * i):
                f.write(json.dumps({"text": t}) + "\n")
    read = []

    def counting(ref):
        for doc in lanes_read(ref):
            read.append(ref.key)
            yield doc

    lanes_read = lanes.read_shard
    module = dm(corpus="files", corpus_options={"paths": str(tmp_path / "*.json.gz")}, lanes=2)
    monkeypatch.setattr(lanes, "read_shard", counting)
    lane = lanes.Lane(module.spec, 0, module.recipe, module.vocab)
    for _ in range(400):  # about one pass over its two pieces (2 x 120 documents)
        lane.next_batch()
    assert lane.block_no >= 40 and lane._readers[0].pass_ <= 1
    assert len(read) < 2 * (2 * 120) + 2 * 64  # each document of a pass once, and a read-ahead (not per block)
