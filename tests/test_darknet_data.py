"""YOLOv3's (Darknet's) data pipeline: jitter/scale/place, HSV distortion, multi-scale schedule and batch
resizing (d2imbalance.data.darknet_augmentation)."""
import os
import subprocess
import sys

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
    from d2imbalance.data import darknet_augmentation

    return darknet_augmentation


def _scripted(monkeypatch, uniform=(), rand=()):
    """Replace np.random.uniform / rand by scripted sequences; returns the (low, high) bounds uniform got."""
    uniform, rand, bounds = list(uniform), list(rand), []
    monkeypatch.setattr(np.random, "uniform", lambda lo=0.0, hi=1.0: bounds.append((lo, hi)) or uniform.pop(0))
    monkeypatch.setattr(np.random, "rand", lambda: rand.pop(0))
    return bounds


def _ramp():
    """A 4x8 image (HxW) whose pixel (y, x) is 32y + 4x, in all three channels."""
    return (np.arange(32, dtype=np.float32).reshape(4, 8) * 4)[..., None].repeat(3, axis=2)


# ----------------------------------------------------------------------------- PlaceTransform
def test_place_transform_pads_by_hand(aug):
    """Scale 1 at (2, 1) on a 6x12 canvas: an exact copy at rows 1-4, cols 2-9, fill 127.5 elsewhere.
    Scale 2 (16x8) at dx=3, dy=-2 on 10x20: canvas pixel centre j+0.5 samples source (j+0.5-3)/2 - 0.5:
    col 3 -> -0.25 (edge: col 0), col 4 -> 0.25 (0.75 col 0 + 0.25 col 1), col 18 -> 7.25 (col 7); row 0 ->
    (0.5+2)/2 - 0.5 = 0.75 (0.25 row 0 + 0.75 row 1), row 5 -> 3.25 (row 3). The placed rectangle covers
    x in [3, 19), y in [-2, 6): image in rows 0-5, cols 3-18, fill elsewhere."""
    img = _ramp()
    out = aug.PlaceTransform(4, 8, 4, 8, 2.0, 1.0, 6, 12).apply_image(img)
    assert out.shape == (6, 12, 3) and out.dtype == np.float32
    assert np.array_equal(out[1:5, 2:10], img)
    fill = np.ones((6, 12), bool)
    fill[1:5, 2:10] = False
    assert (out[fill] == 127.5).all()

    out = aug.PlaceTransform(4, 8, 8, 16, 3.0, -2.0, 10, 20).apply_image(img)[..., 0]
    assert out[0, 3] == 0.25 * 0 + 0.75 * 32  # 24
    assert out[0, 4] == 0.25 * (0.75 * 0 + 0.25 * 4) + 0.75 * (0.75 * 32 + 0.25 * 36)  # 25
    assert out[0, 18] == 0.25 * 28 + 0.75 * 60  # 52
    assert out[5, 3] == 96 and out[5, 18] == 124
    assert (out[:, :3] == 127.5).all() and (out[:, 19] == 127.5).all() and (out[6:] == 127.5).all()
    assert (out[:6, 3:19] != 127.5).all()
    # half-pixel offsets: a pixel is image when its centre is in [2.5, 10.5) x [0.5, 4.5); col j samples j - 2.5
    # and row i samples i - 0.5: (1, 3) is the mean of rows 0-1, cols 0-1 = (0 + 4 + 32 + 36) / 4
    out = aug.PlaceTransform(4, 8, 4, 8, 2.5, 0.5, 6, 12).apply_image(img)[..., 0]
    assert out[0, 2] == 0 and out[1, 3] == 18 and out[3, 9] == (88 + 92 + 120 + 124) / 4
    assert out[0, 1] == out[0, 10] == out[4, 2] == 127.5 and (out[:4, 2:10] != 127.5).all()
    # uint8 images stay uint8; the grey fill rounds to 128; one fill per channel is accepted
    out8 = aug.PlaceTransform(4, 8, 8, 16, 3.0, -2.0, 10, 20).apply_image(img.astype(np.uint8))
    assert out8.dtype == np.uint8 and out8[0, 0].tolist() == [128] * 3 and out8[0, 4, 0] == 25
    out_rgb = aug.PlaceTransform(4, 8, 4, 8, 2.0, 1.0, 6, 12, fill=(1, 2, 3)).apply_image(img)
    assert out_rgb[0, 0].tolist() == [1, 2, 3]
    grey = aug.PlaceTransform(4, 8, 4, 8, 2.0, 1.0, 6, 12).apply_image(img[..., :1])  # HxWx1 keeps its axis
    assert grey.shape == (6, 12, 1) and np.array_equal(grey[1:5, 2:10], img[..., :1])


def test_place_transform_crops_by_hand(aug):
    """Scale 2 at dx=-5, dy=0 on a 6x6 canvas (the image covers x in [-5, 11), y in [0, 8): no fill).
    Col j samples source j/2 + 2.25, row i samples i/2 - 0.25: (0, 0) = 0.75*8 + 0.25*12 = 9; (3, 5): rows
    1.25, cols 4.75 -> 0.75*(0.25*48 + 0.75*52) + 0.25*(0.25*80 + 0.75*84) = 59."""
    out = aug.PlaceTransform(4, 8, 8, 16, -5.0, 0.0, 6, 6).apply_image(_ramp())[..., 0]
    assert out.shape == (6, 6) and (out != 127.5).all()
    assert out[0, 0] == 9 and out[3, 5] == 59


def test_place_transform_boxes_by_hand(aug):
    """Coordinates: x*new_w/src_w + dx, y*new_h/src_h + dy. Boxes are clipped to the canvas and those
    narrower or lower than min_box_size emptied."""
    pad = aug.PlaceTransform(40, 80, 25.6, 32.0, 10.0, 5.0, 64, 64)
    coords = np.array([[0.0, 0.0], [80.0, 40.0], [20.0, 10.0]])
    assert np.allclose(pad.apply_coords(coords), [[10, 5], [42, 30.6], [18, 11.4]])
    assert np.allclose(pad.apply_box(np.array([[0.0, 0.0, 80.0, 40.0]])), [[10, 5, 42, 30.6]])

    crop = aug.PlaceTransform(4, 8, 8, 16, -5.0, 0.0, 6, 6, min_box_size=0.5)
    boxes = np.array(
        [
            [2.0, 1.0, 6.0, 3.0],  # -> (-1, 2, 7, 6): clipped to (0, 2, 6, 6)
            [0.0, 0.0, 1.0, 1.0],  # -> (-5, 0, -3, 2): outside, emptied
            [2.7, 0.0, 3.0, 1.0],  # -> (0.4, 0, 1, 2): 0.6 wide, kept
            [2.8, 0.0, 3.0, 1.0],  # -> (0.6, 0, 1, 2): 0.4 wide < 0.5, emptied
            [2.75, 0.0, 3.0, 1.0],  # -> (0.5, 0, 1, 2): exactly 0.5 wide, kept (Darknet drops w < .001 only)
            [3.0, 2.8, 4.0, 3.5],  # -> (1, 5.6, 3, 7): clipped to (1, 5.6, 3, 6), 0.4 high, emptied
        ]
    )
    assert np.allclose(
        crop.apply_box(boxes), [[0, 2, 6, 6], [0, 0, 0, 0], [0.4, 0, 1, 2], [0, 0, 0, 0], [0.5, 0, 1, 2], [0, 0, 0, 0]]
    )
    keep_small = aug.PlaceTransform(4, 8, 8, 16, -5.0, 0.0, 6, 6)  # min_box_size 0: only clipping
    assert np.allclose(keep_small.apply_box(boxes[[3, 5]]), [[0.6, 0, 1, 2], [1, 5.6, 3, 6]])


def test_place_transform_segmentation_and_size_check(aug):
    mask = np.zeros((4, 8), bool)
    mask[:, :4] = True
    tfm = aug.PlaceTransform(4, 8, 4, 8, 2.0, 1.0, 6, 12)
    out = tfm.apply_segmentation(mask)
    expected = np.zeros((6, 12), bool)
    expected[1:5, 2:6] = True
    assert out.dtype == bool and np.array_equal(out, expected)
    with pytest.raises(ValueError, match="drawn for a 4x8 image"):
        tfm.apply_image(np.zeros((5, 8, 3), np.float32))


# ----------------------------------------------------------------------------- DarknetJitterCrop
def test_jitter_crop_wide_branch_pads(aug, monkeypatch):
    """40x80 image (h x w), size 64, jitter .3: dw = 24, dh = 12. Draws -20, +8 -> new_ar = 60/48 = 1.25
    >= 1: nw = 0.5*64 = 32, nh = 32/1.25 = 25.6; dx ~ U(0, 32) = 10, dy ~ U(0, 38.4) = 5."""
    bounds = _scripted(monkeypatch, uniform=[-20.0, 8.0, 0.5, 10.0, 5.0])
    tfm = aug.DarknetJitterCrop(64).get_transform(np.zeros((40, 80, 3), np.uint8))
    assert bounds == [(-24.0, 24.0), (-12.0, 12.0), (0.25, 2.0), (0, 32.0), (0, pytest.approx(38.4))]
    assert isinstance(tfm, aug.PlaceTransform)
    assert (tfm.src_h, tfm.src_w, tfm.canvas_h, tfm.canvas_w) == (40, 80, 64, 64)
    assert (tfm.new_w, tfm.dx, tfm.dy) == (32.0, 10.0, 5.0) and tfm.new_h == pytest.approx(25.6)
    assert tfm.fill == 127.5 and tfm.min_box_size == pytest.approx(0.064)
    out = tfm.apply_image(np.full((40, 80, 3), 7, np.uint8))
    assert out.shape == (64, 64, 3) and out[20, 20].tolist() == [7, 7, 7] and out[0, 0].tolist() == [128] * 3
    assert np.allclose(tfm.apply_box(np.array([[0.0, 0.0, 80.0, 40.0]])), [[10, 5, 42, 30.6]])


def test_jitter_crop_tall_branch_crops(aug, monkeypatch):
    """80x40 image, size 64: dw = 12, dh = 24. Draws +8, -16 -> new_ar = 48/64 = 0.75 < 1: nh = 1.5*64 = 96,
    nw = 72; dx ~ U(0, -8) = -3, dy ~ U(0, -32) = -20 (the image is larger than the canvas: a crop)."""
    bounds = _scripted(monkeypatch, uniform=[8.0, -16.0, 1.5, -3.0, -20.0])
    tfm = aug.DarknetJitterCrop(64, scale_range=(0.5, 1.5), fill=0).get_transform(np.zeros((80, 40, 3), np.uint8))
    assert bounds == [(-12.0, 12.0), (-24.0, 24.0), (0.5, 1.5), (0, -8.0), (0, -32.0)]
    assert (tfm.new_h, tfm.new_w, tfm.dx, tfm.dy) == (96.0, 72.0, -3.0, -20.0)
    out = tfm.apply_image(np.full((80, 40, 3), 7, np.uint8))
    assert out.shape == (64, 64, 3) and (out == 7).all()  # no fill: the image covers the canvas
    assert np.allclose(tfm.apply_coords(np.array([[0.0, 0.0], [40.0, 80.0]])), [[-3, -20], [69, 76]])
    assert np.allclose(tfm.apply_box(np.array([[0.0, 0.0, 40.0, 80.0]])), [[0, 0, 64, 64]])


def test_jitter_crop_seeded_draws_follow_darknets_formula(aug):
    """Real np.random draws: replaying them by hand gives the transform's parameters; over the seeds both
    branches, pads and crops occur, and the output is always size x size."""
    image = np.zeros((40, 44, 3), np.uint8)
    crop = aug.DarknetJitterCrop(32)
    branches, crops = set(), set()
    for seed in range(40):
        np.random.seed(seed)
        tfm = crop.get_transform(image)
        np.random.seed(seed)
        r = np.random.uniform(0, 1, 5)  # uniform(a, b) = a + (b - a) * U(0, 1), draw for draw
        new_ar = (44 + (-13.2 + 26.4 * r[0])) / (40 + (-12 + 24 * r[1]))
        scale = 0.25 + 1.75 * r[2]
        nw, nh = (scale * 32 * new_ar, scale * 32) if new_ar < 1 else (scale * 32, scale * 32 / new_ar)
        assert (tfm.new_w, tfm.new_h) == pytest.approx((nw, nh))
        assert (tfm.dx, tfm.dy) == pytest.approx(((32 - nw) * r[3], (32 - nh) * r[4]))
        assert tfm.apply_image(image).shape == (32, 32, 3)
        branches.add(new_ar < 1)
        crops.add(nw > 32)
    assert branches == {True, False} and crops == {True, False}


def test_jitter_crop_validates_its_arguments(aug):
    with pytest.raises(ValueError, match="size=0.*positive int"):
        aug.DarknetJitterCrop(0)
    with pytest.raises(ValueError, match="size=608.0"):
        aug.DarknetJitterCrop(608.0)
    with pytest.raises(ValueError, match=r"jitter=1\) must be in \[0, 1\)"):
        aug.DarknetJitterCrop(64, jitter=1)
    with pytest.raises(ValueError, match=r"scale_range=\(2.0, 1.0\)"):
        aug.DarknetJitterCrop(64, scale_range=(2.0, 1.0))
    with pytest.raises(ValueError, match="min_box_frac=-0.1"):
        aug.DarknetJitterCrop(64, min_box_frac=-0.1)
    default = aug.DarknetJitterCrop(608)
    defaults = (default.jitter, tuple(default.scale_range), default.fill, default.min_box_frac)
    assert defaults == (0.3, (0.25, 2.0), 127.5, 0.001)


# ----------------------------------------------------------------------------- HSV distortion
def _px(*rgb, dtype=np.uint8):
    return np.array([[rgb]], dtype=dtype)


def test_hsv_transform_by_hand(aug):
    """Red (255, 0, 0) is H 0, S 1, V 1: hue +1/3 -> green, -1/3 -> blue (wrapped to 2/3).
    (200, 100, 50): V = 200/255, S = 150/200 = 0.75, H = (1/3)/6 (f = 1/3 in sector 0: r = V, g = t,
    b = p). Saturation x0.5 -> S .375: g = V(1 - .375*2/3) = 150, b = V(1 - .375) = 125. Saturation x1.5
    -> S 1.125 (not clamped, as Darknet): g = V(1 - 1.125*2/3) = 50, b = V(1 - 1.125) < 0 -> 0 (clamping S
    first would give g = 67). Exposure scales V: x1.2 -> (240, 120, 60), x0.8 -> (160, 80, 40), x2 ->
    (400, 200, 100) clamped to (255, 200, 100). Grey and black have no hue or saturation to change."""
    H = aug.DarknetHSVTransform
    assert H(1 / 3, 1.0, 1.0).apply_image(_px(255, 0, 0)).tolist() == [[[0, 255, 0]]]
    assert H(-1 / 3, 1.0, 1.0).apply_image(_px(255, 0, 0)).tolist() == [[[0, 0, 255]]]
    assert H(0.0, 0.5, 1.0).apply_image(_px(200, 100, 50)).tolist() == [[[200, 150, 125]]]
    assert H(0.0, 1.5, 1.0).apply_image(_px(200, 100, 50)).tolist() == [[[200, 50, 0]]]
    assert H(0.0, 1.0, 1.2).apply_image(_px(200, 100, 50)).tolist() == [[[240, 120, 60]]]
    assert H(0.0, 1.0, 0.8).apply_image(_px(200, 100, 50)).tolist() == [[[160, 80, 40]]]
    assert H(0.0, 1.0, 2.0).apply_image(_px(200, 100, 50)).tolist() == [[[255, 200, 100]]]
    assert H(0.3, 1.5, 1.0).apply_image(_px(90, 90, 90)).tolist() == [[[90, 90, 90]]]
    assert H(0.3, 1.5, 2.0).apply_image(_px(90, 90, 90)).tolist() == [[[180, 180, 180]]]
    assert H(0.3, 1.5, 2.0).apply_image(_px(0, 0, 0)).tolist() == [[[0, 0, 0]]]
    assert H(0.0, 1.0, 1.0).apply_image(_px(17, 200, 90)).tolist() == [[[17, 200, 90]]]  # identity
    # a float image stays float, unrounded
    out = H(0.0, 0.5, 1.0).apply_image(_px(200, 100, 51, dtype=np.float32))
    assert out.dtype == np.float32 and np.allclose(out, [[[200, 150, 125.5]]])  # S .745 -> .3725
    coords = np.array([[1.0, 2.0]])
    assert H(0.1, 1.2, 0.9).apply_coords(coords) is coords
    with pytest.raises(ValueError, match="HxWx3"):
        H(0.1, 1.0, 1.0).apply_image(np.zeros((2, 2), np.uint8))


def test_hsv_conversions_match_darknet_on_every_sector(aug):
    """rgb -> hsv -> rgb round-trips, and the hue of the six primary/secondary colours is k/6."""
    colours = np.array([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float64)
    hsv = aug.darknet_rgb_to_hsv(colours)
    assert np.allclose(hsv[:, 0], np.arange(6) / 6) and np.allclose(hsv[:, 1:], 1)
    rgb = np.random.RandomState(0).rand(500, 3)
    assert np.allclose(aug.darknet_hsv_to_rgb(aug.darknet_rgb_to_hsv(rgb)), rgb)
    assert np.allclose(aug.darknet_hsv_to_rgb(np.array([1.0, 1.0, 1.0])), [1, 0, 0])  # h = 1 is h = 0


def test_hsv_distortion_draws_as_darknet(aug, monkeypatch):
    """Draws: dhue ~ U(-.1, .1), U(1, 1.5) kept (coin >= .5), U(1, 1.5) inverted (coin < .5)."""
    bounds = _scripted(monkeypatch, uniform=[0.05, 1.25, 1.4], rand=[0.7, 0.2])
    tfm = aug.DarknetHSVDistortion().get_transform(_px(1, 2, 3))
    assert bounds == [(-0.1, 0.1), (1.0, 1.5), (1.0, 1.5)]
    assert isinstance(tfm, aug.DarknetHSVTransform)
    assert (tfm.hue, tfm.saturation, tfm.exposure) == (0.05, 1.25, pytest.approx(1 / 1.4))
    bounds = _scripted(monkeypatch, uniform=[-0.2, 2.0, 3.0], rand=[0.1, 0.9])
    tfm = aug.DarknetHSVDistortion(hue=0.25, saturation=2.0, exposure=3.0).get_transform(_px(1, 2, 3))
    assert bounds == [(-0.25, 0.25), (1.0, 2.0), (1.0, 3.0)]
    assert (tfm.hue, tfm.saturation, tfm.exposure) == (-0.2, 0.5, 3.0)
    bad_args = (({"hue": 1.5}, "hue=1.5"), ({"saturation": 0}, "saturation=0"), ({"exposure": -1}, "exposure=-1"))
    for bad, match in bad_args:
        with pytest.raises(ValueError, match=match):
            aug.DarknetHSVDistortion(**bad)


def test_hsv_distortion_seeded_range(aug):
    """Real draws: dhue in [-.1, .1], dsat and dexp in [1/1.5, 1.5], both sides of 1 reached."""
    np.random.seed(0)
    draws = [aug.DarknetHSVDistortion().get_transform(_px(1, 2, 3)) for _ in range(200)]
    assert all(abs(t.hue) <= 0.1 for t in draws)
    for name in ("saturation", "exposure"):
        values = np.array([getattr(t, name) for t in draws])
        assert values.min() >= 1 / 1.5 - 1e-9 and values.max() <= 1.5 and (values < 1).any() and (values > 1).any()


# ----------------------------------------------------------------------------- multi-scale schedule
def test_multiscale_schedule_blocks_values_and_determinism(aug):
    sizes = aug.DARKNET_MULTISCALE_SIZES
    assert sizes == (320, 352, 384, 416, 448, 480, 512, 544, 576, 608)
    a = aug.MultiScaleSchedule(sizes, period=10, seed=0)
    drawn = [a.size_at(i) for i in range(2000)]
    blocks = [drawn[i : i + 10] for i in range(0, 2000, 10)]
    assert all(len(set(b)) == 1 for b in blocks) and set(drawn) == set(sizes)
    assert any(blocks[k][0] != blocks[k + 1][0] for k in range(len(blocks) - 1))
    assert drawn == [aug.MultiScaleSchedule(list(sizes), seed=0).size_at(i) for i in range(2000)]
    other = [aug.MultiScaleSchedule(sizes, seed=1).size_at(i) for i in range(2000)]
    assert other != drawn
    # period 1: a size per iteration; size_at depends on the iteration only, not on call order
    b = aug.MultiScaleSchedule(sizes, period=1, seed=5)
    forward = [b.size_at(i) for i in range(50)]
    assert [b.size_at(i) for i in reversed(range(50))] == forward[::-1] and len(set(forward)) > 3


def test_multiscale_schedule_is_the_same_in_another_process(aug):
    """A fresh interpreter with another hash seed (as a resumed run or another GPU) draws the same sizes."""
    code = (
        "import random\n"
        "sizes = tuple(range(320, 609, 32))\n"
        "print([random.Random(f'd2imbalance.multiscale:7:{b}').choice(sizes) for b in range(30)])\n"
    )
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    schedule = aug.MultiScaleSchedule(aug.DARKNET_MULTISCALE_SIZES, period=10, seed=7)
    assert out.stdout.strip() == str([schedule.size_at(10 * b + 3) for b in range(30)])


def test_multiscale_schedule_final_size(aug):
    s = aug.MultiScaleSchedule((320, 352), period=10, seed=0, final_size=608, final_iters=200, max_iter=1000)
    assert {s.size_at(i) for i in range(800)} == {320, 352}
    assert all(s.size_at(i) == 608 for i in range(800, 1000)) and s.size_at(5000) == 608
    d = aug.MultiScaleSchedule.darknet(max_iter=500200, seed=3)
    assert (d.sizes, d.period, d.final_size, d.final_iters) == (aug.DARKNET_MULTISCALE_SIZES, 10, 608, 200)
    assert d.size_at(500000) == 608 and d.size_at(499999) == aug.MultiScaleSchedule(d.sizes, seed=3).size_at(499999)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"sizes": ()}, r"sizes=\(\)\) is empty; give the input sizes"),
        ({"sizes": (320, 0)}, r"has 0; every size must be a positive int"),
        ({"sizes": (320, 416.0)}, r"has 416.0; every size must be a positive int"),
        ({"sizes": (320,), "period": 0}, r"period=0\) must be an int >= 1"),
        ({"sizes": (320,), "final_iters": -1}, r"final_iters=-1\) must be an int >= 0"),
        ({"sizes": (320,), "final_iters": 200}, r"final_iters=200\) needs final_size and max_iter"),
        ({"sizes": (320,), "final_iters": 200, "final_size": 608}, r"max_iter=None\); set both"),
        ({"sizes": (320,), "final_size": 0}, r"final_size=0\) must be a positive int"),
        ({"sizes": (320,), "seed": 1.5}, r"seed=1.5\) must be an int"),
    ],
)
def test_multiscale_schedule_errors(aug, kwargs, match):
    with pytest.raises(ValueError, match=match):
        aug.MultiScaleSchedule(**kwargs)


def test_multiscale_schedule_rejects_negative_iterations(aug):
    with pytest.raises(ValueError, match="iterations count from 0"):
        aug.MultiScaleSchedule((320,)).size_at(-1)


# ----------------------------------------------------------------------------- resize_batch
def test_resize_batch_by_hand(aug):
    """4x4 -> 2x2 (align_corners=False, factor 2): output pixel centres at source 0.5 and 2.5, midway
    between two pixels: the 2x2 block means. 2x2 -> 4x4: sources -0.25 (edge), 0.25, 0.75, 1.25 (edge)."""
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4).repeat(2, 3, 1, 1)
    x[1] *= 2
    boxes = [torch.tensor([[1.0, 1.0, 3.0, 4.0]]), torch.zeros((0, 4))]
    out, out_boxes = aug.resize_batch(x, boxes, 2)
    assert out.shape == (2, 3, 2, 2)
    assert out[0, 0].tolist() == [[2.5, 4.5], [10.5, 12.5]] and out[1, 2].tolist() == [[5, 9], [21, 25]]
    assert out_boxes[0].tolist() == [[0.5, 0.5, 1.5, 2.0]] and out_boxes[1].shape == (0, 4)
    assert boxes[0].tolist() == [[1.0, 1.0, 3.0, 4.0]]  # inputs untouched

    small = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]]]])
    up, up_boxes = aug.resize_batch(small, [torch.tensor([[0.0, 0.5, 1.0, 2.0]])], 4)
    assert up[0, 0, 0].tolist() == [0, 0.25, 0.75, 1] and up[0, 0, 1, 1].item() == 0.75
    assert up_boxes[0].tolist() == [[0.0, 1.0, 2.0, 4.0]]
    same, same_boxes = aug.resize_batch(x, boxes, 4)
    assert same is x and same_boxes[0] is boxes[0]


def test_resize_batch_errors(aug):
    with pytest.raises(ValueError, match="square canvases.*got 4x6"):
        aug.resize_batch(torch.zeros(1, 3, 4, 6), [torch.zeros(0, 4)], 2)
    with pytest.raises(ValueError, match=r"shape \(N, C, H, W\)"):
        aug.resize_batch(torch.zeros(3, 4, 4), [torch.zeros(0, 4)], 2)
    with pytest.raises(ValueError, match="1 images but 2 box tensors"):
        aug.resize_batch(torch.zeros(1, 3, 4, 4), [torch.zeros(0, 4)] * 2, 2)
    with pytest.raises(ValueError, match="size=0"):
        aug.resize_batch(torch.zeros(1, 3, 4, 4), [torch.zeros(0, 4)], 0)


# ----------------------------------------------------------------------------- through detectron2's DatasetMapper
def _record(tmp_path, colour=(200, 100, 50), h=48, w=80):
    import cv2
    from detectron2.structures import BoxMode

    path = str(tmp_path / "img.png")
    cv2.imwrite(path, np.full((h, w, 3), colour[::-1], np.uint8))  # cv2 writes BGR
    return {
        "file_name": path,
        "height": h,
        "width": w,
        "annotations": [
            {"bbox": [10, 8, 30, 24], "bbox_mode": BoxMode.XYWH_ABS, "category_id": 1},  # (10, 8, 40, 32)
            {"bbox": [60, 0, 80, 48], "bbox_mode": BoxMode.XYXY_ABS, "category_id": 2},
        ],
    }


def test_dataset_mapper_end_to_end(aug, T, tmp_path):
    from detectron2.data import DatasetMapper

    record = _record(tmp_path)
    mapper = DatasetMapper(
        is_train=True,
        augmentations=[aug.DarknetJitterCrop(64), aug.DarknetHSVDistortion(), T.RandomFlip()],
        image_format="RGB",
    )
    np.random.seed(0)
    counts = set()
    for _ in range(15):
        out = mapper(record)
        assert out["image"].shape == (3, 64, 64) and out["image"].dtype == torch.uint8
        boxes = out["instances"].gt_boxes.tensor
        assert (boxes >= 0).all() and (boxes <= 64).all() and (boxes[:, 2:] - boxes[:, :2] >= 0.064).all()
        assert set(out["instances"].gt_classes.tolist()) <= {1, 2}
        counts.add(len(boxes))
    assert 2 in counts


def test_dataset_mapper_places_pixels_and_boxes_together(aug, T, tmp_path, monkeypatch):
    """Scripted jitter crop on the 48x80 image: new_ar = 80/48 >= 1, scale 0.5 -> nw = 32, nh = 19.2 (x0.4),
    at (10, 20): box (10, 8, 40, 32) -> (14, 23.2, 26, 32.8) and (60, 0, 80, 48) -> (34, 20, 42, 39.2); the
    pixels whose centre is in [10, 42) x [20, 39.2) are the image colour, the rest grey 128. Scale 2 (x1.6:
    nw 128, nh 76.8) at dx = -60, dy = 0, a crop: the boxes map to (-44, 12.8, 4, 51.2) and (36, 0, 68, 76.8),
    clipped to the canvas. At dx = -63.99 the first keeps a 0.01-pixel sliver (< 0.001 x 64): Darknet's rule
    drops it, detectron2's own (<= 1e-5) would not."""
    from detectron2.data import DatasetMapper

    record = _record(tmp_path)
    mapper = DatasetMapper(is_train=True, augmentations=[aug.DarknetJitterCrop(64)], image_format="RGB")
    _scripted(monkeypatch, uniform=[0.0, 0.0, 0.5, 10.0, 20.0])
    out = mapper(record)
    image = out["image"].permute(1, 2, 0).numpy()
    assert image[30, 20].tolist() == [200, 100, 50] and image[0, 0].tolist() == [128] * 3
    assert image[19, 20].tolist() == [128] * 3 and image[38, 41].tolist() == [200, 100, 50]
    assert image[39, 20].tolist() == [128] * 3 and image[30, 42].tolist() == [128] * 3  # centre 39.5 > 39.2
    assert np.allclose(out["instances"].gt_boxes.tensor.numpy(), [[14, 23.2, 26, 32.8], [34, 20, 42, 39.2]])

    _scripted(monkeypatch, uniform=[0.0, 0.0, 2.0, -60.0, 0.0])
    boxes = mapper(record)["instances"].gt_boxes.tensor.numpy()
    assert np.allclose(boxes, [[0, 12.8, 4, 51.2], [36, 0, 64, 64]])
    _scripted(monkeypatch, uniform=[0.0, 0.0, 2.0, -63.99, 0.0])
    out = mapper(record)
    assert out["instances"].gt_classes.tolist() == [2]
    assert np.allclose(out["instances"].gt_boxes.tensor.numpy(), [[32.01, 0, 64, 64]], atol=1e-4)
    _scripted(monkeypatch, uniform=[0.0, 0.0, 2.0, -63.99, 0.0])
    no_min = DatasetMapper(is_train=True, augmentations=[aug.DarknetJitterCrop(64, min_box_frac=0)], image_format="RGB")
    assert no_min(record)["instances"].gt_classes.tolist() == [1, 2]  # detectron2's own rule keeps the sliver


# Mutation survivors, explained (hand-run mutations of d2imbalance/data/darknet_augmentation.py):
# * DarknetHSVTransform without the np.mod wrap of the hue: darknet_hsv_to_rgb takes the sector index modulo
#   6 and f = 6h - floor(6h), so a hue outside [0, 1) already gives the wrapped colour (the wrap is kept for
#   clarity and for the H channel's range).
