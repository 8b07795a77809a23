"""d2imbalance.modeling.roi_box_features.box_head_features: chunks within each image give the features and
gradients of one pass; recompute=True keeps far less for the backward pass; bad arguments are refused."""
import pytest
import torch

pytestmark = pytest.mark.detectron2

SIZE = 64  # image side; one 8-channel level at stride 4


def pooler_and_head():
    from detectron2.layers import ShapeSpec
    from detectron2.modeling.poolers import ROIPooler
    from detectron2.modeling.roi_heads import FastRCNNConvFCHead

    torch.manual_seed(0)
    pooler = ROIPooler((7, 7), scales=(1 / 4,), sampling_ratio=0, pooler_type="ROIAlignV2")
    head = FastRCNNConvFCHead(ShapeSpec(channels=8, height=7, width=7), conv_dims=[], fc_dims=[16, 16])
    return pooler, head


def inputs(rois_per_image=(5, 3)):
    """(feature maps needing grad, Boxes per image): random boxes inside the image."""
    from detectron2.structures import Boxes

    g = torch.Generator().manual_seed(1)
    maps = [torch.rand(len(rois_per_image), 8, SIZE // 4, SIZE // 4, generator=g).requires_grad_()]
    boxes = []
    for n in rois_per_image:
        xy = torch.rand(n, 2, generator=g) * SIZE / 2
        boxes.append(Boxes(torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * SIZE / 2], dim=1)))
    return maps, boxes


def features_and_gradients(**kwargs):
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs()
    feats = box_head_features(pooler, head, maps, boxes, **kwargs)
    # A loss that weighs every RoI and feature differently, so a misplaced row changes the gradients.
    weights = torch.arange(feats.numel(), dtype=feats.dtype).view_as(feats).sin()
    (feats * weights).sum().backward()
    return feats.detach(), maps[0].grad, [p.grad for p in head.parameters()]


@pytest.mark.parametrize("chunk, recompute", [(1, False), (2, False), (4, True), (1, True), (100, True)])
def test_chunks_give_the_features_and_gradients_of_one_pass(chunk, recompute):
    """Chunks of 2 and 4 cut image 0's 5 RoIs; every variant equals the single pass, row by row."""
    feats, map_grad, param_grads = features_and_gradients()
    assert feats.shape == (8, 16)
    c_feats, c_map_grad, c_param_grads = features_and_gradients(chunk_size=chunk, recompute=recompute)
    torch.testing.assert_close(c_feats, feats)
    torch.testing.assert_close(c_map_grad, map_grad)
    for got, want in zip(c_param_grads, param_grads):
        torch.testing.assert_close(got, want)


def saved_bytes(fn, inputs):
    """Bytes of the storages autograd saves for the backward pass while fn() runs, counted once each,
    leaving out those of ``inputs`` (views of an input cost no memory of their own)."""
    known = {t.untyped_storage().data_ptr() for t in inputs}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in known:
            storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def test_recompute_keeps_nothing_but_views_of_the_inputs_for_the_backward_pass():
    """Without recomputation the pooled 8 x 7 x 7 features of every RoI (and the fc activations) are kept:
    at least 8 RoIs x 392 floats. With it, only the chunks' inputs, views of the feature maps and boxes."""
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs()
    inputs_ = maps + [b.tensor for b in boxes]
    plain = saved_bytes(lambda: box_head_features(pooler, head, maps, boxes, chunk_size=2), inputs_)
    recomputed = saved_bytes(
        lambda: box_head_features(pooler, head, maps, boxes, chunk_size=2, recompute=True), inputs_
    )
    assert plain >= 8 * 8 * 7 * 7 * 4
    assert recomputed == 0


def test_recompute_supports_autograd_grad():
    """torch.autograd.grad (e.g. a gradient penalty, or a tool that asks for input gradients) works through
    the recomputed chunks, as through the plain pass (a reentrant checkpoint would refuse it)."""
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs()
    (want,) = torch.autograd.grad(box_head_features(pooler, head, maps, boxes).sum(), maps)
    (got,) = torch.autograd.grad(box_head_features(pooler, head, maps, boxes, chunk_size=3, recompute=True).sum(), maps)
    torch.testing.assert_close(got, want)


def test_without_gradient_recompute_runs_plainly():
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs()
    with torch.no_grad():
        feats = box_head_features(pooler, head, maps, boxes, chunk_size=3, recompute=True)
    assert feats.shape == (8, 16) and not feats.requires_grad


def test_no_roi_at_all_gives_an_empty_feature_matrix():
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs(rois_per_image=(0, 0))
    assert box_head_features(pooler, head, maps, boxes, chunk_size=2, recompute=True).shape == (0, 16)


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(recompute=True), "needs a chunk_size"), (dict(chunk_size=0), "chunk_size=0"),
     (dict(chunk_size=2.5), "chunk_size=2.5")],
)  # fmt: skip
def test_bad_arguments(kwargs, message):
    from d2imbalance.modeling.roi_box_features import box_head_features

    pooler, head = pooler_and_head()
    maps, boxes = inputs()
    with pytest.raises(ValueError, match=message):
        box_head_features(pooler, head, maps, boxes, **kwargs)
