"""RetinaNetAPLoss on a tiny model, CPU, in seconds: the losses against an independent computation, the
backward reaching the head as the error-driven update, every constructor switch, images without objects,
the EventStorage scalars, inference.

References: the logits, anchor labels and box targets are recomputed outside ``model.losses`` from the raw
head outputs, and L_AP / its update come from :func:`test_aploss_core.algorithm_1` (loops).
"""
import math

import pytest
import torch

from test_aploss_core import algorithm_1
from tiny_retinanet import tiny_retinanet_parts

pytestmark = pytest.mark.detectron2

NUM_CLASSES = 3
NUM_ANCHORS = 3


def tiny_aploss(**kwargs):
    """RetinaNetAPLoss on :func:`tiny_retinanet_parts` (3 anchors, 3 classes)."""
    from aploss import RetinaNetAPLoss

    parts = tiny_retinanet_parts(NUM_CLASSES)
    with torch.no_grad():  # spread the class logits so that the band and the ranking are not trivial
        parts["head"].cls_score.weight.normal_(0, 0.3)
    return RetinaNetAPLoss(**parts, **kwargs)


def images(classes_per_image=((0, 2, 1), (1, 0)), seed=0, size=(192, 256)):
    """Random images; classes_per_image gives each image's object classes (empty = no object)."""
    from detectron2.structures import Boxes, Instances

    g = torch.Generator().manual_seed(seed)
    batch = []
    for classes in classes_per_image:
        inst = Instances(size)
        xy = torch.rand(len(classes), 2, generator=g) * torch.tensor([size[1] - 80.0, size[0] - 80.0])
        wh = 20 + torch.rand(len(classes), 2, generator=g) * 60
        inst.gt_boxes = Boxes(torch.cat([xy, xy + wh], dim=1))
        inst.gt_classes = torch.tensor(classes, dtype=torch.long)
        batch.append({"image": torch.rand(3, *size, generator=g) * 255, "instances": inst})
    return batch


def train_step(model, batch, backward=True):
    """One forward in training mode inside EventStorage; returns (losses, latest scalars)."""
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage() as storage:
        losses = model(batch)
        if backward:
            sum(losses.values()).backward()
        scalars = {k: v.latest() for k, v in storage.histories().items()}
    return losses, scalars


@torch.no_grad()
def raw_outputs(model, batch):
    """Flattened class logits (N, R, K), {1, 0, -1} sample labels, and the box-loss inputs, recomputed
    outside model.losses from the head's raw (N, A*K, H, W) maps."""
    from detectron2.layers import cat

    feats = model.backbone(model.preprocess_image(batch).tensor)
    feats = [feats[f] for f in model.head_in_features]
    logit_maps, delta_maps = model.head(feats)

    def flat(x, dim):  # (N, A*dim, H, W) -> (N, H*W*A, dim), detectron2's anchor order
        n, _, h, w = x.shape
        return x.view(n, -1, dim, h, w).permute(0, 3, 4, 1, 2).reshape(n, -1, dim)

    logits = cat([flat(x, NUM_CLASSES) for x in logit_maps], 1)
    anchors = model.anchor_generator(feats)
    gt_labels, gt_boxes = model.label_anchors(anchors, [b["instances"] for b in batch])
    gt = torch.stack(gt_labels)
    labels = torch.zeros_like(logits, dtype=torch.long)
    labels[gt < 0] = -1
    for n, r in ((gt >= 0) & (gt < NUM_CLASSES)).nonzero().tolist():
        labels[n, r, gt[n, r]] = 1
    pos = (gt >= 0) & (gt < NUM_CLASSES)
    return dict(logits=logits, labels=labels, gt=gt, pos=pos, num_pos=int(pos.sum()), anchors=anchors,
                deltas=[flat(x, 4) for x in delta_maps], gt_boxes=gt_boxes,
                level_sizes=[x.shape[-2] * x.shape[-1] for x in logit_maps],
                level_shapes=[tuple(x.shape[-2:]) for x in logit_maps])


class PlantedScores(torch.nn.Module):
    """Wraps the head's cls_score conv and adds fixed maps to its (N, A*K, H, W) output, per level (told
    apart by H, W): a bonus on the positive samples, so that the random tiny model ranks them high and
    AP is far from 0 (with ~10^4 negatives, random scores give AP ~ 0 and every setting the same loss)."""

    def __init__(self, conv, maps):
        super().__init__()
        self.conv, self.maps = conv, maps

    def forward(self, x):
        out = self.conv(x)
        return out + self.maps[tuple(out.shape[-2:])]


def plant_scores(model, batch, image_offsets=(0.0, 0.0)):
    """Make ``model``'s class logits of ``batch`` informative (see :class:`PlantedScores`): each positive
    gets a bonus drawn from U(3, 7), and the first negative of image 0 is raised by 20 above every positive
    (so that the top positives have a lower precision than some below them, and interpolation matters);
    image i's logits are also raised by image_offsets[i]."""
    raw = raw_outputs(model, batch)
    bonus = 3.0 + 4.0 * torch.rand(raw["labels"].shape, generator=torch.Generator().manual_seed(1))
    added = (raw["labels"] == 1).float() * bonus + torch.tensor(image_offsets)[:, None, None]  # (N, R, K)
    added.view(-1)[(raw["labels"].view(-1) == 0).nonzero()[0]] += 20.0
    maps, start = {}, 0
    for hw, shape in zip(raw["level_sizes"], raw["level_shapes"]):
        level = added[:, start:start + hw * NUM_ANCHORS]  # (N, H*W*A, K) -> (N, A*K, H, W)
        level = level.reshape(len(batch), *shape, NUM_ANCHORS * NUM_CLASSES)
        maps[shape] = level.permute(0, 3, 1, 2).contiguous()
        start += hw * NUM_ANCHORS
    model.head.cls_score = PlantedScores(model.head.cls_score, maps)
    return model


def ref_box_sum(model, raw, beta=None):
    """Smooth-L1 (beta) sum over the positive anchors of (prediction - target deltas)."""
    from detectron2.layers import cat

    anchors = type(raw["anchors"][0]).cat(raw["anchors"]).tensor
    target = torch.stack([model.box2box_transform.get_deltas(anchors, b) for b in raw["gt_boxes"]])
    diff = (cat(raw["deltas"], 1) - target)[raw["pos"]].abs()
    beta = model.smooth_l1_beta if beta is None else beta
    if beta == 0:
        return diff.sum().item()
    return torch.where(diff < beta, 0.5 * diff ** 2 / beta, diff - 0.5 * beta).sum().item()


# ---------------------------------------------------------------- the losses


@pytest.mark.parametrize("delta,interpolated", [(1.0, True), (0.5, True), (1.0, False)])
def test_loss_cls_is_ap_loss_of_the_whole_batch(delta, interpolated):
    """loss_cls = L_AP of ONE list holding every (image, anchor, class) sample of the batch, at the model's
    delta and interpolation; the switches change it."""
    batch = images()
    model = plant_scores(tiny_aploss(delta=delta, interpolated_ap=interpolated), batch)
    raw = raw_outputs(model, batch)
    losses, scalars = train_step(model, batch, backward=False)
    ref_loss, _, band = algorithm_1(raw["logits"], raw["labels"], delta, interpolated)
    assert 0.05 < ref_loss < 0.95
    assert losses["loss_cls"].item() == pytest.approx(ref_loss, rel=1e-5)
    assert scalars["aploss/ap"] == pytest.approx(1 - ref_loss, abs=1e-6)
    assert scalars["aploss/num_pos"] == raw["num_pos"] > 0
    assert scalars["aploss/active_negatives"] == band
    valid_neg = int((raw["labels"] == 0).sum())
    assert scalars["aploss/active_negative_fraction"] == pytest.approx(band / valid_neg)
    assert scalars["aploss/min_pos_score"] == pytest.approx(raw["logits"][raw["labels"] == 1].min().item())
    if (delta, interpolated) != (1.0, True):
        default, _ = train_step(plant_scores(tiny_aploss(), batch), batch, backward=False)
        assert abs(default["loss_cls"].item() - losses["loss_cls"].item()) > 0.02


def test_per_image_rankings_would_differ():
    """The batch list couples the images: with image 1's logits raised by 4, its samples move past image 2's
    in the one list, and the batch loss is far from the mean of the two per-image losses (which a
    per-image ranking would give)."""
    batch = images()
    model = plant_scores(tiny_aploss(), batch, image_offsets=(4.0, 0.0))
    raw = raw_outputs(model, batch)
    losses, _ = train_step(model, batch, backward=False)
    ref_loss = algorithm_1(raw["logits"], raw["labels"])[0]
    per_image = [algorithm_1(raw["logits"][i], raw["labels"][i])[0] for i in range(2)]
    assert losses["loss_cls"].item() == pytest.approx(ref_loss, rel=1e-5)
    assert abs(losses["loss_cls"].item() - sum(per_image) / 2) > 0.05


def test_backward_delivers_the_error_driven_update_to_the_class_head():
    """After loss_cls.backward(), the gradient of cls_score's bias for output channel a*K + k is the sum of
    the update g over every image, level and position of anchor slot a and class k; the box head gets none."""
    batch = images()
    model = plant_scores(tiny_aploss(), batch)
    raw = raw_outputs(model, batch)
    _, update, _ = algorithm_1(raw["logits"], raw["labels"])
    update = torch.tensor(update).view(raw["logits"].shape)  # (N, R, K)
    expected = torch.zeros(NUM_ANCHORS, NUM_CLASSES, dtype=torch.float64)
    start = 0
    for hw in raw["level_sizes"]:
        level = update[:, start:start + hw * NUM_ANCHORS].reshape(2, hw, NUM_ANCHORS, NUM_CLASSES)
        expected += level.sum((0, 1)).double()
        start += hw * NUM_ANCHORS
    from detectron2.utils.events import EventStorage

    model.train()
    with EventStorage():
        losses = model(batch)
    losses["loss_cls"].backward()
    assert torch.allclose(model.head.cls_score.conv.bias.grad.double(), expected.reshape(-1), rtol=1e-4, atol=1e-6)
    assert expected.abs().sum() > 1e-3
    bbox_grad = model.head.bbox_pred.weight.grad
    assert bbox_grad is None or bbox_grad.abs().sum() == 0


def test_box_loss_weight_and_normalizer():
    """loss_box_reg = smooth-L1 sum * box_loss_weight / normaliser. Fresh model: the EMA starts at 100, so
    momentum 0.9 divides by 0.9 * 100 + 0.1 * num_pos; momentum 0 by num_pos (the authors' code)."""
    batch = images()
    model = tiny_aploss()
    raw = raw_outputs(model, batch)
    box = ref_box_sum(model, raw)
    n = raw["num_pos"]
    losses, scalars = train_step(model, batch, backward=False)
    assert scalars["aploss/loss_normalizer"] == pytest.approx(90 + 0.1 * n)
    assert losses["loss_box_reg"].item() == pytest.approx(box / (90 + 0.1 * n), rel=1e-5)
    official = tiny_aploss(box_loss_weight=0.25, loss_normalizer_momentum=0.0, smooth_l1_beta=1.0)
    losses, scalars = train_step(official, batch, backward=False)
    assert scalars["aploss/loss_normalizer"] == n
    assert losses["loss_box_reg"].item() == pytest.approx(0.25 * ref_box_sum(official, raw) / n, rel=1e-5)
    assert ref_box_sum(official, raw) != pytest.approx(box)  # beta reached the box loss


def test_images_without_objects():
    """No positive in the batch: loss_cls = 0 and loss_box_reg = 0, finite, backward runs with zero class
    gradient; no AP / min-positive scalar is logged (they are undefined), and no scalar is NaN."""
    model = tiny_aploss()
    losses, scalars = train_step(model, images(((), ())))
    assert losses["loss_cls"].item() == 0.0 and losses["loss_box_reg"].item() == 0.0
    assert all(torch.isfinite(v) for v in losses.values())
    assert model.head.cls_score.bias.grad.abs().sum() == 0
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert "aploss/ap" not in scalars and "aploss/min_pos_score" not in scalars
    assert scalars["aploss/num_pos"] == 0 and scalars["aploss/active_negatives"] == 0
    assert not any(math.isnan(v) for v in scalars.values())


def test_an_image_without_objects_is_ranked_with_the_others():
    """Image 2 has no object: its anchors are negatives in the batch list and receive updates."""
    model = tiny_aploss()
    batch = images(((0, 1), ()))
    raw = raw_outputs(model, batch)
    ref_loss, update, band = algorithm_1(raw["logits"], raw["labels"])
    losses, scalars = train_step(model, batch)
    assert losses["loss_cls"].item() == pytest.approx(ref_loss, rel=1e-5) and ref_loss > 0
    assert losses["loss_box_reg"].item() > 0 and all(torch.isfinite(v) for v in losses.values())
    assert torch.tensor(update).view(raw["logits"].shape)[1].abs().sum() > 0
    assert scalars["aploss/active_negatives"] == band


# ---------------------------------------------------------------- constructor, declaration, inference


def test_defaults_and_invalid_arguments():
    from d2imbalance.analysis.hyperparameters import declared_hyperparameters

    from aploss import HYPERPARAMETERS, RetinaNetAPLoss

    model = tiny_aploss()
    assert (model.delta, model.interpolated_ap, model.box_loss_weight, model.loss_normalizer_momentum) == (
        1.0, True, 1.0, 0.9)
    assert (model.test_score_thresh, model.test_nms_thresh, model.smooth_l1_beta) == (0.05, 0.5, 0.0)
    assert not hasattr(model, "focal_loss_alpha") and not hasattr(model, "focal_loss_gamma")
    assert declared_hyperparameters(RetinaNetAPLoss) == HYPERPARAMETERS
    with pytest.raises(ValueError, match="delta"):
        tiny_aploss(delta=0.0)
    with pytest.raises(ValueError, match="loss_normalizer_momentum"):
        tiny_aploss(loss_normalizer_momentum=1.0)
    with pytest.raises(ValueError, match="remove model.focal_loss_alpha"):
        tiny_aploss(focal_loss_alpha=0.25)


def test_options_pass_to_retinanet_and_inference_runs():
    model = tiny_aploss(test_score_thresh=0.0, test_nms_thresh=0.6, test_topk_candidates=7,
                        max_detections_per_image=5, input_format="RGB")
    assert (model.test_score_thresh, model.test_nms_thresh, model.test_topk_candidates) == (0.0, 0.6, 7)
    assert (model.max_detections_per_image, model.input_format) == (5, "RGB")
    model.eval()
    with torch.no_grad():
        out = model(images())
    assert len(out) == 2 and all(len(o["instances"]) == 5 for o in out)
