"""SSD-SCB (projects/ScaleBalanced/scale_balanced/ssd.py): the scale-balanced loss on SSD, the paper's own
detector. Losses are checked against a reference written from the definitions (SSD's forced matching,
M_i, W_i of Eq. 3 / Table 1, 3:1 mining of unweighted negatives, division by the positives), the
`const` form against vanilla SSD, and every config switch on the model it builds.
"""
import math
import os

import pytest
import torch
import torch.nn.functional as F

from test_ssd import _instances, _tiny_ssd, shapes_step_and_test

pytestmark = pytest.mark.detectron2

CONFIG_DIR = os.path.join(os.path.dirname(__file__), "..", "configs", "ScaleBalanced")
SSD_SCB_CONFIGS = sorted(f for f in os.listdir(CONFIG_DIR) if f.startswith("ssd"))
PAPER = dict(weighting_form="scale_balanced", scb_alpha=1.0, scb_beta=3.0, weight_box_loss=False)


def _scb(**kwargs):
    from scale_balanced import SSDSCB

    return _tiny_ssd(num_classes=3, cls=SSDSCB, **kwargs)


def _batch():
    """Two images. Image 0: a 40x40 object (class 0) at (130, 130), a 100x160 one (class 2), and a 12x12
    one (class 1) that no prior overlaps by 0.5 (only its forced best prior: M = 1). Image 1: one object."""
    torch.manual_seed(1)
    return [
        {"image": torch.rand(3, 300, 300) * 255,
         "instances": _instances([[130, 130, 170, 170], [20, 100, 120, 260], [4, 4, 16, 16]], [0, 2, 1])},
        {"image": torch.rand(3, 300, 300) * 255, "instances": _instances([[150, 40, 260, 120]], [1])},
    ]


class _Spy:
    """Records the arguments SSD.losses receives (the predictions of the step)."""

    def __init__(self, model):
        self.calls, original = [], model.losses

        def losses(*args, **kwargs):
            self.calls.append((args, kwargs))
            return original(*args, **kwargs)

        model.losses = losses


def _train_step(model, inputs):
    from detectron2.utils.events import EventStorage

    spy = _Spy(model)
    with EventStorage() as storage:
        losses = model(inputs)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    (anchors, logits, _, deltas, _, _), _ = spy.calls[-1]
    from detectron2.layers import cat
    from detectron2.structures import Boxes

    return losses, scalars, Boxes.cat(anchors), cat(logits, dim=1).detach(), cat(deltas, dim=1).detach()


def _owners(gt_boxes, anchors):
    """SSD's matching, written out: argmax owner at IoU >= 0.5, then each ground truth's best prior
    forced to it (the later ground truth winning a shared one)."""
    from detectron2.structures import pairwise_iou

    iou = pairwise_iou(gt_boxes, anchors)  # (G, R)
    owner = torch.full((len(anchors),), -1)
    best_iou, argmax = iou.max(dim=0)
    owner[best_iou >= 0.5] = argmax[best_iou >= 0.5]
    for g in range(len(gt_boxes)):
        owner[int(iou[g].argmax())] = g
    return owner


def _reference(inputs, anchors, logits, deltas, *, form="scale_balanced", alpha=1.0, beta=3.0,
               weight_box_loss=False, num_classes=3):
    """The paper's SSD-SCB losses from the definitions, one prior at a time where it is clearer."""
    from detectron2.modeling.box_regression import Box2BoxTransform

    from d2imbalance.modeling import SSD_BOX_WEIGHTS

    weight_of = {
        "scale_balanced": lambda m: beta * (math.log(m) + alpha) / m,
        "const": lambda m: 1.0,
        "inv_log": lambda m: beta / (math.log(m) + 1),
        "inv_sqrt": lambda m: beta / math.sqrt(m),
        "inv": lambda m: beta / m,
        "log_over_m": lambda m: beta * (math.log(m) + 1) / m,
        "log_over_m_unscaled": lambda m: (math.log(m) + 1) / m,
    }[form]
    coder = Box2BoxTransform(SSD_BOX_WEIGHTS)
    cls_sum, box_sum, num_pos = 0.0, 0.0, 0
    for n, x in enumerate(inputs):
        gt = x["instances"]
        owner = _owners(gt.gt_boxes, anchors)
        counts = [int((owner == g).sum()) for g in range(len(gt))]
        labels = torch.full((len(anchors),), num_classes)
        labels[owner >= 0] = gt.gt_classes[owner[owner >= 0]]
        ce = F.cross_entropy(logits[n], labels, reduction="none")
        pos = owner >= 0
        negatives = sorted(ce[~pos].tolist(), reverse=True)[: 3 * int(pos.sum())]
        cls_sum += sum(negatives)
        for r in torch.nonzero(pos).flatten().tolist():
            w = weight_of(counts[owner[r]])
            cls_sum += w * ce[r].item()
            target = coder.get_deltas(anchors.tensor[r : r + 1], gt.gt_boxes.tensor[owner[r] : owner[r] + 1])[0]
            box = F.smooth_l1_loss(deltas[n, r], target, beta=1.0, reduction="sum").item()
            box_sum += (w if weight_box_loss else 1.0) * box
        num_pos += int(pos.sum())
    return {"loss_cls": cls_sum / num_pos, "loss_box_reg": box_sum / num_pos}


def test_const_form_gives_vanilla_ssd_losses_exactly():
    """Same seeded weights and batch: SSD-SCB with W = 1 computes SSD's losses bit for bit, and mines the
    same negatives."""
    vanilla, vanilla_scalars, *_ = _train_step(_tiny_ssd(num_classes=3), _batch())
    const, const_scalars, *_ = _train_step(_scb(weighting_form="const"), _batch())
    for k in vanilla:
        assert torch.equal(vanilla[k], const[k]), k
    assert const_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]
    paper, paper_scalars, *_ = _train_step(_scb(), _batch())
    assert paper["loss_cls"].item() != pytest.approx(vanilla["loss_cls"].item(), rel=1e-4)
    assert torch.equal(paper["loss_box_reg"], vanilla["loss_box_reg"])  # the box loss is unweighted by default
    assert paper_scalars["num_mined_negatives"] == vanilla_scalars["num_mined_negatives"]  # mining ignores W


SWITCHES = [
    {},
    {"weighting_form": "const"},
    {"weighting_form": "inv_log"},
    {"weighting_form": "inv_sqrt"},
    {"weighting_form": "inv"},
    {"weighting_form": "log_over_m_unscaled"},
    {"scb_alpha": 2.0, "scb_beta": 1.5},
    {"weight_box_loss": True},
    {"weighting_form": "inv", "scb_beta": 0.5, "weight_box_loss": True},
]


@pytest.mark.parametrize("switches", SWITCHES, ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "paper")
def test_losses_equal_the_reference_for_every_switch(switches):
    """loss_cls and loss_box_reg of a training step equal the reference computed from the definitions;
    every switch but the paper's setting changes them."""
    inputs = _batch()
    losses, _, anchors, logits, deltas = _train_step(_scb(**switches), inputs)
    kw = dict(form=switches.get("weighting_form", "scale_balanced"), alpha=switches.get("scb_alpha", 1.0),
              beta=switches.get("scb_beta", 3.0), weight_box_loss=switches.get("weight_box_loss", False))
    ref = _reference(inputs, anchors, logits, deltas, **kw)
    for k in ref:
        assert losses[k].item() == pytest.approx(ref[k], rel=1e-5), k
    paper = _reference(inputs, anchors, logits, deltas)
    changed = [k for k in ref if ref[k] != pytest.approx(paper[k], rel=1e-4)]
    assert bool(changed) == bool(switches), changed
    assert ("loss_box_reg" in changed) == switches.get("weight_box_loss", False)


def test_match_counts_include_the_forced_prior_and_reach_event_storage():
    """The 12x12 object overlaps no prior by 0.5: SSD's forced best prior gives it M = 1, W = 3 (not an
    unmatched object as detectron2's Matcher could leave it). Statistics by input-resolution size:
    small = the 12x12 (144 px^2) object, medium the 40x40 (1600) and 110x80 (8800 <= 96^2) ones, large
    the 100x160 (16000)."""
    from detectron2.utils.events import EventStorage

    model = _scb()
    inputs = _batch()
    with EventStorage() as storage:
        anchors = model.anchor_generator([torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)])
        _, _, matched = model.label_anchors(anchors, [x["instances"] for x in inputs])
        weights = model.prior_weights(matched, [x["instances"] for x in inputs])
        scalars = {k: v[0] for k, v in storage.latest().items()}
    assert int((matched[0] == 2).sum()) == 1
    prior = int(torch.nonzero(matched[0] == 2)[0])
    assert weights[0, prior].item() == pytest.approx(3.0)
    assert scalars["scb/mean_M_small"] == 1.0 and scalars["scb/frac_unmatched_small"] == 0.0
    assert scalars["scb/mean_weight_small"] == pytest.approx(3.0)
    m_medium = [int((matched[0] == 0).sum()), int((matched[1] == 0).sum())]
    assert scalars["scb/mean_M_medium"] == pytest.approx(sum(m_medium) / 2)
    assert scalars["scb/mean_M_large"] == int((matched[0] == 1).sum()) > 1
    assert weights.shape == (2, 8732) and (weights[torch.stack(matched) < 0] == 1).all()
    positives = torch.stack(matched) >= 0
    assert scalars["scb/mean_pos_anchor_weight"] == pytest.approx(weights[positives].mean().item())


def test_an_image_without_objects_trains_nothing_and_stays_finite():
    """No positives anywhere: SSD mines no negatives, both losses are exactly 0, weights are all 1."""
    from detectron2.utils.events import EventStorage

    model = _scb()
    empty = [{"image": torch.rand(3, 300, 300) * 255, "instances": _instances([], [])}]
    with EventStorage() as storage:
        losses = model(empty)
        assert "scb/mean_pos_anchor_weight" not in storage.latest()
    assert {k: v.item() for k, v in losses.items()} == {"loss_cls": 0.0, "loss_box_reg": 0.0}
    with EventStorage():
        anchors = model.anchor_generator([torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)])
        _, _, matched = model.label_anchors(anchors, [empty[0]["instances"]])
        assert torch.equal(model.prior_weights(matched, [empty[0]["instances"]]), torch.ones(1, 8732))


def test_unknown_form_is_refused_with_the_choices():
    with pytest.raises(ValueError, match="weighting_form='inv_cube'.*scale_balanced"):
        _scb(weighting_form="inv_cube")


@pytest.mark.parametrize("name", SSD_SCB_CONFIGS)
def test_ssd_scb_configs_set_the_paper_settings_on_the_matching_baseline(name):
    """Every SSD-SCB config builds SSDSCB on the baseline of the same name (same recipe) with the paper's
    settings, the _w_ configs changing only the form; the tiny model with the config's switches gives the
    reference losses."""
    from detectron2.config import LazyConfig

    from d2imbalance import get_config
    from scale_balanced import SSDSCB

    cfg = LazyConfig.load(os.path.join(CONFIG_DIR, name))
    baseline = get_config("Baselines/" + name.split("_w_")[0].replace("_scb", "").replace(".py", "") + ".py")
    assert cfg.model._target_ is SSDSCB
    form = name.split("_w_")[1][:-3] if "_w_" in name else "scale_balanced"
    switches = {k: cfg.model[k] for k in PAPER}
    assert switches == {**PAPER, "weighting_form": form}
    for key in ("num_classes", "anchor_generator", "head", "backbone"):
        assert cfg.model[key] == baseline.model[key], key
    assert cfg.train.max_iter == baseline.train.max_iter and cfg.optimizer.lr == baseline.optimizer.lr
    assert cfg.train.output_dir.endswith(name[:-3])
    assert len(cfg.dataloader.evaluator) == 2  # the baseline's metric and the paper's recall by size
    if "_w_" in name:
        inputs = _batch()
        losses, _, anchors, logits, deltas = _train_step(_scb(**{**switches, "weighting_form": form}), inputs)
        ref = _reference(inputs, anchors, logits, deltas, form=form)
        assert losses["loss_cls"].item() == pytest.approx(ref["loss_cls"], rel=1e-5)


def test_ssd300_scb_shapes_trains_and_reports_ap_and_recall_by_size(tmp_path):
    """The train_net path on the mini shapes dataset: one SSD-SCB step logging the SCB statistics, then
    do_test with COCO AP and the paper's recall table."""
    latest, results = shapes_step_and_test("ScaleBalanced/ssd300_scb_shapes.py", tmp_path)
    assert math.isfinite(latest["total_loss"]) and latest["scb/mean_pos_anchor_weight"] > 0
    assert set(results["bbox"]) >= {"AP", "APs"} and "recall_small@0.3" in results["recall_by_size"]


def _register(name, dicts, classes=("circle", "square", "triangle", "star")):
    from detectron2.data import DatasetCatalog, MetadataCatalog

    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
    DatasetCatalog.register(name, lambda: dicts)
    MetadataCatalog.get(name).set(thing_classes=list(classes))


def _ssd_hist_dicts():
    """One 600x400 (h x w) image, resized to 300x300 by SSD: x scales by 0.75, y by 0.5. Boxes (original
    -> input): a 40x60 -> 30x30 on the first 30 px prior (small: 900 <= 32^2 in the input, 2400 in the
    original); b 400x600 -> 300x300, the whole input (large); c 8x8 -> 6x4 (small), only its forced prior."""
    from detectron2.structures import BoxMode

    def anno(box, cls):
        return {"bbox": box, "bbox_mode": BoxMode.XYXY_ABS, "category_id": cls, "iscrowd": 0}

    return [{"image_id": 1, "height": 600, "width": 400, "file_name": "z.jpg", "annotations": [
        anno([0, 0, 40, 60], 0), anno([0, 0, 400, 600], 1), anno([200, 300, 208, 308], 2),
        {**anno([0, 0, 400, 600], 3), "iscrowd": 1}]}]


def test_match_counts_of_ssd_use_its_forced_matching_and_the_300x300_input():
    """count_matches on SSD: the ground truths resized to 300x300 (no padding, SSD's input is square),
    matched by SSD's rule: M equals the owners of the matching written out, every object has M >= 1,
    and the small 8x8 object gets exactly its forced prior."""
    from detectron2.structures import Boxes

    from d2imbalance.analysis.anchor_matches import SSDMatcher, anchor_matching_parts, count_matches

    model = _tiny_ssd(num_classes=4)
    generator, matcher, features = anchor_matching_parts(model)
    assert isinstance(matcher, SSDMatcher) and matcher.threshold == 0.5 and generator is model.anchor_generator
    counts, areas = count_matches(model, _ssd_hist_dicts(), resize_to=(300, 300))
    resized = Boxes(torch.tensor([[0.0, 0, 30, 30], [0, 0, 300, 300], [150, 150, 156, 154]]))
    anchors = Boxes.cat(model.anchor_generator([torch.zeros(1, 1, s, s) for s in (38, 19, 10, 5, 3, 1)]))
    owner = _owners(resized, anchors)
    assert counts.tolist() == [int((owner == g).sum()) for g in range(3)]
    assert counts[2] == 1 and counts.min() >= 1 and counts[0] > 1
    assert areas.tolist() == [900.0, 90000.0, 24.0]
    _, original = count_matches(model, _ssd_hist_dicts(), resize_to=(300, 300), size_by="original")
    assert original.tolist() == [2400.0, 240000.0, 64.0]
    model.iou_threshold = 0.3  # the model's threshold reaches the matcher
    assert anchor_matching_parts(model)[1].threshold == 0.3
    assert count_matches(model, _ssd_hist_dicts(), resize_to=(300, 300))[0][0] > counts[0]


def test_histogram_tool_on_an_ssd_config(tmp_path, capsys):
    """The CLI on Baselines/ssd300_shapes.py reads SSD's fixed 300x300 Resize from the test mapper:
    objects a and c are small, b large in the input."""
    import importlib.util

    from d2imbalance import get_config
    from d2imbalance.analysis.anchor_matches import fixed_resize_from_config

    assert fixed_resize_from_config(get_config("Baselines/ssd300_shapes.py")) == (300, 300)
    assert fixed_resize_from_config(get_config("Baselines/ssd512_voc0712.py")) == (512, 512)
    assert fixed_resize_from_config(get_config("Baselines/retinanet_shapes.py")) is None
    _register("ssd_hist_case", _ssd_hist_dicts())
    spec = importlib.util.spec_from_file_location(
        "anchor_match_histogram", os.path.join(os.path.dirname(__file__), "..", "tools", "anchor_match_histogram.py")
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    png = tmp_path / "hist.png"
    hist = tool.main(["--config-file", "Baselines/ssd300_shapes.py", "--dataset", "ssd_hist_case",
                      "--max-bin", "5", "--output", str(png)])
    out = capsys.readouterr().out
    assert "resize to 300x300" in out and png.stat().st_size > 1000
    assert hist["small"].sum() == 2 and hist["large"].sum() == 1 and hist["small"][1] == 1


def test_scb_detectors_infer_with_their_vanilla_detectors_code():
    """SCB changes training only: SSD-SCB and RefineDet-SCB inherit every inference method unchanged, so
    their inference cost is the vanilla detector's (what the benchmark's inference ratio measures)."""
    from scale_balanced import RefineDetSCB, SSDSCB

    from d2imbalance.modeling import SSD, RefineDet

    for scb, vanilla in ((SSDSCB, SSD), (RefineDetSCB, RefineDet)):
        for name in ("forward", "forward_inference", "inference_single_image", "preprocess_image"):
            assert getattr(scb, name) is getattr(vanilla, name), (scb.__name__, name)
        # Besides training, only the declaration of the hyper-parameters (data, read by the comparison tool).
        assert set(vars(scb)) - {"__module__", "__doc__", "__init__", "__qualname__"} <= {
            "forward_training", "prior_weights", "_weights", "HYPERPARAMETERS",
        }
