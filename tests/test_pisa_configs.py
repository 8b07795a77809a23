"""configs/PISA: every config instantiates ISRROIHeads / PISAROIHeads with the values it promises, the
ISR configs change only the method's keys of their baselines, the PISA configs only CARL's (and the
official one only the authors' switches), the hyper-parameter counts, and the shapes demo trains two
iterations on shapes_mini_train and evaluates on shapes_mini_val."""
import math
from pathlib import Path

import pytest

from lazy_config_helpers import assert_recipe_changes_only, load, plain, train_on_shapes_mini

pytestmark = pytest.mark.detectron2

ROOT = Path(__file__).resolve().parents[1] / "configs"
CONFIG_DIR = ROOT / "PISA"
ISR = dict(positive_gamma=2.0, positive_beta=0.0, negative_gamma=0.5, negative_beta=0.0, positive_iou="proposal",
           positive_nms_threshold=None, negative_nms_threshold=0.5, carl=False)  # fmt: skip
PISA = dict(ISR, carl=True, carl_k=1.0, carl_bias=0.2, carl_detach_score=False)
OFFICIAL = dict(PISA, positive_iou="regressed")
# name -> (its baseline, heads class name, box predictor switches, negative_sampling, ROIs per image)
EXPECTED = {
    "faster_rcnn_isr_R_50_FPN_1x.py": ("faster_rcnn_R_50_FPN_1x.py", "ISRROIHeads", ISR, "random", 512),
    "faster_rcnn_isr_shapes.py": ("faster_rcnn_shapes.py", "ISRROIHeads", ISR, "random", 128),
    "faster_rcnn_pisa_R_50_FPN_1x.py": ("faster_rcnn_R_50_FPN_1x.py", "PISAROIHeads", PISA, "random", 512),
    "faster_rcnn_pisa_official_R_50_FPN_1x.py": (
        "faster_rcnn_R_50_FPN_1x.py", "PISAROIHeads", OFFICIAL, "score_hlr", 512),
}  # fmt: skip


def test_every_config_is_listed():
    assert set(EXPECTED) == {p.name for p in CONFIG_DIR.glob("*.py")}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_config_instantiates_with_its_values(name):
    from detectron2.config import instantiate
    from detectron2.modeling import GeneralizedRCNN
    from detectron2.modeling.proposal_generator import RPN

    import pisa

    cfg = load(CONFIG_DIR / name)
    model = instantiate(cfg.model)
    assert type(model) is GeneralizedRCNN and type(model.proposal_generator) is RPN
    _, heads_class, switches, sampling, batch = EXPECTED[name]
    heads = model.roi_heads
    assert type(heads) is getattr(pisa, heads_class) and not heads.mask_on
    assert type(heads.box_predictor) is pisa.ISRFastRCNNOutputLayers
    assert {k: getattr(heads.box_predictor, k) for k in switches} == switches
    assert heads.negative_sampling == sampling and heads.negative_score_threshold == 0.05
    assert (heads.batch_size_per_image, heads.positive_fraction) == (batch, 0.25)
    assert cfg.train.output_dir.endswith(name[: -len(".py")])


@pytest.mark.parametrize("name", ["faster_rcnn_isr_R_50_FPN_1x.py", "faster_rcnn_isr_shapes.py"])
def test_same_recipe_as_the_baseline_except_the_method_keys(name):
    """Data, optimiser, schedule, training loop, backbone, RPN, and every ROI-heads and box-predictor key
    but the method's are the baseline's."""
    cfg, base = load(CONFIG_DIR / name), load(ROOT / "Baselines" / EXPECTED[name][0])
    assert_recipe_changes_only(cfg, base, {"roi_heads": {"_target_", "negative_sampling"},
                                           "roi_heads.box_predictor": {"_target_", *ISR}})
    heads, base_heads = plain(cfg.model.roi_heads), plain(base.model.roi_heads)
    predictor, base_predictor = heads.pop("box_predictor"), base_heads.pop("box_predictor")
    assert set(heads) - set(base_heads) == {"negative_sampling"} and set(base_heads) <= set(heads)
    assert set(predictor) - set(base_predictor) == set(ISR) and set(base_predictor) <= set(predictor)


def test_pisa_adds_only_carl_and_official_only_the_authors_switches():
    isr = load(CONFIG_DIR / "faster_rcnn_isr_R_50_FPN_1x.py")
    pisa_cfg = load(CONFIG_DIR / "faster_rcnn_pisa_R_50_FPN_1x.py")
    official = load(CONFIG_DIR / "faster_rcnn_pisa_official_R_50_FPN_1x.py")

    def flat(cfg):
        heads = plain(cfg.model.roi_heads)
        predictor = heads.pop("box_predictor")
        return {**{f"heads.{k}": v for k, v in heads.items()}, **{f"predictor.{k}": v for k, v in predictor.items()}}

    a, b, c = flat(isr), flat(pisa_cfg), flat(official)
    assert {k for k in set(a) | set(b) if a.get(k, "missing") != b.get(k, "missing")} == {
        "heads._target_", "predictor.carl", "predictor.carl_k", "predictor.carl_bias", "predictor.carl_detach_score"}
    assert {k for k in set(b) | set(c) if b.get(k, "missing") != c.get(k, "missing")} == {
        "heads.negative_sampling", "heads.negative_score_threshold", "predictor.positive_iou"}  # fmt: skip
    for cfg in (pisa_cfg, official):
        cfg.model.pop("roi_heads")
        assert plain(cfg.dataloader) == plain(isr.dataloader)
    isr.model.pop("roi_heads")
    assert plain(pisa_cfg.model) == plain(isr.model) == plain(official.model)


@pytest.mark.parametrize(
    "override,path,value",
    [
        ("model.roi_heads.box_predictor.positive_gamma=1.0", "box_predictor.positive_gamma", 1.0),
        ("model.roi_heads.box_predictor.negative_beta=0.1", "box_predictor.negative_beta", 0.1),
        ("model.roi_heads.box_predictor.positive_iou=regressed", "box_predictor.positive_iou", "regressed"),
        ("model.roi_heads.box_predictor.positive_nms_threshold=0.5", "box_predictor.positive_nms_threshold", 0.5),
        ("model.roi_heads.negative_sampling=score_hlr", "negative_sampling", "score_hlr"),
    ],
)
def test_command_line_overrides_reach_the_heads(override, path, value):
    from detectron2.config import LazyConfig, instantiate

    cfg = LazyConfig.apply_overrides(load(CONFIG_DIR / "faster_rcnn_isr_shapes.py"), [override])
    node = instantiate(cfg.model).roi_heads
    for attr in path.split("."):
        node = getattr(node, attr)
    assert node == value


def test_hyperparameters_are_the_rpn_sampling_plus_the_heads():
    """RPN sampling (256, 0.5) + ROI sampling (512, 0.25) + γ and β of ISR-P and ISR-N: 8, four more than
    Faster R-CNN's 4 (the review's 4 for ISR); PISA adds CARL's k and b: 10."""
    from d2imbalance.analysis.comparison import describe_config

    info = describe_config(str(CONFIG_DIR / "faster_rcnn_isr_R_50_FPN_1x.py"))
    assert [(h.name, value) for h, value in info.hyperparameters] == [
        ("proposal_generator.batch_size_per_image", 256), ("proposal_generator.positive_fraction", 0.5),
        ("roi_heads.batch_size_per_image", 512), ("roi_heads.positive_fraction", 0.25),
        ("roi_heads.box_predictor.positive_gamma", 2.0), ("roi_heads.box_predictor.positive_beta", 0.0),
        ("roi_heads.box_predictor.negative_gamma", 0.5), ("roi_heads.box_predictor.negative_beta", 0.0)]  # fmt: skip
    shapes = describe_config(str(CONFIG_DIR / "faster_rcnn_isr_shapes.py"))
    assert [value for _, value in shapes.hyperparameters] == [256, 0.5, 128, 0.25, 2.0, 0.0, 0.5, 0.0]
    full = describe_config(str(CONFIG_DIR / "faster_rcnn_pisa_R_50_FPN_1x.py"))
    assert [(h.name, value) for h, value in full.hyperparameters][-2:] == [
        ("roi_heads.box_predictor.carl_k", 1.0), ("roi_heads.box_predictor.carl_bias", 0.2)]
    assert len(full.hyperparameters) == 10
    override = describe_config(str(CONFIG_DIR / "faster_rcnn_isr_shapes.py"), ["model.roi_heads.box_predictor.negative_gamma=1.0"])
    assert [value for _, value in override.hyperparameters][6] == 1.0


def test_shapes_config_trains_two_iterations_and_evaluates(tmp_path):
    """train_net's own loop: 2 iterations of 2 images of shapes_mini_train, then COCO evaluation on
    shapes_mini_val; the losses are finite and ISR's signals are in metrics.json."""
    out = tmp_path / "run"
    rows, steps = train_on_shapes_mini(CONFIG_DIR / "faster_rcnn_isr_shapes.py", out)
    assert all(math.isfinite(r[k]) for r in steps for k in ("loss_cls", "loss_box_reg", "loss_rpn_cls", "total_loss"))
    signals = {"isr/pos_weight_mean", "isr/pos_weight_top", "isr/neg_weight_mean", "isr/neg_weight_std",
               "isr/neg_renorm", "roi_head/num_bg_samples"}  # fmt: skip
    assert signals <= set(steps[-1])
    evaluation = [r for r in rows if "bbox/AP" in r]
    assert len(evaluation) == 1 and evaluation[0]["iteration"] == 2
    assert (out / "model_final.pth").is_file()
