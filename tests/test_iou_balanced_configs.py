"""configs/IoUBalancedSampling: every config instantiates IoUBalancedROIHeads with the values it promises,
the paper configs change only the method's keys of their baselines, the hyper-parameter count, and the
shapes demo trains two iterations on shapes_mini_train and evaluates on shapes_mini_val."""
import math
from pathlib import Path

import pytest

from lazy_config_helpers import assert_recipe_changes_only, load, plain, train_on_shapes_mini

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "IoUBalancedSampling"
PAPER = dict(num_bins=3, bin_range="negatives", floor_thr=None, floor_fraction=0.0, positive_sampling="random")
# name -> (its baseline, the switches it sets, ROI batch size per image)
EXPECTED = {
    "faster_rcnn_iou_balanced_R_50_FPN_1x.py": ("faster_rcnn_R_50_FPN_1x.py", PAPER, 512),
    "faster_rcnn_iou_balanced_shapes.py": ("faster_rcnn_shapes.py", PAPER, 128),
    "faster_rcnn_iou_balanced_official_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py",
        dict(PAPER, bin_range="max_iou", floor_thr=0.0, positive_sampling="instance_balanced"), 512),
}  # fmt: skip
METHOD_KEYS = {"_target_"} | set(PAPER)


def test_every_config_is_listed():
    assert set(EXPECTED) == {p.name for p in CONFIG_DIR.glob("*.py")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_instantiates_with_its_values(name):
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.modeling.proposal_generator import RPN

    from iou_balanced import IoUBalancedROIHeads

    cfg = load(CONFIG_DIR / name)
    model = instantiate(cfg.model)
    assert type(model) is GeneralizedRCNN and type(model.proposal_generator) is RPN
    heads = model.roi_heads
    assert type(heads) is IoUBalancedROIHeads and not heads.mask_on
    _, switches, batch = EXPECTED[name]
    assert {k: getattr(heads, k) for k in switches} == switches
    assert (heads.batch_size_per_image, heads.positive_fraction) == (batch, 0.25)
    assert heads.iou_high == (0.5 if switches["bin_range"] == "negatives" else None)
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize("name", ["faster_rcnn_iou_balanced_R_50_FPN_1x.py", "faster_rcnn_iou_balanced_shapes.py"])
def test_same_recipe_as_the_baseline_except_the_method_keys(name):
    """Data, optimiser, schedule, training loop, backbone, RPN and every ROI-heads key but the method's
    are the baseline's."""
    cfg, base = load(CONFIG_DIR / name), load(ROOT / "Baselines" / EXPECTED[name][0])
    assert_recipe_changes_only(cfg, base, {"roi_heads": METHOD_KEYS})
    heads, base_heads = plain(cfg.model.roi_heads), plain(base.model.roi_heads)
    assert set(heads) - set(base_heads) == set(PAPER) and set(base_heads) <= set(heads)


def test_official_config_changes_only_the_authors_switches():
    cfg = load(CONFIG_DIR / "faster_rcnn_iou_balanced_official_R_50_FPN_1x.py")
    paper = load(CONFIG_DIR / "faster_rcnn_iou_balanced_R_50_FPN_1x.py")
    heads, paper_heads = plain(cfg.model.roi_heads), plain(paper.model.roi_heads)
    changed = {k for k in heads if heads[k] != paper_heads[k]}
    assert changed == {"bin_range", "floor_thr", "positive_sampling"}
    cfg.model.pop("roi_heads"), paper.model.pop("roi_heads")
    assert plain(cfg.model) == plain(paper.model)
    assert plain(cfg.dataloader) == plain(paper.dataloader)


@pytest.mark.parametrize(
    "override,attr,value",
    [
        ("model.roi_heads.num_bins=5", "num_bins", 5),
        ("model.roi_heads.bin_range=max_iou", "bin_range", "max_iou"),
        ("model.roi_heads.floor_thr=0.1", "floor_thr", 0.1),
        ("model.roi_heads.positive_sampling=instance_balanced", "positive_sampling", "instance_balanced"),
    ],
)
def test_command_line_overrides_reach_the_heads(override, attr, value):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(load(CONFIG_DIR / "faster_rcnn_iou_balanced_shapes.py"), [override])
    assert getattr(instantiate(cfg.model).roi_heads, attr) == value


def test_hyperparameters_are_the_rpn_sampling_plus_the_heads():
    """RPN sampling (256, 0.5) + ROI sampling (512, 0.25) + K: 5, one more than Faster R-CNN's 4."""
    from d2imbalance.analysis.comparison import describe_config

    info = describe_config(str(CONFIG_DIR / "faster_rcnn_iou_balanced_R_50_FPN_1x.py"))
    assert [(h.name, value) for h, value in info.hyperparameters] == [
        ("proposal_generator.batch_size_per_image", 256), ("proposal_generator.positive_fraction", 0.5),
        ("roi_heads.batch_size_per_image", 512), ("roi_heads.positive_fraction", 0.25), ("roi_heads.num_bins", 3)]
    shapes = describe_config(str(CONFIG_DIR / "faster_rcnn_iou_balanced_shapes.py"))
    assert [value for _, value in shapes.hyperparameters] == [256, 0.5, 128, 0.25, 3]


def test_shapes_config_trains_two_iterations_and_evaluates(tmp_path):
    """train_net's own loop: 2 iterations of 2 images of shapes_mini_train, then COCO evaluation on
    shapes_mini_val (12 images); the losses are finite and the method's signals are in metrics.json."""
    out = tmp_path / "run"
    rows, steps = train_on_shapes_mini(CONFIG_DIR / "faster_rcnn_iou_balanced_shapes.py", out)
    assert all(math.isfinite(r[k]) for r in steps for k in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "total_loss"))
    signals = {f"iou_balanced/bg_fraction_bin{k}" for k in range(3)} | {
        "iou_balanced/candidate_fraction_bin0", "iou_balanced/bg_mean_iou", "roi_head/num_bg_samples"}
    assert signals <= set(steps[-1])
    evaluation = [r for r in rows if "bbox/AP" in r]
    assert len(evaluation) == 1 and evaluation[0]["iteration"] == 2  # written as at max_iter, the final one
    assert (out / "model_final.pth").is_file()
