"""Every config in configs/ResObj instantiates its model, with the switches its name promises."""
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.detectron2

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "ResObj"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))

# name -> (T, residual_input, isolate_residual_grad, cascade_mode), for the RetinaNet configs.
EXPECTED = {
    "retinanet_obj_R_50_FPN_1x.py": (0, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_1x.py": (2, "objectness", True, "paper"),
    "retinanet_resobj_R_101_FPN_1x.py": (2, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_600_T0.py": (0, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_600_T1.py": (1, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_600_T2.py": (2, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_600_T3.py": (3, "objectness", True, "paper"),
    "retinanet_resobj_R_50_FPN_600_grad_to_obj.py": (1, "objectness", False, "paper"),
    "retinanet_resobj_R_50_FPN_600_res_on_cls.py": (1, "class", True, "paper"),
    "retinanet_resobj_official_R_50_FPN_1x.py": (1, "objectness", False, "official"),
    "retinanet_resobj_shapes.py": (2, "objectness", True, "paper"),
}


def test_every_issue_config_exists():
    required = set(EXPECTED) | {
        "faster_rcnn_resobj_R_50_FPN_1x.py",
        "faster_rcnn_resobj_R_101_FPN_1x.py",
        "faster_rcnn_resobj_shapes.py",
    }
    assert required <= set(CONFIGS), sorted(required - set(CONFIGS))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates(name):
    from detectron2.config import LazyConfig, instantiate
    from resobj import ResObjHead, ResObjRPN, ResObjRPNHead, RetinaNetResObj

    cfg = LazyConfig.load(str(CONFIG_DIR / name))
    for key in ("model", "dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    model = instantiate(cfg.model)
    depth = 101 if "R_101" in name else None
    if name.startswith("retinanet"):
        assert isinstance(model, RetinaNetResObj) and isinstance(model.head, ResObjHead)
        steps, residual_input, isolate, mode = EXPECTED[name]
        head = model.head
        assert (head.num_steps, head.residual_input, head.isolate_residual_grad, model.cascade_mode) == (
            steps, residual_input, isolate, mode)
        assert len(head.res_scores) == steps
        # Paper mode: RetinaNet-Obj's best in Table 1b (0.001 / 0.45); official: the authors' 0.05 / 0.5.
        expected = (0.05, 0.5) if mode == "official" else (0.001, 0.45)
        assert (model.test_score_thresh, model.test_nms_thresh) == expected
    else:
        rpn = model.proposal_generator
        assert isinstance(rpn, ResObjRPN) and isinstance(rpn.rpn_head, ResObjRPNHead)
        assert rpn.rpn_head.num_steps == 2
    if depth:
        assert len(model.backbone.bottom_up.res4) == 23  # ResNet-101
        assert cfg.train.init_checkpoint.endswith("R-101.pkl")
    if "_600_" in name:
        assert cfg.dataloader.test.mapper.augmentations[0].short_edge_length == 600
        assert cfg.dataloader.test.mapper.augmentations[0].max_size == 1000


@pytest.mark.parametrize("name", ["retinanet_resobj_shapes.py", "faster_rcnn_resobj_shapes.py"])
def test_shapes_demo_configs_train_one_step(name):
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    torch.manual_seed(0)
    model = instantiate(LazyConfig.load(str(CONFIG_DIR / name)).model)
    batch = []
    for i in range(2):
        inst = Instances((256, 256))
        inst.gt_boxes = Boxes(torch.tensor([[30.0, 40.0, 120.0, 150.0]]))
        inst.gt_classes = torch.tensor([i])
        batch.append({"image": torch.rand(3, 256, 256) * 255, "instances": inst})
    with EventStorage():
        losses = model(batch)
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
