"""objconf's pure-torch parts (score fusion, confidence losses, aligned IoU) and the counting core of
the misalignment analysis, checked against numbers computed by hand. Nothing here needs detectron2.
"""

import json
import math

import numpy as np
import pytest
import torch

from objconf.conf_loss import CONF_LOSSES, aligned_box_iou, object_confidence_loss
from objconf.fusion import FUSION_METHODS, fuse_logits_, fuse_scores


def _logit(p):
    return math.log(p / (1 - p))


# ----------------------------------------------------------------------------- fusion (Table 4, Eq. 11)


def test_fusion_by_hand():
    """cls = 1/1024, conf = 1/32, alpha = 0.4: product = 2^(-5*0.4) * 2^(-10*0.6) = 2^-2 * 2^-6 = 1/256;
    cls*conf = 2^-15; cls alone = 2^-10."""
    cls = torch.tensor([[1 / 1024, 1 / 32]])  # (R=1, K=2)
    conf = torch.tensor([[1 / 32]])  # (R=1, 1)
    assert torch.allclose(fuse_scores(cls, conf, method="cls"), cls)
    assert torch.allclose(
        fuse_scores(cls, conf, method="cls*conf"), torch.tensor([[2.0**-15, 2.0**-10]])
    )
    # second class: (1/32)^0.4 * (1/32)^0.6 = 1/32
    assert torch.allclose(
        fuse_scores(cls, conf, method="product", alpha=0.4), torch.tensor([[1 / 256, 1 / 32]])
    )
    # the defaults are the paper's: product with alpha = 0.4 (Eq. 11, Table 5), no filter
    assert torch.allclose(fuse_scores(cls, conf), torch.tensor([[1 / 256, 1 / 32]]))
    in_place = fuse_logits_(torch.logit(cls.double()), torch.logit(conf.double()))
    assert torch.allclose(in_place, torch.tensor([[1 / 256, 1 / 32]], dtype=torch.double))
    # alpha = 0 is the class score, alpha = 1 the confidence
    assert torch.allclose(fuse_scores(cls, conf, method="product", alpha=0.0), cls)
    assert torch.allclose(fuse_scores(cls, conf, method="product", alpha=1.0), conf.expand(1, 2))


def test_fusion_conf_filter_by_hand():
    """tau = 0.5 keeps conf > 0.5 only: rows with conf 0.8 / 0.5 / 0.3 -> kept / dropped / dropped."""
    cls = torch.tensor([[0.2, 0.6], [0.9, 0.1], [0.7, 0.7]])
    conf = torch.tensor([[0.8], [0.5], [0.3]])
    out = fuse_scores(cls, conf, method="cls", conf_thresh=0.5)
    assert torch.equal(out, torch.tensor([[0.2, 0.6], [0.0, 0.0], [0.0, 0.0]]))
    out = fuse_scores(cls, conf, method="cls*conf", conf_thresh=0.5)
    assert torch.allclose(out, torch.tensor([[0.16, 0.48], [0.0, 0.0], [0.0, 0.0]]))
    out = fuse_scores(cls, conf, method="product", alpha=0.5, conf_thresh=0.5)
    assert torch.allclose(out[0], torch.tensor([0.4, 0.8**0.5 * 0.6**0.5]))
    assert torch.equal(out[1:], torch.zeros(2, 2))
    # In place from logits: conf logit 0 is exactly 0.5, not above tau = 0.5, so its row is dropped.
    for method in FUSION_METHODS:
        out = fuse_logits_(torch.logit(cls), torch.logit(conf), method=method, alpha=0.5, conf_thresh=0.5)
        assert out[0].min() > 0 and torch.equal(out[1:], torch.zeros(2, 2)), method


@pytest.mark.parametrize("method", FUSION_METHODS)
@pytest.mark.parametrize("conf_thresh", [None, 0.5])
def test_inplace_fusion_matches_reference_without_new_score_tensor(method, conf_thresh):
    torch.manual_seed(0)
    cls_logits, conf_logits = torch.randn(50, 7) * 3, torch.randn(50, 1) * 3
    expected = fuse_scores(
        cls_logits.sigmoid(),
        conf_logits.sigmoid(),
        method=method,
        alpha=0.4,
        conf_thresh=conf_thresh,
    )
    buffer = cls_logits.clone()
    out = fuse_logits_(
        buffer, conf_logits.clone(), method=method, alpha=0.4, conf_thresh=conf_thresh
    )
    assert (
        out.data_ptr() == buffer.data_ptr()
    ), "fusion must write into the score tensor, not copy it"
    assert torch.allclose(out, expected, atol=1e-6)


def test_fusion_rejects_bad_arguments():
    cls, conf = torch.rand(2, 3), torch.rand(2, 1)
    with pytest.raises(ValueError, match="Unknown score fusion"):
        fuse_scores(cls, conf, method="sum")
    with pytest.raises(ValueError, match="alpha"):
        fuse_scores(cls, conf, method="product", alpha=1.5)
    with pytest.raises(ValueError, match="conf_thresh"):
        fuse_scores(cls, conf, method="cls", conf_thresh=1.0)


# ----------------------------------------------------------------------------- losses (Table 2, Eq. 9, 13)

# Two positives: logits 0 and ln 3, i.e. p = 0.5 and 0.75; IoU targets y = 0.5 and 1.0; N_pos = 2.
POS_LOGITS = torch.tensor([0.0, math.log(3.0)])
TARGETS = torch.tensor([0.5, 1.0])
BCE = [math.log(2.0), math.log(4.0 / 3.0)]  # -(.5 ln .5 + .5 ln .5) and -ln .75


@pytest.mark.parametrize(
    "loss_type, kwargs, expected",
    [
        ("ce", {}, (BCE[0] + BCE[1]) / 2),  # Eq. 9
        ("l1", {}, (0.0 + 0.25) / 2),
        ("l2", {}, (0.0 + 0.0625) / 2),
        ("smooth_l1", {}, (0.5 * 0.0625) / 2),  # default beta 1: |d| = .25 < beta, 0.5 d^2 / beta
        ("smooth_l1", {"smooth_l1_beta": 0.1}, (0.25 - 0.05) / 2),  # |d| >= beta: |d| - beta / 2
        ("gfocal", {}, (0.0 * BCE[0] + 0.25**2 * BCE[1]) / 2),  # Eq. 13, default gamma 2
        ("gfocal", {"gfocal_gamma": 0.0}, (BCE[0] + BCE[1]) / 2),  # gamma 0 is CE
        # CE^w: one negative with logit 0 (BCE with target 0 = ln 2) at the default weight 1e-4 ...
        (
            "ce_w",
            {"neg_logits": torch.tensor([0.0])},
            (BCE[0] + BCE[1] + 1e-4 * math.log(2.0)) / 2,
        ),
        # ... and at 1e-3
        (
            "ce_w",
            {"neg_logits": torch.tensor([0.0]), "neg_weight": 1e-3},
            (BCE[0] + BCE[1] + 1e-3 * math.log(2.0)) / 2,
        ),
    ],
)
def test_confidence_losses_by_hand(loss_type, kwargs, expected):
    loss = object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, loss_type=loss_type, **kwargs)
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_every_loss_is_covered_and_unknown_names_raise():
    assert set(CONF_LOSSES) == {"ce", "ce_w", "l1", "smooth_l1", "l2", "gfocal"}
    with pytest.raises(ValueError, match="Unknown confidence loss"):
        object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, loss_type="focal")
    with pytest.raises(ValueError, match="neg_logits"):
        object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, loss_type="ce_w")


def test_loss_hyper_parameters_are_checked_at_their_bounds():
    """w = 0 is allowed (CE^w then equals CE), gamma = 0 too (GFocal = CE); beta must be > 0."""
    neg = torch.tensor([0.0])
    ce = object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2)
    ce_w0 = object_confidence_loss(
        POS_LOGITS, TARGETS, normalizer=2, loss_type="ce_w", neg_logits=neg, neg_weight=0.0
    )
    assert ce_w0.item() == ce.item()
    with pytest.raises(ValueError, match="conf_neg_weight=-0.001"):
        object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, neg_weight=-1e-3)
    with pytest.raises(ValueError, match="conf_gfocal_gamma=-1"):
        object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, gfocal_gamma=-1.0)
    with pytest.raises(ValueError, match="conf_smooth_l1_beta=0.*use loss 'l1'"):
        object_confidence_loss(POS_LOGITS, TARGETS, normalizer=2, smooth_l1_beta=0.0)


def test_fusion_arguments_are_checked_at_their_bounds():
    """alpha in [0, 1] both ends included; tau in [0, 1): 0 allowed, 1 not (it would drop everything)."""
    cls, conf = torch.tensor([[0.2]]), torch.tensor([[0.7]])
    assert fuse_scores(cls, conf, alpha=0.0).item() == pytest.approx(0.2)
    assert fuse_scores(cls, conf, alpha=1.0).item() == pytest.approx(0.7)
    assert fuse_scores(cls, conf, method="cls", conf_thresh=0.0).item() == pytest.approx(0.2)
    with pytest.raises(ValueError, match="alpha=-0.1"):
        fuse_scores(cls, conf, alpha=-0.1)
    with pytest.raises(ValueError, match="conf_thresh=-0.5"):
        fuse_scores(cls, conf, conf_thresh=-0.5)


@pytest.mark.parametrize("loss_type", CONF_LOSSES)
def test_losses_without_positives_are_zero_and_differentiable(loss_type):
    logits = torch.zeros(0, requires_grad=True)
    loss = object_confidence_loss(
        logits, torch.zeros(0), normalizer=1, loss_type=loss_type, neg_logits=torch.zeros(0)
    )
    assert loss.item() == 0.0 and torch.isfinite(loss)
    loss.backward()


def test_ce_gradient_reaches_the_target_unless_detached():
    """d BCE(x, y) / dy = -x: with x = ln 3 the target's gradient is -ln 3 / N_pos."""
    target = TARGETS.clone().requires_grad_(True)
    object_confidence_loss(POS_LOGITS, target, normalizer=2).backward()
    assert torch.allclose(target.grad, -POS_LOGITS / 2)


# ----------------------------------------------------------------------------- aligned IoU (the target)


def test_aligned_iou_by_hand():
    """[0,0,2,2] vs [1,1,3,3]: intersection 1, union 7; identical boxes: 1; disjoint: 0; two empty boxes: 0."""
    a = torch.tensor([[0.0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 1, 1], [5, 5, 5, 5]])
    b = torch.tensor([[1.0, 1, 3, 3], [0, 0, 4, 4], [2, 2, 3, 3], [5, 5, 5, 5]])
    assert torch.allclose(aligned_box_iou(a, b), torch.tensor([1 / 7, 1.0, 0.0, 0.0]))


def test_aligned_iou_asymmetric_subpixel_and_inverted_boxes():
    """[0,1,4,3] (area 8) vs [2,0,5,2] (area 6): intersection [2,1,4,2] = 2, union 12, IoU 1/6.
    Two identical 0.5 x 0.5 boxes: 1. An inverted box [3,0,1,2] has area 0 and no intersection: 0."""
    a = torch.tensor([[0.0, 1, 4, 3], [0, 0, 0.5, 0.5], [3, 0, 1, 2]])
    b = torch.tensor([[2.0, 0, 5, 2], [0, 0, 0.5, 0.5], [0, 0, 4, 4]])
    assert torch.allclose(aligned_box_iou(a, b), torch.tensor([1 / 6, 1.0, 0.0]))
    assert torch.allclose(aligned_box_iou(b, a), torch.tensor([1 / 6, 1.0, 0.0]))


# ----------------------------------------------------------------------------- Table 1 counting core


def _crafted_image(with_conf):
    """One ground truth [0,0,10,10], deltas already decoded (prediction = anchor). Level 0:
    a0 = GT itself (IoU 1, cls .3), a1 = [0,0,10,12] (IoU 100/120 = .833, cls .95),
    a2 = [0,0,10,20] (IoU .5 exactly, cls .55), a3 far away (IoU 0, cls .02 < 0.05).
    Level 1, a single anchor: b0 = [1,1,10,10] (IoU .81, cls .75)."""
    from d2imbalance.analysis.misalignment import misalignment_for_image

    level0 = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [0, 0, 10, 20], [50, 50, 60, 60]])
    level1 = torch.tensor([[1.0, 1, 10, 10]])
    cls = [torch.tensor([[0.3], [0.95], [0.55], [0.02]]), torch.tensor([[0.75]])]
    fused = None
    if with_conf:
        conf = [torch.tensor([[0.9], [0.1], [0.5], [0.5]]), torch.tensor([[0.9]])]
        fused = [fuse_scores(c, f, method="product", alpha=0.4) for c, f in zip(cls, conf)]
    return misalignment_for_image(
        [level0, level1],
        cls,
        [level0, level1],
        torch.tensor([[0.0, 0, 10, 10]]),
        fused_scores=fused,
        name="crafted",
    )


def test_table1_counts_on_crafted_case():
    """Before NMS: a0, a1, a2, b0 (a3 below 0.05). NMS at 0.5 keeps a1 (.95), which suppresses b0
    (IoU 81/120 = .675), a2 (120/200 = .6) and a0 (100/120 = .83). Positive anchors: a0, a1, b0."""
    counts = _crafted_image(with_conf=False).counts()
    assert counts[("Positive_NUM", "iou>0.5")] == 3
    before = [
        counts[("Before NMS", f"cls>{t}")] for t in ("0.05", "0.5", "0.6", "0.7", "0.8", "0.9")
    ]
    assert before == [4, 3, 2, 2, 1, 1]
    assert [counts[("Before NMS", f"iou>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        3,
        3,
        3,
        3,
        1,
    ]
    assert [
        counts[("After NMS", f"cls>{t}")] for t in ("0.05", "0.5", "0.6", "0.7", "0.8", "0.9")
    ] == [1] * 6
    assert [counts[("After NMS", f"iou>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        1,
        1,
        1,
        1,
        0,
    ]
    assert not any(cond.startswith("fused") for _, cond in counts)


def test_table1_counts_with_fused_score_on_crafted_case():
    """Fused (alpha .4) with conf a0 .9, a1 .1, a2 .5, a3 .5, b0 .9: a0 .466, a1 .386, a2 .530,
    a3 .0725 (now above 0.05), b0 .806. NMS by fused score keeps b0, a2 (IoU with b0 .405) and a3;
    a0 (.81 with b0) and a1 (.675) are suppressed."""
    im = _crafted_image(with_conf=True)
    counts = im.counts()
    assert counts[("Before NMS", "fused>0.05")] == 5
    assert counts[("Before NMS", "cls>0.05")] == 4  # a3's class score is 0.02
    assert [counts[("Before NMS", f"fused>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        2,
        1,
        1,
        1,
        0,
    ]
    assert counts[("After NMS", "fused>0.05")] == 3
    assert sorted(im.after.iou.tolist()) == pytest.approx([0.0, 0.5, 0.81])
    assert [
        counts[("After NMS", f"cls>{t}")] for t in ("0.05", "0.5", "0.6", "0.7", "0.8", "0.9")
    ] == [2, 2, 1, 1, 0, 0]


def test_report_files(tmp_path):
    pytest.importorskip("matplotlib")
    from d2imbalance.analysis.misalignment import format_table, write_report

    images = [_crafted_image(True), _crafted_image(True)]
    paths = write_report(images, str(tmp_path))
    table = format_table(images)
    assert "| Positive_NUM | iou>0.5 | 3 | 3 | 6 |" in table
    for key in ("markdown", "csv", "json", "fig2_markdown", "fig2_plot", "scatter_cls", "scatter_fused"):
        assert (tmp_path / paths[key].split("/")[-1]).stat().st_size > 0
    # Fig. 2 in percent: fused>0.5 before NMS is 2 of the 5 candidates in both images.
    assert "| Before NMS | cls>0.5 | 60.00 | 60.00 | 60.00 |" in (tmp_path / "fig2_proportions.md").read_text()
    assert "|  | fused>0.5 | 40.00 | 40.00 | 40.00 |" in (tmp_path / "fig2_proportions.md").read_text()
    report = json.loads((tmp_path / "table1.json").read_text())
    assert report["images"][0]["proportions"]["After NMS|fused>0.5"] == pytest.approx(2 / 3)
    assert report["mean_proportions"]["After - Before|cls>0.5"] == pytest.approx(2 / 3 - 3 / 5)
    assert report["images"][0]["candidates"] == "paper"


# ----------------------------------------------------------------------------- "Before NMS": paper vs detectron2


def _two_rule_image(candidates):
    """K = 3 classes, top-k = 2 per level, predictions = anchors, one ground truth = a0's box.

    Level 0: a0 [.9 .8 .7], a1 [.6 .01 .01], a2 [.5 .4 .3], at disjoint places; level 1: b0 [.2 .03 .1].
    paper (top-2 anchors by their best class, then every pair > .05): level 0 keeps a0, a1
      (best .9, .6; a2's best is .5) -> a0's 3 pairs + a1's 1 = 4; level 1: 2 pairs. 6 in all.
    detectron2 (pairs > .05, then the 2 best pairs): level 0 has 7 pairs, keeps (a0, .9), (a0, .8);
      level 1: 2 pairs. 4 in all: 2 fewer, a0's .7 and a1's .6 are lost.
    """
    from d2imbalance.analysis.misalignment import misalignment_for_image

    level0 = torch.tensor([[0.0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]])
    level1 = torch.tensor([[60.0, 0, 80, 20]])
    cls = [
        torch.tensor([[0.9, 0.8, 0.7], [0.6, 0.01, 0.01], [0.5, 0.4, 0.3]]),
        torch.tensor([[0.2, 0.03, 0.1]]),
    ]
    return misalignment_for_image(
        [level0, level1],
        cls,
        [level0, level1],
        torch.tensor([[0.0, 0, 10, 10]]),
        topk_candidates=2,
        candidates=candidates,
    )


def test_before_nms_paper_rule_keeps_every_class_of_the_top_anchors():
    paper, d2 = _two_rule_image("paper"), _two_rule_image("detectron2")
    assert sorted(paper.before.cls.tolist()) == pytest.approx([0.1, 0.2, 0.6, 0.7, 0.8, 0.9])
    assert sorted(d2.before.cls.tolist()) == pytest.approx([0.1, 0.2, 0.8, 0.9])
    p, d = paper.counts(), d2.counts()
    assert [p[("Before NMS", f"cls>{t}")] for t in ("0.05", "0.5", "0.6", "0.7", "0.8", "0.9")] == [
        6, 4, 3, 2, 1, 0,
    ]
    assert [d[("Before NMS", f"cls>{t}")] for t in ("0.05", "0.5", "0.6", "0.7", "0.8", "0.9")] == [
        4, 2, 2, 2, 1, 0,
    ]
    # a0's pairs share its box (IoU 1 with the ground truth): 3 of them under the paper's rule, 2 under
    # detectron2's; class-wise NMS keeps every one of them (different classes, disjoint boxes).
    assert p[("Before NMS", "iou>0.9")] == 3 and d[("Before NMS", "iou>0.9")] == 2
    assert p[("After NMS", "cls>0.05")] == 6 and d[("After NMS", "cls>0.05")] == 4
    assert paper.extra["candidates"] == "paper" and d2.extra["candidates"] == "detectron2"


def test_before_nms_rule_is_the_paper_by_default_and_checked():
    import inspect

    from d2imbalance.analysis.misalignment import misalignment_for_image

    assert inspect.signature(misalignment_for_image).parameters["candidates"].default == "paper"
    with pytest.raises(ValueError, match="candidates='mmdet'.*paper"):
        _two_rule_image("mmdet")


# ----------------------------------------------------------------------------- Fig. 2 proportions

# Table 1 of the paper, rows cls>0.05, cls>0.5 and iou>0.5, before and after NMS, Images 1-10.
PAPER_TABLE1 = {
    "before": ([7213, 2543, 3105, 3539, 634, 364, 1700, 13480, 5422, 1067],
               [110, 79, 140, 23, 30, 83, 35, 29, 363, 135],
               [1087, 1116, 856, 507, 187, 249, 336, 549, 2004, 487]),
    "after": ([429, 113, 66, 188, 35, 14, 76, 836, 224, 44],
              [5, 5, 4, 1, 1, 2, 1, 2, 13, 5],
              [16, 14, 6, 10, 3, 4, 10, 17, 20, 8]),
}  # fmt: skip


def _stage_with_counts(n, n_cls, n_iou):
    """n candidates (class score .1 > .05), n_cls of them with class score .55 (> .5, not > .6), n_iou
    with IoU .55."""
    from d2imbalance.analysis.misalignment import StagePredictions

    cls = np.array([0.55] * n_cls + [0.1] * (n - n_cls))
    iou = np.array([0.55] * n_iou + [0.0] * (n - n_iou))
    return StagePredictions(cls=cls, iou=iou)


def _paper_images():
    from d2imbalance.analysis.misalignment import ImageMisalignment

    return [
        ImageMisalignment(
            name=f"Image{i + 1}",
            num_anchors=0,
            positive_anchors=0,
            before=_stage_with_counts(*(row[i] for row in PAPER_TABLE1["before"])),
            after=_stage_with_counts(*(row[i] for row in PAPER_TABLE1["after"])),
        )
        for i in range(10)
    ]


def test_fig2_proportions_reproduce_the_papers_numbers():
    """§1 after Table 1: the proportion of iou>0.5 drops by 31.5 % in Image2 (1116/2543 = 43.89 % ->
    14/113 = 12.39 %; the text says "Image1", whose drop is 1087/7213 - 16/429 = 11.34 %) and 39.84 %
    in Image6 (249/364 - 4/14), by 19.52 % on average over the ten images; the proportion of cls>0.5
    rises by 1.32 % in Image2 (79/2543 = 3.11 % -> 5/113 = 4.42 %), 1.55 % in Image3 (140/3105 ->
    4/66) and 0.02 % in Image8 (29/13480 -> 2/836) and drops by 1.09 % on average."""
    from d2imbalance.analysis.misalignment import proportion_rows, proportions

    images = _paper_images()
    image2 = proportions(images[1])
    assert image2[("Before NMS", "cls>0.5")] == pytest.approx(79 / 2543)
    assert image2[("After NMS", "iou>0.5")] == pytest.approx(14 / 113)
    assert image2[("Before NMS", "cls>0.6")] == 0.0
    rows = {(stage, cond): (values, mean) for stage, cond, values, mean in proportion_rows(images)}
    iou_change, iou_mean = rows[("After - Before", "iou>0.5")]
    cls_change, cls_mean = rows[("After - Before", "cls>0.5")]
    assert [round(100 * iou_change[i], 2) for i in (0, 1, 5)] == [-11.34, -31.5, -39.84]
    assert [round(100 * cls_change[i], 2) for i in (1, 2, 7)] == [1.32, 1.55, 0.02]
    assert round(100 * iou_mean, 2) == -19.52
    assert round(100 * cls_mean, 2) == -1.09
    assert rows[("Before NMS", "iou>0.5")][1] == pytest.approx(
        np.mean([b / n for n, b in zip(PAPER_TABLE1["before"][0], PAPER_TABLE1["before"][2])])
    )


def test_fig2_proportions_on_crafted_case():
    """The crafted image of test_table1_counts_on_crafted_case: before NMS 4 candidates with class
    scores .3 .95 .55 .75 and IoUs 1 .833 .5 .81; after NMS a1 alone (.95, IoU .833).
    Before: cls>.5 3/4, >.6 2/4, >.7 2/4, >.8 1/4, >.9 1/4; iou>.5 ... >.8 3/4, >.9 1/4.
    After: every cls row 1/1, iou>.5 ... >.8 1/1, >.9 0/1. With the confidence (fused > .05: 5 before,
    3 after) the denominators are 5 and 3: fused>.5 2/5 before; after NMS fused .806 (b0), .530 (a2),
    .0725 (a3): fused>.5 2/3, cls>.5 2/3 (b0 .75, a2 .55)."""
    from d2imbalance.analysis.misalignment import proportion_rows, proportions

    p = proportions(_crafted_image(with_conf=False))
    assert [p[("Before NMS", f"cls>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        0.75, 0.5, 0.5, 0.25, 0.25,
    ]
    assert [p[("Before NMS", f"iou>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        0.75, 0.75, 0.75, 0.75, 0.25,
    ]
    assert [p[("After NMS", f"iou>{t}")] for t in ("0.5", "0.6", "0.7", "0.8", "0.9")] == [
        1.0, 1.0, 1.0, 1.0, 0.0,
    ]
    assert all(p[("After NMS", f"cls>{t}")] == 1.0 for t in ("0.5", "0.6", "0.7", "0.8", "0.9"))
    assert not any(cond.startswith("fused") for _, cond in p)
    changes = {c: (v, m) for s, c, v, m in proportion_rows([_crafted_image(False)]) if s.startswith("After -")}
    assert changes["cls>0.5"] == ([0.25], 0.25) and changes["iou>0.9"] == ([-0.25], -0.25)

    f = proportions(_crafted_image(with_conf=True))
    assert f[("Before NMS", "fused>0.5")] == pytest.approx(2 / 5)
    assert f[("Before NMS", "cls>0.5")] == pytest.approx(3 / 5)
    assert f[("After NMS", "fused>0.5")] == pytest.approx(2 / 3)
    assert f[("After NMS", "cls>0.5")] == pytest.approx(2 / 3)
    assert f[("After NMS", "iou>0.8")] == pytest.approx(1 / 3)  # b0, IoU .81


def test_fig2_stage_without_candidates_is_nan_and_left_out_of_the_mean():
    from d2imbalance.analysis.misalignment import ImageMisalignment, proportion_rows, proportions

    empty = ImageMisalignment(
        name="empty",
        num_anchors=0,
        positive_anchors=0,
        before=_stage_with_counts(4, 1, 2),
        after=_stage_with_counts(0, 0, 0),
    )
    assert math.isnan(proportions(empty)[("After NMS", "iou>0.5")])
    assert proportions(empty)[("Before NMS", "iou>0.5")] == 0.5
    rows = {(s, c): (v, m) for s, c, v, m in proportion_rows([empty, _crafted_image(False)])}
    assert rows[("After NMS", "iou>0.5")][1] == 1.0  # the crafted image's 1/1 alone
    assert rows[("Before NMS", "iou>0.5")][1] == pytest.approx((0.5 + 0.75) / 2)
    assert math.isnan(proportion_rows([empty])[-1][3])


# ----------------------------------------------------------------------------- the figures


def _texts_are_readable(fig):
    """Every title, axis label, tick label and legend entry is at least 6 pt."""
    sizes = []
    for ax in fig.axes:
        if not ax.get_visible() or not ax.axison:
            continue
        sizes += [ax.title.get_fontsize(), ax.xaxis.label.get_fontsize(), ax.yaxis.label.get_fontsize()]
        sizes += [t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()]
        if ax.get_legend() is not None:
            sizes += [t.get_fontsize() for t in ax.get_legend().get_texts()]
    return min(sizes) >= 6


def test_fig2_plot_shows_the_proportions(tmp_path):
    """Ten images of the paper's Table 1: 10 panels + the mean in a 3 x 4 grid (one left empty), each
    with the paper's four lines: blue before / orange after NMS, solid cls / dotted iou, at t = 0.5 ...
    0.9. The saved PNG is 4 x 320 by 3 x 280 px."""
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from d2imbalance.analysis.misalignment import plot_proportions, proportions_figure

    images = _paper_images()
    fig = proportions_figure(images)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(fig.axes) == 12 and len(panels) == 11
    assert [ax.get_title() for ax in panels] == [f"Image{i}" for i in range(1, 11)] + [
        "mean of 10 images"
    ]
    lines = {line.get_label(): line for line in panels[1].get_lines()}  # Image2
    assert set(lines) == {"BF_NMS cls>t", "BF_NMS iou>t", "AF_NMS cls>t", "AF_NMS iou>t"}
    assert list(lines["BF_NMS iou>t"].get_xdata()) == pytest.approx([0.5, 0.6, 0.7, 0.8, 0.9])
    assert lines["BF_NMS iou>t"].get_ydata()[0] == pytest.approx(1116 / 2543)
    assert lines["AF_NMS cls>t"].get_ydata()[0] == pytest.approx(5 / 113)
    assert lines["BF_NMS iou>t"].get_linestyle() == ":" and lines["AF_NMS cls>t"].get_linestyle() == "-"
    assert lines["BF_NMS cls>t"].get_color() == "tab:blue" and lines["AF_NMS iou>t"].get_color() == "tab:orange"
    assert all(line.get_markersize() > 0 for line in lines.values())
    mean = {line.get_label(): line for line in panels[-1].get_lines()}
    assert mean["AF_NMS iou>t"].get_ydata()[0] == pytest.approx(
        np.mean([a / n for n, a in zip(PAPER_TABLE1["after"][0], PAPER_TABLE1["after"][2])])
    )
    assert all(ax.get_ylim()[0] == 0 for ax in panels)
    assert panels[0].get_legend() is not None and _texts_are_readable(fig)
    assert tuple(fig.get_size_inches()) == pytest.approx((12.8, 8.4))

    path = plot_proportions(images, str(tmp_path / "sub" / "fig2.png"))
    assert imread(path).shape[:2] == (840, 1280)
    # Two images, two columns: 2 panels + mean in a 2 x 2 grid; fused models get a third score.
    fig = proportions_figure([_crafted_image(True), _crafted_image(True)], columns=2)
    assert len(fig.axes) == 4 and [ax.axison for ax in fig.axes] == [True, True, True, False]
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert "BF_NMS fused>t" in labels and "AF_NMS fused>t" in labels
    fused = {line.get_label(): line for line in fig.axes[0].get_lines()}["BF_NMS fused>t"]
    assert fused.get_linestyle() == "-." and fused.get_ydata()[0] == pytest.approx(2 / 5)
    assert len(proportions_figure(_paper_images(), max_panels=2).axes) == 4  # 2 images + mean
    with pytest.raises(ValueError, match="at least one image"):
        proportions_figure([])


def test_fig1_scatter_shows_score_against_iou(tmp_path):
    """Two crafted images, one per-image column and the 'all' column: 2 rows (before / after NMS) x 2
    columns, 640 x 600 px; axes [0, 1] with the 0.5 lines of the paper's discussion; the points are
    (IoU, score) of each stage."""
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from d2imbalance.analysis.misalignment import plot_scatter, scatter_figure

    images = [_crafted_image(True), _crafted_image(True)]
    fig = scatter_figure(images, score="fused", max_columns=1)
    assert len(fig.axes) == 4
    assert [ax.get_title() for ax in fig.axes] == [  # row by row
        "crafted\nbefore NMS", "all 2 images\nbefore NMS", "crafted\nafter NMS", "all 2 images\nafter NMS",
    ]  # fmt: skip
    points = fig.axes[0].collections[0]
    expected = np.stack([images[0].before.iou, images[0].before.fused], axis=1)
    assert np.allclose(points.get_offsets(), expected)
    after = np.stack([images[0].after.iou, images[0].after.fused], axis=1)
    assert np.allclose(fig.axes[2].collections[0].get_offsets(), after)
    assert len(fig.axes[1].collections[0].get_offsets()) == 2 * len(expected)
    assert (points.get_sizes() > 0).all() and 0 < points.get_alpha() < 1
    for ax in fig.axes:
        assert ax.get_xlim() == (0, 1) and ax.get_ylim() == (0, 1)
        horizontal, vertical = ax.get_lines()
        assert list(horizontal.get_ydata()) == [0.5, 0.5] and list(vertical.get_xdata()) == [0.5, 0.5]
        assert horizontal.get_linewidth() > 0 and vertical.get_linewidth() > 0
        assert ax.get_xlabel() == "IoU with ground truth" and ax.get_ylabel() == "fused score"
    assert _texts_are_readable(fig)
    assert len(scatter_figure(images[:1]).axes) == 2  # one image: no 'all' column
    with pytest.raises(ValueError, match="no confidence branch"):
        scatter_figure([_crafted_image(False)], score="fused")
    path = plot_scatter(images, str(tmp_path / "scatter.png"), max_columns=1)
    assert imread(path).shape[:2] == (600, 640)


def test_table1_thresholds_are_strict():
    """"cls>0.5" counts scores above 0.5: a box at exactly 0.5 (class score, fused score or IoU) is not
    counted, one at 0.5 is counted by the 0.05 rows."""
    from d2imbalance.analysis.misalignment import StagePredictions

    half = np.array([0.5], dtype=np.float32)
    counts = StagePredictions(cls=half, iou=half, fused=half).counts("s")
    assert counts[("s", "cls>0.05")] == counts[("s", "fused>0.05")] == 1
    assert counts[("s", "cls>0.5")] == counts[("s", "fused>0.5")] == counts[("s", "iou>0.5")] == 0


def test_table1_image_without_objects_and_a_single_candidate():
    """No ground truth: no positive anchor and every IoU 0 (not an error). One ground truth and a
    single candidate [0,0,10,5] against [0,0,10,10]: IoU 50/100 = .5, not > .5; [0,0,10,8]: .8."""
    from d2imbalance.analysis.misalignment import misalignment_for_image

    anchors = [torch.tensor([[0.0, 0, 10, 5], [0, 0, 10, 8]])]
    cls = [torch.tensor([[0.9], [0.01]])]
    empty = misalignment_for_image(anchors, cls, anchors, torch.zeros(0, 4))
    assert empty.positive_anchors == 0 and empty.before.iou.tolist() == [0.0]
    assert empty.num_anchors == 2
    one = misalignment_for_image(anchors, cls, anchors, torch.tensor([[0.0, 0, 10, 10]]))
    assert one.before.iou.tolist() == pytest.approx([0.5]) and one.positive_anchors == 1
    assert one.counts()[("Before NMS", "iou>0.5")] == 0


def test_table1_markdown_and_csv_layout(tmp_path):
    from d2imbalance.analysis.misalignment import format_table, table_rows, write_report

    images = [_crafted_image(False), _crafted_image(True)]
    lines = format_table(images).splitlines()
    assert lines[0] == "| stage | condition | Image1 | Image2 | Total |"
    assert lines[1] == "|---|---|---|---|---|"
    assert lines[3] == "| Before NMS | cls>0.05 | 4 | 4 | 8 |"  # the stage named once ...
    assert lines[4] == "|  | cls>0.5 | 3 | 3 | 6 |"  # ... then left blank
    assert table_rows(images)[0] == ("Positive_NUM", "iou>0.5", [3, 3], 6)
    write_report(images, str(tmp_path))
    csv_lines = (tmp_path / "table1.csv").read_text().splitlines()
    assert csv_lines[0] == "stage,condition,crafted,crafted,total"
    assert csv_lines[1] == "Positive_NUM,iou>0.5,3,3,6"
    assert (tmp_path / "table1.md").read_text().endswith("|\n")
    fig2 = (tmp_path / "fig2_proportions.md").read_text()
    assert fig2.splitlines()[0] == "| stage | condition | Image1 | Image2 | Mean |" and fig2.endswith("|\n")
    assert "| After - Before | cls>0.5 | 25.00 | 6.67 | 15.83 |" in fig2  # (1 - 3/4), (2/3 - 3/5)


def test_report_scatter_columns(tmp_path):
    """write_report passes max_columns to both scatters: 1 image column + 'all' = 640 px wide."""
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    from d2imbalance.analysis.misalignment import write_report

    paths = write_report([_crafted_image(True)] * 3, str(tmp_path), max_columns=1)
    assert imread(paths["scatter_cls"]).shape[:2] == (600, 640)
    assert imread(paths["scatter_fused"]).shape[:2] == (600, 640)
    assert imread(paths["fig2_plot"]).shape[:2] == (280, 1280)  # 3 images + mean: one row of 4
    assert "scatter_fused" not in write_report([_crafted_image(False)], str(tmp_path / "plain"))


# Mutation survivors, explained (../shared/tools/mutate.py --tests "tests/test_objconf_fusion_loss.py
# tests/test_objconf_model.py" projects/ObjConf/objconf/fusion.py):
# * fusion.py `cls_prob * torch.ones_like(conf_prob)` -> `/`: multiplying or dividing by ones gives the
#   same values and the same broadcast shape (the ones only broadcast cls_prob to conf_prob's shape).
# * conf_loss.py `diff < smooth_l1_beta` -> `<=`: at diff == beta both branches give beta / 2 (smooth-L1
#   is continuous there), so the loss and its gradient (diff / beta = 1 on both sides) are unchanged.
