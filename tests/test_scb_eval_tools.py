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


def _evaluator(name="scb_recall_case", **kw):
    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator

    kw.setdefault("model_score_thresh", 0.01)
    kw.setdefault("model_nms_thresh", 1.0)
    kw.setdefault("model_max_dets", 1000)
    return RecallBySizeEvaluator(name, distributed=False, **kw)


def test_recall_by_size_known_answers(recall_case, caplog):
    from d2imbalance.evaluation.recall_by_size import format_recall_table

    ev = _evaluator()
    ev.process(*recall_case)
    with caplog.at_level("WARNING"):
        res = ev.evaluate()["recall_by_size"]
    assert not caplog.records  # the protocol was followed: nothing to warn about
    assert (res["num_small"], res["num_medium"], res["num_large"]) == (2, 1, 1)  # crowd not counted
    expected = {0.01: (100.0, 100.0, 0.0), 0.1: (0.0, 100.0, 0.0), 0.3: (0.0, 100.0, 0.0)}
    for t, (s, m, l) in expected.items():
        assert (res[f"recall_small@{t:g}"], res[f"recall_medium@{t:g}"], res[f"recall_large@{t:g}"]) == (s, m, l)
        assert res[f"truncated_images@{t:g}"] == 0
    assert [res[f"recalled_small@{t}"] for t in ("0.01", "0.1", "0.3")] == [2, 0, 0]
    table = format_recall_table(ev._recalled, ev._totals, ev.score_thresholds)
    assert "| 0.01 | 100.00 (2/2) | 100.00 (1/1) | 0.00 (0/1) |" in table
    assert "| 0.3 | 0.00 (0/2) | 100.00 (1/1) | 0.00 (0/1) |" in table
    assert format_recall_table(np.zeros((1, 3), dtype=int), np.array([0, 2, 0]), [0.5]) == (
        "| threshold | recall_small | recall_medium | recall_large |\n|---|---|---|---|\n"
        "| 0.5 | - (0/0) | 0.00 (0/2) | - (0/0) |"
    )

    agnostic = _evaluator(class_aware=False)
    agnostic.process(*recall_case)
    res = agnostic.evaluate()["recall_by_size"]
    assert [res[f"recall_large@{t}"] for t in ("0.01", "0.1", "0.3")] == [100.0, 100.0, 100.0]
    # reset() forgets what was processed
    agnostic.reset()
    agnostic.process(recall_case[0][1:], recall_case[1][1:])
    assert agnostic.evaluate()["recall_by_size"]["num_small"] == 1


def test_recall_top_k_iou_and_unknown_image():
    from d2imbalance.evaluation.recall_by_size import recall_hits

    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    preds = torch.tensor([[50.0, 50.0, 60.0, 60.0], [0.0, 0.0, 10.0, 10.0]])
    args = (preds, torch.tensor([0.9, 0.5]), torch.tensor([0, 0]), gt, torch.tensor([0]))
    assert recall_hits(*args, max_dets=2)[:, 0].tolist() == [True, True, True]
    assert recall_hits(*args, max_dets=1)[:, 0].tolist() == [False, False, False]  # only the 0.9 one kept
    # IoU exactly 0.5 recalls (>= 0.5): [0, 0, 10, 20] against the 10x10 ground truth: 100 / 200.
    half = (torch.tensor([[0.0, 0.0, 10.0, 20.0]]), torch.tensor([0.3]), torch.tensor([0]), gt, torch.tensor([0]))
    assert recall_hits(*half)[:, 0].tolist() == [True, True, True]
    assert recall_hits(*half, iou_thresh=0.6)[:, 0].tolist() == [False, False, False]
    # score exactly at a threshold is kept (score >= t)
    assert recall_hits(*half, score_thresholds=(0.3, 0.31))[:, 0].tolist() == [True, False]
    assert recall_hits(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.int64), gt,
                       torch.tensor([0])).tolist() == [[False]] * 3
    ev = _evaluator()
    with pytest.raises(KeyError, match="not in dataset"):
        ev.process([{"image_id": 99}], [{}])


def test_protocol_nms_alone_differs_from_nms_after_the_model_nms():
    """Three candidates of one class, 10 px tall: A = [0, 10] (score 0.9), B = [3.5, 13.5] (0.8),
    C = [6, 16] (0.7) in x; IoU(A, B) = 6.5/13.5 = 0.48, IoU(B, C) = 7.5/12.5 = 0.6, IoU(A, C) = 4/16 =
    0.25. The ground truth is C. NMS 0.45 alone (the protocol) suppresses B and keeps C: recalled. After a
    model's NMS 0.5 (which suppressed C by B), NMS 0.45 keeps A only: not recalled."""
    from torchvision.ops import nms

    from d2imbalance.evaluation.recall_by_size import recall_hits

    boxes = torch.tensor([[0.0, 0.0, 10.0, 10.0], [3.5, 0.0, 13.5, 10.0], [6.0, 0.0, 16.0, 10.0]])
    scores, classes = torch.tensor([0.9, 0.8, 0.7]), torch.zeros(3, dtype=torch.int64)
    gt, gt_cls = boxes[2:], torch.tensor([0])
    assert recall_hits(boxes, scores, classes, gt, gt_cls)[:, 0].tolist() == [True, True, True]
    after_model = nms(boxes, scores, 0.5)
    assert after_model.tolist() == [0, 1]
    hits = recall_hits(boxes[after_model], scores[after_model], classes[after_model], gt, gt_cls)
    assert hits[:, 0].tolist() == [False, False, False]


def test_defaults_are_the_papers_protocol():
    """§4.1.3: thresholds 0.01 / 0.1 / 0.3, class-wise NMS 0.45, top 200, IoU >= 0.5, a detection of the
    ground truth's class; gathered across processes by default."""
    import inspect

    from d2imbalance.evaluation.recall_by_size import RecallBySizeEvaluator, recall_hits

    paper = {"score_thresholds": (0.01, 0.1, 0.3), "nms_thresh": 0.45, "max_dets": 200, "iou_thresh": 0.5,
             "class_aware": True}
    for fn in (recall_hits, RecallBySizeEvaluator.__init__):
        defaults = {k: p.default for k, p in inspect.signature(fn).parameters.items() if k in paper}
        assert defaults == paper, fn
    ev_defaults = {k: p.default for k, p in inspect.signature(RecallBySizeEvaluator.__init__).parameters.items()}
    assert ev_defaults["distributed"] is True and ev_defaults["size_by"] == "original"


def test_protocol_parameters_reach_the_evaluation(recall_case):
    """Non-default protocol settings change the result as expected on the recall case: a single
    threshold 0.2 keeps B, C, E (and D, which NMS 0.9 no longer suppresses: IoU(D, E) = 0.47), so the
    large ground truth is recalled by D; with max_dets 1 only C (0.9, wrong class) is kept; with IoU
    0.99 the medium ground truth (B shifted by 2 px, IoU 0.85) is no longer recalled."""
    inputs, outputs = recall_case

    def recall(**kw):
        ev = _evaluator(score_thresholds=(0.2,), **kw)
        ev.process(inputs, outputs)
        res = ev.evaluate()["recall_by_size"]
        return [res[f"recalled_{s}@0.2"] for s in ("small", "medium", "large")]

    assert recall() == [0, 1, 0]  # D suppressed by E (IoU 0.47 > 0.45)
    assert recall(nms_thresh=0.9) == [0, 1, 1]
    assert recall(nms_thresh=0.9, max_dets=1) == [0, 0, 0]
    assert recall(nms_thresh=0.9, iou_thresh=0.99) == [0, 0, 1]


def _size_case(name, sides):
    """One 300x300 image with one ground truth per (w, h) side pair, each its own row, all detected."""
    boxes = [[0, 40 * i, w, 40 * i + h] for i, (w, h) in enumerate(sides)]
    _register(name, [{"image_id": 1, "height": 300, "width": 300, "file_name": "s.jpg",
                      "annotations": [_anno(b, 0) for b in boxes]}])
    return boxes


def test_size_classes_are_coco_inclusive_and_by_original_or_input_area():
    """Areas 32x32 = 1024 (small: <= 32²), 32x33 = 1056 (medium), 96x96 = 9216 (medium: <= 96²),
    96x97 = 9312 (large). With size_by="input" and an input resized 300 -> 150 (areas / 4), the 96x96
    box (2304) becomes medium and 96x97 (2328) medium, 32x32 (256) and 32x33 (264) small."""
    boxes = _size_case("scb_size_case", [(32, 32), (32, 33), (96, 96), (96, 97)])
    out = [_instances((300, 300), boxes, [0.9] * 4, [0] * 4)]
    ev = _evaluator("scb_size_case")
    ev.process([{"image_id": 1, "height": 300, "width": 300}], out)
    res = ev.evaluate()["recall_by_size"]
    assert (res["num_small"], res["num_medium"], res["num_large"]) == (1, 2, 1)
    ev = _evaluator("scb_size_case", size_by="input")
    ev.process([{"image_id": 1, "height": 300, "width": 300, "image": torch.zeros(3, 150, 150)}], out)
    res = ev.evaluate()["recall_by_size"]
    assert (res["num_small"], res["num_medium"], res["num_large"]) == (2, 2, 0)
    # non-square resize: only the height halves (areas / 2): 512, 528, 4608, 4656
    ev = _evaluator("scb_size_case", size_by="input")
    ev.process([{"image_id": 1, "height": 300, "width": 300, "image": torch.zeros(3, 150, 300)}], out)
    assert ev.evaluate()["recall_by_size"]["num_small"] == 2
    with pytest.raises(ValueError, match="'image'"):
        ev.process([{"image_id": 1, "height": 300, "width": 300}], out)
    with pytest.raises(ValueError, match="size_by"):
        _evaluator("scb_size_case", size_by="resized")


@pytest.mark.parametrize("bad", [{"score_thresholds": ()}, {"score_thresholds": (0.1, 1.5)},
                                 {"score_thresholds": (-0.1,)}, {"model_nms_thresh": 0.5},
                                 {"model_nms_thresh": 0.999}])
def test_recall_evaluator_rejects_bad_settings(bad):
    with pytest.raises(ValueError):
        _evaluator(**bad)


def test_model_nms_equal_to_the_protocols_is_accepted_and_changes_nothing(recall_case, caplog):
    """SSD's own inference is the protocol's NMS 0.45 and top 200, so its outputs are accepted as they
    are: thresholding after an NMS at the same IoU equals the protocol's NMS after thresholding. The
    chained result equals the recall of the un-NMSed candidates, and the model's cap of 200 (= the
    protocol's top 200) is no truncation; a cap below 200 still is. Another model NMS is refused."""
    from torchvision.ops import batched_nms

    from d2imbalance.evaluation.recall_by_size import recall_hits

    inputs, outputs = recall_case
    ev = _evaluator(model_nms_thresh=0.45, model_max_dets=200)
    ev.process(inputs, outputs)
    alone = _evaluator()
    alone.process(inputs, outputs)
    assert ev.evaluate() == alone.evaluate()
    # the equivalence itself, on crafted candidates: NMS 0.45 first, then the protocol on what remains
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11], [30, 30, 40, 40], [31, 30, 41, 40]])
    scores = torch.tensor([0.35, 0.5, 0.05, 0.2, 0.4])
    classes = torch.zeros(5, dtype=torch.int64)
    gt = torch.tensor([[0.0, 0, 10, 10], [30, 30, 40, 40]])
    kw = dict(score_thresholds=(0.01, 0.1, 0.3), nms_thresh=0.45, max_dets=200, iou_thresh=0.5, class_aware=True)
    kept = batched_nms(boxes, scores, classes, 0.45)
    once = recall_hits(boxes, scores, classes, gt, torch.zeros(2, dtype=torch.int64), **kw)
    twice = recall_hits(boxes[kept], scores[kept], classes[kept], gt, torch.zeros(2, dtype=torch.int64), **kw)
    assert torch.equal(once, twice)
    caplog.clear()
    full = _evaluator(model_nms_thresh=0.45, model_max_dets=200)
    full.process(inputs[:1], [_dets(200, 0.2)])
    with caplog.at_level("WARNING"):
        assert full.evaluate()["recall_by_size"]["truncated_images@0.01"] == 0
    assert "cap" not in caplog.text
    short = _evaluator(model_nms_thresh=0.45, model_max_dets=100)
    short.process(inputs[:1], [_dets(100, 0.2)])
    assert short.evaluate()["recall_by_size"]["truncated_images@0.01"] == 1
    with pytest.raises(ValueError, match="or set it to the protocol's"):
        _evaluator(model_nms_thresh=0.5)


def _dets(n, lowest, classes=0):
    """n detections of one image, scores from 0.9 down to ``lowest``, far from every ground truth."""
    scores = [lowest] if n == 1 else torch.linspace(0.9, lowest, n).tolist()
    return _instances((220, 220), [[200.0, 200.0, 210.0, 210.0]] * n, scores, [classes] * n)


def test_truncation_warnings(recall_case, caplog):
    """Every way the model's own post-processing cuts candidates is reported:
    * the named case, 200 detections cut at 0.05: model threshold 0.05 > 0.01 and its cap of 200
      reached with lowest score 0.05: both images truncated at 0.01; not at 0.1 (lowest 0.05 < 0.1);
    * a cap reached with lowest score 0.2: truncated at 0.01 and 0.1, not at 0.3;
    * a cap reached with lowest score 0.005: nothing cut above 0.01, no warning;
    * settings unknown: a warning that nothing can be checked."""
    inputs, _ = recall_case

    def run(outputs, **kw):
        caplog.clear()
        ev = _evaluator(**kw)
        ev.process(inputs, outputs)
        with caplog.at_level("WARNING"):
            res = ev.evaluate()["recall_by_size"]
        return [res[f"truncated_images@{t}"] for t in ("0.01", "0.1", "0.3")], caplog.text

    truncated, text = run([_dets(200, 0.05), _dets(200, 0.05)], model_score_thresh=0.05, model_max_dets=200)
    assert truncated == [2, 0, 0]
    assert "score threshold 0.05" in text and "[0.01]" in text
    assert "2 of 2 images returned the model's cap of 200" in text
    truncated, text = run([_dets(3, 0.2), _dets(2, 0.02)], model_max_dets=3)
    assert truncated == [1, 1, 0] and "1 of 2 images" in text and "[0.01, 0.1]" in text
    assert "lowest score returned: 0.0200" in text
    truncated, text = run([_dets(3, 0.005), _dets(2, 0.02)], model_max_dets=3)
    assert truncated == [0, 0, 0] and text == ""
    # lowest score == t (0.25, exact in float32): the cap cut nothing that t should see
    ev = _evaluator(model_max_dets=3, score_thresholds=(0.125, 0.25))
    ev.process(inputs, [_dets(3, 0.25), _dets(2, 0.02)])
    res = ev.evaluate()["recall_by_size"]
    assert (res["truncated_images@0.125"], res["truncated_images@0.25"]) == (1, 0)
    truncated, text = run([_dets(3, 0.2), _dets(2, 0.02)], model_score_thresh=None, model_max_dets=None)
    assert truncated == [0, 0, 0]
    assert "not given model_score_thresh, model_max_dets" in text and "up to 3 detections" in text
    truncated, text = run([_dets(0, 0.0), _dets(0, 0.0)], model_nms_thresh=None)
    assert truncated == [0, 0, 0] and "not given model_nms_thresh:" in text and "up to 0 detections" in text


def test_gathered_across_processes(recall_case, caplog, monkeypatch):
    """Two processes, one image each: every count, the truncation counts and the lowest score reach
    the main process through comm.gather (the non-main process returns nothing)."""
    from d2imbalance.evaluation import recall_by_size

    inputs, outputs = recall_case
    sent = []

    def gather_to(data, dst):
        assert dst == 0  # the main process
        sent.append(data)
        return []

    monkeypatch.setattr(recall_by_size.comm, "synchronize", lambda: None)
    monkeypatch.setattr(recall_by_size.comm, "gather", gather_to)
    monkeypatch.setattr(recall_by_size.comm, "is_main_process", lambda: False)
    other = _evaluator(model_max_dets=1)
    other.distributed = True
    other.process(inputs[1:], [_dets(1, 0.015)])
    assert other.evaluate() == {}
    monkeypatch.setattr(recall_by_size.comm, "gather", lambda data, dst: [data, *sent])
    monkeypatch.setattr(recall_by_size.comm, "is_main_process", lambda: True)
    main = _evaluator(model_max_dets=1)
    main.distributed = True
    main.process(inputs[:1], [_dets(1, 0.5)])
    with caplog.at_level("WARNING"):
        res = main.evaluate()["recall_by_size"]
    assert (res["num_small"], res["num_medium"], res["num_large"]) == (2, 1, 1)
    assert [res[f"truncated_images@{t}"] for t in ("0.01", "0.1", "0.3")] == [2, 1, 1]
    assert "2 of 2 images" in caplog.text and "lowest score returned: 0.0150" in caplog.text


def test_annotations_without_iscrowd_count():
    """An annotation without an "iscrowd" key is an ordinary object (COCO's default 0)."""
    anno = _anno([0, 0, 10, 10], 0)
    del anno["iscrowd"]
    _register("scb_no_crowd_key", [{"image_id": 1, "height": 50, "width": 50, "file_name": "n.jpg",
                                    "annotations": [anno, _anno([20, 20, 30, 30], 0, crowd=1)]}])
    ev = _evaluator("scb_no_crowd_key")
    ev.process([{"image_id": 1}], [_instances((50, 50), [[0, 0, 10, 10]], [0.9], [0])])
    res = ev.evaluate()["recall_by_size"]
    assert (res["num_small"], res["recalled_small@0.3"]) == (1, 1)


def test_no_ground_truth_reports_nothing(caplog):
    _register("scb_empty_case", [{"image_id": 1, "height": 50, "width": 50, "file_name": "e.jpg", "annotations": []}])
    ev = _evaluator("scb_empty_case")
    ev.process([{"image_id": 1}], [_dets(2, 0.5)])
    with caplog.at_level("WARNING"):
        assert ev.evaluate() == {}
    assert "no ground truth" in caplog.text


def _fake_model():
    """One level, stride 16, one 32x32 anchor per cell, RetinaNet's matcher."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.matcher import Matcher

    return SimpleNamespace(
        backbone=SimpleNamespace(output_shape=lambda: {"p4": ShapeSpec(channels=1, stride=16)}, size_divisibility=32,
                                 padding_constraints={}),
        anchor_generator=DefaultAnchorGenerator(sizes=[[32]], aspect_ratios=[[1.0]], strides=[16]),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        head_in_features=["p4"],
    )


def _hist_dicts():
    """A 64x64 image -> 4x4 anchors of 32 px centred at 8, 24, 40, 56 (IoUs checked by hand).

    a = [16,16,48,48] (small: 32² = 1024 is inclusive): IoU 0.391 (< 0.4) with the 4 central anchors,
        all tied, so all 4 are forced positive and, being their argmax owner, a gets M = 4.
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
    assert hist["small"].tolist() == [1, 0, 0, 0, 1]
    assert hist["medium"].tolist() == [0, 1, 0, 0, 0]
    assert hist["large"].tolist() == [0] * 5
    table = format_histogram(hist)
    assert "| >=4 | 1 | 1 | 0 | 0 |" in table and "| total | 3 | 2 | 1 | 0 |" in table
    assert "| 0 | 1 | 1 | 0 | 0 |" in table.splitlines()[2]
    with pytest.raises(ValueError, match="max_bin"):
        match_histogram(counts, areas, max_bin=0)


def test_histogram_sizes_by_input_area_as_training_statistics():
    """Resized to a 128 px short edge (2x), the boxes are matched at 2x and, by default, binned by their
    area in that input (x4: 4096, 256, 16384 -> medium, small, large), as the training statistics bin
    them (scb/mean_M_* use the area of the boxes the network sees); size_by="original" keeps the
    dataset's areas. The boundaries are those of size_classes (96² = 9216 is medium, 9217 large)."""
    from d2imbalance.analysis.anchor_matches import count_matches, match_histogram
    from scale_balanced.weights import size_class

    counts, areas = count_matches(_fake_model(), _hist_dicts(), short_edge=128, max_size=1000)
    _, original = count_matches(_fake_model(), _hist_dicts(), short_edge=128, max_size=1000, size_by="original")
    assert areas.tolist() == [4096.0, 256.0, 16384.0] and original.tolist() == [1024.0, 64.0, 4096.0]
    hist = match_histogram(counts, areas, max_bin=30)
    assert [int(hist[s].sum()) for s in ("small", "medium", "large")] == [1, 1, 1]
    edges = np.array([1024.0, 1025.0, 9216.0, 9217.0])
    hist = match_histogram(np.zeros(4, dtype=np.int64), edges, max_bin=2)
    assert [int(hist[s][0]) for s in ("small", "medium", "large")] == [1, 2, 1]
    assert size_class(torch.tensor(edges)).tolist() == [0, 1, 1, 2]  # the training statistics agree
    with pytest.raises(ValueError, match="size_by"):
        count_matches(_fake_model(), _hist_dicts(), size_by="resized")


def test_count_matches_feature_maps_and_edge_cases():
    """Anchors come from feature maps of the padded input, ceil(padded / stride): a 50x70 image with
    size divisibility 32 is padded to 64x96, so the stride-16 map is 4x6; resized to a 100 px short edge
    (100x140, padded 128x160) it is 8x10; with divisibility 0 nothing is padded (ceil(50/16) x
    ceil(70/16) = 4x5). An R-CNN's RPN gives the same counts as the RetinaNet-like model; a model with
    neither is refused; no annotation at all gives empty int64 / float arrays."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.analysis.anchor_matches import count_matches, match_histogram

    dicts = [{"image_id": 1, "height": 50, "width": 70, "file_name": "y.jpg",
              "annotations": [{k: v for k, v in _anno([8, 8, 40, 40], 0).items() if k != "iscrowd"}]}]

    def maps(model, **kw):
        seen, generator = [], model.anchor_generator
        model.anchor_generator = lambda feats: seen.append([tuple(f.shape[-2:]) for f in feats]) or generator(feats)
        counts, areas = count_matches(model, dicts, **kw)
        assert areas.dtype.kind == "f" and len(counts) == 1  # the annotation without "iscrowd" counts
        return seen[0][0], counts

    assert maps(_fake_model())[0] == (4, 6)
    assert maps(_fake_model(), short_edge=100)[0] == (8, 10)  # max_size defaults to no limit
    flat = _fake_model()
    flat.backbone = SimpleNamespace(output_shape=lambda: {"p4": ShapeSpec(channels=1, stride=16)}, size_divisibility=0,
                                    padding_constraints={})
    assert maps(flat)[0] == (4, 5)

    retina = _fake_model()
    rcnn = SimpleNamespace(backbone=retina.backbone, proposal_generator=SimpleNamespace(
        anchor_generator=retina.anchor_generator, anchor_matcher=retina.anchor_matcher, in_features=["p4"]))
    assert count_matches(rcnn, _hist_dicts())[0].tolist() == count_matches(retina, _hist_dicts())[0].tolist()
    for broken in (SimpleNamespace(backbone=retina.backbone, anchor_generator=retina.anchor_generator),
                   SimpleNamespace(backbone=retina.backbone, anchor_matcher=retina.anchor_matcher),
                   SimpleNamespace(backbone=retina.backbone, proposal_generator=SimpleNamespace(
                       anchor_generator=retina.anchor_generator))):
        with pytest.raises(ValueError, match="no anchor matching"):
            count_matches(broken, _hist_dicts())
    counts, areas = count_matches(retina, [{"image_id": 2, "height": 8, "width": 8, "annotations": []}])
    assert (counts.dtype, areas.dtype, len(counts), len(areas)) == (np.int64, np.float32, 0, 0)
    hist = match_histogram(np.array([0, 25]), np.array([10.0, 10.0]))  # default: bins 0..19 and >= 20
    assert len(hist["all"]) == 21 and hist["small"][[0, 20]].tolist() == [1, 1]
    assert match_histogram(np.array([0, 3]), np.array([10.0, 10.0]), max_bin=1)["all"].tolist() == [1, 1]


def test_histogram_tool_end_to_end(tmp_path, capsys):
    """The CLI on a real config (shapes RetinaNet, test resize to a 256 px short edge: 4x) and a
    registered COCO-format-like dataset. Sizes by input area (default): a 16384 and c 65536 large,
    b 1024 small; --size-by original: a, b small, c medium."""
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
    assert png.stat().st_size > 1000 and "| total | 6 | 2 | 0 | 4 |" in out and "sizes by input area" in out
    assert int(np.sum(hist["all"])) == 6
    tool.main(["--config-file", "Baselines/retinanet_shapes.py", "--dataset", "scb_hist_case",
               "--max-bin", "10", "--output", str(png), "--size-by", "original"])
    assert "| total | 6 | 4 | 2 | 0 |" in capsys.readouterr().out


# Mutation survivors, explained (../shared/tools/mutate.py on d2imbalance/evaluation/recall_by_size.py):
# * `dtype=torch.float32` / `dtype=torch.int64` dropped where the ground truth is read: torch.tensor
#   infers int64 from integer boxes and ids, and every later use (box_iou on .float(), areas, class
#   comparison) gives the same result for integer or float32 boxes, so these mutants are equivalent.
