"""Every config in configs/ObjConf instantiates its model with the settings its name promises, and the
misalignment CLI runs on a checkpoint of the shapes demo."""

from pathlib import Path

import pytest

pytestmark = pytest.mark.detectron2

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "ObjConf"
CONFIGS = sorted(p.name for p in CONFIG_DIR.glob("*.py"))


def _load(name):
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(CONFIG_DIR / name))


def test_the_issue_configs_exist():
    for name in (
        "retinanet_conf_R_50_FPN_1x.py",
        "retinanet_conf_R_101_FPN_1x.py",
        "retinanet_conf_R_101_FPN_2x.py",
        "retinanet_iou_aware_R_50_FPN_1x.py",
        "retinanet_conf_shapes.py",
    ):
        assert name in CONFIGS


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates(name):
    from detectron2.config import instantiate

    from objconf import IoUAwareRetinaNetHead, RetinaNetConf, RetinaNetConfHead

    cfg = _load(name)
    model = instantiate(cfg.model)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, key
    assert cfg.train.output_dir.endswith(name[: -len(".py")])
    if name.startswith("retinanet_R_50"):  # the plain baseline at the paper's scale
        assert type(model).__name__ == "RetinaNet"
    else:
        assert isinstance(model, RetinaNetConf)
        iou_aware = "iou_aware" in name
        assert isinstance(model.head, IoUAwareRetinaNetHead if iou_aware else RetinaNetConfHead)
        assert model.head.conf_tower == ("box" if iou_aware else "cls")
        assert model.fusion_alpha == (0.5 if iou_aware else 0.4)
        if "_loss_" in name:
            assert model.score_fusion == "cls"  # Table 2 was evaluated with the class score
            variant = name.split("_loss_")[1][: -len(".py")]
            assert model.conf_loss_type == ("ce_w" if variant.startswith("ce_w") else variant)
            if variant.startswith("ce_w"):
                assert model.conf_neg_weight == float(variant[len("ce_w") :])
        if "_fusion_" in name:
            assert (model.conf_filter_thresh == 0.5) == name.endswith("_filter.py")
        assert model.detach_iou_target == name.endswith("_detach.py")
    if "shapes" not in name:  # paper reproduction: [1000, 600]
        resize = cfg.dataloader.train.mapper.augmentations[0]
        assert list(resize.short_edge_length) == [600] and resize.max_size == 1000
        assert cfg.dataloader.test.mapper.augmentations[0].short_edge_length == 600
        depth = 101 if "R_101" in name else 50
        assert cfg.model.backbone.bottom_up.stages.depth == depth
        assert f"R-{depth}.pkl" in cfg.train.init_checkpoint
        assert cfg.train.max_iter == (180000 if "2x" in name else 90000)
        assert cfg.train.trained_checkpoint == ""


@pytest.mark.slow
def test_misalignment_cli_on_shapes_checkpoint(tmp_path):
    """The CLI on an (untrained) checkpoint of the shapes demo writes the table and both scatters."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    torch.manual_seed(0)
    cfg = _load("retinanet_conf_shapes.py")
    DetectionCheckpointer(instantiate(cfg.model), save_dir=str(tmp_path)).save("model_init")
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "misalignment_analysis", CONFIG_DIR.parents[1] / "tools" / "misalignment_analysis.py"
    )
    cli = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cli)
    out = tmp_path / "analysis"
    argv = [
        "--config-file",
        str(CONFIG_DIR / "retinanet_conf_shapes.py"),
        "--checkpoint",
        str(tmp_path / "model_init.pth"),
    ]
    argv += [
        "--dataset",
        "shapes_val",
        "--output-dir",
        str(out),
        "--num-images",
        "2",
        "model.test_score_thresh=0.01",
    ]
    assert cli.main(argv) == 0
    for f in (
        "table1.md",
        "table1.csv",
        "table1.json",
        "scatter_cls_vs_iou.png",
        "scatter_fused_vs_iou.png",
    ):
        assert (out / f).stat().st_size > 0
    assert "Image2" in (out / "table1.md").read_text()
