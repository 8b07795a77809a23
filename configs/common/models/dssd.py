"""DSSD321 / DSSD513 (Fu et al. 2017, arXiv 1701.06659) as an SSD: d2imbalance.modeling.DSSDResNet
(ResNet-101 with a dilated conv5_x, residual extra layers, the deconvolution modules of Fig. 3) and
DSSDHead (the prediction module of Fig. 2 (c) before SSD's 3x3 class and box convolutions). Matching,
3:1 mining, loss and inference are SSD's (configs/common/models/ssd.py).

Default boxes (§3, "Training"): aspect ratios 1.6, 2, 3 and their inverses plus SSD's two squares on
every map (8 per location): DSSD321 on maps 40, 20, 10, 5, 3, 1 (17080 boxes), DSSD513 on 64, 32, ..., 1
(43688), not clipped, sizes by SSD's recipe (``ssd_prior_sizes``). ``model`` is DSSD321 for the 20 VOC
classes with the boxes of the authors' VOC script (ssd_pascal_resnet_deconv_321.py: s_k from 20% to 95%,
the first map 10%). Images are BGR with detectron2's MSRA mean and unit std, as the ``R-101.pkl``
ImageNet weights expect; the DSSD configs set their mappers' image_format to match.

``dssd_model(...)`` builds the model config for another input size, width or norm.
"""
from detectron2.config import LazyCall as L
from detectron2.layers import ShapeSpec
from detectron2.modeling.box_regression import Box2BoxTransform

from d2imbalance.modeling import SSD, SSD_BOX_WEIGHTS, DSSDHead, DSSDResNet, SSDAnchorGenerator, ssd_prior_sizes

# The prediction maps' channels at width 1 (decoder 512, the top encoder map 1024) and prior steps.
_CHANNELS = {321: (512,) * 5 + (1024,), 513: (512,) * 6 + (1024,)}
_STEPS = {321: (8, 16, 32, 64, 107, 321), 513: (8, 16, 32, 64, 128, 256, 513)}
ASPECT_RATIOS = (1.6, 2.0, 3.0)  # §3 "Training", on every map, each with its inverse


def dssd_model(
    input_size=321, *, prior_ratios=(20, 95, (10, 20)), num_classes=20, depth=101, width_ratio=1.0,
    norm="FrozenBN", freeze_at=2, extra_norm="", decoder_norm="BN",
):  # fmt: skip
    """The LazyCall of DSSD{input_size}: ``prior_ratios`` = (min_ratio, max_ratio, first_ratios) of
    ``ssd_prior_sizes``; the other arguments are DSSDResNet's (``width_ratio`` also scales the head)."""

    def width(c):
        return max(1, int(round(c * width_ratio)))

    num_maps = len(_STEPS[input_size])
    min_sizes, max_sizes = ssd_prior_sizes(input_size, num_maps, prior_ratios[0], prior_ratios[1], prior_ratios[2])
    return L(SSD)(
        backbone=L(DSSDResNet)(
            input_size=input_size, depth=depth, width_ratio=width_ratio, norm=norm, freeze_at=freeze_at,
            extra_norm=extra_norm, decoder_norm=decoder_norm,
        ),
        head=L(DSSDHead)(
            input_shape=[ShapeSpec(channels=width(c)) for c in _CHANNELS[input_size]],
            num_classes="${..num_classes}",
            num_anchors=[2 + 2 * len(ASPECT_RATIOS)] * num_maps,
            prediction_channels=(width(256), width(1024)),
        ),
        anchor_generator=L(SSDAnchorGenerator)(
            min_sizes=min_sizes,
            max_sizes=max_sizes,
            aspect_ratios=[list(ASPECT_RATIOS)] * num_maps,
            strides=list(_STEPS[input_size]),
        ),
        box2box_transform=L(Box2BoxTransform)(weights=SSD_BOX_WEIGHTS),
        num_classes=num_classes,
        iou_threshold=0.5,
        neg_pos_ratio=3.0,
        test_score_thresh=0.01,
        test_topk_per_class=400,
        test_nms_thresh=0.45,
        max_detections_per_image=200,
        pixel_mean=[103.530, 116.280, 123.675],
        pixel_std=[1.0, 1.0, 1.0],
        input_format="BGR",
    )


def use_input_size(dataloader, input_size):
    """Make SSD's mappers (configs/common/ssd_mappers.py) warp to input_size and read BGR images."""
    dataloader.train.mapper.augmentations[3].shape = (input_size, input_size)  # the Resize
    dataloader.test.mapper.augmentations[0].shape = (input_size, input_size)
    dataloader.train.mapper.image_format = dataloader.test.mapper.image_format = "BGR"
    return dataloader


model = dssd_model(321)
