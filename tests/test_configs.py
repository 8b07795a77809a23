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
def test_every_config_instantiates_its_model_and_saves(name, tmp_path):
    import torch
    from detectron2.config import LazyConfig, instantiate

    from d2imbalance import get_config

    cfg = get_config(name)
    model = instantiate(cfg.model)
    assert isinstance(model, torch.nn.Module)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, f"{name} lacks {key}"
    # train_net saves every run's config; this resolves every interpolation in it.
    LazyConfig.save(cfg, str(tmp_path / "config.yaml"))
    assert (tmp_path / "config.yaml").is_file()
