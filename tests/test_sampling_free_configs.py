"""Every config in configs/SamplingFree instantiates its model with the switches its name promises, keeps its
baseline's recipe, and the shapes config trains one step and infers."""
import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "SamplingFree"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# name -> (baseline, prior_prob, guided_loss, class_adaptive_threshold, test_score_thresh, test_nms_thresh)
EXPECTED = {
    "retinanet_sampling_free_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", None, "paper", True, 0.05, 0.5),
    "retinanet_sampling_free_official_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", 1e-5, "official", False, 1e-3, 0.5),
    "retinanet_sampling_free_shapes.py": ("retinanet_shapes.py", None, "paper", True, 0.05, 0.5),
}


def load(path):
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(path))


def test_every_config_is_listed():
    assert set(CONFIGS) == set(EXPECTED)


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
