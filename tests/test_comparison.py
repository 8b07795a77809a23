"""The comparison tool on crafted runs: table values by hand, skip / resume, JSON, PNG, ETA text.

Everything but the last tests runs without detectron2: configs are described by a fake (max_iter 20,
declared hyper-parameters), training by a fake trainer that writes metrics.json, benchmarks by JSON
files written in the cache.
"""
import importlib.util
import json
import math
import re
import sys
import threading
import time
from pathlib import Path

import pytest

from d2imbalance.analysis import comparison as cmp
from d2imbalance.analysis.comparison import Comparison, ConfigInfo, Entry, delta_ap
from d2imbalance.analysis.hyperparameters import FOCAL_LOSS, Hyperparameter

REPO = Path(__file__).resolve().parents[1]
MAX_ITER = 20
T = Hyperparameter("head.num_steps", 2, "T")
ENTRY = Entry("Method", "Proj/method_shapes.py", "Baselines/base_shapes.py", detector="RetinaNet", baseline_label="Base")
SETTINGS = {"image_size": 320, "batch": 2, "iters": 20, "warmup": 3, "device": "cpu", "amp": False, "overrides": []}
# AP, APs, APm, APl of each seed's final evaluation.
BASE = {0: (30.0, 10.0, 20.0, 40.0), 1: (32.0, 12.0, 22.0, 44.0)}
METHOD = {0: (33.0, 15.0, 25.0, 45.0), 1: (34.0, 15.0, 27.0, 47.0)}
RATIOS = {"train_step_ms": 1.05, "peak_memory_mib": 0.9, "inference_ms_per_image": 1.1}


def describe(config, overrides):
    declared = {"Baselines/base_shapes.py": FOCAL_LOSS, "Proj/method_shapes.py": (T,)}[config]
    return ConfigInfo(config, MAX_ITER, f"fake.{Path(config).stem}", tuple((h, h.default) for h in declared))


def write_metrics(run_dir: Path, aps=None, iteration=MAX_ITER, time=0.5):
    """metrics.json as detectron2 writes it: training rows, an evaluation at ``iteration``."""
    run_dir.mkdir(parents=True, exist_ok=True)
    rows = [{"iteration": 9, "time": time, "total_loss": 1.0}, {"iteration": 19, "time": time}]
    if aps is not None:
        rows.append({"iteration": iteration, **{f"bbox/{k}": v for k, v in zip(("AP", "APs", "APm", "APl"), aps)},
                     "bbox/AP50": 50.0, "bbox/AP75": 30.0})  # fmt: skip
    with open(run_dir / "metrics.json", "a") as f:
        f.write("".join(json.dumps(r) + "\n" for r in rows))


def comparison(tmp_path, seeds=(0, 1), **kwargs) -> Comparison:
    defaults = dict(name="demo", benchmark_settings=SETTINGS, describe=describe, clock=FakeClock(),
                    train_net=str(tmp_path / "train_net.py"), log=lambda line: None)  # fmt: skip
    (tmp_path / "train_net.py").write_text("")
    return Comparison([ENTRY], list(seeds), str(tmp_path / "out"), **{**defaults, **kwargs})


def write_benchmark(c: Comparison, entry=ENTRY, **settings):
    path = c.benchmark_path(entry)
    path.parent.mkdir(parents=True, exist_ok=True)
    result = {"settings": {**SETTINGS, **settings}, "configs": {"baseline": entry.baseline, "method": entry.config},
              "baseline": {k: 100.0 for k in RATIOS}, "method": {k: 100.0 * v for k, v in RATIOS.items()},
              "ratio": RATIOS}  # fmt: skip
    path.write_text(json.dumps(result))


def finished_runs(c: Comparison):
    for seed in (0, 1):
        write_metrics(c.run_dir(ENTRY.baseline, seed), BASE[seed])
        write_metrics(c.run_dir(ENTRY.config, seed), METHOD[seed])


class FakeClock:
    def __init__(self, step=60.0):
        self.now, self.step = 0.0, step

    def __call__(self):
        self.now += self.step
        return self.now


def never(*args):
    raise AssertionError(f"not expected to be called: {args}")


def test_table_json_and_png_of_finished_runs(tmp_path):
    """Baseline AP 30, 32: mean 31, sample std sqrt(((30-31)^2 + (32-31)^2) / 1) = 1.414.
    Method AP 33, 34: mean 33.5, std sqrt(2 * 0.5^2) = 0.707.
    ΔAP = 33.5 - 31 = +2.5; spread sqrt(1.414^2 + 0.707^2) = sqrt(2.5) = 1.581;
    standard error sqrt(2/2 + 0.5/2) = sqrt(1.25) = 1.118.
    APs 10, 12 -> 11.0 ± 1.4; method APs 15, 15 -> 15.0 ± 0.0; APl 40, 44 -> 42.0 ± 2.8."""
    c = comparison(tmp_path, trainer=never, benchmark=never)
    finished_runs(c)
    write_benchmark(c)
    paths = c.run()

    lines = paths["md"].read_text().splitlines()
    assert lines[0] == "# demo"
    table = [line for line in lines if line.startswith("|")]
    assert table[0] == ("| Solution | Detector | Seeds | AP | ΔAP | AP_s | AP_m | AP_l | # hyper-parameters | "
                        "Train step | Memory | Inference |")  # fmt: skip
    assert table[2] == "| Base | RetinaNet | 2 | 31.0 ± 1.4 | - | 11.0 ± 1.4 | 21.0 ± 1.4 | 42.0 ± 2.8 | 2 | - | - | - |"
    assert table[3] == "| Method | RetinaNet | 2 | 33.5 ± 0.7 | +2.5 ± 1.6 | 15.0 ± 0.0 | 26.0 ± 1.4 | 46.0 ± 1.4 | 1 | 1.05 | 0.90 | 1.10 |"
    assert "sqrt(s_method^2 + s_baseline^2)" in paths["md"].read_text()

    data = json.loads(paths["json"].read_text())
    assert data["seeds"] == [0, 1] and data["delta_ap_spread"].startswith("sqrt(s_method^2 + s_baseline^2)")
    base, method = data["rows"]
    assert (base["kind"], base["label"], base["config"], method["baseline"]) == (
        "baseline", "Base", ENTRY.baseline, ENTRY.baseline)
    assert base["ap_mean"]["AP"] == 31.0 and base["ap_std"]["AP"] == pytest.approx(math.sqrt(2))
    assert method["ap_mean"]["APm"] == 26.0 and method["ap_std"]["APs"] == 0.0
    assert method["delta_ap"] == 2.5
    assert method["delta_ap_spread"] == pytest.approx(math.sqrt(2.5))
    assert method["delta_ap_stderr"] == pytest.approx(math.sqrt(1.25))
    assert method["ratios"] == {"train_step": 1.05, "memory": 0.9, "inference": 1.1}
    assert method["benchmark"]["method"]["train_step_ms"] == pytest.approx(105.0)
    assert [(r["seed"], r["iteration"], r["ap"]["AP"]) for r in method["runs"]] == [(0, 20, 33.0), (1, 20, 34.0)]
    assert method["runs"][1]["output_dir"] == str(tmp_path / "out" / "Proj" / "method_shapes" / "seed1")
    assert base["hyperparameters"] == [
        {"name": "focal_loss_alpha", "default": 0.25, "value": 0.25, "meaning": FOCAL_LOSS[0].meaning},
        {"name": "focal_loss_gamma", "default": 2.0, "value": 2.0, "meaning": FOCAL_LOSS[1].meaning}]
    assert (base["num_hyperparameters"], method["num_hyperparameters"]) == (2, 1)

    png = paths["png"].read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_one_seed_has_no_spread_and_unreported_aps_show_a_dash(tmp_path):
    c = comparison(tmp_path, seeds=[0], name="one", trainer=never, benchmark=never)
    write_metrics(c.run_dir(ENTRY.baseline, 0), (30.0, float("nan"), 20.0, 40.0))
    write_metrics(c.run_dir(ENTRY.config, 0), (33.0, 15.0, 25.0, 45.0))
    write_benchmark(c)
    data = json.loads(c.run()["json"].read_text())
    assert data["rows"][1]["delta_ap"] == 3.0 and data["rows"][1]["delta_ap_spread"] is None  # NaN -> null
    rows = [line for line in (tmp_path / "out" / "one.md").read_text().splitlines() if line.startswith("| ")]
    assert rows[1] == "| Base | RetinaNet | 1 | 30.0 | - | - | 20.0 | 40.0 | 2 | - | - | - |"
    assert rows[2].startswith("| Method | RetinaNet | 1 | 33.0 | +3.0 | 15.0 |")


def test_delta_ap_by_hand():
    d = delta_ap([33.0, 34.0], [30.0, 32.0])
    assert (d["delta"], d["spread"], d["stderr"]) == pytest.approx((2.5, math.sqrt(2.5), math.sqrt(1.25)))
    # Three seeds each: s_m = std(1, 2, 3) = 1, s_b = std(0, 0, 0) = 0 -> spread 1, stderr 1/sqrt(3).
    d = delta_ap([1.0, 2.0, 3.0], [0.0, 0.0, 0.0])
    assert (d["delta"], d["spread"], d["stderr"]) == pytest.approx((2.0, 1.0, 1 / math.sqrt(3)))


def test_resume_trains_only_missing_runs_and_resumes_interrupted_ones(tmp_path, monkeypatch):
    """Baseline seed 0 and method seed 0 finished; baseline seed 1 interrupted (checkpoint, last
    evaluation at iteration 10 < max_iter 20); method seed 1 never started."""
    c = comparison(tmp_path, num_gpus=4, overrides=["dataloader.train.total_batch_size=8"], benchmark=never)
    write_metrics(c.run_dir(ENTRY.baseline, 0), BASE[0])
    write_metrics(c.run_dir(ENTRY.config, 0), METHOD[0])
    interrupted = c.run_dir(ENTRY.baseline, 1)
    write_metrics(interrupted, BASE[1], iteration=10)
    (interrupted / "last_checkpoint").write_text("model_0000009.pth")
    write_benchmark(c)
    assert [(run.config, run.seed, state) for run, state in c.plan()] == [
        (ENTRY.baseline, 0, "finished"), (ENTRY.baseline, 1, "interrupted"),
        (ENTRY.config, 0, "finished"), (ENTRY.config, 1, "new")]

    jobs = []

    def fake_train(job):  # what train_net.py leaves behind: the final evaluation at max_iter
        jobs.append(job)
        aps = BASE if job.run.config == ENTRY.baseline else METHOD
        write_metrics(job.run.output_dir, aps[job.run.seed])

    monkeypatch.setattr(cmp, "train_in_subprocess", fake_train)
    c.run()
    assert [(j.run.config, j.run.seed, j.resume) for j in jobs] == [(ENTRY.baseline, 1, True), (ENTRY.config, 1, False)]
    resumed, fresh = (list(j.command) for j in jobs)
    assert resumed[1:] == [str(tmp_path / "train_net.py"), "--config-file", ENTRY.baseline, "--num-gpus", "4",
                           "--resume", "train.seed=1", f"train.output_dir={interrupted}",
                           "dataloader.train.total_batch_size=8"]  # fmt: skip
    assert "--resume" not in fresh and f"train.output_dir={c.run_dir(ENTRY.config, 1)}" in fresh
    assert jobs[0].log_file == interrupted / "comparison_train.log"
    assert json.loads((interrupted / "comparison_run.json").read_text()) == {
        "config": ENTRY.baseline, "seed": 1, "overrides": ["dataloader.train.total_batch_size=8"]}

    # Everything finished now: a second run trains nothing and reuses the cached benchmark.
    jobs.clear()
    c2 = comparison(tmp_path, num_gpus=4, overrides=["dataloader.train.total_batch_size=8"], benchmark=never)
    c2.run()
    assert jobs == []
    # The same directory with other overrides is refused rather than mixed.
    c3 = comparison(tmp_path, overrides=["dataloader.train.total_batch_size=2"], benchmark=never)
    with pytest.raises(ValueError, match=r"seed1 was trained as .*total_batch_size=8.*another --output-dir"):
        c3.run()


def test_finished_means_a_bbox_evaluation_at_max_iter(tmp_path):
    """detectron2 records the evaluation after the last step at iteration max_iter (20 here); the
    periodic evaluations come at eval_period - 1, 2 * eval_period - 1, ... (19 for a period of 20 is
    never one: the hook leaves the last step to the final evaluation)."""
    run = lambda name: cmp.Run("c.py", 0, tmp_path / name, MAX_ITER)  # noqa: E731
    write_metrics(tmp_path / "final", BASE[0], iteration=20)
    write_metrics(tmp_path / "one_short", BASE[0], iteration=19)
    write_metrics(tmp_path / "no_eval")
    (tmp_path / "no_eval" / "last_checkpoint").write_text("model_0000019.pth")
    assert [cmp.run_state(run(n)) for n in ("final", "one_short", "no_eval", "absent")] == [
        "finished", "new", "interrupted", "new"]


def test_a_run_that_ends_without_its_final_evaluation_stops_the_comparison(tmp_path):
    c = comparison(tmp_path, trainer=lambda job: write_metrics(job.run.output_dir), benchmark=never)
    with pytest.raises(RuntimeError, match=r"base_shapes.py \(seed 0\) ended without a bbox evaluation at iteration 20"):
        c.train()


def test_benchmarks_are_cached_per_settings(tmp_path):
    calls = []

    def bench(method, baseline, settings):
        calls.append((method, baseline, settings))
        return {"settings": settings, "configs": {"baseline": baseline, "method": method}, "ratio": RATIOS}

    c = comparison(tmp_path, benchmark=bench)
    assert c.benchmark(ENTRY)["ratio"] == RATIOS and len(calls) == 1
    assert c.benchmark(ENTRY) and len(calls) == 1  # cached
    other = comparison(tmp_path, benchmark=bench, benchmark_settings={**SETTINGS, "iters": 50})
    other.benchmark(ENTRY)
    assert len(calls) == 2 and calls[1][2]["iters"] == 50  # other settings: measured again
    # An entry's own settings: its image size, and "{image_size}" in its overrides.
    yolo = Entry("YOLO", "R/y.py", "B/y.py", benchmark={"image_size": 256, "overrides": ("model.input_size={image_size}",)})
    settings = comparison(tmp_path, benchmark_settings={**SETTINGS, "overrides": ["a=1"]}).entry_benchmark_settings(yolo)
    assert settings["image_size"] == 256 and settings["overrides"] == ["a=1", "model.input_size=256"]


def test_the_comparison_logs_one_progress_line_per_trained_run(tmp_path):
    """The lines themselves are tested in test_progress.py. Fake clock, every reading +60 s: progress
    start 60, run start 120, run end 180 (duration 60 s), the line's reading 240 (elapsed 180 s)."""
    lines = []
    c = comparison(tmp_path, log=lines.append, benchmark=never,
                   trainer=lambda job: write_metrics(job.run.output_dir, BASE[job.run.seed]))  # fmt: skip
    c.train()
    assert lines[0] == "4 runs (2 configs x 2 seeds): 0 finished, 0 to resume, 4 to train."
    assert lines[1] == f"Run 1/4: Baselines/base_shapes.py seed 0 -> {c.run_dir(ENTRY.baseline, 0)}"  # one lane: no lane tag
    progress_lines = [line for line in lines if "runs trained" in line]
    assert len(progress_lines) == 4
    assert re.fullmatch(r"1/4 runs trained \(Baselines/base_shapes.py seed 0: 1m 00s\); elapsed 3m 00s; "
                        r"ETA 3m 00s \(3 left x 1m 00s mean per run\)", progress_lines[0])  # fmt: skip
    assert progress_lines[-1].endswith("all runs trained")


def test_lane_environments_split_the_gpus_or_the_cores():
    assert cmp.lane_environments(1, 8, [str(i) for i in range(8)], 16, {}) == [{}]  # alone: the whole machine
    assert cmp.lane_environments(2, 2, ["2", "3", "5", "7"], 16, {}) == [
        {"CUDA_VISIBLE_DEVICES": "2,3"}, {"CUDA_VISIBLE_DEVICES": "5,7"}]
    assert cmp.lane_environments(3, 1, ["0", "1", "2", "3"], 16, {}) == [
        {"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}, {"CUDA_VISIBLE_DEVICES": "2"}]
    with pytest.raises(ValueError, match=r"jobs=3 lanes x num_gpus=2 need 6 GPUs, 4 visible \(0,1,2,3\); lower"):
        cmp.lane_environments(3, 2, ["0", "1", "2", "3"], 16, {})
    assert cmp.lane_environments(2, 1, [], 5, {}) == [{"OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2"}] * 2
    assert cmp.lane_environments(4, 1, [], 2, {}) == [{"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}] * 4
    # A thread count the user set is theirs.
    assert cmp.lane_environments(2, 1, [], 8, {"OMP_NUM_THREADS": "3"}) == [{"MKL_NUM_THREADS": "4"}] * 2


def test_lanes_train_runs_at_once_each_in_its_lane_environment(tmp_path):
    """Two lanes: both trainers must be inside a run at the same time (the barrier), each run is
    trained once, and each job carries its lane's environment."""
    barrier = threading.Barrier(2, timeout=10)
    jobs, lock = [], threading.Lock()

    def trainer(job):
        with lock:
            jobs.append(job)
        barrier.wait()  # a BrokenBarrierError after 10 s if the lanes ran one after another
        write_metrics(job.run.output_dir, BASE[job.run.seed])

    lines = []
    c = comparison(tmp_path, jobs=2, gpu_ids=["4", "6"], trainer=trainer, benchmark=never, log=lines.append)
    c.train()
    assert sorted((j.run.config, j.run.seed) for j in jobs) == sorted(
        (config, seed) for config in (ENTRY.baseline, ENTRY.config) for seed in (0, 1))
    assert {j.env["CUDA_VISIBLE_DEVICES"] for j in jobs} == {"4", "6"}
    started = [line for line in lines if line.startswith("Run ")]
    assert sorted(line.split(":")[0] for line in started) == ["Run 1/4", "Run 2/4", "Run 3/4", "Run 4/4"]
    assert all(line.endswith(("(lane 1/2)", "(lane 2/2)")) for line in started)
    assert "mean per run / 2 lanes)" in [line for line in lines if "runs trained" in line][0]  # the ETA is shared
    assert [line for line in lines if "runs trained" in line][-1].endswith("all runs trained")


def test_a_failing_lane_stops_new_runs_and_the_error_reaches_the_caller(tmp_path):
    """The first run (baseline seed 0) fails. A run the other lane has under way ends only after that
    failure (the event, then time for the failing lane to record it), so no lane may start a third run."""
    started, failed = [], threading.Event()

    def trainer(job):
        started.append((job.run.config, job.run.seed))
        if job.run.seed == 0 and job.run.config == ENTRY.baseline:
            failed.set()
            raise RuntimeError("out of memory in the baseline")
        assert failed.wait(timeout=10)
        time.sleep(0.5)
        write_metrics(job.run.output_dir, BASE[job.run.seed])

    c = comparison(tmp_path, jobs=2, trainer=trainer, benchmark=never)
    with pytest.raises(RuntimeError, match="out of memory in the baseline"):
        c.train()
    assert len(started) <= 2  # the failing run and at most the other lane's run already under way


def test_train_in_subprocess_gives_the_run_its_lane_environment(tmp_path, monkeypatch):
    run = cmp.Run("c.py", 0, tmp_path / "run", MAX_ITER)
    command = (sys.executable, "-c", "import os, sys; print('lane threads', os.environ.get('OMP_NUM_THREADS'), os.getcwd()); "
               "print('and its stderr', file=sys.stderr)")  # fmt: skip
    (tmp_path / "repo").mkdir()
    cmp.train_in_subprocess(cmp.TrainingJob(run, False, command, tmp_path / "run" / "log", tmp_path / "repo",
                                            {"OMP_NUM_THREADS": "7"}))  # fmt: skip
    assert f"lane threads 7 {tmp_path / 'repo'}" in (tmp_path / "run" / "log").read_text()
    assert "and its stderr" in (tmp_path / "run" / "log").read_text()
    # A job without lane settings runs in this process's environment.
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    cmp.train_in_subprocess(cmp.TrainingJob(run, False, command, tmp_path / "run" / "log", tmp_path / "repo"))
    assert f"lane threads 3 {tmp_path / 'repo'}" in (tmp_path / "run" / "log").read_text()


def test_entries_and_arguments_are_checked(tmp_path):
    path = tmp_path / "entries.json"
    path.write_text(json.dumps([{"label": "A", "config": "x.py", "baseline": "b.py", "benchmark": {"image_size": 300}}]))
    (entry,) = cmp.load_entries(str(path))
    assert (entry.label, entry.detector_name, entry.benchmark) == ("A", "b", {"image_size": 300})
    path.write_text(json.dumps({"entries": [{"label": "A", "config": "x.py", "baseline": "b.py", "colour": 1}]}))
    with pytest.raises(ValueError, match=r"unknown keys \['colour'\]"):
        cmp.load_entries(str(path))
    with pytest.raises(ValueError, match="with itself"):
        Entry("A", "x.py", "x.py")
    with pytest.raises(ValueError, match="distinct integers"):
        comparison(tmp_path, seeds=[0, 0])
    with pytest.raises(ValueError, match=r"jobs=0 must be >= 1"):
        comparison(tmp_path, jobs=0)
    with pytest.raises(ValueError, match="sets train.seed and train.output_dir"):
        comparison(tmp_path, overrides=["train.seed=3"])
    assert cmp.config_slug("configs/ResObj/x.py") == cmp.config_slug("ResObj/x.py") == "ResObj/x"


# ------------------------------------------------------------------------------------------------
# The shipped lists

CONFIGS = REPO / "configs"
#: Baselines a method config does not import (same recipe, written separately): method -> why.
NOT_IMPORTED = {
    "ObjConf/retinanet_conf_R_50_FPN_1x.py": "both import Baselines/retinanet_R_50_FPN_1x.py and common/coco_600.py",
    "ObjConf/retinanet_iou_aware_R_50_FPN_1x.py": "as retinanet_conf_R_50_FPN_1x.py",
}


def _imported_configs(name: str) -> set:
    """The configs ``name`` imports its values from, transitively (relative imports, not common/)."""
    found, todo = set(), [name]
    while todo:
        current = todo.pop()
        for level, module in re.findall(r"^from (\.+)([\w.]+) import", (CONFIGS / current).read_text(), re.M):
            parent = Path(current).parent
            for _ in range(len(level) - 1):
                parent = parent.parent
            target = (parent / module.replace(".", "/")).as_posix() + ".py"
            if not target.startswith("common/") and target not in found:
                found.add(target)
                todo.append(target)
    return found


def _shipped():
    from d2imbalance.analysis.solution_lists import COMPARISONS

    return COMPARISONS


def test_shipped_configs_exist_and_each_method_derives_from_its_baseline():
    comparisons = _shipped()
    assert set(comparisons) == {"one_stage_shapes", "two_stage_shapes", "shapes", "coco_r50_fpn_1x"}
    for name, entries in comparisons.items():
        assert len({e.label for e in entries}) == len(entries), name
        for entry in entries:
            for config in (entry.config, entry.baseline):
                assert (CONFIGS / config).is_file(), f"{name}: {entry.label}'s {config} does not exist"
            if (CONFIGS / entry.config).is_file() and entry.config not in NOT_IMPORTED:
                assert entry.baseline in _imported_configs(entry.config), (name, entry.label)
    one_stage, two_stage, shapes = (comparisons[k] for k in ("one_stage_shapes", "two_stage_shapes", "shapes"))
    assert {e.baseline for e in one_stage} == {"Baselines/retinanet_shapes.py"}
    assert {e.baseline for e in two_stage} == {"Baselines/faster_rcnn_shapes.py"}
    assert set(one_stage) <= set(shapes) and set(two_stage) <= set(shapes)
    assert all(e.config.endswith("_shapes.py") and e.baseline.endswith("_shapes.py") for e in shapes)
    assert all("R_50_FPN_1x" in e.config for e in comparisons["coco_r50_fpn_1x"])


def test_every_solution_project_appears_in_every_applicable_list():
    projects = {p.name for p in CONFIGS.iterdir() if p.is_dir()} - {"Baselines", "common", "comparisons"}
    # one_stage_shapes holds the RetinaNet solutions: it applies to the projects with a RetinaNet shapes config.
    applicable = {name: {p for p in projects if any((CONFIGS / p).glob(pattern))}
                  for name, pattern in (("one_stage_shapes", "retinanet_*_shapes.py"),
                                        ("two_stage_shapes", "faster_rcnn_*_shapes.py"))}  # fmt: skip
    applicable["two_stage_shapes"] -= {"ResObj", "ScaleBalanced"}  # seed papers: in "shapes", not in the review's rows
    assert "IoUBalancedSampling" not in applicable["one_stage_shapes"] and "DRLoss" in applicable["one_stage_shapes"]
    for name, entries in _shipped().items():
        listed = {e.config.split("/")[0] for e in entries}
        expected = applicable.get(name, projects)
        assert expected <= listed, (name, sorted(expected - listed))
    # Every method's shapes config is in "shapes", each RetinaNet one in one_stage_shapes, and each Faster
    # R-CNN one but the seed papers' (which the review's Table 1 does not list) in two_stage_shapes.
    method_shapes = {str(c.relative_to(CONFIGS)) for c in CONFIGS.glob("*/*_shapes.py")} - {
        str(c.relative_to(CONFIGS)) for c in (CONFIGS / "Baselines").glob("*.py")}
    seed_papers = ("ResObj/", "ScaleBalanced/", "ObjConf/")
    for name, prefix in (("shapes", ""), ("one_stage_shapes", "retinanet_"), ("two_stage_shapes", "faster_rcnn_")):
        expected = {c for c in method_shapes if c.split("/")[1].startswith(prefix)}
        if name == "two_stage_shapes":
            expected = {c for c in expected if not c.startswith(seed_papers)}
        assert expected == {e.config for e in _shipped()[name]}, (name, expected ^ {e.config for e in _shipped()[name]})
    labels = {e.label for e in _shipped()["shapes"]}
    assert {"RetinaNet-ResObj", "FasterRCNN-ResObj", "YOLOv3-ResObj", "RetinaNet-SCB", "FasterRCNN-SCB",
            "SSD300-SCB", "FSSD300-SCB", "DSSD321-SCB", "RefineDet320-SCB (ARM)", "RetinaNet-Conf",
            "IoU-aware RetinaNet", "GHM (GHM-C + GHM-R)", "AP-Loss", "DR Loss", "Sampling-Free",
            "IoU-balanced sampling", "OHEM", "ISR (PISA)", "DR Loss (ROI head)",
            "Sampling-Free (RPN + ROI)"} == labels


def test_cli_shows_the_lists(capsys):
    spec = importlib.util.spec_from_file_location("compare_solutions", REPO / "tools" / "compare_solutions.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.main(["--show-lists"]) == 0
    out = capsys.readouterr().out
    assert "shapes:" in out and "ResObj/yolov3_resobj_shapes.py" in out and "vs Baselines/yolov3_shapes.py" in out


# ------------------------------------------------------------------------------------------------
# detectron2: real configs, real declarations


@pytest.mark.detectron2
def test_real_configs_give_the_hyper_parameter_column_from_declarations(tmp_path):
    """RetinaNet (focal loss: 2) vs RetinaNet-ResObj (T: 1) and Faster R-CNN (RPN + ROI sampling: 4)
    vs FasterRCNN-ResObj (T + ROI sampling: 3), read through LazyConfig.load + locate; the runs are
    crafted at the configs' max_iter (1000), so nothing trains."""
    entries = [Entry("RetinaNet-ResObj", "ResObj/retinanet_resobj_shapes.py", "Baselines/retinanet_shapes.py"),
               Entry("FasterRCNN-ResObj", "ResObj/faster_rcnn_resobj_shapes.py", "Baselines/faster_rcnn_shapes.py")]
    c = Comparison(entries, [0], str(tmp_path), name="real", benchmark_settings=SETTINGS, trainer=never,
                   benchmark=never, log=lambda line: None)  # fmt: skip
    for config in c.configs:
        write_metrics(c.run_dir(config, 0), BASE[0], iteration=1000)
    for entry in entries:
        write_benchmark(c, entry)
    data = json.loads(c.run()["json"].read_text())
    assert {r["config"]: r["num_hyperparameters"] for r in data["rows"]} == {
        "Baselines/retinanet_shapes.py": 2, "ResObj/retinanet_resobj_shapes.py": 1,
        "Baselines/faster_rcnn_shapes.py": 4, "ResObj/faster_rcnn_resobj_shapes.py": 3}
    assert data["rows"][3]["model_parts"]["proposal_generator"] == "resobj.rpn.ResObjRPN"


@pytest.mark.detectron2
def test_cli_dry_run_prints_the_plan(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("compare_solutions", REPO / "tools" / "compare_solutions.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    entries = tmp_path / "entries.json"
    entries.write_text(json.dumps([{"label": "ResObj", "config": "ResObj/retinanet_resobj_shapes.py",
                                    "baseline": "Baselines/retinanet_shapes.py"}]))  # fmt: skip
    out_dir = tmp_path / "out"
    write_metrics(out_dir / "Baselines" / "retinanet_shapes" / "seed0", BASE[0], iteration=10)
    assert tool.main(["--entries", str(entries), "--seeds", "0", "1", "--output-dir", str(out_dir), "--num-gpus", "2",
                      "--dry-run", "train.max_iter=10"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "ResObj/retinanet_resobj_shapes.py: resobj.meta_arch.RetinaNetResObj, max_iter 10, " \
           "hyper-parameters: head.num_steps=2" in out
    assert re.search(r"skip   Baselines/retinanet_shapes.py seed 0", out)
    assert re.search(r"train  ResObj/retinanet_resobj_shapes.py seed 1 .*--num-gpus 2 train.seed=1 "
                     r"train.output_dir=\S+seed1 train.max_iter=10", out)  # fmt: skip
    assert "benchmark ResObj: to measure" in out
    assert "lane 1/1: the whole machine" in out

    # --jobs reaches the lanes: 2 CPU lanes share the cores (no GPU, no thread count set).
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    monkeypatch.setattr(cmp.os, "cpu_count", lambda: 4)
    assert tool.main(["--entries", str(entries), "--seeds", "0", "--output-dir", str(out_dir), "--jobs", "2",
                      "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "lane 1/2: OMP_NUM_THREADS=2 MKL_NUM_THREADS=2" in out and "lane 2/2: OMP_NUM_THREADS=2" in out
    with pytest.raises(SystemExit):
        tool.main(["--entries", str(entries), "--output-dir", str(out_dir), "--jobs", "0", "--dry-run"])
    assert "jobs=0 must be >= 1" in capsys.readouterr().err


@pytest.mark.detectron2
def test_every_shipped_config_resolves_its_declared_hyper_parameters():
    """What the comparison reads before training: a config without a declaration would stop it."""
    from d2imbalance.analysis.comparison import describe_config

    configs = {c for entries in _shipped().values() for e in entries for c in (e.config, e.baseline)}
    counts = {}
    for config in sorted(configs):
        counts[config] = len(describe_config(config).hyperparameters)
    assert counts == {
        "Baselines/retinanet_shapes.py": 2, "Baselines/retinanet_R_50_FPN_1x.py": 2,
        "ObjConf/retinanet_R_50_FPN_1x_600.py": 2,
        "Baselines/faster_rcnn_shapes.py": 4, "Baselines/faster_rcnn_R_50_FPN_1x.py": 4,
        "Baselines/yolov3_shapes.py": 0, "Baselines/ssd300_shapes.py": 1, "Baselines/fssd300_shapes.py": 1,
        "Baselines/dssd321_shapes.py": 1, "Baselines/refinedet320_shapes.py": 2,
        "ResObj/retinanet_resobj_shapes.py": 1, "ResObj/retinanet_resobj_R_50_FPN_1x.py": 1,
        "ResObj/faster_rcnn_resobj_shapes.py": 3, "ResObj/faster_rcnn_resobj_R_50_FPN_1x.py": 3,
        "ResObj/yolov3_resobj_shapes.py": 1,
        "ScaleBalanced/retinanet_scb_shapes.py": 4, "ScaleBalanced/retinanet_scb_R_50_FPN_1x.py": 4,
        "ScaleBalanced/faster_rcnn_scb_shapes.py": 6, "ScaleBalanced/faster_rcnn_scb_R_50_FPN_1x.py": 6,
        "ScaleBalanced/ssd300_scb_shapes.py": 3, "ScaleBalanced/fssd300_scb_shapes.py": 3,
        "ScaleBalanced/dssd321_scb_shapes.py": 3, "ScaleBalanced/refinedet320_scb_shapes.py": 4,
        "ObjConf/retinanet_conf_shapes.py": 3, "ObjConf/retinanet_conf_R_50_FPN_1x.py": 3,
        "ObjConf/retinanet_iou_aware_shapes.py": 3, "ObjConf/retinanet_iou_aware_R_50_FPN_1x.py": 3,
        "GHM/retinanet_ghm_shapes.py": 6, "GHM/retinanet_ghm_R_50_FPN_1x.py": 6,
        "APLoss/retinanet_aploss_shapes.py": 2, "APLoss/retinanet_aploss_R_50_FPN_1x.py": 2,
        "DRLoss/retinanet_drloss_shapes.py": 4, "DRLoss/retinanet_drloss_R_50_FPN_1x.py": 4,
        "SamplingFree/retinanet_sampling_free_shapes.py": 0, "SamplingFree/retinanet_sampling_free_R_50_FPN_1x.py": 0,
        "IoUBalancedSampling/faster_rcnn_iou_balanced_shapes.py": 5,
        "IoUBalancedSampling/faster_rcnn_iou_balanced_R_50_FPN_1x.py": 5,
        "OHEM/faster_rcnn_ohem_shapes.py": 4, "OHEM/faster_rcnn_ohem_R_50_FPN_1x.py": 4,
        "PISA/faster_rcnn_isr_shapes.py": 8, "PISA/faster_rcnn_isr_R_50_FPN_1x.py": 8,
        "DRLoss/faster_rcnn_drloss_shapes.py": 8, "DRLoss/faster_rcnn_drloss_R_50_FPN_1x.py": 8,
        "SamplingFree/faster_rcnn_sampling_free_shapes.py": 0,
        "SamplingFree/faster_rcnn_sampling_free_R_50_FPN_1x.py": 0,
    }  # fmt: skip
