"""train_net.py end to end on the mini shapes dataset: train, resume, eval-only, and 2 CPU processes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.detectron2, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
MINI = [
    "dataloader.train.dataset.names=shapes_mini_train",
    "dataloader.test.dataset.names=shapes_mini_val",
    "dataloader.train.total_batch_size=2",
    "optimizer.lr=0.005",
    "train.log_period=5",
]


def _train_net(tmp_path, *args, timeout=600):
    env = dict(os.environ, D2IMBALANCE_CACHE=str(tmp_path / "cache"), OMP_NUM_THREADS="1")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train_net.py"), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=timeout,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return result.stdout + result.stderr


def _metrics(out):
    return [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]


def _training_iterations(out):
    return [m["iteration"] for m in _metrics(out) if "total_loss" in m]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    out = tmp / "run"
    log = _train_net(
        tmp, "--config-file", "Baselines/retinanet_shapes.py", *MINI,
        "train.max_iter=20", "train.eval_period=20", "train.checkpointer.period=10", f"train.output_dir={out}",
        "train.grad_clip.enabled=true", "train.grad_clip.max_norm=inf",  # logs grad_norm, clips nothing
    )
    return tmp, out, log


def test_training_writes_checkpoints_metrics_config_and_coco_results(trained):
    _, out, log = trained
    for name in ("model_0000009.pth", "model_final.pth", "metrics.json", "config.yaml", "last_checkpoint"):
        assert (out / name).is_file(), name
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard event file"
    metrics = _metrics(out)
    assert _training_iterations(out) == [4, 9, 14, 19]
    assert metrics[-1]["iteration"] == 20 and "bbox/AP" in metrics[-1] and "bbox/APs" in metrics[-1]
    assert all("eta_seconds" in m and m["grad_norm"] > 0 for m in metrics if "total_loss" in m)
    assert "No GPU found: running on CPU" in log
    assert "Dataset shapes_mini_train" in log  # validation ran


def test_resume_continues_from_the_newest_readable_checkpoint_and_its_data_stream(trained):
    """model_final.pth cut in half, as an in-place write killed half-way left it before checkpoints
    were written atomically: --resume takes model_0000019.pth (the same iteration), continues the
    data stream after the 20 batches trained, and names the changed max_iter."""
    tmp, out, _ = trained
    final = out / "model_final.pth"
    final.write_bytes(final.read_bytes()[: final.stat().st_size // 2])
    log = _train_net(
        tmp, "--config-file", "Baselines/retinanet_shapes.py", "--resume", *MINI,
        "train.max_iter=25", "train.eval_period=0", f"train.output_dir={out}",
    )
    assert "model_0000019.pth, the newest readable checkpoint" in log
    assert f"Resuming from {out / 'model_0000019.pth'} at iteration 20" in log
    assert "Continuing the data stream after its first 20 batches" in log
    assert "train.max_iter=25 differs from the checkpoint's run (train.max_iter=20)" in log
    assert _training_iterations(out) == [4, 9, 14, 19, 24]


def test_eval_only_loads_the_checkpoint_and_writes_results(trained):
    tmp, out, _ = trained
    eval_dir = tmp / "eval"
    log = _train_net(
        tmp, "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", *MINI,
        f"train.init_checkpoint={out / 'model_final.pth'}", f"train.output_dir={eval_dir}",
    )
    assert "Loaded 102 of the model's 102 tensors" in log
    results = json.loads((eval_dir / "eval_results.json").read_text())
    assert set(results["bbox"]) >= {"AP", "AP50", "APs", "APm", "APl"}


def test_two_cpu_processes_with_gloo(tmp_path):
    out = tmp_path / "ddp"
    log = _train_net(
        tmp_path, "--config-file", "Baselines/retinanet_shapes.py", "--num-gpus", "2", *MINI,
        "train.max_iter=4", "train.eval_period=0", f"train.output_dir={out}",
    )
    assert "Rank of current process: 0. World size: 2" in log
    assert (out / "model_final.pth").is_file()
    assert _training_iterations(out)[-1] == 3
