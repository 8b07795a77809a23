"""Config lookup by name, and every shipped config instantiates its model."""
import pytest

from d2imbalance.model_zoo import available_configs  # lists files; needs no detectron2

pytestmark = pytest.mark.detectron2


def test_lookup_by_name_and_by_path(tmp_path):
    from d2imbalance import get_config, get_config_file

    by_name = get_config_file("Baselines/retinanet_R_50_FPN_1x.py")
    assert get_config_file(by_name) == by_name
    cfg = get_config("Baselines/retinanet_R_50_FPN_1x.py")
    assert cfg.optimizer.lr == 0.01 and cfg.train.init_checkpoint.startswith("detectron2://")


def test_unknown_name_error_suggests_names():
    from d2imbalance import get_config_file

    with pytest.raises(FileNotFoundError, match="retinanet_R_50_FPN_1x"):
        get_config_file("Baselines/retinanet_R_50_FPN_9x.py")


def test_get_builds_the_model_in_eval_mode():
    from d2imbalance import get

    model = get("Baselines/retinanet_shapes.py", device="cpu")
    assert not model.training and model.num_classes == 4


def test_trained_weights_only_where_published():
    from d2imbalance import get_config

    cfg = get_config("Baselines/retinanet_R_50_FPN_1x.py", trained=True)
    assert cfg.train.init_checkpoint.endswith("model_final_bfca0b.pkl")
    with pytest.raises(ValueError, match="No trained weights are published"):
        get_config("Baselines/retinanet_shapes.py", trained=True)


def test_required_layout_is_present():
    names = set(available_configs())
    for required in (
        "Baselines/retinanet_R_50_FPN_1x.py",
        "Baselines/faster_rcnn_R_50_FPN_1x.py",
        "Baselines/retinanet_shapes.py",
        "Baselines/faster_rcnn_shapes.py",
    ):
        assert required in names


@pytest.mark.parametrize("name", available_configs())
def test_every_config_builds_trains_a_step_infers_and_saves(name, tmp_path):
    """Each config's model takes one training step and runs inference on a small image (COCO itself
    is not needed), and its config saves as train_net saves it."""
    import torch
    from detectron2.config import LazyConfig, instantiate
    from detectron2.structures import Boxes, Instances
    from detectron2.utils.events import EventStorage

    from d2imbalance import get_config

    cfg = get_config(name)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))  # resolves every interpolation
    assert (tmp_path / "config.yaml").is_file()

    torch.manual_seed(0)
    model = instantiate(cfg.model)
    instances = Instances((128, 160))
    instances.gt_boxes = Boxes(torch.tensor([[10.0, 20.0, 70.0, 90.0], [80.0, 30.0, 120.0, 60.0]]))
    instances.gt_classes = torch.tensor([0, 1])
    batch = [{"image": torch.rand(3, 128, 160) * 255, "instances": instances, "height": 128, "width": 160}]
    model.train()
    with EventStorage():
        losses = model(batch)
        total = sum(losses.values())
        assert torch.isfinite(total), f"{name}: {losses}"
        total.backward()
    model.eval()
    with torch.no_grad():
        assert "instances" in model(batch)[0]
