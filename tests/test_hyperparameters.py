"""The "# hyper-parameters" column is read from declarations: how they are looked up (pure) and what
each project declares (detectron2)."""
import pytest

from d2imbalance.analysis.hyperparameters import (
    DETECTRON2_DECLARATIONS,
    FOCAL_LOSS,
    ROI_HEADS_SAMPLING,
    RPN_SAMPLING,
    Hyperparameter,
    declared_hyperparameters,
)

T = Hyperparameter("head.num_steps", 2, "T")


def _fake(module: str, name: str, bases=(object,), **attrs) -> type:
    """A class that looks like ``module.name`` (detectron2's, without importing detectron2)."""
    cls = type(name, bases, dict(attrs))
    cls.__module__ = module
    return cls


RetinaNet = _fake("detectron2.modeling.meta_arch.retinanet", "RetinaNet")
GeneralizedRCNN = _fake("detectron2.modeling.meta_arch.rcnn", "GeneralizedRCNN")
RPN = _fake("detectron2.modeling.proposal_generator.rpn", "RPN")
StandardROIHeads = _fake("detectron2.modeling.roi_heads.roi_heads", "StandardROIHeads")


def _names(declared):
    return [h.name for h in declared]


def test_a_class_declaration_is_found_along_its_bases_and_replaced_by_a_subclass_s():
    Method = _fake("proj.meta_arch", "Method", (RetinaNet,), HYPERPARAMETERS=(T,))
    Variant = _fake("proj.meta_arch", "Variant", (Method,))  # inherits Method's
    Other = _fake("proj.meta_arch", "Other", (Method,), HYPERPARAMETERS=())  # introduces none
    assert declared_hyperparameters(Method) == (T,)
    assert declared_hyperparameters(Variant) == (T,)
    assert declared_hyperparameters(Other) == ()
    # A subclass of detectron2's RetinaNet that declares nothing keeps the focal loss's two.
    assert declared_hyperparameters(_fake("proj", "Plain", (RetinaNet,))) == FOCAL_LOSS
    assert _names(FOCAL_LOSS) == ["focal_loss_alpha", "focal_loss_gamma"]


def test_a_class_without_declaration_raises_saying_where_to_add_it():
    with pytest.raises(ValueError, match=r"proj\.Undeclared declares no hyper-parameters.*HYPERPARAMETERS = "):
        declared_hyperparameters(_fake("proj", "Undeclared"))


def test_generalized_rcnn_counts_its_proposal_generator_and_roi_heads_declarations():
    parts = {"proposal_generator": RPN, "roi_heads": StandardROIHeads}
    faster_rcnn = declared_hyperparameters(GeneralizedRCNN, parts)
    # 2 (RPN sampling) + 2 (ROI sampling), prefixed by the part's config key, the RPN's first.
    assert _names(faster_rcnn) == [
        "proposal_generator.batch_size_per_image", "proposal_generator.positive_fraction",
        "roi_heads.batch_size_per_image", "roi_heads.positive_fraction",
    ]  # fmt: skip
    assert [h.default for h in faster_rcnn] == [256, 0.5, 512, 0.25]

    # A method replacing the RPN (ResObj: no sampling, T) keeps detectron2's ROI heads: 1 + 2.
    ResObjRPN = _fake("resobj.rpn", "ResObjRPN", (RPN,), HYPERPARAMETERS=(T,))
    assert _names(declared_hyperparameters(GeneralizedRCNN, {**parts, "proposal_generator": ResObjRPN})) == [
        "proposal_generator.head.num_steps", "roi_heads.batch_size_per_image", "roi_heads.positive_fraction"]
    # A method keeping the RPN's sampling and adding its own (SCB): 2 + 2 + 2.
    SCB = (Hyperparameter("scb_alpha", 1.0, "α"), Hyperparameter("scb_beta", 3.0, "β"))
    ScbRPN = _fake("scale_balanced.rpn", "ScaleBalancedRPN", (RPN,), HYPERPARAMETERS=RPN_SAMPLING + SCB)
    assert len(declared_hyperparameters(GeneralizedRCNN, {**parts, "proposal_generator": ScbRPN})) == 6
    # A part the model does not have adds nothing (Fast R-CNN on precomputed proposals).
    assert declared_hyperparameters(GeneralizedRCNN, {**parts, "proposal_generator": None}) == tuple(
        Hyperparameter(f"roi_heads.{h.name}", h.default, h.meaning) for h in ROI_HEADS_SAMPLING)
    # A GeneralizedRCNN subclass that declares its whole set is taken as it is.
    Own = _fake("proj", "OwnRCNN", (GeneralizedRCNN,), HYPERPARAMETERS=(T,))
    assert declared_hyperparameters(Own, parts) == (T,)


def test_generalized_rcnn_without_its_parts_raises_naming_them():
    with pytest.raises(ValueError, match=r"GeneralizedRCNN.*\['proposal_generator', 'roi_heads'\]"):
        declared_hyperparameters(GeneralizedRCNN)
    with pytest.raises(ValueError, match=r"\['roi_heads'\]"):
        declared_hyperparameters(GeneralizedRCNN, {"proposal_generator": RPN})


def test_the_comparison_resolves_a_config_s_classes_and_reads_the_values_it_sets():
    """A config's model node (here plain dicts; LazyConfig nodes behave alike): GeneralizedRCNN's
    declaration comes from model.proposal_generator._target_ and model.roi_heads._target_; values
    the config sets win over the declared defaults, unset ones keep them."""
    from d2imbalance.analysis.comparison import config_hyperparameters

    ResObjRPN = _fake("resobj.rpn", "ResObjRPN", (RPN,), HYPERPARAMETERS=(T,))
    model = {"_target_": GeneralizedRCNN, "backbone": {"_target_": object},
             "proposal_generator": {"_target_": ResObjRPN, "head": {"num_steps": 3}},
             "roi_heads": {"_target_": StandardROIHeads, "batch_size_per_image": 128}}  # fmt: skip
    cls, parts, values = config_hyperparameters(model)
    assert cls == "detectron2.modeling.meta_arch.rcnn.GeneralizedRCNN"
    assert parts == {"proposal_generator": "resobj.rpn.ResObjRPN",
                     "roi_heads": "detectron2.modeling.roi_heads.roi_heads.StandardROIHeads"}  # fmt: skip
    assert [(h.name, h.default, v) for h, v in values] == [
        ("proposal_generator.head.num_steps", 2, 3),  # set by the config
        ("roi_heads.batch_size_per_image", 512, 128),  # set by the config
        ("roi_heads.positive_fraction", 0.25, 0.25),  # not set: the declared default
    ]
    # A one-stage model: its own declaration; parts are not reported.
    Method = _fake("proj", "Method", (RetinaNet,), HYPERPARAMETERS=(T,))
    assert config_hyperparameters({"_target_": Method, "head": {"num_steps": 1}})[1:] == ({}, ((T, 1),))


def test_the_pure_cores_declare_the_papers_hyper_parameters():
    """Importable without detectron2: the tuples live in the pure modules."""
    from objconf.fusion import HYPERPARAMETERS as objconf
    from resobj.cascade import HYPERPARAMETERS as resobj
    from scale_balanced.weights import HYPERPARAMETERS as scb

    assert [(h.name, h.default) for h in resobj] == [("head.num_steps", 2)]  # T, Table 2c
    assert [(h.name, h.default) for h in scb] == [("scb_alpha", 1.0), ("scb_beta", 3.0)]  # Eq. 3
    assert [(h.name, h.default) for h in objconf] == [("fusion_alpha", 0.4)]  # Eq. 11, Table 5


# ------------------------------------------------------------------------------------------------
# detectron2


@pytest.mark.detectron2
def test_detectron2_class_names_are_the_declared_ones():
    from detectron2.modeling import GeneralizedRCNN as D2RCNN, RetinaNet as D2RetinaNet, StandardROIHeads as D2ROI
    from detectron2.modeling.proposal_generator import RPN as D2RPN

    from d2imbalance.analysis.hyperparameters import COMPOSITE_DETECTORS, qualified_name

    assert set(DETECTRON2_DECLARATIONS) == {qualified_name(c) for c in (D2RetinaNet, D2RPN, D2ROI)}
    assert set(COMPOSITE_DETECTORS) == {qualified_name(D2RCNN)}


@pytest.mark.detectron2
def test_every_project_model_class_declares_what_it_keeps_and_adds():
    from objconf import RetinaNetConf
    from resobj import ResObjRPN, RetinaNetResObj, YOLOv3ResObj
    from scale_balanced import RefineDetSCB, RetinaNetSCB, ScaleBalancedROIHeads, ScaleBalancedRPN, SSDSCB

    from d2imbalance.modeling import SSD, YOLOv3, RefineDet

    scb = ["scb_alpha", "scb_beta"]
    expected = {
        RetinaNetResObj: ["head.num_steps"],  # the focal loss is gone
        ResObjRPN: ["head.num_steps"],  # the anchor sampling is gone
        YOLOv3ResObj: ["head.num_steps"],  # YOLOv3 declares none
        RetinaNetSCB: ["focal_loss_alpha", "focal_loss_gamma", *scb],
        ScaleBalancedRPN: ["batch_size_per_image", "positive_fraction", *scb],
        ScaleBalancedROIHeads: ["batch_size_per_image", "positive_fraction", *scb],
        SSDSCB: ["neg_pos_ratio", *scb],
        RefineDetSCB: ["neg_pos_ratio", "negative_anchor_threshold", *scb],
        RetinaNetConf: ["focal_loss_alpha", "focal_loss_gamma", "fusion_alpha"],
        SSD: ["neg_pos_ratio"],
        RefineDet: ["neg_pos_ratio", "negative_anchor_threshold"],
        YOLOv3: [],
    }
    assert {c.__name__: _names(declared_hyperparameters(c)) for c in expected} == {
        c.__name__: names for c, names in expected.items()}


@pytest.mark.detectron2
def test_config_counts_and_values_come_from_the_config_not_the_defaults():
    """GeneralizedRCNN configs resolve their parts from model.proposal_generator / model.roi_heads;
    values are the config's (shapes ROI heads sample 128, IoU-aware fuses with alpha 0.5)."""
    from d2imbalance.analysis.comparison import describe_config

    faster = describe_config("Baselines/faster_rcnn_shapes.py")
    assert faster.model_class == "detectron2.modeling.meta_arch.rcnn.GeneralizedRCNN"
    assert [(h.name, v) for h, v in faster.hyperparameters] == [
        ("proposal_generator.batch_size_per_image", 256), ("proposal_generator.positive_fraction", 0.5),
        ("roi_heads.batch_size_per_image", 128), ("roi_heads.positive_fraction", 0.25)]
    resobj = describe_config("ResObj/faster_rcnn_resobj_shapes.py", ["train.max_iter=7"])
    assert resobj.max_iter == 7
    assert resobj.parts["proposal_generator"] == "resobj.rpn.ResObjRPN"
    assert [(h.name, v) for h, v in resobj.hyperparameters] == [
        ("proposal_generator.head.num_steps", 2), ("roi_heads.batch_size_per_image", 128),
        ("roi_heads.positive_fraction", 0.25)]
    iou_aware = describe_config("ObjConf/retinanet_iou_aware_shapes.py")
    assert [(h.name, h.default, v) for h, v in iou_aware.hyperparameters][-1] == ("fusion_alpha", 0.4, 0.5)
    assert len(describe_config("ResObj/yolov3_resobj_shapes.py").hyperparameters) == 1
