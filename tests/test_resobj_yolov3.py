"""YOLOv3-ResObj (projects/ResObj/resobj/yolov3.py): T = 0 is YOLOv3, and every switch reaches the loss."""
import pytest
import torch

pytestmark = pytest.mark.detectron2


def build(resobj: bool, num_steps=2, seed=0, **kwargs):
    """A 1/16-width YOLOv3 or YOLOv3-ResObj with 3 classes; ``kwargs`` split between head and model."""
    from detectron2.layers import ShapeSpec
    from resobj import YOLOv3ResObj, YOLOv3ResObjHead

    from d2imbalance.modeling import Darknet53, YOLOv3, YOLOv3Head

    head_keys = {"residual_conv_dim", "residual_input", "isolate_residual_grad"}
    head_kwargs = {k: kwargs.pop(k) for k in list(kwargs) if k in head_keys}
    torch.manual_seed(seed)
    backbone = Darknet53(width_ratio=1 / 16)
    input_shape = [ShapeSpec(channels=c) for c in (16, 32, 64)]
    if resobj:
        head = YOLOv3ResObjHead(input_shape=input_shape, num_classes=3, num_steps=num_steps, residual_conv_dim=8, **head_kwargs)
        return YOLOv3ResObj(backbone=backbone, head=head, num_classes=3, input_size=64, **kwargs)
    head = YOLOv3Head(input_shape=input_shape, num_classes=3)
    return YOLOv3(backbone=backbone, head=head, num_classes=3, input_size=64, **kwargs)


def batch():
    from detectron2.structures import Boxes, Instances

    torch.manual_seed(1)
    first = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[14.0, 21, 26, 35], [9, 10, 39, 60]])), gt_classes=torch.tensor([1, 2]))
    second = Instances((64, 64), gt_boxes=Boxes(torch.tensor([[30.0, 30, 62, 50]])), gt_classes=torch.tensor([0]))
    return [{"image": torch.rand(3, 64, 64) * 255, "instances": first},
            {"image": torch.rand(3, 64, 64) * 255, "instances": second}]


def train_losses(model, inputs=None):
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage() as storage:
        losses = model(inputs or batch())
    return losses, storage


def test_t0_is_yolov3_losses_and_detections():
    yolo, resobj = build(False), build(True, num_steps=0)
    assert resobj.load_state_dict(yolo.state_dict(), strict=True)  # the same parameters, nothing added
    expected, _ = train_losses(yolo)
    got, _ = train_losses(resobj)
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    yolo.eval(), resobj.eval()
    image = [{"image": torch.rand(3, 48, 64) * 255}]
    with torch.no_grad():
        a, b = yolo(image)[0]["instances"], resobj(image)[0]["instances"]
    assert len(a) > 0 and torch.equal(a.scores, b.scores) and torch.equal(a.pred_boxes.tensor, b.pred_boxes.tensor)


def test_paper_mode_losses_are_the_cascade_over_yolov3_labels():
    from resobj.cascade import residual_objectness_cascade

    model = build(True, num_steps=2, ignore_thresh=0.3)  # low enough that this untrained model ignores some
    losses, storage = train_losses(model)
    assert set(losses) == {"loss_xy", "loss_wh", "loss_cls", "loss_obj", "loss_res_t1", "loss_res_t2"}
    # Recompute from the head's outputs and YOLOv3's labels.
    from detectron2.utils.events import EventStorage

    inputs = batch()
    with EventStorage():
        images = model.preprocess_image(inputs)
        features = [model.backbone(images.tensor)[f] for f in model.head_in_features]
        predictions = model.head(features)
        outputs, residuals = model.split_predictions(predictions)
        grid = model.prediction_grid(model.prediction_maps(predictions))
        labels = model.label_predictions(outputs, grid, [x["instances"] for x in inputs], (64, 64)).objectness
    assert (labels == 1).sum() == 3 and (labels == -1).sum() > 0  # ignored predictions enter as label -1
    cascade = residual_objectness_cascade(outputs[..., 4], residuals, labels, gate="image", detach=True)
    assert losses["loss_obj"].item() == pytest.approx(cascade.loss_obj.item() / 2, rel=1e-6)
    assert losses["loss_res_t1"].item() == pytest.approx(cascade.loss_res[0].item() / 2, rel=1e-6)
    assert losses["loss_res_t2"].item() == pytest.approx(cascade.loss_res[1].item() / 2, rel=1e-6)
    assert {"train/resobj/obj_pos_t2", "train/resobj/gated_t1", "train/resobj/min_pos_score_t2"} <= set(storage.latest())


def test_gate_switch_reaches_the_cascade():
    from resobj.cascade import residual_objectness_cascade
    from detectron2.utils.events import EventStorage

    torch.manual_seed(3)
    objectness, residuals = torch.randn(2, 50), [torch.randn(2, 50)]
    labels = torch.zeros(2, 50, dtype=torch.long)
    labels[0, :3], labels[1, 10:12] = 1, 1
    # Image 0's positives score high and image 1's low: one batch-wide minimum gates more of image 0.
    objectness[0, :3], objectness[1, 10:12] = 5.0, -5.0
    results = {}
    for gate in ("image", "batch"):
        model = build(True, num_steps=1, gate=gate)
        with EventStorage():
            results[gate] = model.objectness_losses(objectness, residuals, labels)["loss_res_t1"]
        expected = residual_objectness_cascade(objectness, residuals, labels, gate=gate).loss_res[0]
        assert torch.equal(results[gate], expected)
    assert results["image"] != results["batch"]


@pytest.mark.parametrize("isolate", [True, False])
def test_isolate_residual_grad_keeps_residual_losses_out_of_the_detector(isolate):
    model = build(True, num_steps=1, isolate_residual_grad=isolate)
    losses, _ = train_losses(model)
    losses["loss_res_t1"].backward()
    shared = model.head.out3.conv.weight.grad  # the convolution o_0 and r_1 both read from
    residual = model.head.res_scores[0][0].weight.grad
    assert residual is not None and residual.abs().sum() > 0
    if isolate:
        assert shared is None or shared.abs().sum() == 0
    else:
        assert shared.abs().sum() > 0


def test_residual_input_switch_changes_the_feature_read():
    objectness = build(True, num_steps=1, residual_input="objectness")
    route = build(True, num_steps=1, residual_input="route")
    # Finest output: the 3x3 head map has the stage's 16 channels, the route map half of them.
    assert objectness.head.res_subnets[0][0].conv.in_channels == 16
    assert route.head.res_subnets[0][0].conv.in_channels == 8
    with pytest.raises(ValueError, match="residual_input"):
        build(True, residual_input="class")


def test_official_mode_is_one_bce_on_the_summed_logit():
    from resobj.cascade import summed_objectness_loss

    with pytest.raises(ValueError, match="isolate_residual_grad=False"):
        build(True, num_steps=1, cascade_mode="official")
    model = build(True, num_steps=2, cascade_mode="official", isolate_residual_grad=False)
    losses, _ = train_losses(model)
    assert set(losses) == {"loss_xy", "loss_wh", "loss_cls", "loss_obj"}
    from detectron2.utils.events import EventStorage

    torch.manual_seed(4)
    objectness, residuals = torch.randn(2, 30), [torch.randn(2, 30), torch.randn(2, 30)]
    labels = torch.randint(-1, 2, (2, 30))
    with EventStorage():
        got = model.objectness_losses(objectness, residuals, labels)["loss_obj"]
    assert torch.equal(got, summed_objectness_loss(objectness, residuals, labels))


def test_test_objectness_step_selects_the_scored_logit():
    objectness, residuals = torch.randn(1, 20), [torch.randn(1, 20), torch.randn(1, 20)]
    assert torch.equal(build(True, test_objectness_step=0).inference_objectness(objectness, residuals), objectness)
    final = build(True).inference_objectness(objectness, residuals)
    assert torch.allclose(final, objectness + residuals[0] + residuals[1])
    with pytest.raises(ValueError, match="outside 0..2"):
        build(True, test_objectness_step=3).inference_objectness(objectness, residuals)


def test_resobj_configs_change_only_the_objectness():
    from d2imbalance import get_config

    for size in ("320", "608"):
        base = get_config(f"Baselines/yolov3_darknet53_{size}.py")
        cfg = get_config(f"ResObj/yolov3_resobj_darknet53_{size}.py")
        assert cfg.model.head.num_steps == 2 and cfg.model.head.isolate_residual_grad is True
        assert cfg.model.cascade_mode == "paper" and cfg.model.head.residual_input == "objectness"
        assert cfg.model.input_size == base.model.input_size == int(size)
        assert cfg.optimizer.lr == base.optimizer.lr and cfg.train.max_iter == base.train.max_iter
    shapes = get_config("ResObj/yolov3_resobj_shapes.py")
    assert shapes.model.backbone.width_ratio == get_config("Baselines/yolov3_shapes.py").model.backbone.width_ratio
