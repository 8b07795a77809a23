"""The Figs. 2/4 objectness-curve plot and the Fig. 5 per-step drawing, on small crafted inputs."""
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from resobj.visualize import plot_objectness_curves, read_objectness_curves

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def load_tool(name):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_metrics(path, steps=2, iterations=(19, 39, 59)):
    """detectron2's JSONWriter format: one JSON object per line; an eval line without the scalars."""
    with open(path, "w") as f:
        for k, it in enumerate(iterations):
            record = {"iteration": it, "total_loss": 1.0 / (k + 1)}
            for t in range(steps + 1):
                record[f"train/resobj/obj_pos_t{t}"] = 0.1 * (k + 1) + 0.05 * t
                record[f"train/resobj/obj_neg_t{t}"] = 0.01 / (t + 1)
            f.write(json.dumps(record) + "\n")
        f.write(json.dumps({"iteration": iterations[-1], "bbox/AP": 12.5}) + "\n")


def test_read_and_plot_objectness_curves(tmp_path):
    metrics = tmp_path / "metrics.json"
    write_metrics(metrics)
    prefix, curves = read_objectness_curves(str(metrics))
    assert prefix == "train/resobj/"
    assert set(curves) == {(kind, t) for kind in ("pos", "neg") for t in range(3)}
    assert curves[("pos", 2)] == ([19, 39, 59], pytest.approx([0.2, 0.3, 0.4]))
    out = plot_objectness_curves(str(metrics), str(tmp_path / "figs" / "curves.png"))
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    load_tool("plot_objectness_curves").main([str(metrics), "-o", str(tmp_path / "cli.png")])
    assert (tmp_path / "cli.png").stat().st_size > 1000


def test_curves_without_scalars_raise(tmp_path):
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"iteration": 1, "loss_cls": 0.3}) + "\n")
    with pytest.raises(ValueError, match="no objectness scalars"):
        read_objectness_curves(str(metrics))
    write_metrics(metrics)
    with pytest.raises(ValueError, match="train/rpn_resobj/"):
        read_objectness_curves(str(metrics), prefix="train/rpn_resobj/")


@pytest.mark.detectron2
def test_draw_steps_with_a_tiny_model(tmp_path):
    import torch
    from detectron2.data import transforms as T

    from resobj.visualize import detections_per_step, draw_detection_steps
    from test_resobj_models import tiny_resobj

    model = tiny_resobj(2)
    with torch.no_grad():  # make some detections pass the 0.4 threshold at the last step only
        model.head.res_scores[1].bias.fill_(30.0)
        model.head.cls_score.weight.zero_()
        model.head.cls_score.bias.fill_(2.0)
    image = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype("uint8")
    dets = detections_per_step(model, image, [T.ResizeShortestEdge(200, 400)])
    assert len(dets) == 3 and model.test_objectness_step is None and model.training
    assert dets[0].image_size == (120, 160)
    assert (dets[2].scores > 0.4).sum() > 0 and (dets[0].scores > 0.4).sum() == 0
    out = draw_detection_steps(image[:, :, ::-1], dets, str(tmp_path / "steps.png"), class_names=["a", "b", "c"])
    assert Path(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.detectron2
def test_draw_steps_cli(tmp_path):
    import cv2
    import torch
    from detectron2.config import LazyConfig, instantiate

    config = Path(__file__).resolve().parents[1] / "configs" / "ResObj" / "retinanet_resobj_shapes.py"
    torch.manual_seed(0)
    torch.save({"model": instantiate(LazyConfig.load(str(config)).model).state_dict()}, tmp_path / "model.pth")
    cv2.imwrite(str(tmp_path / "img.png"), (np.random.default_rng(0).random((100, 140, 3)) * 255).astype("uint8"))
    load_tool("draw_resobj_steps").main([
        "--config-file", str(config), "--checkpoint", str(tmp_path / "model.pth"),
        "--image", str(tmp_path / "img.png"), "-o", str(tmp_path / "steps.png"),
    ])
    assert (tmp_path / "steps.png").stat().st_size > 1000
