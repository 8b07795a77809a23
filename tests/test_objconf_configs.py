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


# Table 6's rows at [600, 1000] (detector, backbone, schedule) -> the config that reproduces it.
TABLE6_CONFIGS = {
    ("RetinaNet", 50, "1x"): "retinanet_R_50_FPN_1x_600.py",
    ("RetinaNet", 101, "1x"): "retinanet_R_101_FPN_1x_600.py",
    ("IoU-aware Net", 50, "1x"): "retinanet_iou_aware_R_50_FPN_1x.py",
    ("IoU-aware Net", 101, "1x"): "retinanet_iou_aware_R_101_FPN_1x.py",
    ("RetinaNet-Conf", 50, "1x"): "retinanet_conf_R_50_FPN_1x.py",
    ("RetinaNet-Conf", 101, "1x"): "retinanet_conf_R_101_FPN_1x.py",
    ("RetinaNet-Conf", 101, "2x"): "retinanet_conf_R_101_FPN_2x.py",
}

# What each config's model must score with at inference: (score_fusion, fusion_alpha,
# conf_filter_thresh), from the paper: Eq. 11 with alpha 0.4 for RetinaNet-Conf and 0.5 for IoU-aware
# (Tables 5, 6), Table 4's rows for the _fusion_ configs, the class score alone for Table 2's _loss_
# configs; None for plain RetinaNet. Written out, not parsed from the names, so that a config that
# sets the wrong value fails.
EXPECTED_FUSION = {
    "retinanet_R_50_FPN_1x_600.py": None,
    "retinanet_R_101_FPN_1x_600.py": None,
    "retinanet_conf_R_50_FPN_1x.py": ("product", 0.4, None),
    "retinanet_conf_R_101_FPN_1x.py": ("product", 0.4, None),
    "retinanet_conf_R_101_FPN_2x.py": ("product", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_detach.py": ("product", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_fusion_cls.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_fusion_cls_filter.py": ("cls", 0.4, 0.5),
    "retinanet_conf_R_50_FPN_1x_fusion_clsxconf.py": ("cls*conf", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_fusion_clsxconf_filter.py": ("cls*conf", 0.4, 0.5),
    "retinanet_conf_R_50_FPN_1x_fusion_product_filter.py": ("product", 0.4, 0.5),
    "retinanet_conf_R_50_FPN_1x_loss_ce_w1e-3.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_loss_ce_w1e-4.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_loss_gfocal.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_loss_l1.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_loss_l2.py": ("cls", 0.4, None),
    "retinanet_conf_R_50_FPN_1x_loss_smooth_l1.py": ("cls", 0.4, None),
    "retinanet_conf_shapes.py": ("product", 0.4, None),
    "retinanet_iou_aware_R_50_FPN_1x.py": ("product", 0.5, None),
    "retinanet_iou_aware_R_101_FPN_1x.py": ("product", 0.5, None),
    "retinanet_iou_aware_shapes.py": ("product", 0.5, None),
}


def test_the_issue_configs_exist():
    for name in (
        "retinanet_conf_R_50_FPN_1x.py",
        "retinanet_conf_R_101_FPN_1x.py",
        "retinanet_conf_R_101_FPN_2x.py",
        "retinanet_iou_aware_R_50_FPN_1x.py",
        "retinanet_conf_shapes.py",
        *TABLE6_CONFIGS.values(),
    ):
        assert name in CONFIGS
    assert set(EXPECTED_FUSION) == set(CONFIGS), "add the new config to EXPECTED_FUSION"


def _fused_scores_seen(model, monkeypatch):
    """Run the model's inference on one 128x160 image with random class and confidence logits (so that
    every fusion and filter changes the scores), and return (the scores each level hands to the score
    threshold, the class logits, the confidence logits), per level, (Hl*Wl*A, K) / (Hl*Wl*A, 1)."""
    import torch

    torch.manual_seed(0)
    model.eval()
    with torch.no_grad():
        images = model.preprocess_image([{"image": torch.rand(3, 128, 160) * 255}])
        features = model.backbone(images.tensor)
        features = [features[f] for f in model.head_in_features]
        logits, deltas, conf = model.head(features)
        logits = [torch.randn_like(x) * 2 - 3 for x in logits]
        conf = [torch.randn_like(x) * 2 for x in conf]
        flat = model._transpose_dense_predictions(
            [[x.clone() for x in logits], [x.clone() for x in conf]], [model.num_classes, 1]
        )
        seen = []
        original = model._decode_per_level_predictions

        def spy(anchors, pred_scores, *args, **kwargs):
            seen.append(pred_scores.clone())
            return original(anchors, pred_scores, *args, **kwargs)

        monkeypatch.setattr(model, "_decode_per_level_predictions", spy)
        model.forward_inference(images, features, [logits, deltas, conf])
    return seen, [x[0] for x in flat[0]], [x[0] for x in flat[1]]


@pytest.mark.parametrize("name", CONFIGS)
def test_config_instantiates(name, monkeypatch):
    import torch
    from detectron2.config import instantiate

    from objconf import IoUAwareRetinaNetHead, RetinaNetConf, RetinaNetConfHead

    cfg = _load(name)
    model = instantiate(cfg.model)
    for key in ("dataloader", "optimizer", "lr_multiplier", "train"):
        assert key in cfg, key
    assert cfg.train.output_dir.endswith(name[: -len(".py")])
    if EXPECTED_FUSION[name] is None:  # the plain baseline at the paper's scale
        assert type(model).__name__ == "RetinaNet"
    else:
        assert isinstance(model, RetinaNetConf)
        iou_aware = "iou_aware" in name
        assert isinstance(model.head, IoUAwareRetinaNetHead if iou_aware else RetinaNetConfHead)
        assert model.head.conf_tower == ("box" if iou_aware else "cls")
        if "_loss_" in name:
            variant = name.split("_loss_")[1][: -len(".py")]
            assert model.conf_loss_type == ("ce_w" if variant.startswith("ce_w") else variant)
            if variant.startswith("ce_w"):
                assert model.conf_neg_weight == float(variant[len("ce_w") :])
        else:
            assert model.conf_loss_type == "ce"
        assert model.detach_iou_target == name.endswith("_detach.py")

        # The fusion reaches the model's inference and changes every level's scores by its formula:
        # s = sigmoid(class logit), c = sigmoid(confidence logit); scores with c <= tau set to 0.
        method, alpha, tau = EXPECTED_FUSION[name]
        seen, cls_logits, conf_logits = _fused_scores_seen(model, monkeypatch)
        assert len(seen) == 5
        for got, x, c in zip(seen, cls_logits, conf_logits):
            s, c = x.sigmoid(), c.sigmoid()
            want = {"product": c**alpha * s ** (1 - alpha), "cls*conf": s * c, "cls": s}[method]
            if tau is not None:
                want = want * (c > tau)
            assert torch.allclose(got, want, atol=1e-6), name
    if "shapes" not in name:  # paper reproduction: [1000, 600]
        resize = cfg.dataloader.train.mapper.augmentations[0]
        assert list(resize.short_edge_length) == [600] and resize.max_size == 1000
        assert cfg.dataloader.test.mapper.augmentations[0].short_edge_length == 600
        depth = 101 if "R_101" in name else 50
        assert cfg.model.backbone.bottom_up.stages.depth == depth
        assert f"R-{depth}.pkl" in cfg.train.init_checkpoint
        assert cfg.train.max_iter == (180000 if "2x" in name else 90000)
        assert cfg.train.trained_checkpoint == ""


def test_anchor_counts_at_600x1000():
    """The README's note on the authors' fusion (only levels with more than 1000 anchors are fused):
    a 600x1000 image is padded to 608x1024 (multiple of 32), P3-P7 have 76x128, 38x64, 19x32, 10x16
    and 5x8 positions x 9 anchors = 87552, 21888, 5472, 1440, 360: only P7 has <= 1000."""
    import torch
    from detectron2.config import instantiate

    model = instantiate(_load("retinanet_conf_R_50_FPN_1x.py").model).eval()
    with torch.no_grad():
        images = model.preprocess_image([{"image": torch.zeros(3, 600, 1000)}])
        features = model.backbone(images.tensor)
        anchors = model.anchor_generator([features[f] for f in model.head_in_features])
    assert tuple(images.tensor.shape[-2:]) == (608, 1024)
    assert [len(a) for a in anchors] == [87552, 21888, 5472, 1440, 360]


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
        "fig2_proportions.md",
        "fig2_proportions.png",
        "scatter_cls_vs_iou.png",
        "scatter_fused_vs_iou.png",
    ):
        assert (out / f).stat().st_size > 0
    assert "Image2" in (out / "table1.md").read_text()
    # The paper's rule by default; --candidates detectron2 keeps at most 1000 pairs per level, a
    # subset of the paper's 1000 anchors x every class above the threshold.
    import json

    paper = json.loads((out / "table1.json").read_text())
    assert cli.main(argv[:-1] + ["--candidates", "detectron2", argv[-1]]) == 0
    d2 = json.loads((out / "table1.json").read_text())
    assert paper["images"][0]["candidates"] == "paper" and d2["images"][0]["candidates"] == "detectron2"
    key = "Before NMS|fused>0.05"
    assert paper["total"][key] > d2["total"][key]
    assert all(im["counts"][key] <= 5000 for im in d2["images"])  # 5 levels x 1000


# ----------------------------------------------------------------------------- run_misalignment_analysis


@pytest.fixture(scope="module")
def shapes_checkpoint(tmp_path_factory):
    """An untrained RetinaNet-Conf shapes checkpoint (seed 0)."""
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    torch.manual_seed(0)
    save_dir = tmp_path_factory.mktemp("objconf_shapes_ckpt")
    model = instantiate(_load("retinanet_conf_shapes.py").model)
    DetectionCheckpointer(model, save_dir=str(save_dir)).save("model_init")
    return str(save_dir / "model_init.pth")


def _shapes_cfg():
    cfg = _load("retinanet_conf_shapes.py")
    cfg.model.test_score_thresh = 0.01  # untrained: fused scores start near 0.048
    return cfg


def _names_with_objects(dataset, n):
    from detectron2.data import DatasetCatalog

    records = DatasetCatalog.get(dataset)
    with_objects = [r for r in records if any(a.get("iscrowd", 0) == 0 for a in r["annotations"])]
    return [Path(r["file_name"]).name for r in with_objects[:n]]


def test_analysis_defaults(shapes_checkpoint, tmp_path):
    """No dataset, no image count, no column count, no rule given: the config's test dataset
    (shapes_val), the paper's 10 images with objects (image 10 of shapes_val has none), 3 scatter
    columns + 'all' (4 x 320 px wide), the paper's Before-NMS rule."""
    from matplotlib.image import imread

    from d2imbalance.analysis.misalignment import run_misalignment_analysis

    results, paths = run_misalignment_analysis(
        _shapes_cfg(), checkpoint=shapes_checkpoint, output_dir=str(tmp_path)
    )
    assert [r.name for r in results] == _names_with_objects("shapes_val", 10)
    assert all(r.extra["candidates"] == "paper" for r in results)
    assert imread(paths["scatter_cls"]).shape[:2] == (600, 1280)


def test_analysis_options(shapes_checkpoint, tmp_path):
    """A tuple of test datasets (its first is used), one image, one scatter column, detectron2's rule."""
    from matplotlib.image import imread

    from d2imbalance.analysis.misalignment import run_misalignment_analysis

    cfg = _shapes_cfg()
    cfg.dataloader.test.dataset.names = ("shapes_val", "shapes_train")
    results, paths = run_misalignment_analysis(
        cfg,
        checkpoint=shapes_checkpoint,
        output_dir=str(tmp_path),
        num_images=1,
        max_columns=1,
        candidates="detectron2",
    )
    assert [r.name for r in results] == _names_with_objects("shapes_val", 1)
    assert results[0].extra["candidates"] == "detectron2"
    assert imread(paths["scatter_fused"]).shape[:2] == (600, 320)


def test_analysis_skips_images_without_objects_and_reads_declared_datasets(shapes_checkpoint, tmp_path):
    """Images whose annotations are all crowd, or none, are skipped (Table 1 is about images with
    objects); a dataset declared in train.datasets is registered first; a dataset without any object
    is an error naming it."""
    import copy

    from detectron2.data import DatasetCatalog, MetadataCatalog

    from d2imbalance.analysis.misalignment import run_misalignment_analysis

    def crowd_first():
        records = copy.deepcopy(DatasetCatalog.get("shapes_val"))
        for a in records[0]["annotations"]:
            a["iscrowd"] = 1
        records[1]["annotations"] = []
        return records

    if "objconf_crowd_first" not in DatasetCatalog.list():
        DatasetCatalog.register("objconf_crowd_first", crowd_first)
        DatasetCatalog.register("objconf_no_objects", lambda: [
            dict(r, annotations=[]) for r in DatasetCatalog.get("shapes_val")[:3]
        ])  # fmt: skip
    results, _ = run_misalignment_analysis(
        _shapes_cfg(), checkpoint=shapes_checkpoint, dataset="objconf_crowd_first",
        output_dir=str(tmp_path / "crowd"), num_images=2,
    )  # fmt: skip
    assert [r.name for r in results] == _names_with_objects("objconf_crowd_first", 2)
    assert results[0].name == Path(DatasetCatalog.get("shapes_val")[2]["file_name"]).name
    with pytest.raises(ValueError, match="'objconf_no_objects' has no image with a non-crowd"):
        run_misalignment_analysis(
            _shapes_cfg(), checkpoint=shapes_checkpoint, dataset="objconf_no_objects",
            output_dir=str(tmp_path / "none"),
        )  # fmt: skip

    meta = MetadataCatalog.get("shapes_val")
    cfg = _shapes_cfg()
    cfg.train.datasets = [
        dict(name="objconf_declared_val", json_file=meta.json_file, image_root=meta.image_root)
    ]
    results, _ = run_misalignment_analysis(
        cfg, checkpoint=shapes_checkpoint, dataset="objconf_declared_val",
        output_dir=str(tmp_path / "declared"), num_images=1,
    )  # fmt: skip
    assert [r.name for r in results] == _names_with_objects("shapes_val", 1)


def test_analysis_errors_name_the_fix(shapes_checkpoint, tmp_path):
    from d2imbalance.analysis.misalignment import run_misalignment_analysis

    def run(**kwargs):
        kwargs = {"checkpoint": shapes_checkpoint, "output_dir": str(tmp_path), **kwargs}
        return run_misalignment_analysis(_shapes_cfg(), **kwargs)

    with pytest.raises(ValueError, match="'shapes_vall' is not registered"):
        run(dataset="shapes_vall")
    with pytest.raises(ValueError, match="num_images=0 must be >= 1"):
        run(num_images=0)
    with pytest.raises(FileNotFoundError, match="nothing.pth' does not exist"):
        run(checkpoint=str(tmp_path / "nothing.pth"))
    with pytest.raises(ValueError, match="candidates='all'"):
        run(candidates="all")
