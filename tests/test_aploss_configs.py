"""Every config in configs/APLoss instantiates its model with the values it promises; the COCO config is
the baseline recipe with only the method's keys changed; the shapes config trains a step and infers."""
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "APLoss"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# name -> (its baseline, box2box weights, smooth_l1_beta, box_loss_weight, EMA momentum, test score threshold)
EXPECTED = {
    "retinanet_aploss_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", [1.0] * 4, 0.0, 1.0, 0.9, 0.05),
    "retinanet_aploss_official_R_50_FPN_1x.py": (
        "retinanet_R_50_FPN_1x.py", [10.0, 10.0, 5.0, 5.0], 1.0, 0.25, 0.0, 0.01),
    "retinanet_aploss_shapes.py": ("retinanet_shapes.py", [1.0] * 4, 0.0, 1.0, 0.9, 0.05),
}
METHOD_KEYS = {"_target_", "focal_loss_alpha", "focal_loss_gamma", "delta", "interpolated_ap", "box_loss_weight",
               "loss_normalizer_momentum"}


def load(path):
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(path))


def plain(node):
    from omegaconf import OmegaConf

    return OmegaConf.to_container(node, resolve=False)


def test_the_issue_configs_exist():
    assert set(EXPECTED) == set(CONFIGS)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates_with_its_values(name):
    from detectron2.config import instantiate

    from aploss import RetinaNetAPLoss

    cfg = load(CONFIG_DIR / name)
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    model = instantiate(cfg.model)
    assert type(model) is RetinaNetAPLoss
    assert (model.delta, model.interpolated_ap) == (1.0, True)
    _, weights, beta, box_weight, momentum, thresh = EXPECTED[name]
    assert list(model.box2box_transform.weights) == weights and model.smooth_l1_beta == beta
    assert model.box_loss_weight == box_weight and model.loss_normalizer_momentum == momentum
    assert model.test_score_thresh == thresh
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
    assert torch.sigmoid(model.head.cls_score.bias).allclose(torch.tensor(0.01))  # RetinaNet's prior, kept
    assert model.anchor_matcher.thresholds[1:-1] == [0.4, 0.5] and model.anchor_matcher.labels == [0, -1, 1]
    assert cfg.train.output_dir.endswith(name[:-3])


@pytest.mark.parametrize("name", ["retinanet_aploss_R_50_FPN_1x.py", "retinanet_aploss_shapes.py"])
def test_same_recipe_as_the_baseline_except_the_method_keys(name):
    """Data, optimiser, schedule, training loop and every model key but the method's equal the baseline's."""
    cfg = load(CONFIG_DIR / name)
    base = load(ROOT / "Baselines" / EXPECTED[name][0])
    for key in ("dataloader", "optimizer", "lr_multiplier"):
        assert plain(cfg[key]) == plain(base[key]), key
    train, base_train = plain(cfg.train), plain(base.train)
    for key in ("output_dir", "trained_checkpoint"):
        train.pop(key), base_train.pop(key)
    assert train == base_train
    model, base_model = plain(cfg.model), plain(base.model)
    assert set(model) ^ set(base_model) <= METHOD_KEYS
    assert {k: v for k, v in model.items() if k not in METHOD_KEYS} == {
        k: v for k, v in base_model.items() if k not in METHOD_KEYS}


def test_official_config_warm_up_follows_the_authors_train_py():
    """lr = lr0 * (1/3 + step/500 * 2/3) over the first 500 of 90k iterations, then the 1x schedule."""
    from detectron2.config import instantiate

    sched = instantiate(load(CONFIG_DIR / "retinanet_aploss_official_R_50_FPN_1x.py").lr_multiplier)
    at = lambda it: sched(it / 90000)  # noqa: E731  (detectron2 evaluates the multiplier at iter / max_iter)
    assert at(0) == pytest.approx(1 / 3)
    assert at(250) == pytest.approx(2 / 3)
    assert at(500) == pytest.approx(1.0) and at(59999) == pytest.approx(1.0) and at(60000) == pytest.approx(0.1)


def test_shapes_config_trains_one_step_and_infers():
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = instantiate(load(CONFIG_DIR / "retinanet_aploss_shapes.py").model)
    batch = []
    for i in range(2):
        inst = Instances((256, 256))
        inst.gt_boxes = Boxes(torch.tensor([[30.0, 40.0, 120.0, 150.0]]))
        inst.gt_classes = torch.tensor([i])
        batch.append({"image": torch.rand(3, 256, 256) * 255, "instances": inst})
    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        assert set(losses) == {"loss_cls", "loss_box_reg"}
        assert all(torch.isfinite(v) for v in losses.values()) and losses["loss_cls"].item() > 0.9  # AP ~ 0 at init
        sum(losses.values()).backward()
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    assert scalars["aploss/num_pos"] > 0 and scalars["aploss/active_negatives"] > 0
    assert model.head.cls_score.weight.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        out = model(batch)
    assert len(out) == 2 and "instances" in out[0]
