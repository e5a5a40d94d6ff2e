"""Every experiment under experiments/ and every row of every sweep under sweeps/ resolves and runs one
step of each stage, shrunk: the row's architecture, objective and model overrides kept, sizes and data
made tiny (built-in corpus, one built-in task). A file that only breaks at its first step fails here."""

import atexit
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from data.hub_fixtures import write_hub_copies  # tests/data/hub_fixtures.py

from t5lit.experiment import load_experiment
from t5lit.pipeline import run_experiment
from t5lit.sweep.spec import load_sweep

ROOT = Path(__file__).resolve().parents[1]
SHRINK = {"scale": "tiny", "model.preset": "tiny", "pretrain.steps": 1, "pretrain.batch_size": 2,
          "pretrain.inputs_length": 32, "pretrain.checkpoint_every": 1, "pretrain.val_examples": 4,
          "pretrain.warmup_steps": 1, "finetune.tasks": ["builtin_kind"], "finetune.steps": 1,
          "finetune.batch_size": 2, "finetune.inputs_length": 32, "finetune.targets_length": 8,
          "finetune.eval_every": 1, "evaluation.max_val_examples": 2, "evaluation.max_decode_length": 4}


def _experiment_configs() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "experiments").rglob("*.yaml")):
        if path.name == "debug.yaml":  # LightningCLI format: tests/test_cli.py runs it
            continue
        shrink = dict(SHRINK)
        if load_experiment(path).get("pretrain") is None:  # the "no pre-training" row
            shrink = {k: v for k, v in shrink.items() if not k.startswith("pretrain.")}
        out[str(path.relative_to(ROOT))] = load_experiment(path, shrink)
    return out


def _sweep_configs() -> dict[str, dict]:
    out = {}
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        spec = load_sweep(path)
        variants = {r.name: r.overrides for r in spec.rows}
        if spec.space:  # a search: its first point (low ends, first choices)
            variants["first_point"] = {p.name: p.choices[0] if p.choices else p.low for p in spec.space}
        for name, overrides in variants.items():
            cfg = load_experiment(spec.base, {**spec.overrides, **SHRINK, **overrides})
            if (cfg.get("pretrain") or {}).get("corpus", "builtin") != "builtin":  # Table 8: the paper's data sets,
                cfg = load_experiment(spec.base, {**spec.overrides, **SHRINK, **overrides,  # local copies in their
                                                  "pretrain.corpus_options.data_dir": str(_hub())})  # hub layout
            if _needs(cfg):
                cfg = load_experiment(spec.base, {**spec.overrides, **SHRINK, **overrides, **_needs(cfg)})
            out[f"{path.relative_to(ROOT)}:{name}"] = cfg
    return out


def _needs(cfg) -> dict:
    """What a row's stages need beyond the shrink: leave-one-out two tasks."""
    if any(s.get("for_each") == "leave_one_out" for s in cfg.get("stages") or ()):
        return {"finetune.tasks": ["builtin_kind", "builtin_topic"]}
    return {}


_HUB: list[Path] = []


def _hub() -> Path:
    """Small local copies of the Hugging Face data sets of Table 8, in their hub layouts (written once)."""
    if not _HUB:
        root = Path(tempfile.mkdtemp(prefix="t5lit-hub-"))
        atexit.register(shutil.rmtree, root, True)
        _HUB.append(write_hub_copies(root))
    return _HUB[0]


def _distinct() -> dict[str, dict]:
    """One run per distinct resolved config (many rows differ only in what the shrink overrode)."""
    seen, out = set(), {}
    for label, cfg in {**_experiment_configs(), **_sweep_configs()}.items():
        key = json.dumps({k: v for k, v in cfg.items() if k != "name"}, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            out[label] = cfg
    return out


CONFIGS = _distinct()


def test_every_sweep_row_is_covered():
    labels = " ".join(CONFIGS)
    for path in (ROOT / "sweeps").glob("*.yaml"):
        assert path.name in labels, path
    assert len(CONFIGS) >= 10


@pytest.mark.slow
@pytest.mark.parametrize("label", sorted(CONFIGS))
def test_runs_one_step_shrunk(label, tmp_path):
    results = run_experiment(CONFIGS[label], tmp_path / "run")
    assert results["status"] == "complete"
    assert "builtin_kind" in results["scores"], results
    assert (tmp_path / "run" / "results.json").is_file()
