"""train_net validates the training AND the test datasets before the first iteration: a broken test set
stops the run at once instead of after training, and ``train.validate_decode_images`` reaches the check."""
import json
import logging

import numpy as np
import pytest

pytestmark = pytest.mark.detectron2

CONFIG = "Baselines/retinanet_shapes.py"


def _dataset(tmp_path, name, bbox=(1, 1, 5, 5), truncate=False, area=True):
    """Register a one-image COCO dataset under ``name`` in its own directory."""
    from detectron2.data.datasets import register_coco_instances
    from PIL import Image

    root = tmp_path / name
    root.mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(root / "1.jpg")
    if truncate:
        data = (root / "1.jpg").read_bytes()
        (root / "1.jpg").write_bytes(data[: len(data) // 2])
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "bbox": list(bbox), "iscrowd": 0}
    if area:
        annotation["area"] = 25.0
    coco = {
        "images": [{"id": 1, "file_name": "1.jpg", "width": 50, "height": 40}],
        "annotations": [annotation],
        # The shapes configs' four classes, so that only the problem under test is found.
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(("circle", "square", "triangle", "star"))],
    }
    (root / "ann.json").write_text(json.dumps(coco))
    register_coco_instances(name, {}, str(root / "ann.json"), str(root))
    return str(root / "ann.json")


def _cfg(train, test, **train_options):
    from d2imbalance import get_config

    cfg = get_config(CONFIG)
    cfg.dataloader.train.dataset.names = train
    cfg.dataloader.test.dataset.names = test
    for key, value in train_options.items():
        cfg.train[key] = value
    return cfg


@pytest.fixture
def log_lines():
    """Messages of the d2imbalance logger (detectron2's setup_logger stops propagation to pytest)."""
    lines = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append((record.levelname, record.getMessage()))
    logger = logging.getLogger("d2imbalance")
    previous_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(previous_level)


def test_a_broken_test_dataset_is_named_before_training(tmp_path, log_lines):
    from d2imbalance.data.validation import DatasetValidationError
    from d2imbalance.engine import validate_datasets

    _dataset(tmp_path, "checks_train_ok")
    broken = _dataset(tmp_path, "checks_test_nan", bbox=(float("nan"), 1, 5, 5))
    with pytest.raises(DatasetValidationError) as err:
        validate_datasets(_cfg("checks_train_ok", "checks_test_nan"))
    text = str(err.value)
    assert f"Dataset checks_test_nan in dataloader.test ({broken})" in text
    assert "non-finite boxes: 1 annotations" in text and "(ids: 7 (bbox=[nan, 1, 5, 5]))" in text
    # The training set was checked first, and passed.
    assert ("INFO", f"Dataset checks_train_ok in dataloader.train ({tmp_path / 'checks_train_ok' / 'ann.json'}): "
            "1 images, 1 annotations: no problems found.") in log_lines


def test_only_the_evaluated_test_dataset_needs_area(tmp_path):
    """COCOeval reads each ground truth's 'area' after training; training itself does not."""
    from d2imbalance.data.validation import DatasetValidationError
    from d2imbalance.engine import validate_datasets

    _dataset(tmp_path, "checks_no_area", area=False)
    _dataset(tmp_path, "checks_val_ok")
    validate_datasets(_cfg("checks_no_area", "checks_val_ok"))
    with pytest.raises(DatasetValidationError, match=r"in dataloader.test .*\n.*fields COCOeval needs.*7 \(area=None\)"):
        validate_datasets(_cfg("checks_val_ok", "checks_no_area"))


def test_decode_images_switch_reaches_the_check(tmp_path):
    """A half-written JPEG has a readable header: found only with train.validate_decode_images=True."""
    from d2imbalance.data.validation import DatasetValidationError
    from d2imbalance.engine import validate_datasets

    _dataset(tmp_path, "checks_truncated", truncate=True)
    _dataset(tmp_path, "checks_val_ok2")
    validate_datasets(_cfg("checks_truncated", "checks_val_ok2"))
    validate_datasets(_cfg("checks_truncated", "checks_val_ok2", validate_decode_images=False))
    with pytest.raises(DatasetValidationError, match=r"undecodable image files: 1 .*ids: 1 \(.*image file is truncated"):
        validate_datasets(_cfg("checks_truncated", "checks_val_ok2", validate_decode_images=True))


def test_filter_empty_decides_the_empty_image_policy(tmp_path, log_lines):
    """get_detection_dataset_dicts drops images without annotations unless filter_empty=False."""
    from d2imbalance.data.datasets import prepare_datasets
    from d2imbalance.engine import validate_datasets

    prepare_datasets(["shapes_mini_train"])  # 24 images, some without objects
    _dataset(tmp_path, "checks_val_ok3")
    cfg = _cfg("shapes_mini_train", "checks_val_ok3")
    cfg.dataloader.train.dataset.filter_empty = True
    validate_datasets(cfg)
    warnings = [m for level, m in log_lines if level == "WARNING"]
    assert len(warnings) == 1 and "Dataset shapes_mini_train in dataloader.train" in warnings[0]
    assert "will be DROPPED by the dataloader (filter_empty=True)" in warnings[0]
    log_lines.clear()
    cfg.dataloader.train.dataset.filter_empty = False
    validate_datasets(cfg)
    assert [level for level, _ in log_lines] == ["INFO", "INFO"]
    assert "they are kept as negatives" in log_lines[0][1]
    del cfg.dataloader.train.dataset.filter_empty  # the function's default, filter_empty=True
    log_lines.clear()
    validate_datasets(cfg)
    assert [level for level, _ in log_lines] == ["WARNING", "INFO"]


def test_datasets_without_a_json_file_are_skipped_with_a_note(tmp_path, log_lines):
    from detectron2.data import DatasetCatalog

    from d2imbalance.engine import validate_datasets

    DatasetCatalog.register("checks_no_json", lambda: [])
    _dataset(tmp_path, "checks_val_ok4")
    validate_datasets(_cfg(["checks_no_json", "checks_val_ok4"], "checks_no_json"))
    assert log_lines[0] == (
        "INFO", "Dataset checks_no_json in dataloader.train has no json_file in its metadata; not a COCO file, "
        "not validated.")
    assert log_lines[1][1].startswith("Dataset checks_val_ok4 in dataloader.train (")
    assert log_lines[2][1].startswith("Dataset checks_no_json in dataloader.test has no json_file")
    assert len(log_lines) == 3


@pytest.mark.parametrize("validate", [True, False])
def test_main_validates_before_training_unless_told_not_to(tmp_path, monkeypatch, validate):
    from d2imbalance import engine
    from d2imbalance.data.validation import DatasetValidationError

    _dataset(tmp_path, f"checks_main_train_{validate}")
    _dataset(tmp_path, f"checks_main_test_{validate}", bbox=(1, 1, 5, "5"))
    trained = []
    monkeypatch.setattr(engine, "do_train", lambda args, cfg: trained.append(cfg))
    args = engine.default_argument_parser().parse_args([
        "--config-file", CONFIG, f"train.output_dir={tmp_path / 'out'}", f"train.validate_datasets={validate}",
        f"dataloader.train.dataset.names=checks_main_train_{validate}",
        f"dataloader.test.dataset.names=checks_main_test_{validate}",
    ])
    if validate:
        with pytest.raises(DatasetValidationError, match="malformed boxes"):
            engine.main(args)
        assert trained == []
    else:
        engine.main(args)
        assert len(trained) == 1
