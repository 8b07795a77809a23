"""YOLOv3 (d2imbalance/modeling/yolov3.py, darknet.py): shapes, parameter count, Darknet's targets, loss
and inference on crafted cases, multi-scale batches and the letterbox padding."""
import math

import pytest
import torch

pytestmark = pytest.mark.detectron2

LN2 = math.log(2.0)


def softplus(x: float) -> float:
    return math.log1p(math.exp(x))


def tiny_yolo(num_classes=3, input_size=64, **kwargs):
    """Darknet-53 at 1/16 width (channels 2 .. 64) and its YOLOv3 head."""
    from detectron2.layers import ShapeSpec

    from d2imbalance.modeling import Darknet53, YOLOv3, YOLOv3Head

    torch.manual_seed(0)
    backbone = Darknet53(width_ratio=1 / 16)
    shapes = backbone.output_shape()
    head = YOLOv3Head(
        input_shape=[ShapeSpec(channels=shapes[f].channels) for f in ("dark3", "dark4", "dark5")],
        num_classes=num_classes,
    )
    return YOLOv3(backbone=backbone, head=head, num_classes=num_classes, input_size=input_size, **kwargs)


def instances(size, boxes, classes):
    from detectron2.structures import Boxes, Instances

    return Instances(size, gt_boxes=Boxes(torch.tensor(boxes, dtype=torch.float32).view(-1, 4)),
                     gt_classes=torch.tensor(classes, dtype=torch.long))


def label(model, outputs, gt, size=64):
    """Targets of ``outputs`` (N, R, 5 + K) on a size x size input with three outputs of strides 8, 16, 32."""
    maps = [torch.zeros(outputs.shape[0], 3 * outputs.shape[2], size // s, size // s) for s in (8, 16, 32)]
    grid = model.prediction_grid(maps)
    return model.label_predictions(outputs, grid, gt, (size, size)), grid


def num_predictions(size=64):
    return sum(3 * (size // s) ** 2 for s in (8, 16, 32))


def flat_index(level, x, y, slot, size=64):
    """Index of (output ``level``, column x, row y, anchor slot) in the (N, R) layout."""
    widths = [size // s for s in (8, 16, 32)]
    start = sum(3 * w * w for w in widths[:level])
    return start + (y * widths[level] + x) * 3 + slot


def test_darknet53_outputs_and_darknet_layer_order():
    from d2imbalance.modeling import Darknet53

    backbone = Darknet53(width_ratio=1 / 16)
    out = backbone(torch.zeros(2, 3, 96, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "dark3": (2, 16, 12, 8), "dark4": (2, 32, 6, 4), "dark5": (2, 64, 3, 2)
    }
    assert {k: (s.channels, s.stride) for k, s in backbone.output_shape().items()} == {
        "dark3": (16, 8), "dark4": (32, 16), "dark5": (64, 32)
    }
    layers = backbone.darknet_layers()
    # 1 stem + per stage 1 downsampling + 2 per residual block (1, 2, 8, 8, 4 blocks) = 52 convolutions.
    assert len(layers) == 52
    assert [layers[i].conv.stride[0] for i in (0, 1, 4, 9)] == [1, 2, 2, 2]
    assert [layers[i].conv.kernel_size[0] for i in (2, 3)] == [1, 3]  # the first residual block
    # Only the stages up to the last requested output are built.
    assert len(Darknet53(width_ratio=1 / 16, out_features=("dark3",)).darknet_layers()) == 1 + 3 + 5 + 17


def test_darknet_layers_use_leaky_relu_and_darknet_init():
    from d2imbalance.modeling import DarknetConv

    block = DarknetConv(64, 32, 3)
    assert block.conv.bias is None and block[2].negative_slope == 0.1
    assert block.conv.weight.std().item() == pytest.approx(math.sqrt(2 / (9 * 64)), rel=0.05)


def test_the_80_class_yolov3_has_the_published_61_9m_parameters():
    """61,949,149 is the count of YOLOv3-416/608 (80 classes) that PyTorch ports publish (e.g.
    ultralytics' model summary): every trainable tensor, i.e. convolution weights, the three prediction
    convolutions' biases and BatchNorm's weight and bias, without BatchNorm's running statistics."""
    from detectron2.config import instantiate

    from d2imbalance import get_config

    model = instantiate(get_config("Baselines/yolov3_darknet53_608.py").model)
    assert sum(p.numel() for p in model.parameters()) == 61949149
    assert sum(p.numel() for p in model.backbone.parameters()) == 40584928  # Darknet-53 without its classifier
    layers = model.backbone.darknet_layers() + model.head.darknet_layers()
    assert len(layers) == 75  # yolov3.cfg's 75 [convolutional] layers
    # The prediction convolutions (yolov3.cfg layers 81, 93, 105): plain convolutions with 3 x 85 outputs.
    assert [(type(layers[i]).__name__, layers[i].out_channels) for i in (58, 66, 74)] == [("Conv2d", 255)] * 3


def test_head_outputs_are_anchor_major_per_output():
    model = tiny_yolo(num_classes=3)
    maps = model.head(list(model.backbone(torch.zeros(1, 3, 64, 64)).values()))
    assert [tuple(m.shape) for m in maps] == [(1, 24, 8, 8), (1, 24, 4, 4), (1, 24, 2, 2)]
    flat = model.flatten_outputs([torch.arange(24.0).view(1, 24, 1, 1)], 8)
    assert flat[0, 1].tolist() == list(range(8, 16))  # anchor 1's x, y, w, h, obj, 3 classes


def test_anchors_and_masks_are_yolov3_cfgs():
    from d2imbalance.modeling import YOLOV3_ANCHOR_MASKS, YOLOV3_COCO_ANCHORS

    # The [yolo] sections of pjreddie/darknet cfg/yolov3.cfg, as written there.
    cfg_anchors = "10,13,  16,30,  33,23,  30,61,  62,45,  59,119,  116,90,  156,198,  373,326"
    values = [int(v) for v in cfg_anchors.replace(" ", "").split(",")]
    assert YOLOV3_COCO_ANCHORS == tuple(zip(values[0::2], values[1::2]))
    # mask = 6,7,8 on the stride-32 output, 3,4,5 on 16, 0,1,2 on 8 (finest first here).
    assert YOLOV3_ANCHOR_MASKS == ((0, 1, 2), (3, 4, 5), (6, 7, 8))


def test_shape_matched_anchor_by_hand():
    from d2imbalance.modeling import YOLOV3_COCO_ANCHORS, shape_matched_anchors

    anchors = torch.tensor(YOLOV3_COCO_ANCHORS, dtype=torch.float32)
    # 100x100: IoU with 116x90 is 9000 / 11440 = 0.787, the best (59x119: 5900 / 11121 = 0.531).
    # 12x14 fits 10x13 (130 / 168). 16x30 is anchor 1 exactly.
    best = shape_matched_anchors(torch.tensor([[100.0, 100.0], [12.0, 14.0], [16.0, 30.0], [0.0, 0.0]]), anchors)
    assert best.tolist() == [6, 0, 1, 0]


def test_targets_best_of_nine_anchor_at_the_centre_cell():
    from detectron2.utils.events import EventStorage

    model = tiny_yolo()
    outputs = torch.zeros(1, num_predictions(), 8)
    # A 12x14 box centred at (20, 28): anchor 0 (output 0, stride 8), cell (2, 3).
    # A 30x60 box centred at (24, 40): anchor 3 (30x61, output 1, stride 16, slot 0), cell (1, 2).
    gt = [instances((64, 64), [[14, 21, 26, 35], [9, 10, 39, 70]], [1, 2])]
    with EventStorage():
        targets, _ = label(model, outputs, gt)
    first, second = flat_index(0, 2, 3, 0), flat_index(1, 1, 2, 0)
    assert targets.positive_index.tolist() == [first, second]
    assert (targets.objectness == 1).nonzero()[:, 1].tolist() == [first, second]
    expected_box = [[20 / 8 - 2, 28 / 8 - 3, math.log(12 / 10), math.log(14 / 13)],
                    [24 / 16 - 1, 40 / 16 - 2, math.log(30 / 30), math.log(60 / 61)]]
    assert torch.allclose(targets.box, torch.tensor(expected_box))
    assert torch.allclose(targets.box_weight, torch.tensor([2 - 12 * 14 / 4096, 2 - 30 * 60 / 4096]))
    assert targets.classes.tolist() == [[0, 1, 0], [0, 0, 1]]


def test_centre_on_the_input_border_takes_the_last_cell():
    """A 12x14 box centred on the right border (x = 64 of a 64-wide input) belongs to column 7, the last
    of output 0, with an x offset of 1 (Darknet's i = (int)(truth.x * l.w) would index past the row)."""
    model = tiny_yolo()
    outputs = torch.zeros(1, num_predictions(), 8)
    targets, _ = label(model, outputs, [instances((64, 64), [[58, 21, 70, 35]], [0])])
    assert targets.positive_index.tolist() == [flat_index(0, 7, 3, 0)]
    assert targets.box[0, :2].tolist() == pytest.approx([1.0, 28 / 8 - 3])


def test_two_objects_in_one_cell_keep_the_last_box_and_both_classes():
    model = tiny_yolo()
    outputs = torch.zeros(1, num_predictions(), 8)
    # Both best fit anchor 0 at cell (2, 3) of output 0; a third, 16x30, takes anchor 1 in the same cell.
    gt = [instances((64, 64), [[14, 21, 26, 35], [16, 22, 26, 34], [14, 13, 30, 43]], [0, 2, 1])]
    targets, _ = label(model, outputs, gt)
    shared, other = flat_index(0, 2, 3, 0), flat_index(0, 2, 3, 1)
    assert targets.positive_index.tolist() == [shared, other]
    assert targets.classes.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert torch.allclose(targets.box[0], torch.tensor([21 / 8 - 2, 28 / 8 - 3, math.log(10 / 10), math.log(12 / 13)]))
    assert targets.box_weight[0].item() == pytest.approx(2 - 10 * 12 / 4096)


def test_prediction_overlapping_a_truth_above_ignore_thresh_is_ignored():
    model = tiny_yolo()
    outputs = torch.zeros(1, num_predictions(), 8)
    # A 16x30 box centred at (24, 24): anchor 1, positive at cell (3, 3) of output 0. The prediction at
    # cell (2, 2) with anchor 1 is steered onto it: x = (2 + sigmoid(20)) * 8 = 24, y likewise, IoU ~ 1.
    steered = flat_index(0, 2, 2, 1)
    outputs[0, steered, :2] = 20.0
    gt = [instances((64, 64), [[16, 9, 32, 39]], [0])]
    targets, _ = label(model, outputs, gt)
    assert targets.positive_index.tolist() == [flat_index(0, 3, 3, 1)]
    assert (targets.objectness == -1).nonzero()[:, 1].tolist() == [steered]
    # 3 px to the right of the box (cell (3, 2): x = (3 + 0.375) * 8 = 27), IoU 390 / 570 = 0.684: a
    # negative at ignore_thresh 0.7, ignored at 0.6.
    outputs[0, steered, :2] = 0.0
    shifted = flat_index(0, 3, 2, 1)
    outputs[0, shifted, 0], outputs[0, shifted, 1] = math.log(0.375 / 0.625), 20.0
    targets, _ = label(model, outputs, gt)
    assert (targets.objectness == -1).sum() == 0 and targets.objectness[0, shifted] == 0
    model.ignore_thresh = 0.6
    targets, _ = label(model, outputs, gt)
    assert (targets.objectness == -1).nonzero()[:, 1].tolist() == [shifted]


def test_anchor_outside_every_mask_gives_no_positive():
    model = tiny_yolo(anchor_masks=((1, 2, 3), (3, 4, 5), (6, 7, 8)))  # anchor 0 is predicted nowhere
    outputs = torch.zeros(1, num_predictions(), 8)
    targets, _ = label(model, outputs, [instances((64, 64), [[14, 21, 26, 35]], [1])])
    assert len(targets.positive_index) == 0 and (targets.objectness == 1).sum() == 0


def test_loss_by_hand():
    """One 12x14 object; every output 0 except objectness logits 2: each negative costs softplus(2), the
    positive softplus(-2); x, y: (2 - wh) BCE(0, 0.5) = (2 - wh) ln 2 each; w, h: (2 - wh) / 2 log^2;
    classes 3 ln 2. Two images, one without objects, so everything is divided by 2."""
    from detectron2.utils.events import EventStorage

    model = tiny_yolo()
    outputs = torch.zeros(2, num_predictions(), 8)
    outputs[..., 4] = 2.0
    gt = [instances((64, 64), [[14, 21, 26, 35]], [1]), instances((64, 64), [], [])]
    with EventStorage() as storage:
        targets, _ = label(model, outputs, gt)
        losses = model.losses(outputs, [], targets)
    weight = 2 - 12 * 14 / 4096
    r = num_predictions()
    # No prediction of zero outputs overlaps the box by IoU > 0.7 but its own (10x13 at the centre: 0.774).
    assert (targets.objectness == -1).sum() == 0
    assert losses["loss_obj"].item() == pytest.approx(((2 * r - 1) * softplus(2) + softplus(-2)) / 2, rel=1e-5)
    assert losses["loss_xy"].item() == pytest.approx(weight * 2 * LN2 / 2, rel=1e-5)
    assert losses["loss_wh"].item() == pytest.approx(weight * 0.5 * (math.log(1.2) ** 2 + math.log(14 / 13) ** 2) / 2, rel=1e-5)
    assert losses["loss_cls"].item() == pytest.approx(3 * LN2 / 2, rel=1e-5)
    assert storage.latest()["yolo/num_pos"][0] == 0.5


def test_loss_gradients_are_darknets_deltas():
    """Darknet writes delta = scale (t - sigmoid(x)) for x, y and scale (t - w) for w, h onto the raw
    outputs; the loss gradient here is minus that delta divided by the batch."""
    from detectron2.utils.events import EventStorage

    model = tiny_yolo()
    outputs = torch.randn(1, num_predictions(), 8) * 0.1
    outputs.requires_grad_(True)
    gt = [instances((64, 64), [[14, 21, 26, 35]], [1])]
    with EventStorage():
        targets, _ = label(model, outputs.detach(), gt)
        losses = model.losses(outputs, [], targets)
    (losses["loss_xy"] + losses["loss_wh"]).backward()
    p = targets.positive_index.item()
    weight = targets.box_weight.item()
    raw = outputs[0, p, :4].detach()
    delta = torch.cat([weight * (targets.box[0, :2] - raw[:2].sigmoid()), weight * (targets.box[0, 2:] - raw[2:])])
    assert torch.allclose(outputs.grad[0, p, :4], -delta, atol=1e-6)


def test_image_without_objects_trains_only_negative_objectness():
    from detectron2.utils.events import EventStorage

    model = tiny_yolo()
    model.train()
    batch = [{"image": torch.rand(3, 64, 64) * 255, "instances": instances((64, 64), [], [])}]
    with EventStorage():
        losses = model(batch)
    assert losses["loss_xy"].item() == losses["loss_wh"].item() == losses["loss_cls"].item() == 0.0
    assert losses["loss_obj"].item() > 0
    sum(losses.values()).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_inference_thresholds_scores_and_class_wise_nms():
    model = tiny_yolo()
    r = num_predictions()
    outputs = torch.full((1, r, 8), -20.0)
    outputs[..., :4] = 0.0
    a, b, c = flat_index(0, 2, 3, 0), flat_index(0, 3, 3, 0), flat_index(0, 5, 5, 0)
    outputs[0, a, 4], outputs[0, a, 5 + 1] = 3.0, 1.0  # score sigmoid(3) sigmoid(1)
    outputs[0, b, 4], outputs[0, b, 5 + 1] = 2.0, 1.0  # 8 px right of a: IoU 2/18 with a, kept
    outputs[0, c, 4], outputs[0, c, 5 + 2] = -5.5, 20.0  # objectness 0.0041 <= 0.005: dropped
    grid = model.prediction_grid([torch.zeros(1, 24, 64 // s, 64 // s) for s in (8, 16, 32)])
    boxes = model.decode_boxes(outputs, grid)
    result = model.inference_single_image(boxes[0], outputs[0, :, 4].sigmoid(), outputs[0, :, 5:].sigmoid(), grid, (64, 64))
    sig = torch.sigmoid
    assert result.scores.tolist() == pytest.approx([(sig(torch.tensor(3.0)) * sig(torch.tensor(1.0))).item(),
                                                    (sig(torch.tensor(2.0)) * sig(torch.tensor(1.0))).item()])
    assert result.pred_classes.tolist() == [1, 1]
    assert result.pred_boxes.tensor[0].tolist() == pytest.approx([15.0, 21.5, 25.0, 34.5])  # 10x13 at (20, 28)
    # Same place as a, more overlap: suppressed within its class, kept as another class.
    d = flat_index(0, 2, 3, 1)
    outputs[0, d, :4] = torch.tensor([0.0, 0.0, math.log(12 / 16), math.log(13 / 30)])  # 12x13 at (20, 28): IoU 130/156
    outputs[0, d, 4], outputs[0, d, 5 + 1] = 1.0, 1.0
    boxes = model.decode_boxes(outputs, grid)
    result = model.inference_single_image(boxes[0], outputs[0, :, 4].sigmoid(), outputs[0, :, 5:].sigmoid(), grid, (64, 64))
    assert len(result) == 2
    outputs[0, d, 5 + 1], outputs[0, d, 5 + 0] = -20.0, 1.0
    result = model.inference_single_image(model.decode_boxes(outputs, grid)[0], outputs[0, :, 4].sigmoid(),
                                          outputs[0, :, 5:].sigmoid(), grid, (64, 64))
    assert sorted(result.pred_classes.tolist()) == [0, 1, 1]


def test_test_images_are_letterboxed_with_grey():
    model = tiny_yolo(input_size=64)
    model.eval()
    images = model.preprocess_image([{"image": torch.zeros(3, 40, 64)}])
    assert tuple(images.tensor.shape) == (1, 3, 64, 64) and images.image_sizes == [(40, 64)]
    assert images.tensor[0, :, :40].eq(0).all() and images.tensor[0, :, 40:].eq(0.5).all()
    with pytest.raises(ValueError, match="ResizeShortestEdge"):
        model.preprocess_image([{"image": torch.zeros(3, 40, 96)}])


def test_multiscale_schedule_resizes_the_batch_and_its_boxes():
    from detectron2.utils.events import EventStorage

    from d2imbalance.data.darknet_augmentation import MultiScaleSchedule

    model = tiny_yolo(multiscale=MultiScaleSchedule(sizes=(64,), period=10))
    model.train()
    seen = []
    model.backbone.register_forward_hook(lambda module, args, out: seen.append(tuple(args[0].shape)))
    batch = [{"image": torch.rand(3, 128, 128) * 255, "instances": instances((128, 128), [[14, 21, 26, 35]], [1])}]
    captured = {}
    original = model.label_predictions

    def spy(outputs, grid, gt, input_hw):
        captured["boxes"], captured["hw"] = gt[0].gt_boxes.tensor.clone(), input_hw
        return original(outputs, grid, gt, input_hw)

    model.label_predictions = spy
    with EventStorage():
        model(batch)
    assert seen == [(1, 3, 64, 64)] and captured["hw"] == (64, 64)
    assert captured["boxes"].tolist() == [[7.0, 10.5, 13.0, 17.5]]
    # Without a schedule the batch goes in as it comes.
    model.multiscale = None
    with EventStorage():
        model(batch)
    assert seen[-1] == (1, 3, 128, 128)


def test_constructor_checks_name_the_fix():
    with pytest.raises(ValueError, match="one mask per output"):
        tiny_yolo(anchor_masks=((0, 1, 2), (3, 4, 5)))
    with pytest.raises(ValueError, match="there are 9 anchors"):
        tiny_yolo(anchor_masks=((0, 1, 2), (3, 4, 5), (6, 7, 9)))
    with pytest.raises(ValueError, match="multiple of the largest stride"):
        tiny_yolo(input_size=100)


def test_polynomial_burn_in():
    from fvcore.common.param_scheduler import ConstantParamScheduler

    from d2imbalance.schedules import PolynomialBurnIn

    schedule = PolynomialBurnIn(ConstantParamScheduler(0.5), burn_in=0.1, power=4)
    assert schedule(0.0) == 0.0
    assert schedule(0.05) == pytest.approx(0.5 / 16)
    assert schedule(0.1) == schedule(0.7) == 0.5
    with pytest.raises(ValueError, match="burn_in"):
        PolynomialBurnIn(ConstantParamScheduler(1.0), burn_in=0.0)
    for power in (0.0, -1.0):  # a power of 0 would be no burn-in at all
        with pytest.raises(ValueError, match="power"):
            PolynomialBurnIn(ConstantParamScheduler(1.0), burn_in=0.1, power=power)


def test_polynomial_burn_in_counted_in_iterations():
    """burn_in=100 iterations of a 400-iteration run is the fraction 0.25; of a 50-iteration run, longer
    than the run, so the whole run ramps."""
    from fvcore.common.param_scheduler import ConstantParamScheduler

    from d2imbalance.schedules import PolynomialBurnIn

    schedule = PolynomialBurnIn(ConstantParamScheduler(0.5), burn_in=100, power=4, max_iter=400)
    assert schedule(50 / 400) == pytest.approx(0.5 / 16)
    assert schedule(100 / 400) == schedule(0.9) == 0.5
    short = PolynomialBurnIn(ConstantParamScheduler(0.5), burn_in=100, power=4, max_iter=50)
    assert short(25 / 50) == pytest.approx(0.5 * (25 / 100) ** 4)
    one = PolynomialBurnIn(ConstantParamScheduler(0.5), burn_in=1, max_iter=1)  # the smallest valid lengths
    assert one(0.5) == pytest.approx(0.5 / 16)  # Darknet's default power, 4
    for kwargs, match in ((dict(burn_in=0, max_iter=10), "burn_in=0"), (dict(burn_in=10, max_iter=0), "max_iter=0")):
        with pytest.raises(ValueError, match=match):
            PolynomialBurnIn(ConstantParamScheduler(1.0), **kwargs)


@pytest.mark.parametrize(
    "config, burn_in", [("Baselines/yolov3_darknet53_608.py", 1000), ("Baselines/yolov3_shapes.py", 100)]
)
def test_yolov3_burn_in_keeps_its_iterations_when_max_iter_is_overridden(config, burn_in):
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.overrides import apply_overrides

    for max_iter in (300, 5000):
        cfg = apply_overrides(get_config(config), [f"train.max_iter={max_iter}"])
        assert instantiate(cfg.lr_multiplier).burn_in_fraction == pytest.approx(burn_in / max_iter)


def test_yolov3_configs_follow_yolov3_cfg():
    from detectron2.config import instantiate

    from d2imbalance import get_config

    cfg = get_config("Baselines/yolov3_darknet53_608.py")
    assert cfg.model.ignore_thresh == 0.7 and cfg.model.test_score_thresh == 0.005 and cfg.model.test_nms_thresh == 0.45
    assert cfg.dataloader.train.total_batch_size == 64 and cfg.optimizer.lr == 1e-3 and cfg.optimizer.weight_decay == 5e-4
    assert cfg.train.max_iter == 500200
    assert instantiate(cfg.lr_multiplier).burn_in_fraction * 500200 == pytest.approx(1000)
    assert list(cfg.model.multiscale.sizes) == list(range(320, 609, 32)) and cfg.model.multiscale.period == 10
    small = get_config("Baselines/yolov3_darknet53_320.py")
    assert small.model.input_size == 320 and small.dataloader.test.mapper.augmentations[0].max_size == 320
    assert small.dataloader.train.mapper.augmentations[0].size == 608  # trained as the 608 model
