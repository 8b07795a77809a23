"""Every config in configs/GHM instantiates RetinaNetGHM with the values its name promises, differs from its
baseline only in the method's keys, and the shapes config trains one step and infers."""
import math
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "GHM"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# name -> (baseline, box_loss, ghm_mode)
EXPECTED = {
    "retinanet_ghm_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", "ghm_r", "paper"),
    "retinanet_ghm_c_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", "smooth_l1", "paper"),
    "retinanet_ghm_official_R_50_FPN_1x.py": ("retinanet_R_50_FPN_1x.py", "ghm_r", "official"),
    "retinanet_ghm_shapes.py": ("retinanet_shapes.py", "ghm_r", "paper"),
}
METHOD_KEYS = {"_target_", "ghm_mode", "ghm_c_bins", "ghm_c_momentum", "ghm_c_loss_weight", "box_loss", "ghm_r_mu",
               "ghm_r_bins", "ghm_r_momentum", "ghm_r_loss_weight", "ghm_all_reduce"}


def load(path):
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(path))


def test_every_config_is_listed():
    assert set(CONFIGS) == set(EXPECTED)


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates_with_its_values(name):
    from detectron2.config import instantiate
    from ghm import RetinaNetGHM

    cfg = load(CONFIG_DIR / name)
    baseline_name, box_loss, mode = EXPECTED[name]
    model = instantiate(cfg.model)
    assert type(model) is RetinaNetGHM
    assert (model.box_loss, model.ghm_mode) == (box_loss, mode)
    c, r = model.ghm_c_density, model.ghm_r_density
    assert (c.bins, c.momentum, c.mode, c.all_reduce) == (30, 0.75, mode, False)
    assert (r.bins, r.momentum, r.mode, r.all_reduce, model.ghm_r_mu) == (10, 0.7, mode, False, 0.02)
    assert (model.ghm_c_loss_weight, model.ghm_r_loss_weight) == (1.0, 10.0)
    # RetinaNet's biased initialisation is kept: every class starts at P = 0.01.
    assert torch.sigmoid(model.head.cls_score.bias).allclose(torch.tensor(0.01))
    assert model.box_reg_loss_type == "smooth_l1" and model.smooth_l1_beta == 0.0

    # Same recipe as the baseline: data, solver, schedule, train loop; the model differs only in GHM's keys.
    base = load(ROOT / "Baselines" / baseline_name)
    for key in ("dataloader", "optimizer", "lr_multiplier"):
        assert cfg[key] == base[key], key
    train, base_train = dict(cfg.train), dict(base.train)
    for key in ("output_dir", "trained_checkpoint"):
        train.pop(key), base_train.pop(key)
    assert train == base_train
    model_cfg, base_model = dict(cfg.model), dict(base.model)
    assert set(model_cfg) - set(base_model) == METHOD_KEYS - {"_target_"}
    assert set(base_model) - set(model_cfg) == {"focal_loss_alpha", "focal_loss_gamma"}
    for key in set(model_cfg) & set(base_model) - METHOD_KEYS:
        assert model_cfg[key] == base_model[key], key
    assert cfg.train.trained_checkpoint == ""


def test_shapes_config_trains_one_step_and_infers():
    """One step of the shapes config inside EventStorage (finite losses, GHM signals logged, EMA moved),
    then inference in eval mode."""
    from detectron2.config import instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = instantiate(load(CONFIG_DIR / "retinanet_ghm_shapes.py").model)
    batch = []
    for i in range(2):
        inst = Instances((256, 256))
        inst.gt_boxes = Boxes(torch.tensor([[30.0, 40.0, 120.0, 150.0]]))
        inst.gt_classes = torch.tensor([i])
        batch.append({"image": torch.rand(3, 256, 256) * 255, "instances": inst, "height": 256, "width": 256})
    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        assert set(losses) == {"loss_cls", "loss_box_reg"}
        assert all(torch.isfinite(v) and v > 0 for v in losses.values())
        sum(losses.values()).backward()
        scalars = {k: v[0] for k, v in storage.latest().items()}
    expected = {"ghm/cls_frac_lowest_bin", "ghm/cls_weight_lowest_bin", "ghm/cls_weight_pos", "ghm/box_nonempty_bins"}
    assert expected <= set(scalars)
    assert all(math.isfinite(v) for v in scalars.values())
    # At P = 0.01 nearly every element is an easy negative in region 1, down-weighted below CE's 1.
    assert scalars["ghm/cls_frac_lowest_bin"] > 0.99 and scalars["ghm/cls_weight_lowest_bin"] < 1.0
    assert model.ghm_c_density.acc_sum.sum() > 0
    model.eval()
    with torch.no_grad():
        outputs = model(batch)
    assert len(outputs) == 2 and all("instances" in o for o in outputs)
