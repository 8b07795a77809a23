"""configs/OHEM: every config instantiates OHEMROIHeads with the values it promises, the paper configs
change only the method's keys of their baselines, the authors' and mmdetection's configs only their
switches, the hyper-parameter count, and the shapes demo trains two iterations on shapes_mini_train and
evaluates on shapes_mini_val."""
import math
from pathlib import Path

import pytest

from lazy_config_helpers import assert_recipe_changes_only, load, plain, train_on_shapes_mini

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "OHEM"
PAPER = dict(positive_fraction=None, selection_nms_thresh=0.7, selection_nms_per_label=False, selection_loss="cls_box")
# name -> (its baseline, the switches it sets, ROIs kept per image)
EXPECTED = {
    "faster_rcnn_ohem_R_50_FPN_1x.py": ("faster_rcnn_R_50_FPN_1x.py", PAPER, 512),
    "faster_rcnn_ohem_shapes.py": ("faster_rcnn_shapes.py", PAPER, 128),
    "faster_rcnn_ohem_official_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py", dict(PAPER, selection_nms_per_label=True), 512),
    "faster_rcnn_ohem_mmdetection_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py",
        dict(PAPER, positive_fraction=0.25, selection_nms_thresh=None, selection_loss="cls"), 512),
}  # fmt: skip
METHOD_KEYS = {"_target_"} | set(PAPER)


def test_every_config_is_listed():
    assert set(EXPECTED) == {p.name for p in CONFIG_DIR.glob("*.py")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_instantiates_with_its_values(name):
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.modeling.proposal_generator import RPN

    from ohem import OHEMROIHeads

    cfg = load(CONFIG_DIR / name)
    model = instantiate(cfg.model)
    assert type(model) is GeneralizedRCNN and type(model.proposal_generator) is RPN
    heads = model.roi_heads
    assert type(heads) is OHEMROIHeads and not heads.mask_on
    _, switches, batch = EXPECTED[name]
    assert {k: getattr(heads, k) for k in switches} == switches
    assert heads.batch_size_per_image == batch
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize("name", ["faster_rcnn_ohem_R_50_FPN_1x.py", "faster_rcnn_ohem_shapes.py"])
def test_same_recipe_as_the_baseline_except_the_method_keys(name):
    """Data, optimiser, schedule, training loop, backbone, RPN and every ROI-heads key but the method's
    (the batch per image included) are the baseline's."""
    cfg, base = load(CONFIG_DIR / name), load(ROOT / "Baselines" / EXPECTED[name][0])
    assert_recipe_changes_only(cfg, base, {"roi_heads": METHOD_KEYS})
    heads, base_heads = plain(cfg.model.roi_heads), plain(base.model.roi_heads)
    assert set(heads) - set(base_heads) == set(PAPER) - {"positive_fraction"} and set(base_heads) <= set(heads)
    assert base_heads["positive_fraction"] == 0.25 and heads["positive_fraction"] is None


@pytest.mark.parametrize(
    "name,changed",
    [
        ("faster_rcnn_ohem_official_R_50_FPN_1x.py", {"selection_nms_per_label"}),
        ("faster_rcnn_ohem_mmdetection_R_50_FPN_1x.py",
         {"positive_fraction", "selection_nms_thresh", "selection_loss"}),
    ],
)
def test_the_authors_and_mmdetection_configs_change_only_their_switches(name, changed):
    cfg, paper = load(CONFIG_DIR / name), load(CONFIG_DIR / "faster_rcnn_ohem_R_50_FPN_1x.py")
    heads, paper_heads = plain(cfg.model.roi_heads), plain(paper.model.roi_heads)
    assert {k for k in heads if heads[k] != paper_heads[k]} == changed
    cfg.model.pop("roi_heads"), paper.model.pop("roi_heads")
    assert plain(cfg.model) == plain(paper.model)
    assert plain(cfg.dataloader) == plain(paper.dataloader)


@pytest.mark.parametrize(
    "override,attr,value",
    [
        ("model.roi_heads.batch_size_per_image=64", "batch_size_per_image", 64),
        ("model.roi_heads.selection_nms_thresh=0.5", "selection_nms_thresh", 0.5),
        ("model.roi_heads.selection_nms_thresh=null", "selection_nms_thresh", None),
        ("model.roi_heads.selection_nms_per_label=true", "selection_nms_per_label", True),
        ("model.roi_heads.selection_loss=cls", "selection_loss", "cls"),
        ("model.roi_heads.positive_fraction=0.25", "positive_fraction", 0.25),
    ],
)
def test_command_line_overrides_reach_the_heads(override, attr, value):
    from detectron2.config import instantiate

    from d2imbalance.overrides import apply_overrides

    cfg = apply_overrides(load(CONFIG_DIR / "faster_rcnn_ohem_shapes.py"), [override])
    assert getattr(instantiate(cfg.model).roi_heads, attr) == value


def test_hyperparameters_are_the_rpn_sampling_plus_the_heads():
    """RPN sampling (256, 0.5) + B/N and the NMS threshold: 4, as many as Faster R-CNN's (the review counts
    2 for OHEM, as for the biased sampling it replaces)."""
    from d2imbalance.analysis.comparison import describe_config

    info = describe_config(str(CONFIG_DIR / "faster_rcnn_ohem_R_50_FPN_1x.py"))
    assert [(h.name, value) for h, value in info.hyperparameters] == [
        ("proposal_generator.batch_size_per_image", 256), ("proposal_generator.positive_fraction", 0.5),
        ("roi_heads.batch_size_per_image", 512), ("roi_heads.selection_nms_thresh", 0.7)]
    shapes = describe_config(str(CONFIG_DIR / "faster_rcnn_ohem_shapes.py"))
    assert [value for _, value in shapes.hyperparameters] == [256, 0.5, 128, 0.7]


def test_shapes_config_trains_two_iterations_and_evaluates(tmp_path):
    """train_net's own loop: 2 iterations of 2 images of shapes_mini_train, then COCO evaluation on
    shapes_mini_val (12 images); the losses are finite, the method's signals are in metrics.json, and
    the selection keeps at most 128 RoIs per image out of more."""
    out = tmp_path / "run"
    rows, steps = train_on_shapes_mini(CONFIG_DIR / "faster_rcnn_ohem_shapes.py", out)
    assert all(math.isfinite(r[k]) for r in steps for k in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "total_loss"))
    names = ("num_candidates", "num_selected", "nms_removed", "fg_fraction_selected", "fg_fraction_candidates",
             "mean_loss_selected", "mean_loss_candidates")  # fmt: skip
    signals = {f"ohem/{k}" for k in names}
    assert signals <= set(steps[-1])
    last = steps[-1]
    assert last["ohem/num_selected"] <= 128 < last["ohem/num_candidates"]
    assert last["ohem/mean_loss_selected"] >= last["ohem/mean_loss_candidates"]
    evaluation = [r for r in rows if "bbox/AP" in r]
    assert len(evaluation) == 1 and evaluation[0]["iteration"] == 2  # written as at max_iter, the final one
    assert (out / "model_final.pth").is_file()
