"""The study's baseline objective is the paper's (Section 3.1.4): i.i.d. corruption of 15% of the tokens, each run
of corrupted tokens replaced by one sentinel; span corruption with mean span 3 is Table 7's "3" row. Table 6's
rates run at the paper's 512 inputs, numbering surplus runs as T5's code did."""

from pathlib import Path

import numpy as np
import pytest

from t5lit.data.examples import PretrainFeatures
from t5lit.experiment import load_experiment, resolve_experiment
from t5lit.objectives import SimpleVocab, get_objective
from t5lit.objectives.transforms import unique_sentinels
from t5lit.registry import ConfigError
from t5lit.sweep.spec import load_sweep

REPO = Path(__file__).resolve().parents[2]
BASELINE = REPO / "experiments" / "paper" / "baseline.yaml"
T5_VOCAB = SimpleVocab(32100)  # 32,000 pieces + 100 extra ids (T5's cc_all.32000 with DEFAULT_EXTRA_IDS)


def test_the_baseline_objective_is_iid_corruption_of_15_percent_with_one_sentinel_per_run():
    exp = resolve_experiment(BASELINE)
    p = exp.pretrain
    assert (p.objective, p.objective_params, p.inputs_length) == ("iid_denoising", {"noise_density": 0.15}, 512)
    obj = get_objective(p.objective, **p.objective_params)
    assert obj.params == {"noise_density": 0.15, "surplus_sentinels": "vocabulary"}
    assert obj.budget(512).raw == 511  # T5's split_tokens_to_inputs_length: 511 tokens + EOS
    # Table 3's "i.i.d. replace spans": each run of noise is one sentinel in the inputs; the targets are the runs,
    # each after its sentinel, and a last sentinel.
    tokens = np.arange(10, 30, dtype=np.int32)
    ex = obj(tokens, np.random.default_rng(0), SimpleVocab(200))
    assert ex["inputs"].tolist() == [10, 11, 199, 14, 15, 16, 17, 18, 19, 20, 198, 22, 197, 24, 25, 26, 27, 28, 29, 1]
    assert ex["targets"].tolist() == [199, 12, 13, 198, 21, 197, 23, 196, 1]
    # About 15% of the tokens over many chunks (i.i.d., not a fixed count as span corruption's).
    targets = [obj(np.arange(3, 514, dtype=np.int32), np.random.default_rng(i), T5_VOCAB)["targets"] for i in range(50)]
    rates = [np.count_nonzero((t >= 3) & (t < 514)) / 511 for t in targets]  # the corrupted tokens, sentinels aside
    assert 0.14 < np.mean(rates) < 0.16 and np.std(rates) > 0


def test_the_baseline_is_the_starred_row_of_tables_2_to_7_and_span_corruption_is_table_7s_row_3():
    for name, row in (("table2_architectures", "enc_dec_denoising"),
                      ("table5_bert_variants", "replace_corrupted_spans"),
                      ("table6_corruption_rates", "rate_15"), ("table7_span_lengths", "iid")):
        spec = load_sweep(REPO / "sweeps" / f"{name}.yaml", check_rows=False)
        cfg = spec.experiment(spec.row(row).overrides, 0, "x")
        assert spec.baseline == row
        assert cfg["pretrain"]["objective"] == "iid_denoising", name
        assert cfg["pretrain"]["objective_params"] == {"noise_density": 0.15}, name
    spec = load_sweep(REPO / "sweeps" / "table7_span_lengths.yaml", check_rows=False)
    span3 = spec.experiment(spec.row("span_3").overrides, 0, "x")["pretrain"]
    assert span3["objective"] == "span_corruption"
    assert span3["objective_params"] == {"noise_density": 0.15, "mean_noise_span_length": 3.0}
    assert load_experiment(BASELINE)["pretrain"]["objective"] != "span_corruption"


@pytest.mark.parametrize("rate", [0.10, 0.15, 0.25, 0.50])
def test_table6_rates_run_at_512_inputs_with_100_extra_ids(rate):
    """Chunks of 511 tokens; at 25% and 50% many examples hold more noise runs than the 100 extra ids: the
    surplus runs take the ids below them, counting down as T5's noise_span_to_unique_sentinel did."""
    pf = PretrainFeatures.build("iid_denoising", {"noise_density": rate}, "encoder_decoder", 512)
    # T5's sequence lengths for these rows (t5/models/gin/objectives/iid_{10,15,25,50}_u_u.gin)
    t5_targets = {0.10: 103, 0.15: 192, 0.25: 256, 0.50: 512}[rate]
    assert (pf.budget.raw, pf.budget.inputs, pf.budget.targets) == (511, 512, t5_targets)
    chunks = np.random.default_rng(0).integers(3, 30000, size=(64, 511)).astype(np.int32)  # text below 30000
    examples = pf.examples(chunks, [np.random.default_rng((0, i)) for i in range(64)], T5_VOCAB)
    features = pf.features(examples)
    assert features["encoder_input_tokens"].shape == (64, 512)
    assert features["decoder_target_tokens"].shape == (64, t5_targets)
    runs = [int(np.count_nonzero(e["inputs"] >= 30000)) for e in examples]
    if rate >= 0.25:
        assert sum(r > 100 for r in runs) >= (1 if rate == 0.25 else 60)  # more runs than extra ids
    for e in examples:
        # Sentinel i is id 32099 - i, past the extra ids too: the i-th noise run in the inputs, the i-th marker in
        # the targets.
        sentinels_in = [t for t in e["inputs"].tolist() if t >= 30000]
        sentinels_out = [t for t in e["targets"].tolist() if t >= 30000]
        for sentinels in (sentinels_in, sentinels_out):
            assert sentinels == list(range(32099, 32099 - len(sentinels), -1))
        assert abs(len(sentinels_in) - len(sentinels_out)) <= 1
        assert len(e["inputs"]) <= 512
    cut = np.mean([len(e["targets"]) > t5_targets for e in examples])  # T5 cut longer targets to its length
    assert cut > 0.2 if rate == 0.10 else cut < 0.1


def test_surplus_sentinels_are_t5s_ids_or_refused():
    assert unique_sentinels(3, SimpleVocab(200, num_extra_ids=2), "vocabulary").tolist() == [199, 198, 197]
    with pytest.raises(ConfigError, match="^this example needs 3 sentinels but the vocabulary has 2 extra ids"):
        unique_sentinels(3, SimpleVocab(200, num_extra_ids=2), "error")
    with pytest.raises(ConfigError, match="reserved ids"):
        unique_sentinels(198, SimpleVocab(200, num_extra_ids=2), "vocabulary")
    strict = get_objective("iid_denoising", noise_density=0.5, surplus_sentinels="error")
    with pytest.raises(ConfigError, match="sentinels but the vocabulary has 100 extra ids"):
        for i in range(20):
            strict(np.arange(3, 514, dtype=np.int32), np.random.default_rng(i), T5_VOCAB)
    with pytest.raises(ConfigError, match="unknown surplus_sentinels 'wrap'"):
        get_objective("iid_denoising", surplus_sentinels="wrap")


def test_table6_sweep_rows_pass_the_preflight_checks_at_512():
    from t5lit.checks import check_experiment

    spec = load_sweep(REPO / "sweeps" / "table6_corruption_rates.yaml", check_rows=False)
    for row in ("rate_25", "rate_50"):
        exp = resolve_experiment(BASELINE, {**spec.overrides, **spec.row(row).overrides, "model.vocab": "builtin",
                                            "model.preset": "tiny", "pretrain.corpus": "builtin",
                                            "trainer.accelerator": "cpu"})
        assert exp.pretrain.inputs_length == 512
        check_experiment(exp)  # the objective on a 1,100-id vocabulary (100 extra ids) at 512 inputs
