"""Pieces of the training loop that are quicker to check in-process, and the benchmark's CLI."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.detectron2
ROOT = Path(__file__).resolve().parents[1]


def test_training_stops_on_a_fatal_dataset_problem(tmp_path):
    from detectron2.data.datasets import register_coco_instances

    from d2imbalance import get_config
    from d2imbalance.data.validation import DatasetValidationError
    from d2imbalance.engine import validate_datasets

    (tmp_path / "1.jpg").write_bytes(b"x")
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 50, "height": 50}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [1, 1, 0, 4], "area": 0, "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}],
    }
    (tmp_path / "bad.json").write_text(json.dumps(coco))
    register_coco_instances("bad_for_engine_test", {}, str(tmp_path / "bad.json"), str(tmp_path))
    cfg = get_config("Baselines/retinanet_shapes.py")
    cfg.dataloader.train.dataset.names = "bad_for_engine_test"
    with pytest.raises(DatasetValidationError, match="unknown category ids.*\n.*empty boxes"):
        validate_datasets(cfg)


def test_datasets_declared_in_the_config_are_registered(tmp_path):
    from detectron2.data import MetadataCatalog

    from d2imbalance.data.datasets import register_coco_datasets

    register_coco_datasets([dict(name="declared_test", json_file=str(tmp_path / "a.json"), image_root=str(tmp_path))])
    assert MetadataCatalog.get("declared_test").json_file == str(tmp_path / "a.json")
    with pytest.raises(ValueError, match="lacks \\['image_root'\\]"):
        register_coco_datasets([dict(name="x", json_file="a.json")])
    with pytest.raises(ValueError, match="already registered"):
        register_coco_datasets([dict(name="declared_test", json_file="other.json", image_root=".")])


def test_benchmark_cli_reports_ratios_and_logs_its_progress(tmp_path):
    """tools/benchmark.py as a user runs it: progress lines on the console, the table, the JSON."""
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "benchmark.py"),
         "--method", "Baselines/faster_rcnn_shapes.py", "--baseline", "Baselines/retinanet_shapes.py",
         "--image-size", "96", "--batch", "1", "--iters", "2", "--warmup", "1", "--device", "cpu",
         "--boxes-per-image", "5", "--json", str(out)],
        env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    saved = json.loads(out.read_text())
    assert saved["settings"]["boxes_per_image"] == 5
    for key in ("train_step_ms", "inference_ms_per_image", "peak_memory_mib"):
        assert saved["baseline"][key] > 0 and saved["method"][key] > 0
        assert saved["ratio"][key] == pytest.approx(saved["method"][key] / saved["baseline"][key])
    assert f"| train step (ms, median)        | {saved['baseline']['train_step_ms']:10.1f} |" in run.stdout
    # 3 training and 3 inference pairs, then 3 fresh processes per model: each a line, whose own
    # duration is within the phase's elapsed time (1 s of rounding).
    log = [line for line in (run.stdout + run.stderr).splitlines() if "benchmark] " in line]
    assert sum("training-step pairs done" in line for line in log) == 3
    assert sum("inference-batch pairs done" in line for line in log) == 3
    memory = [re.search(r"/6 peak-memory measurements \((\w+) (\d+) MiB: (\d+)s\); elapsed (\d+)s", line)
              for line in log if "peak-memory measurements (" in line]  # fmt: skip
    assert [m.group(1) for m in memory] == ["baseline"] * 3 + ["method"] * 3
    assert all(int(m.group(3)) <= int(m.group(4)) + 1 for m in memory)
    reported = sorted(int(m.group(2)) for m in memory[:3])
    assert reported[1] == round(saved["baseline"]["peak_memory_mib"])  # the median of the three


def test_benchmark_inputs_carry_the_requested_number_of_boxes():
    from d2imbalance.benchmark import BenchmarkSettings, format_table, synthetic_batch

    settings = BenchmarkSettings(image_size=64, batch=2, boxes_per_image=1000)
    batch = synthetic_batch(settings, num_classes=3)
    assert [len(x["instances"]) for x in batch] == [1000, 1000]
    boxes = batch[0]["instances"].gt_boxes.tensor
    assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.max() <= 64
    result = {"settings": {**settings.__dict__, "overrides": ()}, "configs": {"method": "M", "baseline": "B"}}
    result.update({k: {"train_step_ms": 1.0, "inference_ms_per_image": 1.0, "peak_memory_mib": 1.0}
                   for k in ("baseline", "method", "ratio")})
    assert "1000 boxes per image" in format_table(result)


def test_benchmark_two_stage_models_get_their_full_share_of_proposals():
    """With zero RPN deltas the proposals are the anchors: the ROI heads see post_nms_topk proposals per
    image (plus the ground truth), not the handful a random RPN's boxes leave; a RetinaNet is untouched."""
    import torch
    from detectron2.utils.events import EventStorage

    from d2imbalance.benchmark import BenchmarkSettings, _Runner

    settings = BenchmarkSettings(image_size=128, batch=1, boxes_per_image=3)
    runner = _Runner("Baselines/faster_rcnn_shapes.py", settings)
    deltas = runner.model.proposal_generator.rpn_head.anchor_deltas
    assert not deltas.weight.any() and not deltas.bias.any()
    runner.model.eval()
    with torch.no_grad(), EventStorage():
        images = runner.model.preprocess_image(runner.inputs)
        proposals, _ = runner.model.proposal_generator(images, runner.model.backbone(images.tensor), None)
    assert len(proposals[0]) == runner.model.proposal_generator.post_nms_topk[False] == 300
    retinanet = _Runner("Baselines/retinanet_shapes.py", settings).model
    assert retinanet.head.bbox_pred.weight.abs().sum() > 0


def test_benchmark_overrides_reach_both_models():
    from d2imbalance.benchmark import BenchmarkSettings, _Runner

    settings = BenchmarkSettings(image_size=64, batch=1, overrides=("model.multiscale=null", "model.input_size=64"))
    for config in ("Baselines/yolov3_shapes.py", "ResObj/yolov3_resobj_shapes.py"):
        model = _Runner(config, settings).model
        assert model.multiscale is None and model.input_size == 64
    assert _Runner("Baselines/yolov3_shapes.py", BenchmarkSettings()).model.multiscale is not None


def test_setup_falls_back_to_cpu_disables_amp_and_warns_about_the_lr(tmp_path):
    import torch

    from d2imbalance.engine import default_argument_parser, setup

    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py",
        "train.amp.enabled=True", "dataloader.train.total_batch_size=16", f"train.output_dir={tmp_path}",
    ])
    cfg = setup(args)
    log = (tmp_path / "log.txt").read_text()
    if not torch.cuda.is_available():
        assert cfg.train.device == "cpu" and cfg.train.amp.enabled is False
        assert "No GPU found: running on CPU" in log and "needs a GPU" in log
    assert "optimizer.lr=0.01 with dataloader.train.total_batch_size=16" in log and "gives 0.04" in log
    assert (tmp_path / "config.yaml").is_file()


def test_prediction_pictures_have_one_row_per_image(tmp_path):
    import cv2
    import torch
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.visualize import draw_predictions

    torch.save({"model": instantiate(get_config("Baselines/retinanet_shapes.py").model).state_dict()},
               tmp_path / "m.pth")
    out = draw_predictions("Baselines/retinanet_shapes.py", str(tmp_path / "m.pth"), "shapes_mini_val",
                           str(tmp_path / "p.png"), num_images=2, score_thresh=0.0)
    picture = cv2.imread(out)
    assert picture.shape[0] >= 2 * 224 and picture.shape[1] >= 2 * 224


# --- model.num_classes against the datasets ---------------------------------------------------------


def _model(config, **model_overrides):
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.overrides import apply_overrides

    cfg = apply_overrides(get_config(config), [f"model.{k}={v}" for k, v in model_overrides.items()])
    return instantiate(cfg.model)


def test_num_classes_of_a_retinanet_must_match_the_datasets():
    from d2imbalance.data.datasets import prepare_datasets
    from d2imbalance.engine import check_num_classes, model_num_classes

    prepare_datasets(["shapes_mini_train", "shapes_mini_val"])
    assert model_num_classes(_model("Baselines/retinanet_shapes.py")) == (4, "model.num_classes")
    check_num_classes(_model("Baselines/retinanet_shapes.py"), ["shapes_mini_train", "shapes_mini_val"])
    with pytest.raises(ValueError) as error:
        check_num_classes(_model("ResObj/retinanet_resobj_shapes.py", num_classes=5), ["shapes_mini_train"])
    assert str(error.value) == (
        "The model predicts model.num_classes=5 classes but dataset 'shapes_mini_train' has 4 categories "
        "(circle, square, triangle, star). Pass model.num_classes=4."
    )


def test_num_classes_of_a_faster_rcnn_is_the_roi_heads_and_unwrapped_from_ddp():
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from d2imbalance.engine import check_num_classes, model_num_classes

    model = _model("Baselines/faster_rcnn_shapes.py", **{"roi_heads.num_classes": 3})
    assert model_num_classes(model) == (3, "model.roi_heads.num_classes")
    ddp = DistributedDataParallel.__new__(DistributedDataParallel)  # a DDP shell around the model, no process group
    torch.nn.Module.__init__(ddp)
    ddp.module = model
    with pytest.raises(ValueError, match=r"model.roi_heads.num_classes=3 .* 4 categories .*Pass model.roi_heads.num_classes=4"):
        check_num_classes(ddp, ["shapes_mini_val"])


def test_num_classes_check_loads_a_dataset_for_its_categories_and_skips_what_it_cannot_know(tmp_path):
    """A registered COCO file has no thing_classes until loaded; a dataset without any is skipped,
    as is a model without num_classes."""
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.data.datasets import register_coco_instances

    from d2imbalance.engine import check_num_classes

    coco = {"images": [{"id": 1, "file_name": "1.jpg", "width": 50, "height": 50}], "annotations": [],
            "categories": [{"id": i, "name": f"c{i}"} for i in range(1, 11)]}
    (tmp_path / "ten.json").write_text(json.dumps(coco))
    register_coco_instances("ten_classes_for_engine_test", {}, str(tmp_path / "ten.json"), str(tmp_path))
    DatasetCatalog.register("no_classes_for_engine_test", lambda: [])
    model = _model("Baselines/retinanet_shapes.py")
    check_num_classes(model, ["no_classes_for_engine_test"])
    check_num_classes(torch.nn.Linear(2, 2), ["ten_classes_for_engine_test"])
    with pytest.raises(ValueError, match=r"has 10 categories \(c1, c2, c3, c4, c5, c6, c7, c8 \.\.\.\)\. Pass model.num_classes=10"):
        check_num_classes(model, ["ten_classes_for_engine_test"])


# --- --eval-only stops on a model the checkpoint does not determine ----------------------------------


def _eval_only(tmp_path, *overrides):
    from d2imbalance.engine import default_argument_parser, do_eval_only, prepare_all_datasets, setup

    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", "dataloader.test.dataset.names=shapes_mini_val",
        "dataloader.train.dataset.names=shapes_mini_train", "dataloader.test.num_workers=0",
        f"train.output_dir={tmp_path / 'eval'}", *overrides])
    cfg = setup(args)
    prepare_all_datasets(cfg)
    return do_eval_only(args, cfg)


def test_eval_only_with_another_architectures_checkpoint_stops_before_evaluating(tmp_path):
    import torch

    torch.save({"model": _model("Baselines/faster_rcnn_shapes.py").state_dict()}, tmp_path / "frcnn.pth")
    with pytest.raises(ValueError, match="Not evaluating: .*frcnn.pth .*head got no tensor from it"):
        _eval_only(tmp_path, f"train.init_checkpoint={tmp_path / 'frcnn.pth'}")
    assert not (tmp_path / "eval" / "eval_results.json").exists()


def test_eval_only_with_a_truncated_checkpoint_names_the_file(tmp_path):
    from d2imbalance.checkpoint import CheckpointReadError

    (tmp_path / "cut.pth").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(CheckpointReadError, match=r"cut.pth cannot be read .*pass another file as train.init_checkpoint"):
        _eval_only(tmp_path, f"train.init_checkpoint={tmp_path / 'cut.pth'}")


def test_eval_only_checks_num_classes_against_the_test_dataset_before_inference(tmp_path):
    import torch

    torch.save({"model": _model("Baselines/retinanet_shapes.py", num_classes=5).state_dict()}, tmp_path / "five.pth")
    with pytest.raises(ValueError, match="model.num_classes=5 classes but dataset 'shapes_mini_val' has 4"):
        _eval_only(tmp_path, f"train.init_checkpoint={tmp_path / 'five.pth'}", "model.num_classes=5")


# --- CPU threads -------------------------------------------------------------------------------------


def test_cpu_threads_leave_a_core_to_each_data_loader_worker_and_respect_omp_num_threads():
    from d2imbalance.threads import choose_cpu_threads

    assert choose_cpu_threads({}, cores=2, num_workers=1) == (
        1, "2 usable cores / 1 process(es) = 2, minus 1 data-loader worker(s); set OMP_NUM_THREADS to choose")
    assert choose_cpu_threads({}, cores=2, num_workers=0)[0] == 2
    assert choose_cpu_threads({}, cores=2, num_workers=4)[0] == 1
    assert choose_cpu_threads({}, cores=16, num_workers=4, processes=2)[0] == 4  # 16 // 2 - 4
    assert choose_cpu_threads({}, cores=17, num_workers=1, processes=2)[0] == 7  # 17 // 2 - 1
    assert choose_cpu_threads({"OMP_NUM_THREADS": "3"}, cores=2, num_workers=1) == (3, "OMP_NUM_THREADS=3 set by the user")
    assert choose_cpu_threads({"OMP_NUM_THREADS": " 1"}, cores=8, num_workers=0)[0] == 1
    for bad in ("0", "two", "-1", ""):
        with pytest.raises(ValueError, match=f"OMP_NUM_THREADS='{bad}' is not a positive integer"):
            choose_cpu_threads({"OMP_NUM_THREADS": bad}, cores=2, num_workers=1)


def test_thread_candidates_are_the_safe_start_and_the_whole_share():
    from d2imbalance.threads import thread_candidates

    assert thread_candidates({}, cores=2, num_workers=1) == [1, 2]
    assert thread_candidates({}, cores=2, num_workers=0) == [2]  # nothing to time
    assert thread_candidates({}, cores=16, num_workers=4, processes=2) == [4, 8]
    assert thread_candidates({}, cores=1, num_workers=2) == [1]
    assert thread_candidates({}, cores=2, num_workers=0, processes=4) == [1]  # never 0 threads
    assert thread_candidates({"OMP_NUM_THREADS": "2"}, cores=8, num_workers=1) == []


def test_thread_tuner_times_each_candidate_keeps_the_fastest_and_checks_again():
    """warmup 2, trials 3, period 4 over candidates {1, 2}: steps 1-2 warm up at 1 thread, 3-5 are timed
    at 1 (medians 1.0), 6-8 at 2 (median 0.5): 2 wins. Four steps later a new round: 1 thread now
    times 1.0, 2 threads 3.0 (another process took a core): back to 1."""
    from d2imbalance.threads import ThreadTuner

    tuner = ThreadTuner([2, 1, 2], warmup=2, trials=3, period=4)
    assert tuner.candidates == [1, 2] and tuner.threads == 1
    answers = [tuner.record(s) for s in (9.0, 9.0, 1.0, 0.9, 1.1, 0.5, 0.4, 7.0)]
    assert answers == [1, 1, 1, 1, 2, 2, 2, 2] and tuner.decided
    assert tuner.last_round == {1: 1.0, 2: 0.5}
    assert tuner.summary() == "timed 1 thread(s) 1.000 s/step, 2 thread(s) 0.500 s/step; using 2 until the next check in 4 steps"
    answers = [tuner.record(s) for s in (0.5, 0.5, 0.5)]
    assert answers == [2, 2, 2] and not tuner.decided
    assert tuner.record(0.5) == 1  # the period is over: time 1 thread first
    answers = [tuner.record(s) for s in (1.0, 1.0, 1.0, 3.0, 3.0, 3.0)]
    assert answers == [1, 1, 2, 2, 2, 1] and tuner.last_round == {1: 1.0, 2: 3.0}
    single = ThreadTuner([3], warmup=0)
    assert all(single.record(1.0) == 3 and not single.decided for _ in range(20))  # nothing to time
    default = ThreadTuner([1, 2])  # warm-up 10 steps, 5 trials each, re-checked every 500 steps
    assert not default.decided and (default.trials, default.period) == (5, 500)
    assert [default.record(1.0) for _ in range(16)].index(2) == 14  # steps 1-10 warm up, 11-15 time 1
    assert ThreadTuner([1, 2], trials=1, period=1).trials == 1  # the smallest valid settings
    for bad in (dict(candidates=[]), dict(candidates=[0, 1]), dict(candidates=[1], trials=0), dict(candidates=[1], period=0)):
        with pytest.raises(ValueError, match="candidates=|trials=|period="):
            ThreadTuner(**bad)


def test_cpu_thread_tuning_hook_sets_torch_threads_and_logs_the_round(monkeypatch, caplog):
    """The hook times each step (fake clock: 1 thread 2 s, 2 threads 1 s), sets torch's count from the
    tuner and logs the decision; a GPU run, OMP_NUM_THREADS or a single candidate get no hook."""
    import logging
    from types import SimpleNamespace

    import torch

    import d2imbalance.engine as engine
    from d2imbalance.threads import ThreadTuner

    clock = [0.0]
    monkeypatch.setattr(engine.time, "perf_counter", lambda: clock[0])
    hook = engine.CPUThreadTuning(ThreadTuner([1, 2], warmup=1, trials=2, period=100))
    scalars = []
    hook.trainer = SimpleNamespace(storage=SimpleNamespace(put_scalar=lambda k, v, **kw: scalars.append((k, v))))
    before = torch.get_num_threads()
    try:
        hook.before_train()
        assert torch.get_num_threads() == 1
        seen = []
        with caplog.at_level(logging.INFO, logger="d2imbalance"):
            for _ in range(5):
                hook.before_step()
                clock[0] += 2.0 / torch.get_num_threads()
                hook.after_step()
                seen.append(torch.get_num_threads())
        assert seen == [1, 1, 2, 2, 2]
        assert scalars == [("cpu/torch_threads", t) for t in seen]
        assert "CPU threads: timed 1 thread(s) 2.000 s/step, 2 thread(s) 1.000 s/step; using 2" in caplog.text
    finally:
        torch.set_num_threads(before)

    def cfg(device, workers=1):
        return SimpleNamespace(train=SimpleNamespace(device=device), dataloader=SimpleNamespace(train={"num_workers": workers}))

    monkeypatch.setattr(engine, "available_cores", lambda: 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert engine.cpu_thread_tuning(cfg("cpu")).tuner.candidates == [3, 4]
    assert engine.cpu_thread_tuning(cfg("cpu", workers=0)) is None
    assert engine.cpu_thread_tuning(cfg("cuda")) is None
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert engine.cpu_thread_tuning(cfg("cpu")) is None


def test_available_cores_is_the_affinity_where_there_is_one(monkeypatch):
    import os

    from d2imbalance.threads import available_cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 3, 5} if pid == 0 else {0}, raising=False)
    assert available_cores() == 3
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores() == 6
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert available_cores() == 1


def test_setup_sets_and_logs_the_cpu_thread_count(tmp_path, monkeypatch):
    """3 cores, the shapes configs' 1 training worker, OMP_NUM_THREADS unset: 3 - 1 = 2 threads;
    --eval-only counts the test loader's workers (2 here): 3 - 2 = 1."""
    import torch

    import d2imbalance.engine as engine

    if torch.cuda.is_available():
        pytest.skip("the thread count is set for CPU runs")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(engine, "available_cores", lambda: 3)
    before = torch.get_num_threads()
    try:
        for extra, expected in (([], 2), (["--eval-only", "dataloader.test.num_workers=2"], 1)):
            out = tmp_path / str(expected)
            engine.setup(engine.default_argument_parser().parse_args(
                ["--config-file", "Baselines/retinanet_shapes.py", *extra, f"train.output_dir={out}"]))
            assert torch.get_num_threads() == expected
            log = (out / "log.txt").read_text()
            assert f"CPU: {expected} torch thread(s) per process (3 usable cores / 1 process(es)" in log
            assert ("training times 2 and 3 threads and keeps the faster" in log) == (expected == 2)
    finally:
        torch.set_num_threads(before)


# --- do_train in-process: checkpoints carry the run, resume continues it ------------------------------


def _train(out, *extra, resume=False):
    """3 iterations (unless overridden) of the shapes RetinaNet on single images, no evaluation."""
    from d2imbalance.engine import default_argument_parser, do_train, prepare_all_datasets, setup

    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", *(["--resume"] if resume else []),
        "dataloader.train.dataset.names=shapes_mini_train", "dataloader.test.dataset.names=shapes_mini_val",
        "dataloader.train.total_batch_size=1", "dataloader.train.num_workers=0", "optimizer.lr=0.0025",
        "train.log_period=1", "train.eval_period=0", "train.checkpointer.period=2", "train.max_iter=3",
        "train.seed=0", f"train.output_dir={out}", *extra])
    cfg = setup(args)
    del cfg.dataloader.evaluator  # do_test then evaluates nothing
    prepare_all_datasets(cfg)
    do_train(args, cfg)
    return (out / "log.txt").read_text()


def _iterations_and_lr(out):
    metrics = [json.loads(line) for line in (out / "metrics.json").read_text().splitlines()]
    return [(m["iteration"], m["lr"]) for m in metrics]


def test_training_saves_the_run_with_each_checkpoint_and_resume_continues_it(tmp_path):
    """Demo schedule at max_iter=3 (warm-up over 5 % = 0.15 iterations from factor 0.001, ×0.1 from
    80 % = 2.4): lr 0.0025 * 0.001 = 2.5e-06 at iteration 0, 0.0025 at 1 and 2. Resumed with
    max_iter=4: iteration 3 is 3/4 = 75 % < 80 %, so 0.0025 again (it would be 0.00025 at 3/3); the
    warning says so."""
    import torch

    out = tmp_path / "run"
    log = _train(out, resume=True)
    assert f"--resume given but {out} has no checkpoint: starting from train.init_checkpoint=''" in log
    assert _iterations_and_lr(out) == [(0, pytest.approx(2.5e-06)), (1, 0.0025), (2, 0.0025)]
    final = torch.load(out / "model_final.pth", weights_only=False)
    assert final["trainer"]["iteration"] == 2 and (out / "model_0000001.pth").is_file()
    assert final["run"] == dict(max_iter=3, data_seed=final["run"]["data_seed"], dataset_size=24,
                                total_batch_size=1, world_size=1)

    log = _train(out, "train.max_iter=4", resume=True)
    assert "has no checkpoint" not in log.split("train.max_iter=4")[-1]
    assert f"Resuming from {out / 'model_final.pth'} at iteration 3." in log
    assert "Continuing the data stream after its first 3 batches" in log
    assert "train.max_iter=4 differs from the checkpoint's run (train.max_iter=3)" in log
    assert "the lr multiplier at iteration 3 becomes 1 (the original run's: 0.1)" in log
    assert _iterations_and_lr(out)[3:] == [(3, 0.0025)]
    assert torch.load(out / "model_final.pth", weights_only=False)["run"]["max_iter"] == 4


def test_training_without_resume_starts_over_and_stops_on_a_num_classes_mismatch(tmp_path):
    out = tmp_path / "run"
    _train(out, "train.max_iter=1")
    log = _train(out, "train.max_iter=2")  # no --resume: from iteration 0, no warnings about resuming
    assert "Resuming" not in log and "has no checkpoint" not in log and "differs from the checkpoint" not in log
    assert [i for i, _ in _iterations_and_lr(out)] == [0, 0, 1]
    with pytest.raises(ValueError, match="model.num_classes=5 classes but dataset 'shapes_mini_train' has 4"):
        _train(tmp_path / "five", "model.num_classes=5")
    assert not list((tmp_path / "five").glob("model_*.pth"))  # stopped before the first iteration
    assert (tmp_path / "five" / "metrics.json").read_text() == ""


def test_eval_only_warns_only_without_weights(tmp_path):
    """No weights: a warning, and evaluation of what there is (here no evaluator: {}); weights
    given, or --resume with a checkpoint: no warning."""
    import torch

    from d2imbalance.engine import default_argument_parser, do_eval_only, setup

    torch.save({"model": _model("Baselines/retinanet_shapes.py").state_dict()}, tmp_path / "m.pth")
    _tiny = ["dataloader.test.dataset.names=shapes_mini_val"]
    for extra, resume, warned in (([], False, True), ([f"train.init_checkpoint={tmp_path / 'm.pth'}"], False, False),
                                  ([], True, True)):
        out = tmp_path / f"{len(extra)}{resume}"
        if warned is False or resume:
            out.mkdir()
        args = default_argument_parser().parse_args([
            "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", *(["--resume"] if resume else []),
            *_tiny, *extra, f"train.output_dir={out}"])
        cfg = setup(args)
        del cfg.dataloader.evaluator
        assert do_eval_only(args, cfg) == {}
        assert json.loads((out / "eval_results.json").read_text()) == {}
        assert ("evaluating a freshly initialised model" in (out / "log.txt").read_text()) is warned
    (tmp_path / "resumed").mkdir()
    torch.save({"model": _model("Baselines/retinanet_shapes.py").state_dict()}, tmp_path / "resumed" / "model_final.pth")
    (tmp_path / "resumed" / "last_checkpoint").write_text("model_final.pth")
    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", "--resume", *_tiny,
        f"train.output_dir={tmp_path / 'resumed'}"])
    cfg = setup(args)
    del cfg.dataloader.evaluator
    do_eval_only(args, cfg)
    log = (tmp_path / "resumed" / "log.txt").read_text()
    assert "freshly initialised" not in log
    assert f"tensors from {tmp_path / 'resumed' / 'model_final.pth'}" in log
    # without --resume, the weights given win over the checkpoint in train.output_dir
    args = default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", *_tiny,
        f"train.init_checkpoint={tmp_path / 'm.pth'}", f"train.output_dir={tmp_path / 'resumed'}"])
    cfg = setup(args)
    del cfg.dataloader.evaluator
    do_eval_only(args, cfg)
    log = (tmp_path / "resumed" / "log.txt").read_text()
    assert log.rsplit("tensors from ", 1)[1].startswith(f"{tmp_path / 'm.pth'}.")


def test_eval_only_writes_readable_results_next_to_the_checkpoints(tmp_path, monkeypatch):
    import d2imbalance.engine as engine

    monkeypatch.setattr(engine, "do_test", lambda cfg, model: {"bbox": {"AP": 12.5}})
    args = engine.default_argument_parser().parse_args([
        "--config-file", "Baselines/retinanet_shapes.py", "--eval-only", f"train.output_dir={tmp_path}"])
    assert engine.do_eval_only(args, engine.setup(args)) == {"bbox": {"AP": 12.5}}
    assert (tmp_path / "eval_results.json").read_text() == '{\n "bbox": {\n  "AP": 12.5\n }\n}'


def test_ddp_wrapping_on_cpu_gives_no_device_ids(monkeypatch):
    import d2imbalance.engine as engine

    monkeypatch.setattr(engine, "create_ddp_model", lambda model, **kwargs: (model, kwargs))
    assert engine.wrap_ddp("m", "cpu", {"broadcast_buffers": False}) == ("m", {"broadcast_buffers": False, "device_ids": None})
    assert engine.wrap_ddp("m", "cuda", {"broadcast_buffers": False}) == ("m", {"broadcast_buffers": False})


def test_launch_gets_every_distributed_argument(monkeypatch):
    import d2imbalance.engine as engine

    calls = []
    monkeypatch.setattr(engine, "launch", lambda *a, **k: calls.append((a, k)))
    args = engine.default_argument_parser().parse_args([
        "--config-file", "x.py", "--num-gpus", "2", "--num-machines", "3", "--machine-rank", "1",
        "--dist-url", "tcp://1.2.3.4:5"])
    engine.launch_from_args(args)
    assert calls == [((engine.main, 2), dict(num_machines=3, machine_rank=1, dist_url="tcp://1.2.3.4:5", args=(args,)))]


def test_setup_without_lr_reference_or_workers_uses_the_configs_own(tmp_path, monkeypatch):
    """A config without train.lr_reference is its own reference (lr 0.01 at batch 4 here): lr 0.02
    at batch 4 gets the warning with 0.01; without dataloader.train.num_workers, no worker is
    counted (3 cores -> 3 threads). On CPU, device=cpu is no fallback and amp off says nothing."""
    import torch

    import d2imbalance.engine as engine

    (tmp_path / "cfg.py").write_text(
        "from d2imbalance.model_zoo import get_config\n"
        "_cfg = get_config('Baselines/retinanet_shapes.py')\n"
        "model, dataloader, optimizer, lr_multiplier, train = (\n"
        "    _cfg.model, _cfg.dataloader, _cfg.optimizer, _cfg.lr_multiplier, _cfg.train)\n"
        "del train.lr_reference\n"
        "del dataloader.train.num_workers\n"
    )
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(engine, "available_cores", lambda: 3)
    before = torch.get_num_threads()
    try:
        cfg = engine.setup(engine.default_argument_parser().parse_args([
            "--config-file", str(tmp_path / "cfg.py"), "optimizer.lr=0.02", "train.device=cpu",
            f"train.output_dir={tmp_path / 'out'}"]))
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)
    log = (tmp_path / "out" / "log.txt").read_text()
    assert "optimizer.lr=0.02 with dataloader.train.total_batch_size=4, but this recipe uses lr 0.01 at batch 4" in log
    assert "No GPU found" not in log and "needs a GPU" not in log
    assert cfg.train.device == "cpu" and cfg.train.amp.enabled is False


def test_benchmark_times_training_then_inference_each_interleaved(monkeypatch):
    """Warm-up then timed steps per phase, training first; the order alternates every iteration; the
    reported values are the medians (in ms) and the ratios method / baseline."""
    import d2imbalance.benchmark as bench

    calls = []

    class FakeRunner:
        def __init__(self, config, settings):
            self.name = "m" if config == "M" else "b"

        def train_step(self):
            calls.append(("train", self.name))
            return {"b": 1.0, "m": 1.5}[self.name] * (1 + sum(c[0] == "train" for c in calls) % 3)

        def inference_per_image(self):
            calls.append(("infer", self.name))
            return {"b": 0.2, "m": 0.1}[self.name]

    def fake_children(config, settings, on_measured):
        peak = {"M": 30.0, "B": 20.0}[config]
        for _ in range(bench.CPU_MEMORY_REPEATS):
            on_measured(peak, 10.0)
        return peak

    monkeypatch.setattr(bench, "_Runner", FakeRunner)
    monkeypatch.setattr(bench, "_peak_memory_in_child", fake_children)
    lines, readings = [], iter(range(60, 3600, 60))  # the clock: +60 s a reading, one per Progress start and line
    result = bench.run_benchmark("M", "B", bench.BenchmarkSettings(iters=3, warmup=1), log=lines.append,
                                 clock=lambda: float(next(readings)))  # fmt: skip
    assert calls == [
        ("train", "b"), ("train", "m"),  # warm-up
        ("train", "b"), ("train", "m"), ("train", "m"), ("train", "b"), ("train", "b"), ("train", "m"),
        ("infer", "b"), ("infer", "m"),  # warm-up
        ("infer", "b"), ("infer", "m"), ("infer", "m"), ("infer", "b"), ("infer", "b"), ("infer", "m"),
    ]
    # timed training calls 3..8: baseline at positions 3, 6, 7 -> factors 1, 1, 2 (1 + n % 3); method at 4, 5, 8
    assert result["baseline"]["train_step_ms"] == pytest.approx(1000.0)
    assert result["method"]["train_step_ms"] == pytest.approx(1500.0 * 3)
    assert result["ratio"]["inference_ms_per_image"] == pytest.approx(0.5)
    assert result["ratio"]["peak_memory_mib"] == pytest.approx(1.5)

    # One progress line per step pair and per memory measurement. Training: the pairs take 2 + 4.5,
    # 1 + 3, 4.5 + 1 and 2 + 4.5 s (factors above); ETA = mean so far x pairs left.
    assert lines[0] == ("Timing 1 warm-up + 3 timed training steps of each model (the two alternate), then as "
                        "many inference batches, then peak memory: M vs B.")  # fmt: skip
    assert lines[1] == ("1/4 training-step pairs done (warm-up, baseline 2000 ms, method 4500 ms: 6s); elapsed 1m 00s; "
                        "ETA 20s (3 left x 6s mean per pair)")  # fmt: skip
    assert lines[3] == ("3/4 training-step pairs done (timed, method 4500 ms, baseline 1000 ms: 6s); elapsed 3m 00s; "
                        "ETA 5s (1 left x 5s mean per pair)")  # fmt: skip
    assert lines[4].startswith("4/4 training-step pairs done (timed, baseline 2000 ms, method 4500 ms: 6s);")
    assert lines[4].endswith("all training-step pairs done")
    # Inference: seconds per image x batch 2 = 400 ms + 200 ms a pair.
    assert lines[5] == ("1/4 inference-batch pairs done (warm-up, baseline 400 ms, method 200 ms: 1s); elapsed 1m 00s; "
                        "ETA 2s (3 left x 1s mean per pair)")  # fmt: skip
    assert lines[9] == ("Peak memory of 3 training steps and one inference, in 3 fresh processes per model "
                        "(the median counts).")  # fmt: skip
    assert lines[10] == ("1/6 peak-memory measurements (baseline 20 MiB: 10s); elapsed 1m 00s; "
                         "ETA 50s (5 left x 10s mean per measurement)")  # fmt: skip
    assert lines[15] == ("6/6 peak-memory measurements (method 30 MiB: 10s); elapsed 6m 00s; "
                         "all peak-memory measurements")  # fmt: skip
    assert len(lines) == 16


def test_benchmark_on_a_gpu_measures_memory_once_per_model_in_process(monkeypatch):
    import d2imbalance.benchmark as bench

    class FakeRunner:
        def __init__(self, config, settings):
            pass

        def train_step(self):
            return 1.0

        def inference_per_image(self):
            return 0.5

    monkeypatch.setattr(bench.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(bench, "_Runner", FakeRunner)
    monkeypatch.setattr(bench, "_peak_memory_in_child", None)  # a CPU-only path: must not be reached
    monkeypatch.setattr(bench, "_peak_memory_mib", lambda config, settings: {"M": 300.0, "B": 200.0}[config])
    lines = []
    result = bench.run_benchmark("M", "B", bench.BenchmarkSettings(iters=1, warmup=0, device="cuda"),
                                 log=lines.append, clock=lambda: 0.0)  # fmt: skip
    assert result["ratio"]["peak_memory_mib"] == pytest.approx(1.5)
    assert lines[3] == "Peak memory of 3 training steps and one inference, in this process."
    assert lines[4].startswith("1/2 peak-memory measurements (baseline 200 MiB: 0s); elapsed 0s; ETA 0s")
    assert lines[5].startswith("2/2 peak-memory measurements (method 300 MiB: 0s)")
