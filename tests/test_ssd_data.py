"""SSD's data pipeline: the augmentations (d2imbalance.data.ssd_augmentation), the box-passing mapper and
VOC's "difficult" objects (d2imbalance.data.voc)."""
import os

import numpy as np
import pytest
import torch

pytestmark = pytest.mark.detectron2


@pytest.fixture(scope="module")
def T():
    from d2imbalance._compat import ensure_pkg_resources

    ensure_pkg_resources()
    import detectron2.data.transforms as transforms

    return transforms


@pytest.fixture(scope="module")
def aug():
    from d2imbalance.data import ssd_augmentation

    return ssd_augmentation


def _scripted(monkeypatch, rand, uniform=()):
    """Replace np.random.rand / uniform by scripted sequences (in the order get_transform draws)."""
    rand, uniform = list(rand), list(uniform)
    monkeypatch.setattr(np.random, "rand", lambda: rand.pop(0))
    monkeypatch.setattr(np.random, "uniform", lambda lo=0.0, hi=1.0: uniform.pop(0))


# ----------------------------------------------------------------------------- photometric distortion
def test_hsv_transform_by_hand(aug):
    """BGR red (0, 0, 255) is H 0, S 1, V 255. Hue +120 -> green (0, 255, 0); saturation x0.5 -> S 0.5,
    min channel 127.5 -> (128, 128, 255); saturation 0 -> grey 255; hue -120 wraps to 240 -> blue."""
    red = np.array([[[0, 0, 255]]], dtype=np.uint8)
    assert aug.HSVTransform(1.0, 120.0).apply_image(red).tolist() == [[[0, 255, 0]]]
    assert aug.HSVTransform(0.5, 0.0).apply_image(red).tolist() == [[[128, 128, 255]]]
    assert aug.HSVTransform(0.0, 0.0).apply_image(red).tolist() == [[[255, 255, 255]]]
    assert aug.HSVTransform(1.0, -120.0).apply_image(red).tolist() == [[[255, 0, 0]]]
    assert aug.HSVTransform(3.0, 0.0).apply_image(np.array([[[100, 100, 200]]], np.uint8)).tolist() == [[[0, 0, 200]]]
    coords = np.array([[1.0, 2.0]])
    assert aug.HSVTransform(0.5, 10.0).apply_coords(coords) is coords


def test_photometric_distortion_draws_each_step_with_its_probability_in_caffes_order(aug, T, monkeypatch):
    """Draw order: brightness?, contrast first?, contrast?, saturation?, hue?, swap?. Pixel (10, 20, 100):
    brightness +30 -> (40, 50, 130); contrast x2 first -> (80, 100, 255 clipped), then saturation 0 -> grey
    at V = 255. Contrast last: brightness, saturation 0 -> grey 130, then x1.5 -> 195."""
    image = np.array([[[10, 20, 100]]], dtype=np.uint8)
    distortion = aug.SSDPhotometricDistortion()
    _scripted(monkeypatch, rand=[0.1, 0.2, 0.3, 0.4, 0.9, 0.9], uniform=[30.0, 2.0, 0.0])
    tfm = distortion.get_transform(image)
    kinds = [type(t).__name__ for t in tfm.transforms]
    assert kinds == ["BlendTransform", "BlendTransform", "HSVTransform"]
    assert tfm.apply_image(image).tolist() == [[[255, 255, 255]]]
    _scripted(monkeypatch, rand=[0.1, 0.5, 0.3, 0.4, 0.9, 0.9], uniform=[30.0, 1.5, 0.0])  # 0.5: not < 0.5
    tfm = distortion.get_transform(image)
    assert [type(t).__name__ for t in tfm.transforms] == ["BlendTransform", "HSVTransform", "BlendTransform"]
    assert tfm.apply_image(image).tolist() == [[[195, 195, 195]]]
    # Nothing drawn (every probability missed): identity.
    _scripted(monkeypatch, rand=[0.5, 0.7, 0.5, 0.5, 0.5, 0.9])
    assert aug.SSDPhotometricDistortion().get_transform(image).transforms == []
    # Hue only (+120 on BGR red) and the optional channel swap, reversed order.
    red = np.array([[[0, 0, 255]]], dtype=np.uint8)
    _scripted(monkeypatch, rand=[0.9, 0.7, 0.9, 0.9, 0.1, 0.1], uniform=[120.0])
    monkeypatch.setattr(np.random, "permutation", lambda n: np.array([1, 0, 2]))
    tfm = aug.SSDPhotometricDistortion(channel_swap_prob=0.5).get_transform(red)
    assert tfm.apply_image(red).tolist() == [[[255, 0, 0]]]  # green (0, 255, 0), then channels 1, 0, 2
    assert [type(t).__name__ for t in tfm.transforms] == ["HSVTransform", "ChannelPermutationTransform"]
    _scripted(monkeypatch, rand=[0.9, 0.7, 0.9, 0.9, 0.9, 0.1])
    assert aug.SSDPhotometricDistortion().get_transform(red).transforms == []  # swap off by default


def test_photometric_ranges_reach_the_draws(aug, monkeypatch):
    seen = []
    monkeypatch.setattr(np.random, "rand", lambda: 0.0)
    monkeypatch.setattr(np.random, "uniform", lambda lo, hi: seen.append((lo, hi)) or lo)
    tfm = aug.SSDPhotometricDistortion(16, (0.7, 1.3), (0.6, 1.4), 9).get_transform(np.zeros((2, 2, 3), np.uint8))
    assert seen == [(-16, 16), (0.7, 1.3), (0.6, 1.4), (-9, 9)]
    assert len(tfm.transforms) == 3  # channel_swap_prob 0: never, even when rand() draws 0


def test_photometric_needs_uint8_colour_images(aug):
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        aug.SSDPhotometricDistortion().get_transform(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 HxWx3"):
        aug.SSDPhotometricDistortion().get_transform(np.zeros((4, 4), np.uint8))


def test_channel_permutation(aug):
    image = np.array([[[1, 2, 3]]], dtype=np.uint8)
    assert aug.ChannelPermutationTransform([2, 0, 1]).apply_image(image).tolist() == [[[3, 1, 2]]]


# ----------------------------------------------------------------------------- zoom out
def test_fill_pad_transform_by_hand(aug):
    """A 10x20 image of 7s padded left 3, top 2, right 5, bottom 4 -> 16x28; the border is the per-channel
    fill (123.675 rounds to 124); box (0, 0, 20, 10) -> (3, 2, 23, 12)."""
    tfm = aug.FillPadTransform(3, 2, 5, 4, orig_w=20, orig_h=10, pad_value=(123.675, 116.28, 103.53))
    out = tfm.apply_image(np.full((10, 20, 3), 7, np.uint8))
    assert out.shape == (16, 28, 3)
    assert out[0, 0].tolist() == [124, 116, 104] and out[15, 27].tolist() == [124, 116, 104]
    assert (
        out[2, 3].tolist() == [7, 7, 7]
        and out[11, 22].tolist() == [7, 7, 7]
        and out[12, 22].tolist() == [124, 116, 104]
    )
    assert out[11, 23].tolist() == [124, 116, 104] and out[1, 3].tolist() == [124, 116, 104]
    assert tfm.apply_box(np.array([[0.0, 0.0, 20.0, 10.0]])).tolist() == [[3.0, 2.0, 23.0, 12.0]]


def test_zoom_out_places_the_image_and_its_boxes_together(aug, monkeypatch):
    """Ratio 2.5 on a 10x20 image: canvas 25x50; left = int(17.9) = 17, top = int(3.2) = 3: the image
    occupies [3:13, 17:37] and box (2, 1, 12, 9) moves to (19, 4, 29, 12), still over the same pixels."""
    image = np.random.RandomState(0).randint(0, 255, (10, 20, 3)).astype(np.uint8)
    _scripted(monkeypatch, rand=[], uniform=[2.5, 17.9, 3.2])
    tfm = aug.ZoomOut(max_ratio=4.0, fill=(1, 2, 3)).get_transform(image)
    out = tfm.apply_image(image)
    assert out.shape == (25, 50, 3)
    assert np.array_equal(out[3:13, 17:37], image) and out[0, 0].tolist() == [1, 2, 3]
    box = tfm.apply_box(np.array([[2.0, 1.0, 12.0, 9.0]]))[0]
    assert box.tolist() == [19.0, 4.0, 29.0, 12.0]
    assert np.array_equal(out[4:12, 19:29], image[1:9, 2:12])
    with pytest.raises(ValueError, match="must be >= 1"):
        aug.ZoomOut(max_ratio=0.5)
    _scripted(monkeypatch, rand=[], uniform=[1.0, 0.0, 0.0])
    assert aug.ZoomOut(max_ratio=1.0).get_transform(image).apply_image(image).shape == image.shape
    default = aug.ZoomOut()  # the recipe's defaults: up to 4x, black canvas
    assert default.max_ratio == 4.0 and tuple(default.fill) == (0.0, 0.0, 0.0)


def test_zoom_out_ratio_range(aug, monkeypatch):
    seen = []
    monkeypatch.setattr(np.random, "uniform", lambda lo, hi: seen.append((lo, hi)) or lo)
    aug.ZoomOut(max_ratio=3.0).get_transform(np.zeros((10, 20, 3), np.uint8))
    assert seen == [(1.0, 3.0), (0, 0), (0, 0)]


# ----------------------------------------------------------------------------- min-IoU crop
def test_crop_keeps_boxes_by_their_centre(aug):
    """Crop x0=10, y0=10, 50x50. (20,20,40,40) inside -> (10,10,30,30); (0,0,30,30): centre (15,15) inside
    -> shifted, (-10,-10,20,20) (the mapper clips it); (0,0,16,16): centre (8,8) outside -> empty;
    (55,55,70,70): centre 62.5 - 10 = 52.5 > 50 -> empty; centre exactly on the border (x = 10) -> empty."""
    tfm = aug.CenterKeepCropTransform(10, 10, 50, 50)
    boxes = np.array(
        [[20, 20, 40, 40], [0, 0, 30, 30], [0, 0, 16, 16], [55, 55, 70, 70], [5, 20, 15, 30], [20, 5, 30, 15]],
        dtype=np.float64,
    )
    out = tfm.apply_box(boxes)
    assert out.tolist() == [
        [10, 10, 30, 30], [-10, -10, 20, 20], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0],
    ]  # fmt: skip
    boxes = np.array([[50, 20, 70, 30], [20, 50, 30, 70], [56, 20, 66, 30], [20, 56, 30, 66]], dtype=np.float64)
    # centres x or y = 60 - 10 = 50 sit on the far border (excluded); 61 is beyond it
    assert tfm.apply_box(boxes)[:, 2].tolist() == [0, 0, 0, 0]
    assert tfm.apply_box(np.array([[50.0, 20, 68, 30]]))[0].tolist() == [40, 10, 58, 20]  # centre 49 < 50
    assert tfm.apply_image(np.zeros((100, 100, 3), np.uint8)).shape == (50, 50, 3)


def test_min_iou_crop_wraps_detectron2s_crops_only(aug, T, monkeypatch):
    monkeypatch.setattr(T.MinIoURandomCrop, "get_transform", lambda self, image, boxes: T.CropTransform(1, 2, 3, 4))
    crop = aug.SSDMinIoURandomCrop().get_transform(np.zeros((9, 9, 3)), np.zeros((1, 4)))
    assert type(crop) is aug.CenterKeepCropTransform and (crop.x0, crop.y0, crop.w, crop.h) == (1, 2, 3, 4)
    monkeypatch.setattr(T.MinIoURandomCrop, "get_transform", lambda self, image, boxes: T.NoOpTransform())
    assert type(aug.SSDMinIoURandomCrop().get_transform(np.zeros((9, 9, 3)), None)) is T.NoOpTransform


def test_min_iou_crop_drops_outside_centres_on_real_draws(aug):
    """Over seeded draws every crop keeps exactly the boxes whose centre it contains."""
    np.random.seed(0)
    image = np.zeros((100, 200, 3), np.uint8)
    boxes = np.array([[5, 5, 40, 40], [120, 30, 190, 95], [60, 10, 90, 30]], dtype=np.float64)
    crops = 0
    for _ in range(30):
        tfm = aug.SSDMinIoURandomCrop().get_transform(image, boxes)
        if not isinstance(tfm, aug.CenterKeepCropTransform):
            continue
        crops += 1
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        inside = (centres[:, 0] > tfm.x0) & (centres[:, 0] < tfm.x0 + tfm.w)
        inside &= (centres[:, 1] > tfm.y0) & (centres[:, 1] < tfm.y0 + tfm.h)
        out = tfm.apply_box(boxes.copy())
        assert ((out[:, 2] > out[:, 0]) == inside).all()
    assert crops > 10


# ----------------------------------------------------------------------------- the mapper
def _recording_crop(aug, T):
    """An augmentation that records the boxes it is given and crops (0, 0, 60, 40) with the centre rule."""

    class RecordingCrop(T.Augmentation):
        seen = []

        def get_transform(self, image, boxes):
            self.seen.append(boxes.copy())
            return aug.CenterKeepCropTransform(0, 0, 60, 40)

    return RecordingCrop()


def _write_image(path, h=50, w=80):
    import cv2

    cv2.imwrite(str(path), np.full((h, w, 3), 90, np.uint8))
    return str(path)


def test_mapper_hands_boxes_to_augmentations_and_applies_the_centre_rule(aug, T, tmp_path):
    """Annotations: XYWH (10, 10, 20, 10) -> XYXY (10, 10, 30, 20); XYXY (50, 30, 78, 48) whose centre (64,
    39) leaves the 60x40 crop; a crowd box (not given, not a target); XYXY (40, 5, 70, 25), centre (55, 15)
    inside, clipped to (40, 5, 60, 25)."""
    from detectron2.structures import BoxMode

    record = {
        "file_name": _write_image(tmp_path / "a.jpg"),
        "height": 50,
        "width": 80,
        "annotations": [
            {"bbox": [10, 10, 20, 10], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 0},
            {"bbox": [50, 30, 78, 48], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
            {"bbox": [0, 0, 80, 50], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2, "iscrowd": 1},
            {"bbox": [40, 5, 70, 25], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 3},
        ],
    }
    recorder = _recording_crop(aug, T)
    mapper = aug.SSDDatasetMapper(is_train=True, augmentations=[recorder], image_format="RGB")
    out = mapper(record)
    assert recorder.seen[0].tolist() == [[10, 10, 30, 20], [50, 30, 78, 48], [40, 5, 70, 25]]
    assert out["image"].shape == (3, 40, 60) and out["image"].dtype == torch.uint8
    assert out["instances"].gt_classes.tolist() == [0, 3]
    assert out["instances"].gt_boxes.tensor.tolist() == [[10, 10, 30, 20], [40, 5, 60, 25]]
    assert len(record["annotations"]) == 4  # the input dict is not modified
    test = aug.SSDDatasetMapper(is_train=False, augmentations=[recorder], image_format="RGB")(record)
    assert "annotations" not in test and "instances" not in test and test["image"].shape == (3, 40, 60)
    empty = aug.SSDDatasetMapper(is_train=True, augmentations=[recorder], image_format="RGB")(
        {"file_name": record["file_name"], "height": 50, "width": 80, "annotations": []}
    )
    assert recorder.seen[-1].shape == (0, 4) and len(empty["instances"]) == 0


def test_config_train_mapper_gives_300x300_images_with_consistent_boxes(tmp_path):
    """The whole SSD300 training augmentation (from configs/common/ssd_mappers.py) on an image with two
    objects, over seeded draws: 300x300 uint8 images, boxes inside the image and non-empty, classes kept."""
    from detectron2.config import instantiate
    from detectron2.structures import BoxMode

    from d2imbalance import get_config

    mapper = instantiate(get_config("Baselines/ssd300_shapes.py").dataloader.train.mapper)
    record = {
        "file_name": _write_image(tmp_path / "b.jpg", 120, 160),
        "height": 120,
        "width": 160,
        "annotations": [
            {"bbox": [10, 10, 60, 50], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 1},
            {"bbox": [100, 60, 150, 110], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2},
        ],
    }
    np.random.seed(0)
    counts = set()
    for _ in range(12):
        out = mapper(record)
        assert out["image"].shape == (3, 300, 300)
        boxes = out["instances"].gt_boxes.tensor
        assert (boxes >= 0).all() and (boxes <= 300).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        assert set(out["instances"].gt_classes.tolist()) <= {1, 2}
        counts.add(len(boxes))
    assert counts == {1, 2}  # some crops drop an object


# ----------------------------------------------------------------------------- VOC difficult objects
def _fake_voc(root, name):
    """VOC2007-style folder: image 000001 with a dog and a difficult cat, 000002 with a difficult cat only,
    000003 with no object."""
    from detectron2.data import MetadataCatalog
    from detectron2.data.datasets import register_pascal_voc

    for sub in ("Annotations", "ImageSets/Main", "JPEGImages"):
        os.makedirs(root / sub, exist_ok=True)
    objects = {
        "000001": [("dog", 0, (11, 21, 40, 50)), ("cat", 1, (5, 5, 20, 20))],
        "000002": [("cat", 1, (1, 1, 30, 30))],
        "000003": [],
    }
    for image_id, objs in objects.items():
        _write_image(root / "JPEGImages" / f"{image_id}.jpg", 60, 80)
        xml = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin>"
            f"<xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
            for n, d, b in objs
        )
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><size><width>80</width><height>60</height></size>{xml}</annotation>"
        )
    (root / "ImageSets" / "Main" / "trainval.txt").write_text("000001\n000002\n000003\n")
    if name not in MetadataCatalog.list():
        register_pascal_voc(name, str(root), "trainval", 2007)


def test_voc_difficult_objects_are_excluded_from_training_targets(tmp_path):
    from d2imbalance.data.ssd_augmentation import SSDDatasetMapper
    from d2imbalance.data.voc import voc_detection_dataset_dicts

    _fake_voc(tmp_path, "voc_fake_ssd_trainval")
    dicts = voc_detection_dataset_dicts("voc_fake_ssd_trainval")
    assert [d["image_id"] for d in dicts] == ["000001"]  # 000002 has only a difficult object, 000003 none
    assert [(a["category_id"], a["iscrowd"], a["difficult"]) for a in dicts[0]["annotations"]] == [
        (11, 0, 0),
        (7, 1, 1),
    ]
    out = SSDDatasetMapper(is_train=True, augmentations=[], image_format="RGB")(dicts[0])
    assert out["instances"].gt_classes.tolist() == [11]  # the dog; detectron2's VOC boxes are 0-based
    assert out["instances"].gt_boxes.tensor.tolist() == [[10.0, 20.0, 40.0, 50.0]]
    kept = voc_detection_dataset_dicts("voc_fake_ssd_trainval", filter_empty=False)
    assert [d["image_id"] for d in kept] == ["000001", "000002", "000003"] and kept[1]["annotations"][0]["iscrowd"] == 1
    included = voc_detection_dataset_dicts(["voc_fake_ssd_trainval"], difficult="include")
    assert len(included) == 2 and all("iscrowd" not in a for d in included for a in d["annotations"])
    with pytest.raises(ValueError, match="difficult='ignore'; use one of"):
        voc_detection_dataset_dicts("voc_fake_ssd_trainval", difficult="ignore")


# Mutation survivors, explained (../shared/tools/mutate.py --sample 40 --seed 0 --tests tests/test_ssd_data.py
# d2imbalance/data/ssd_augmentation.py):
# * FillPadTransform `np.asarray(self.pad_value, dtype=np.float64)` without dtype: numpy already makes a
#   float64 array of the float fill values (and int64 of int ones, which rint leaves as they are): same pixels.
