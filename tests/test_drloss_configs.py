"""configs/DRLoss: the RetinaNet configs instantiate RetinaNetDRLoss and the Faster R-CNN ones
DRROIHeads / DRFastRCNNOutputLayers with the authors' values on the baselines' recipes, every switch set
from the config reaches the model, and both shapes demos train a step and infer."""
import math
from pathlib import Path

import pytest
import torch

from lazy_config_helpers import assert_recipe_changes_only

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIGS = {
    "retinanet_drloss_R_50_FPN_1x.py": "Baselines/retinanet_R_50_FPN_1x.py",
    "retinanet_drloss_shapes.py": "Baselines/retinanet_shapes.py",
}
SWITCHES = {
    "pos_lambda": 1.0,
    "neg_lambda": 0.1 / math.log(3.5),
    "margin": 0.5,
    "logistic_scale": 6.0,
    "cls_loss_weight": 4.0,
    "scope": "image",
    "class_grouping": "pooled",
}


def plain(value):
    """A config node as plain dicts and lists (other values unchanged), comparable with ==."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(value) if isinstance(value, (DictConfig, ListConfig)) else value


def load(name):
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(ROOT / "DRLoss" / name) if "/" not in name else str(ROOT / name))


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_config_instantiates_with_the_authors_values(name):
    from detectron2.config import instantiate
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead
    from drloss import RetinaNetDRLoss

    cfg = load(name)
    model = instantiate(cfg.model)
    assert type(model) is RetinaNetDRLoss and type(model.head) is RetinaNetHead
    for key, value in SWITCHES.items():
        assert getattr(model, key) == pytest.approx(value) if isinstance(value, float) else getattr(model, key) == value
    # The authors' PRIOR_PROB 0.5: every class score starts at 0.5.
    assert torch.sigmoid(model.head.cls_score.bias).allclose(torch.tensor(0.5))
    assert not hasattr(model, "focal_loss_alpha")


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_same_recipe_as_the_baseline(name):
    """Only the method's keys differ from the baseline: the data, optimiser, schedule, matcher, anchors,
    backbone and test settings are the baseline's."""
    cfg, base = load(name), load(CONFIGS[name])
    focal = {"focal_loss_alpha", "focal_loss_gamma"}
    assert_recipe_changes_only(cfg, base, {"": {"_target_", *SWITCHES, *focal}, "head": {"prior_prob"}})
    model, base_model = dict(cfg.model), dict(base.model)
    assert set(model) - set(base_model) == set(SWITCHES) and set(base_model) - set(model) == focal
    assert cfg.model.head.prior_prob == 0.5 and base.model.head.prior_prob == 0.01
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize(
    "override,attr,value",
    [
        ("model.pos_lambda=0.5", "pos_lambda", 0.5),
        ("model.neg_lambda=0.2", "neg_lambda", 0.2),
        ("model.margin=0.3", "margin", 0.3),
        ("model.logistic_scale=10", "logistic_scale", 10),
        ("model.cls_loss_weight=2", "cls_loss_weight", 2),
        ("model.scope=batch", "scope", "batch"),
        ("model.class_grouping=per_class", "class_grouping", "per_class"),
    ],
)
def test_command_line_overrides_reach_the_model(override, attr, value):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(load("retinanet_drloss_shapes.py"), [override])
    assert getattr(instantiate(cfg.model), attr) == value


def one_step_and_inference(config):
    """One training step of ``config``'s model on two 256² images with one object each (classes 0 and 1),
    then inference on them. Returns (model, losses, latest EventStorage scalars, outputs)."""
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = instantiate(load(config).model)
    batch = []
    for i in range(2):
        inst = Instances((256, 256))
        inst.gt_boxes = Boxes(torch.tensor([[30.0, 40.0, 120.0, 150.0]]))
        inst.gt_classes = torch.tensor([i])
        batch.append({"image": torch.rand(3, 256, 256) * 255, "instances": inst})
    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        sum(losses.values()).backward()
    assert all(torch.isfinite(v) for v in losses.values())
    assert {"drloss/expected_pos", "drloss/expected_neg", "drloss/margin_violation"} <= set(storage.latest())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2 and all(len(o["instances"]) > 0 for o in out)
    return model, losses, out


def test_shapes_config_trains_one_step_and_infers():
    _, losses, _ = one_step_and_inference("retinanet_drloss_shapes.py")
    assert set(losses) == {"loss_cls", "loss_box_reg"}


# Faster R-CNN with the DR loss in the ROI head (drloss.faster_rcnn).
FASTER_RCNN_CONFIGS = {
    "faster_rcnn_drloss_R_50_FPN_1x.py": ("Baselines/faster_rcnn_R_50_FPN_1x.py", 512),
    "faster_rcnn_drloss_shapes.py": ("Baselines/faster_rcnn_shapes.py", 128),
}


def test_every_config_is_listed():
    assert set(CONFIGS) | set(FASTER_RCNN_CONFIGS) == {p.name for p in (ROOT / "DRLoss").glob("*.py")}


@pytest.mark.parametrize("name", sorted(FASTER_RCNN_CONFIGS))
def test_faster_rcnn_config_instantiates_with_the_authors_values(name):
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.modeling.proposal_generator import RPN
    from drloss import DRFastRCNNOutputLayers, DRROIHeads

    cfg = load(name)
    model = instantiate(cfg.model)
    assert type(model) is GeneralizedRCNN and type(model.proposal_generator) is RPN
    heads, predictor = model.roi_heads, model.roi_heads.box_predictor
    assert type(heads) is DRROIHeads and type(predictor) is DRFastRCNNOutputLayers and not heads.mask_on
    for key, value in SWITCHES.items():
        assert getattr(predictor, key) == pytest.approx(value) if isinstance(value, float) else getattr(predictor, key) == value
    assert predictor.use_sigmoid_ce and not predictor.use_fed_loss
    # the RoI sampling is the baseline's; every class score starts at σ(0) = 0.5 (the authors' prior)
    assert (heads.batch_size_per_image, heads.positive_fraction) == (FASTER_RCNN_CONFIGS[name][1], 0.25)
    assert torch.all(predictor.cls_score.bias == 0)
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize("name", sorted(FASTER_RCNN_CONFIGS))
def test_faster_rcnn_same_recipe_as_the_baseline(name):
    """Only the ROI heads' and box predictor's _target_ and the seven DR switches differ from the baseline."""
    cfg, base = load(name), load(FASTER_RCNN_CONFIGS[name][0])
    assert_recipe_changes_only(cfg, base, {"roi_heads": {"_target_"},
                                           "roi_heads.box_predictor": {"_target_", *SWITCHES}})
    predictor, base_predictor = plain(cfg.model.roi_heads.box_predictor), plain(base.model.roi_heads.box_predictor)
    assert set(predictor) - set(base_predictor) == set(SWITCHES) and set(base_predictor) <= set(predictor)


@pytest.mark.parametrize(
    "override,attr,value",
    [
        ("model.roi_heads.box_predictor.pos_lambda=0.5", "pos_lambda", 0.5),
        ("model.roi_heads.box_predictor.neg_lambda=0.2", "neg_lambda", 0.2),
        ("model.roi_heads.box_predictor.margin=0.3", "margin", 0.3),
        ("model.roi_heads.box_predictor.logistic_scale=10", "logistic_scale", 10),
        ("model.roi_heads.box_predictor.cls_loss_weight=2", "cls_loss_weight", 2),
        ("model.roi_heads.box_predictor.scope=batch", "scope", "batch"),
        ("model.roi_heads.box_predictor.class_grouping=per_class", "class_grouping", "per_class"),
    ],
)
def test_faster_rcnn_command_line_overrides_reach_the_predictor(override, attr, value):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(load("faster_rcnn_drloss_shapes.py"), [override])
    assert getattr(instantiate(cfg.model).roi_heads.box_predictor, attr) == value


def test_faster_rcnn_hyperparameters_are_the_sampling_plus_the_four_of_dr_loss():
    """RPN sampling (256, 0.5) + RoI sampling (512, 0.25) + λ_+, λ_-, γ, L: 8, four more than Faster
    R-CNN's 4 (the review's 4 for DR loss)."""
    from d2imbalance.analysis.comparison import describe_config

    info = describe_config(str(ROOT / "DRLoss" / "faster_rcnn_drloss_R_50_FPN_1x.py"))
    assert [(h.name, value) for h, value in info.hyperparameters] == [
        ("proposal_generator.batch_size_per_image", 256), ("proposal_generator.positive_fraction", 0.5),
        ("roi_heads.batch_size_per_image", 512), ("roi_heads.positive_fraction", 0.25),
        ("roi_heads.box_predictor.pos_lambda", 1.0), ("roi_heads.box_predictor.neg_lambda", 0.1 / math.log(3.5)),
        ("roi_heads.box_predictor.margin", 0.5), ("roi_heads.box_predictor.logistic_scale", 6.0)]  # fmt: skip


def test_faster_rcnn_shapes_config_trains_one_step_and_infers():
    model, losses, out = one_step_and_inference("faster_rcnn_drloss_shapes.py")
    assert set(losses) == {"loss_cls", "loss_box_reg", "loss_rpn_cls", "loss_rpn_loc"}
    assert model.roi_heads.box_predictor.cls_score.weight.grad[:4].abs().sum() > 0
    # inference keeps the sigmoid scores: at initialisation every class scores about σ(0) = 0.5
    scores = torch.cat([o["instances"].scores for o in out])
    assert torch.all((scores > 0.4) & (scores < 0.6))
