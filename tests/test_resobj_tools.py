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


def _captured(monkeypatch):
    """Replace resobj.visualize._save so tests can inspect the figure that would be written."""
    import resobj.visualize as vis

    figures = []
    monkeypatch.setattr(vis, "_save", lambda fig, path: figures.append(fig) or path)
    return figures


def test_objectness_figure_layout():
    """Step t has color C{t}; positives solid, negatives dashed; markers for <= 30 points; log y up to 1."""
    from matplotlib.colors import to_rgba

    from resobj.visualize import objectness_figure

    curves = {("pos", 0): ([1, 2, 3], [0.1, 0.2, 0.3]), ("neg", 0): ([1, 2, 3], [0.01, 0.005, 0.002]),
              ("pos", 1): ([1, 2, 3], [0.2, 0.3, 0.4]), ("neg", 1): ([1, 2, 3], [0.009, 0.004, 0.001])}
    fig = objectness_figure(curves, "my title")
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {f"{k}, step {t}" for k in ("positives", "negatives") for t in (0, 1)}
    for (kind, t), (its, vals) in curves.items():
        line = lines[f"{'positives' if kind == 'pos' else 'negatives'}, step {t}"]
        assert list(line.get_xdata()) == its and list(line.get_ydata()) == vals
        assert line.get_linestyle() == ("-" if kind == "pos" else "--")
        assert to_rgba(line.get_color()) == to_rgba(f"C{t}") and line.get_marker() == "o"
    assert ax.get_yscale() == "log" and ax.get_ylim()[1] == 1.0
    assert (ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) == ("my title", "iteration", "mean objectness score")
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "positives, step 0", "negatives, step 0", "positives, step 1", "negatives, step 1"]
    dense = objectness_figure({("pos", 0): (list(range(31)), [0.5] * 31), ("pos", 2): ([0], [0.4])}, "t")
    assert [line.get_marker() for line in dense.axes[0].get_lines()] == ["None", "None"]
    assert objectness_figure({("pos", 0): (list(range(30)), [0.5] * 30)}, "t").axes[0].get_lines()[0].get_marker() == "o"


def test_default_titles_name_the_statistics(tmp_path, monkeypatch):
    figures = _captured(monkeypatch)
    metrics = tmp_path / "metrics.json"
    write_metrics(metrics)
    plot_objectness_curves(str(metrics), str(tmp_path / "a.png"))
    evaluated = tmp_path / "eval.json"
    evaluated.write_text(json.dumps({"iteration": 9, "eval_objectness/obj_pos_t0": 0.3}) + "\n")
    plot_objectness_curves(str(evaluated), str(tmp_path / "b.png"))
    plot_objectness_curves(str(evaluated), str(tmp_path / "c.png"), title="custom")
    titles = [f.axes[0].get_title() for f in figures]
    assert titles == ["Average objectness on training batches (gated o_t)",
                      "Average objectness on the evaluated dataset (o_0 + sum r_t)", "custom"]


@pytest.mark.detectron2
def test_detection_steps_figure_layout(tmp_path, monkeypatch):
    """Only scores > 0.4 (strictly) are drawn, as a box at (x0, y0) of size (x1-x0, y1-y0) with
    "<name> <score>" at its top-left; class ids beyond class_names show as numbers; panels 4 inches wide
    keep the image's 100/200 aspect: (4 * 2, 4 * 0.5 + 0.5) inches."""
    import torch
    from detectron2.structures import Boxes, Instances
    from matplotlib.colors import to_rgba

    from resobj.visualize import detection_steps_figure, draw_detection_steps

    def inst(boxes, scores, classes):
        out = Instances((100, 200))
        out.pred_boxes = Boxes(torch.tensor(boxes))
        out.scores = torch.tensor(scores)
        out.pred_classes = torch.tensor(classes)
        return out

    dets = [inst([[10.0, 20.0, 50.0, 80.0], [0.0, 0.0, 5.0, 5.0], [1.0, 1.0, 9.0, 9.0]], [0.5, 0.3, 0.4], [0, 1, 1]),
            inst([[30.0, 5.0, 60.0, 25.0]], [0.9], [2])]
    image = np.zeros((100, 200, 3), dtype=np.uint8)
    fig = detection_steps_figure(image, dets, class_names=["a", "b"])
    assert tuple(fig.get_size_inches()) == pytest.approx((8.0, 2.5))
    first, second = fig.axes
    (box,) = first.patches
    assert box.get_xy() == (10.0, 20.0) and (box.get_width(), box.get_height()) == (40.0, 60.0)
    assert not box.get_fill() and to_rgba(box.get_edgecolor()) == to_rgba("lime")
    (label,) = first.texts
    assert label.get_text() == "a 0.50" and label.get_position() == (10.0, 20.0) and label.get_va() == "bottom"
    assert first.get_title() == "step t=0 (1 > 0.4)" and not first.axison
    assert [t.get_text() for t in second.texts] == ["2 0.90"] and second.get_title() == "step t=1 (1 > 0.4)"
    unnamed = detection_steps_figure(image, dets[:1], score_thresh=0.2)
    assert sorted(t.get_text() for t in unnamed.axes[0].texts) == ["0 0.50", "1 0.30", "1 0.40"]
    assert tuple(unnamed.get_size_inches()) == pytest.approx((4.0, 2.5))

    figures = _captured(monkeypatch)
    assert draw_detection_steps(image, dets, str(tmp_path / "x.png"), class_names=["a", "b", "c"]) == str(tmp_path / "x.png")
    assert [t.get_text() for t in figures[0].axes[1].texts] == ["c 0.90"]
    draw_detection_steps(image, dets[:1], str(tmp_path / "y.png"), score_thresh=0.35)
    assert figures[1].axes[0].get_title() == "step t=0 (2 > 0.35)"
