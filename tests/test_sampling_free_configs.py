"""Every config in configs/SamplingFree instantiates its model with the switches its name promises, keeps its
baseline's recipe, and the shapes configs train and infer (RetinaNet: one step; Faster R-CNN: train_net's
loop, two iterations and the evaluation)."""
import math
from pathlib import Path

import pytest
import torch

from lazy_config_helpers import assert_recipe_changes_only, load, plain, train_on_shapes_mini

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "SamplingFree"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("retinanet_*.py"))

# name -> (baseline, prior_prob, guided_loss, class_adaptive_threshold, test_score_thresh, test_nms_thresh)
EXPECTED = {
    "retinanet_sampling_free_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", None, "paper", True, 0.05, 0.5),
    "retinanet_sampling_free_official_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", 1e-5, "official", False, 1e-3, 0.5),
    "retinanet_sampling_free_shapes.py": ("retinanet_shapes.py", None, "paper", True, 0.05, 0.5),
}


def test_every_config_is_listed():
    assert {p.name for p in CONFIG_DIR.glob("*.py")} == set(EXPECTED) | set(FASTER_RCNN)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates_with_its_switches(name):
    from detectron2.config import instantiate
    from sampling_free import RetinaNetSamplingFree

    baseline, prior, mode, adaptive, thresh, nms = EXPECTED[name]
    cfg = load(CONFIG_DIR / name)
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    model = instantiate(cfg.model)
    assert isinstance(model, RetinaNetSamplingFree)
    assert (model.guided_loss, model.class_adaptive_threshold) == (mode, adaptive)
    assert (model.test_score_thresh, model.test_nms_thresh) == (thresh, nms)
    assert (model.official_loss is not None) == (mode == "official")
    if mode == "official":
        assert model.official_loss.warmup_iters == 100
    bias = model.head.cls_score.bias
    if prior is None:
        assert model.prior.item() == 0.0  # measured on the first batch
    else:
        assert model.prior.item() == pytest.approx(prior)
        assert torch.allclose(bias, torch.full_like(bias, -math.log((1 - prior) / prior)))
    assert model.num_classes == (4 if "shapes" in name else 80)
    assert model.anchor_counts.shape == (model.num_classes + 1,)
    assert "focal_loss_alpha" not in cfg.model and "prior_prob" not in cfg.model.head


@pytest.mark.parametrize("name", CONFIGS)
def test_config_keeps_its_baseline_recipe(name):
    """Only the method's keys change: data, schedule, optimiser, backbone, anchors and matching are the
    baseline's."""
    cfg = load(CONFIG_DIR / name)
    base = load(ROOT / "Baselines" / EXPECTED[name][0])
    assert cfg.dataloader == base.dataloader
    assert cfg.optimizer == base.optimizer
    assert cfg.lr_multiplier == base.lr_multiplier
    assert cfg.model.backbone == base.model.backbone
    assert cfg.model.anchor_generator == base.model.anchor_generator
    assert cfg.model.anchor_matcher == base.model.anchor_matcher
    for key in ("max_iter", "init_checkpoint", "lr_reference"):
        assert cfg.train[key] == base.train[key], key
    head, base_head = dict(cfg.model.head), dict(base.model.head)
    base_head.pop("prior_prob")
    assert head == base_head


def test_shapes_config_trains_one_step_and_infers():
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = instantiate(load(CONFIG_DIR / "retinanet_sampling_free_shapes.py").model)
    batch = []
    for i, boxes in enumerate(([[30.0, 40.0, 120.0, 150.0]], [])):  # the second image has no object
        inst = Instances((256, 256))
        inst.gt_boxes = Boxes(torch.tensor(boxes).reshape(-1, 4))
        inst.gt_classes = torch.tensor([i] * len(boxes), dtype=torch.long)
        batch.append({"image": torch.rand(3, 256, 256) * 255, "instances": inst})
    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        scalars = {k: v[0] for k, v in storage.latest().items()}
    assert set(losses) == {"loss_cls", "loss_box_reg"}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    assert {"sampling_free/guided_ratio", "sampling_free/loss_cls_unscaled", "sampling_free/loss_box_reg_unscaled",
            "sampling_free/prior", "num_pos_anchors"} <= set(scalars)
    assert all(math.isfinite(v) for v in scalars.values())
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.prior.item() > 0 and model.anchor_counts[:4].sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2 and all(len(r["instances"]) <= 100 for r in out)
    assert model.score_thresholds().shape == (4,)


# ------------------------------------------------------------------------------------------ Faster R-CNN

PAPER_RPN = dict(prior_prob=None, guided_loss="paper")
PAPER_ROI = dict(box_head_recompute_chunk=None)
PAPER_PREDICTOR = dict(loss_rois_per_image="${..batch_size_per_image}", prior_prob=None, optimal_bias_init=True,
                       guided_loss="paper", class_adaptive_threshold=True)
# name -> (baseline, RPN switches, ROI-heads switches, predictor switches, the predictor's test_score_thresh)
FASTER_RCNN = {
    "faster_rcnn_sampling_free_R_50_FPN_1x.py": ("faster_rcnn_R_50_FPN_1x.py", PAPER_RPN, PAPER_ROI, PAPER_PREDICTOR,
                                                 0.05),
    "faster_rcnn_sampling_free_official_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py", dict(PAPER_RPN, guided_loss="official"), PAPER_ROI,
        dict(PAPER_PREDICTOR, optimal_bias_init=False, guided_loss="official", class_adaptive_threshold=False), 1e-4),
    "faster_rcnn_sampling_free_recompute_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py", PAPER_RPN, dict(PAPER_ROI, box_head_recompute_chunk=512), PAPER_PREDICTOR, 0.05),
    "faster_rcnn_sampling_free_shapes.py": ("faster_rcnn_shapes.py", PAPER_RPN, PAPER_ROI, PAPER_PREDICTOR, 0.05),
}  # fmt: skip


@pytest.mark.parametrize("name", sorted(FASTER_RCNN))
def test_faster_rcnn_config_instantiates_with_its_switches(name):
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN

    from sampling_free import SamplingFreeOutputLayers, SamplingFreeROIHeads, SamplingFreeRPN

    _, rpn_switches, roi_switches, predictor_switches, thresh = FASTER_RCNN[name]
    cfg = load(CONFIG_DIR / name)
    assert {k: cfg.model.proposal_generator[k] for k in rpn_switches} == rpn_switches
    assert {k: cfg.model.roi_heads[k] for k in roi_switches} == roi_switches
    predictor_node = plain(cfg.model.roi_heads.box_predictor)  # the normaliser's interpolation unresolved
    assert {k: predictor_node[k] for k in predictor_switches} == predictor_switches
    model = instantiate(cfg.model)
    rpn, heads = model.proposal_generator, model.roi_heads
    predictor = heads.box_predictor
    assert type(model) is GeneralizedRCNN and type(rpn) is SamplingFreeRPN and type(heads) is SamplingFreeROIHeads
    assert type(predictor) is SamplingFreeOutputLayers
    assert rpn.guided_loss == rpn_switches["guided_loss"] and rpn.prior.item() == 0.0  # measured in training
    assert (predictor.optimal_bias_init, predictor.guided_loss, predictor.class_adaptive_threshold) == (
        predictor_switches["optimal_bias_init"], predictor_switches["guided_loss"],
        predictor_switches["class_adaptive_threshold"])
    assert predictor.prior.item() == 0.0 and not heads.mask_on
    assert predictor.test_score_thresh == thresh
    assert heads.box_head_recompute_chunk == roi_switches["box_head_recompute_chunk"]
    shapes = "shapes" in name
    assert heads.num_classes == (4 if shapes else 80) and predictor.proposal_counts.shape == (heads.num_classes + 1,)
    # The samplers' batch sizes stay as the loss normalisers.
    assert (rpn.batch_size_per_image, heads.batch_size_per_image) == ((256, 128) if shapes else (256, 512))
    assert predictor.loss_rois_per_image == heads.batch_size_per_image
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize("name", ["faster_rcnn_sampling_free_R_50_FPN_1x.py", "faster_rcnn_sampling_free_shapes.py"])
def test_faster_rcnn_config_changes_only_the_method_keys(name):
    cfg, base = load(CONFIG_DIR / name), load(ROOT / "Baselines" / FASTER_RCNN[name][0])
    assert_recipe_changes_only(cfg, base, {"proposal_generator": {"_target_", *PAPER_RPN},
                                           "roi_heads": {"_target_", *PAPER_ROI},
                                           "roi_heads.box_predictor": {"_target_", *PAPER_PREDICTOR}})
    model = plain(cfg.model)
    for node, switches in ((model["proposal_generator"], PAPER_RPN), (model["roi_heads"], PAPER_ROI),
                           (model["roi_heads"]["box_predictor"], PAPER_PREDICTOR)):
        assert {k: node[k] for k in switches} == switches


def test_faster_rcnn_official_config_changes_only_its_switches():
    cfg = load(CONFIG_DIR / "faster_rcnn_sampling_free_official_R_50_FPN_1x.py")
    paper = load(CONFIG_DIR / "faster_rcnn_sampling_free_R_50_FPN_1x.py")
    model, paper_model = plain(cfg.model), plain(paper.model)
    heads, paper_heads = model.pop("roi_heads"), paper_model.pop("roi_heads")
    predictor, paper_predictor = heads.pop("box_predictor"), paper_heads.pop("box_predictor")
    assert heads == paper_heads
    assert {k for k in predictor if predictor[k] != paper_predictor[k]} == {
        "optimal_bias_init", "guided_loss", "class_adaptive_threshold", "test_score_thresh"}
    rpn, paper_rpn = model.pop("proposal_generator"), paper_model.pop("proposal_generator")
    assert {k for k in rpn if rpn[k] != paper_rpn[k]} == {"guided_loss"}
    assert model == paper_model and plain(cfg.dataloader) == plain(paper.dataloader)


def test_faster_rcnn_recompute_config_changes_only_the_chunk():
    cfg = load(CONFIG_DIR / "faster_rcnn_sampling_free_recompute_R_50_FPN_1x.py")
    paper = load(CONFIG_DIR / "faster_rcnn_sampling_free_R_50_FPN_1x.py")
    model, paper_model = plain(cfg.model), plain(paper.model)
    heads, paper_heads = model.pop("roi_heads"), paper_model.pop("roi_heads")
    assert (heads.pop("box_head_recompute_chunk"), paper_heads.pop("box_head_recompute_chunk")) == (512, None)
    assert heads == paper_heads and model == paper_model
    assert plain(cfg.dataloader) == plain(paper.dataloader) and plain(cfg.optimizer) == plain(paper.optimizer)


@pytest.mark.parametrize(
    "override,part,attr,value",
    [
        ("model.proposal_generator.prior_prob=0.2", "proposal_generator", "prior", 0.2),
        ("model.proposal_generator.guided_loss=off", "proposal_generator", "guided_loss", "off"),
        ("model.roi_heads.box_predictor.prior_prob=0.1", "roi_heads.box_predictor", "prior", 0.1),
        ("model.roi_heads.box_predictor.optimal_bias_init=false", "roi_heads.box_predictor", "optimal_bias_init",
         False),
        ("model.roi_heads.box_predictor.guided_loss=official", "roi_heads.box_predictor", "guided_loss", "official"),
        ("model.roi_heads.box_predictor.class_adaptive_threshold=false", "roi_heads.box_predictor",
         "class_adaptive_threshold", False),
        ("model.roi_heads.box_head_recompute_chunk=512", "roi_heads", "box_head_recompute_chunk", 512),
        # The normaliser follows the ROI heads' batch size through the interpolation.
        ("model.roi_heads.batch_size_per_image=64", "roi_heads.box_predictor", "loss_rois_per_image", 64),
    ],
)  # fmt: skip
def test_faster_rcnn_overrides_reach_the_model(override, part, attr, value):
    """Each switch reaches its module (what each one changes in the losses: test_sampling_free_faster_rcnn.py)."""
    from detectron2.config import instantiate

    from d2imbalance.overrides import apply_overrides

    cfg = apply_overrides(load(CONFIG_DIR / "faster_rcnn_sampling_free_shapes.py"), [override])
    module = instantiate(cfg.model)
    for name in part.split("."):
        module = getattr(module, name)
    got = getattr(module, attr)
    if torch.is_tensor(got):  # the prior buffer: the value set at construction
        got = pytest.approx(got.item())
    assert got == value


@pytest.mark.parametrize("name", sorted(FASTER_RCNN))
def test_faster_rcnn_declares_no_hyperparameters(name):
    """The RPN's and the ROI heads' samplings (4 values in Faster R-CNN) are gone and nothing replaces them:
    0, the review's count for Sampling-Free."""
    from d2imbalance.analysis.comparison import describe_config

    assert list(describe_config(str(CONFIG_DIR / name)).hyperparameters) == []


def test_faster_rcnn_shapes_config_trains_two_iterations_and_evaluates(tmp_path):
    """train_net's own loop: 2 iterations of 2 images of shapes_mini_train, then COCO evaluation on
    shapes_mini_val; finite losses, the method's signals in metrics.json, the priors measured, more
    samples per image than the baseline's 256 anchors and 128 RoIs."""
    out = tmp_path / "run"
    rows, steps = train_on_shapes_mini(CONFIG_DIR / "faster_rcnn_sampling_free_shapes.py", out)
    losses = ("loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc", "total_loss")
    assert all(math.isfinite(r[k]) for r in steps for k in losses)
    names = ("rpn_guided_ratio", "rpn_loss_cls_unscaled", "rpn_num_samples", "rpn_fg_fraction",
             "roi_guided_ratio", "roi_loss_cls_unscaled", "roi_loss_box_reg", "roi_num_samples")  # fmt: skip
    last = steps[-1]
    assert {f"sampling_free/{k}" for k in names} <= set(last)
    assert all(math.isfinite(last[f"sampling_free/{k}"]) for k in names)
    assert last["sampling_free/rpn_num_samples"] > 256 and last["sampling_free/roi_num_samples"] > 128
    assert any("sampling_free/rpn_prior" in r for r in steps) and any("sampling_free/roi_prior" in r for r in steps)
    evaluation = [r for r in rows if "bbox/AP" in r]
    assert len(evaluation) == 1 and evaluation[0]["iteration"] == 2
    assert (out / "model_final.pth").is_file()
