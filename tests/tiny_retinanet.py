"""A RetinaNet small enough to train a step in a fraction of a second on CPU, shared by the tests of the
methods that subclass it (d2imbalance.modeling.retinanet.FocalFreeRetinaNet). Needs detectron2."""
import torch

LEVELS = ["p3", "p4", "p5", "p6", "p7"]


def tiny_retinanet_parts(num_classes: int = 3, prior_prob: float = 0.01) -> dict:
    """RetinaNet's constructor arguments: a ResNet of one narrow BasicBlock per stage, a 16-channel FPN
    (P3-P7), a one-conv head with 3 anchors per position, RetinaNet's matcher (0.4 / 0.5) and unit box
    weights. Seeds torch's global generator (0) first, so the weights are the same on every call."""
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.anchor_generator import DefaultAnchorGenerator
    from detectron2.modeling.backbone import FPN, BasicStem, ResNet
    from detectron2.modeling.backbone.fpn import LastLevelP6P7
    from detectron2.modeling.backbone.resnet import BasicBlock
    from detectron2.modeling.box_regression import Box2BoxTransform
    from detectron2.modeling.matcher import Matcher
    from detectron2.modeling.meta_arch.retinanet import RetinaNetHead

    torch.manual_seed(0)
    widths = [8, 8, 16, 24, 32]
    stages = [
        ResNet.make_stage(BasicBlock, 1, in_channels=widths[i], out_channels=widths[i + 1],
                          stride_per_block=[1 if i == 0 else 2], norm="")
        for i in range(4)
    ]  # fmt: skip
    bottom_up = ResNet(BasicStem(3, 8, norm=""), stages, out_features=["res3", "res4", "res5"])
    backbone = FPN(bottom_up=bottom_up, in_features=["res3", "res4", "res5"], out_channels=16,
                   top_block=LastLevelP6P7(16, 16, in_feature="p5"))  # fmt: skip
    return dict(
        backbone=backbone,
        head=RetinaNetHead(input_shape=[ShapeSpec(channels=16)] * 5, num_classes=num_classes, num_anchors=3,
                           conv_dims=[16], prior_prob=prior_prob),  # fmt: skip
        head_in_features=LEVELS,
        anchor_generator=DefaultAnchorGenerator(
            sizes=[[16], [32], [64], [128], [256]], aspect_ratios=[0.5, 1.0, 2.0], strides=[8, 16, 32, 64, 128]
        ),
        box2box_transform=Box2BoxTransform(weights=[1.0, 1.0, 1.0, 1.0]),
        anchor_matcher=Matcher([0.4, 0.5], [0, -1, 1], allow_low_quality_matches=True),
        num_classes=num_classes,
        pixel_mean=[103.53, 116.28, 123.675],
        pixel_std=[57.375, 57.12, 58.395],
    )


def train_step(model, batch):
    """One training forward and backward of a detectron2 detector on ``batch``: (its loss dict, the
    EventStorage scalars it wrote)."""
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        sum(losses.values()).backward()
    return losses, {k: v[0] for k, v in storage.latest().items()}
