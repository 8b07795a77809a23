"""Pieces of the training loop that are quicker to check in-process."""
import json

import pytest

pytestmark = pytest.mark.detectron2


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


def test_benchmark_runs_and_reports_ratios(tmp_path):
    from d2imbalance.benchmark import main

    out = tmp_path / "bench.json"
    result = main([
        "--method", "Baselines/faster_rcnn_shapes.py", "--baseline", "Baselines/retinanet_shapes.py",
        "--image-size", "96", "--batch", "1", "--iters", "2", "--warmup", "1", "--device", "cpu",
        "--json", str(out),
    ])
    saved = json.loads(out.read_text())
    for key in ("train_step_ms", "inference_ms_per_image", "peak_memory_mib"):
        assert result["baseline"][key] > 0 and result["method"][key] > 0
        assert saved["ratio"][key] == pytest.approx(result["method"][key] / result["baseline"][key])


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
