"""docs/adding-an-env.md, followed as written: its file blocks become a separate package, pip installs it (a real
wheel build, into a target dir of its own), the entry point registers ``mine/Counter-v0`` with no edit to this repo,
and `resrl-agent train` on the doc's config runs SFT, 2 RL iterations and the held-out comparison on it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "adding-an-env.md"
BLOCK = re.compile(r"```(?:python|toml|yaml)\n# (\S+)\n(.*?)```", re.DOTALL)


def _write_doc_files(root: Path) -> dict[str, Path]:
    written = {}
    for name, body in BLOCK.findall(DOC.read_text(encoding="utf-8")):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body, encoding="utf-8")
        written[name] = path
    (root / "counter-env" / "counter_env" / "__init__.py").write_text("")  # the doc: "(empty)"
    return written


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"{args}: exit {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.mark.slow
def test_the_docs_plugin_installs_registers_and_trains(tiny_model_dir: Path, tmp_path: Path) -> None:
    files = _write_doc_files(tmp_path)
    assert set(files) == {
        "counter-env/counter_env/env.py",
        "counter-env/counter_env/actions.py",
        "counter-env/counter_env/prompts.py",
        "counter-env/counter_env/spec.py",
        "counter-env/pyproject.toml",
        "counter.yaml",
    }
    site = tmp_path / "site"
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "OMP_NUM_THREADS": "1"}
    _run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "--quiet",
         "--target", str(site), str(tmp_path / "counter-env")],
        env,
        tmp_path,
        300,
    )  # fmt: skip
    env["PYTHONPATH"] = str(site)
    probe = (
        "import envs, gymnasium as gym; from gymnasium.utils.env_checker import check_env; "
        "spec = envs.spec('mine/Counter-v0'); assert spec.package == 'counter_env', spec; "
        "e = gym.make('mine/Counter-v0').unwrapped; check_env(e, skip_render_check=True); "
        "print(envs.env_ids(), len(e.task_ids('train')), e.task_ids('test')[0])"
    )
    out = _run([sys.executable, "-c", probe], env, tmp_path, 120).stdout
    assert "'mine/Counter-v0'" in out and "200 test-10000" in out
    assert (
        "counter_env"
        not in subprocess.run(  # the plugin is seen only where it is installed
            [sys.executable, "-c", "import envs; print(envs.env_ids())"], capture_output=True, text=True, check=True
        ).stdout
    )

    run = tmp_path / "runs" / "counter"
    cli = Path(sys.executable).with_name("resrl-agent")
    _run([str(cli), "train", "counter.yaml", f"model.path={tiny_model_dir}", f"run_dir={run}"], env, tmp_path, 900)
    rl = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rl if r.get("phase") == "rl"] == [0, 1]
    rows = json.loads((run / "heldout.json").read_text())["rows"]
    assert [r["policy"] for r in rows] == ["untrained", "sft", "rl"] and all(r["total"] == 8 for r in rows)
    sft = [json.loads(x) for x in (run / "sft_episodes.jsonl").read_text().splitlines()]
    assert sft and all(e["task_id"].startswith("train-") for e in sft)  # the expert played training tasks
    held_out = [json.loads(x)["task_id"] for x in (run / "eval_rl.jsonl").read_text().splitlines()]
    assert len(held_out) == 8 and all(t.startswith("test-") for t in held_out)

    out_dir = tmp_path / "eval"
    _run(
        [str(cli), "eval", "counter.yaml", f"model.path={tiny_model_dir}", f"run_dir={run}", "--out", str(out_dir),
         "--checkpoint", str(run / "checkpoints" / "iter_00002.pt"), "--no-plot"],
        env,
        tmp_path,
        600,
    )  # fmt: skip
    report = json.loads((out_dir / "eval_report.json").read_text())
    assert set(report["env_metrics"]) == {"counter/final_count"}  # the spec's episode metrics
    targets = {str(1 + int(t.rpartition("-")[2]) % 3) for t in held_out}
    assert set(report["breakdown"]) == targets  # success per target (category_key, category_of_task)
    assert report["avg_at_n"] == pytest.approx(rows[-1]["success"])
