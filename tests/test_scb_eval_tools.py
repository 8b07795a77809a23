"""Recall-by-size evaluator and anchor-match histogram on crafted cases with known answers."""
import os
from types import SimpleNamespace

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.detectron2


def _register(name, dicts):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=["a", "b", "c"])


def _anno(xyxy, cls, crowd=0):
    from detectron2.structures import BoxMode

    return {"bbox": list(xyxy), "bbox_mode": BoxMode.XYXY_ABS, "category_id": cls, "iscrowd": crowd}


def _instances(hw, boxes, scores, classes):
    from detectron2.structures import Boxes, Instances

    inst = Instances(hw)
    inst.pred_boxes = Boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4))
    inst.scores = torch.tensor(scores)
    inst.pred_classes = torch.tensor(classes)
    return {"instances": inst}


@pytest.fixture
def recall_case():
    """Image 1: small GT (10x10, class 0), medium GT (50x50, class 1), large GT (100x100, class 0) and
    a crowd box (ignored). Image 2: small GT (20x20, class 2).

    Detections, image 1:
      A small GT exactly, class 0, score 0.05          -> recalls small at 0.01 only
      B medium GT shifted by 2 px, class 1, score 0.5  -> recalls medium at 0.01, 0.1, 0.3
      C large GT exactly but class 1, score 0.9        -> wrong class: recalls large only class-agnostic
      D large GT exactly, class 0, score 0.2           -> suppressed by E (class-wise NMS 0.45)
      E [0,100,100,147], class 0, score 0.25           -> IoU 0.47 with D and with the GT: no recall
    Image 2: F small GT exactly, class 2, score 0.02   -> recalls small at 0.01 only
    Class-aware recall: small 2/2, 0/2, 0/2; medium 1/1 at all; large 0/1 at all.
    """
    dicts = [
        {"image_id": 1, "height": 220, "width": 220, "file_name": "1.jpg", "annotations": [
            _anno([0, 0, 10, 10], 0), _anno([20, 20, 70, 70], 1), _anno([0, 100, 100, 200], 0),
            _anno([100, 0, 150, 50], 1, crowd=1)]},
        {"image_id": 2, "height": 100, "width": 100, "file_name": "2.jpg", "annotations": [
            _anno([5, 5, 25, 25], 2)]},
    ]
    _register("scb_recall_case", dicts)
    inputs = [{"image_id": 1}, {"image_id": 2}]
    outputs = [
        _instances((220, 220), [[0, 0, 10, 10], [22, 22, 72, 72], [0, 100, 100, 200], [0, 100, 100, 200],
                                [0, 100, 100, 147]], [0.05, 0.5, 0.9, 0.2, 0.25], [0, 1, 1, 0, 0]),
        _instances((100, 100), [[5, 5, 25, 25]], [0.02], [2]),
    ]
    return inputs, outputs


def test_recall_by_size_known_answers(recall_case):
    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator, format_recall_table

    ev = RecallBySizeEvaluator("scb_recall_case", distributed=False)
    ev.reset()
    ev.process(*recall_case)
    res = ev.evaluate()["recall_by_size"]
    assert (res["num_small"], res["num_medium"], res["num_large"]) == (2, 1, 1)  # crowd not counted
    expected = {0.01: (100.0, 100.0, 0.0), 0.1: (0.0, 100.0, 0.0), 0.3: (0.0, 100.0, 0.0)}
    for t, (s, m, l) in expected.items():
        assert (res[f"recall_small@{t:g}"], res[f"recall_medium@{t:g}"], res[f"recall_large@{t:g}"]) == (s, m, l)
    table = format_recall_table(ev._recalled, ev._totals, ev.score_thresholds)
    assert "| 0.01 | 100.00 (2/2) | 100.00 (1/1) | 0.00 (0/1) |" in table

    agnostic = RecallBySizeEvaluator("scb_recall_case", class_aware=False, distributed=False)
    agnostic.process(*recall_case)
    res = agnostic.evaluate()["recall_by_size"]
    assert [res[f"recall_large@{t}"] for t in ("0.01", "0.1", "0.3")] == [100.0, 100.0, 100.0]


def test_recall_top_k_and_unknown_image():
    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator, recall_hits

    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    preds = torch.tensor([[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]])
    args = (preds, torch.tensor([0.9, 0.5]), torch.tensor([0, 0]), gt, torch.tensor([0]))
    assert recall_hits(*args, max_dets=2)[:, 0].tolist() == [True, True, True]
    assert recall_hits(*args, max_dets=1)[:, 0].tolist() == [False, False, False]  # only the 0.9 one kept
    ev = RecallBySizeEvaluator("scb_recall_case", distributed=False)
    with pytest.raises(KeyError, match="not in dataset"):
        ev.process([{"image_id": 99}], [{}])


def _fake_model():
    """One level, stride 16, one 32x32 anchor per cell, RetinaNet's matcher."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.matcher import Matcher

    return SimpleNamespace(
        backbone=SimpleNamespace(output_shape=lambda: {"p4": ShapeSpec(channels=1, stride=16)}, size_divisibility=32),
        anchor_generator=DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[16]),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        head_in_features=["p4"],
    )


def _hist_dicts():
    """A 64x64 image -> 4x4 anchors of 32 px centred at 8, 24, 40, 56 (IoUs checked by hand).

    a = [16,16,48,48] (medium, 32²): IoU 0.391 (< 0.4) with the 4 central anchors, all tied, so all
        4 are forced positive and, being their argmax owner, a gets M = 4.
    b = [0,0,8,8] (small): best IoU 1/16 with the corner anchor [-8,-8,24,24], which is forced positive
        but keeps its argmax owner c (IoU 0.127): b ends with M = 0 (detectron2 does not re-assign).
    c = [0,0,64,64] (medium, 64²): its best anchors (the central 4, IoU 0.25) belong to a; it gets the
        corner anchor forced by b: M = 1.
    The crowd box is left out, as in training.
    """
    return [{"image_id": 1, "height": 64, "width": 64, "file_name": "x.jpg", "annotations": [
        _anno([16, 16, 48, 48], 0), _anno([0, 0, 8, 8], 1), _anno([0, 0, 64, 64], 2),
        _anno([30, 30, 40, 40], 0, crowd=1)]}]


def test_match_counts_and_histogram_crafted():
    from d2imbalance.analysis.anchor_matches import count_matches, format_histogram, match_histogram

    counts, areas = count_matches(_fake_model(), _hist_dicts())
    assert counts.tolist() == [4, 0, 1] and areas.tolist() == [1024.0, 64.0, 4096.0]
    hist = match_histogram(counts, areas, max_bin=4)
    assert hist["all"].tolist() == [1, 1, 0, 0, 1]
    assert hist["small"].tolist() == [1, 0, 0, 0, 0]
    assert hist["medium"].tolist() == [0, 1, 0, 0, 1]
    assert hist["large"].tolist() == [0] * 5
    table = format_histogram(hist)
    assert "| >=4 | 1 | 0 | 1 | 0 |" in table and "| total | 3 | 1 | 2 | 0 |" in table
    # Resizing to a 128 px short edge doubles every box and the matching changes accordingly.
    counts2, areas2 = count_matches(_fake_model(), _hist_dicts(), short_edge=128, max_size=1000)
    assert areas2.tolist() == areas.tolist() and len(counts2) == 3


def test_histogram_tool_end_to_end(tmp_path, capsys):
    """The CLI on a real config (shapes RetinaNet) and a registered COCO-format-like dataset."""
    import importlib.util

    from d2imbalance.model_zoo import get_config_file

    try:
        get_config_file("Baselines/retinanet_shapes.py")
    except FileNotFoundError:
        pytest.skip("configs/Baselines/retinanet_shapes.py not present")
    _register("scb_hist_case", _hist_dicts() * 2)
    spec = importlib.util.spec_from_file_location(
        "anchor_match_histogram", os.path.join(os.path.dirname(__file__), "..", "tools", "anchor_match_histogram.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    png = tmp_path / "hist.png"
    hist = tool.main(["--config-file", "Baselines/retinanet_shapes.py", "--dataset", "scb_hist_case",
                      "--max-bin", "10", "--output", str(png)])
    out = capsys.readouterr().out
    assert png.stat().st_size > 1000 and "| total | 6 | 2 | 4 | 0 |" in out
    assert int(np.sum(hist["all"])) == 6
