"""README's recipe for a new objective, followed literally: its code block, as written in README.md, becomes
(1) a module in t5lit/objectives/ and (2) a module of a separate, installed package declared under the
``t5lit.objectives`` entry-point group. Each time the new objective works in ``t5lit list objectives``,
``t5lit data show`` and a run, with no other file touched."""

import json
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

import t5lit.objectives as objectives_package

REPO = Path(__file__).resolve().parents[2]


def recipe() -> str:
    """The README's objective recipe: its python code block that registers an objective."""
    blocks = re.findall(r"^( *)```python\n(.*?)^\1```", (REPO / "README.md").read_text(), flags=re.S | re.M)
    code = next((textwrap.dedent(b) for _, b in blocks if "@register_objective(" in b), None)
    assert code is not None, "README.md has no python block with @register_objective"
    return code


def renamed(code: str) -> tuple[str, str]:
    """The recipe with its objective renamed uniquely (so the test never collides with a real one)."""
    name = re.search(r'@register_objective\("([^"]+)"', code).group(1)
    new = f"{name}_{uuid.uuid4().hex[:8]}"
    return code.replace(f'@register_objective("{name}"', f'@register_objective("{new}"'), new


def t5lit(*args, env=None, cwd=REPO):
    return subprocess.run([sys.executable, "-m", "t5lit.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def check_works_everywhere(name: str, tmp_path: Path, env=None) -> None:
    out = t5lit("list", "objectives", env=env)
    assert out.returncode == 0 and name in out.stdout.split(), out.stderr[-2000:]
    out = t5lit("data", "show", "--objective", name, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(f"objective {name}")
    assert "[encoder_decoder]" in out.stdout and "[prefix_lm]" in out.stdout
    run_dir = tmp_path / "run"
    out = t5lit("run", "experiments/debug_run.yaml", f"pretrain.objective={name}", "pretrain.objective_params={}",
                "pretrain.steps=2", "finetune.steps=2", "finetune.eval_every=2", "--run-dir", str(run_dir), env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"objective: {name}" in (run_dir / "config.yaml").read_text()
    assert json.loads((run_dir / "results.json").read_text())["status"] == "complete"


@pytest.mark.slow
def test_recipe_as_a_module_of_the_objectives_folder(tmp_path):
    code, name = renamed(recipe())
    folder = Path(objectives_package.__file__).parent
    path = folder / f"{name}.py"
    before = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO).stdout
    try:
        path.write_text(code)
        check_works_everywhere(name, tmp_path)
    finally:
        path.unlink(missing_ok=True)
        for cached in (folder / "__pycache__").glob(f"{name}.*"):
            cached.unlink()
    after = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, cwd=REPO).stdout
    assert after == before  # nothing else was touched, and the new file is gone again


@pytest.mark.slow
def test_recipe_as_an_installed_plugin_package(tmp_path):
    code, name = renamed(recipe())
    site = tmp_path / "site"
    pkg = site / "my_t5lit_objectives"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "reverse.py").write_text(code)
    info = site / "my_t5lit_objectives-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-t5lit-objectives\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[t5lit.objectives]\n{name} = my_t5lit_objectives.reverse\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    check_works_everywhere(name, tmp_path, env=env)
    shutil.rmtree(site)
    out = t5lit("list", "objectives")
    assert name not in out.stdout.split()  # uninstalled, it is gone


def test_a_broken_plugin_is_one_warning_and_the_rest_works(tmp_path):
    import os

    site = tmp_path / "site"
    info = site / "broken_t5lit_plugin-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-t5lit-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[t5lit.objectives]\nbroken = no_such_module_anywhere\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = t5lit("list", "objectives", env=env)
    assert out.returncode == 0 and "span_corruption" in out.stdout.split()
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "plug-in 'broken'" in lines[0] and "ModuleNotFoundError" in lines[0]
