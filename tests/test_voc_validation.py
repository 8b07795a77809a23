"""The Pascal VOC validator on tiny hand-written VOC trees: each problem is found, named by the XML file
(object position and name where relevant) with what is wrong, and comes with its fix. Pure Python (PIL
and numpy) but for the last tests, which check against detectron2's own loader and train_net's path."""
import logging

import numpy as np
import pytest
from PIL import Image

from d2imbalance.data.validation import DatasetValidationError
from d2imbalance.data.voc_validation import validate_voc

CLASSES = ("cat", "dog", "person")
COORDINATES = ("xmin", "ymin", "xmax", "ymax")


def _object(name="dog", box=(5, 6, 20, 30), pose="Unspecified", truncated=0, difficult=0):
    """One <object>; a field given as None is left out (a coordinate of None: that tag is left out)."""
    parts = [f"<name>{name}</name>" if name is not None else ""]
    for tag, value in (("pose", pose), ("truncated", truncated), ("difficult", difficult)):
        parts.append(f"<{tag}>{value}</{tag}>" if value is not None else "")
    if box is not None:
        coordinates = "".join(f"<{k}>{v}</{k}>" for k, v in zip(COORDINATES, box) if v is not None)
        parts.append(f"<bndbox>{coordinates}</bndbox>")
    return "<object>" + "".join(parts) + "</object>"


def _annotation(*objects, width=50, height=40, size=None):
    """An XML file's text: <size> of width x height (or the given <size> text) and the objects."""
    if size is None:
        size = f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"
    return f"<annotation><folder>VOC</folder><filename>x.jpg</filename>{size}{''.join(objects)}</annotation>"


def _save_jpeg(path, width=50, height=40):
    pixels = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, format="JPEG")


def _tree(root, annotations, split="trainval", ids=None):
    """A VOC tree under ``root``: one XML per id of ``annotations`` (id -> text) and a 50x40 JPEG for each;
    the split file lists ``ids`` (default: the annotations' ids, in order)."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, text in annotations.items():
        (root / "Annotations" / f"{image_id}.xml").write_text(text)
        _save_jpeg(root / "JPEGImages" / f"{image_id}.jpg")
    ids = list(annotations) if ids is None else ids
    (root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return str(root)


def _xml(root, image_id):
    return str(root / "Annotations" / f"{image_id}.xml")


def _jpeg(root, image_id):
    return str(root / "JPEGImages" / f"{image_id}.jpg")


def _problems(tmp_path, *objects, **kwargs):
    """Problems of a two-image tree: 000001 holds ``objects``, 000002 a clean dog."""
    _tree(tmp_path, {"000001": _annotation(*objects), "000002": _annotation(_object())})
    return validate_voc(str(tmp_path), "trainval", CLASSES, **kwargs).by_kind()


def _details(tmp_path, kind, *objects, **kwargs):
    """(ids, details) of one kind, which must be the only problem found."""
    problems = _problems(tmp_path, *objects, **kwargs)
    assert list(problems) == [kind]
    return problems[kind].ids, problems[kind].details


def test_a_clean_tree_has_no_problems(tmp_path):
    """Whole-image, one-pixel and difficult objects are all fine, also for the evaluator and decoded."""
    dirname = _tree(tmp_path, {
        "000001": _annotation(_object(box=(1, 1, 50, 40)), _object("cat", box=(7, 7, 7, 7), difficult=1)),
        "000002": _annotation(_object("person", box=(0, 0, 51, 41))),  # 1 px out: within the tolerance
    })
    report = validate_voc(dirname, "trainval", CLASSES, dataset="mine", decode_images=True, evaluated=True)
    assert report.problems == []
    assert (report.num_images, report.num_annotations) == (2, 3)
    split_file = tmp_path / "ImageSets" / "Main" / "trainval.txt"
    assert report.summary() == f"Dataset mine ({split_file}): 2 images, 3 annotations: no problems found."
    report.raise_if_fatal()
    # class_names as detectron2's metadata holds them (a list), and a dataset without a name.
    assert validate_voc(dirname, "trainval", list(CLASSES)).summary() == (
        f"Dataset {split_file}: 2 images, 3 annotations: no problems found.")


def test_a_missing_split_file_is_named(tmp_path):
    _tree(tmp_path, {"000001": _annotation(_object())}, split="train")
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    split_file = str(tmp_path / "ImageSets" / "Main" / "trainval.txt")
    assert [p.kind for p in report.problems] == ["missing split file"]
    problem = report.problems[0]
    assert problem.ids == [split_file] and problem.fatal
    assert problem.fix == (
        "check the dataset's dirname and split: detectron2 reads <dirname>/ImageSets/Main/<split>.txt.")
    assert (report.num_images, report.num_annotations) == (0, 0)


@pytest.mark.parametrize(
    "content,detail",
    [
        ("000001\n", "a single id ('000001'): loadtxt returns a 0-d array, which detectron2 cannot iterate"),
        ("000001 1\n000002 -1\n", "2 columns per line, not 1"),
        ("000001\n000002 1\n", "the number of columns changed from 1 to 2 at row 2; use `usecols` to select"),
    ],
)
def test_a_split_file_detectron2_cannot_read_is_named(tmp_path, content, detail):
    _tree(tmp_path, {"000001": _annotation(_object()), "000002": _annotation(_object())})
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text(content)
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    assert [p.kind for p in report.problems] == ["unusable split file"]
    problem = report.problems[0]
    assert problem.ids == [str(tmp_path / "ImageSets" / "Main" / "trainval.txt")] and problem.fatal
    assert problem.details[0].startswith(detail)
    assert "at least two" in problem.fix and report.num_images == 0


def test_an_empty_split_is_an_error(tmp_path):
    _tree(tmp_path, {"000001": _annotation(_object())}, ids=[])
    problem = validate_voc(str(tmp_path), "trainval", CLASSES).by_kind()["no images"]
    assert problem.ids == [str(tmp_path / "ImageSets" / "Main" / "trainval.txt")] and problem.fatal


def test_ids_listed_twice_are_named_and_counted_as_detectron2_loads_them(tmp_path):
    _tree(tmp_path, {"a": _annotation(_object(), _object()), "b": _annotation(_object())}, ids=["a", "b", "a", "a"])
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    assert [p.kind for p in report.problems] == ["duplicate ids"]
    assert report.problems[0].ids == ["a"] and report.problems[0].details == ["listed 3 times"]
    assert report.problems[0].fatal
    assert (report.num_images, report.num_annotations) == (4, 7)


def test_an_id_without_xml_is_named_with_its_path(tmp_path):
    _tree(tmp_path, {"000001": _annotation(_object())}, ids=["000001", "000002"])
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    assert [p.kind for p in report.problems] == ["missing XML files"]
    problem = report.problems[0]
    assert problem.ids == [_xml(tmp_path, "000002")] and problem.fatal
    split_file = tmp_path / "ImageSets" / "Main" / "trainval.txt"
    assert problem.fix == f"restore the files or remove those ids from {split_file}."
    assert (report.num_images, report.num_annotations) == (2, 1)


def test_unreadable_xml_is_named_with_the_parser_message(tmp_path):
    _tree(tmp_path, {"a": "<annotation><size>", "b": "", "c": _annotation(_object())})
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    assert [p.kind for p in report.problems] == ["unreadable XML files"]
    problem = report.problems[0]
    assert problem.ids == [_xml(tmp_path, "a"), _xml(tmp_path, "b")] and problem.fatal
    assert problem.details == ["no element found: line 1, column 18", "no element found: line 1, column 0"]
    assert "(line, column)" in problem.fix and report.num_annotations == 1


@pytest.mark.parametrize(
    "size,detail",
    [
        ("", "no <size>"),
        ("<size><width>50</width></size>", "height=None"),
        ("<size><width>abc</width><height>40</height></size>", "width='abc'"),
        ("<size><width>50.0</width><height>40</height></size>", "width='50.0'"),  # detectron2 reads int(text)
        ("<size><width>50</width><height>0</height></size>", "height='0'"),
        ("<size><width>-50</width><height>40</height></size>", "width='-50'"),
        ("<size><width>50</width><height></height></size>", "height=''"),
    ],
)
def test_a_bad_size_is_named_and_skips_the_checks_that_need_it(tmp_path, size, detail):
    """Without a size, boxes cannot be compared with the image nor the file's size with the XML."""
    _tree(tmp_path, {"a": _annotation(_object(box=(100, 100, 120, 120)), size=size), "b": _annotation(_object())})
    (tmp_path / "JPEGImages" / "a.jpg").unlink()
    problems = validate_voc(str(tmp_path), "trainval", CLASSES).by_kind()
    assert list(problems) == ["bad <size> entries"]
    assert problems["bad <size> entries"].ids == [_xml(tmp_path, "a")]
    assert problems["bad <size> entries"].details == [detail] and problems["bad <size> entries"].fatal


def test_sizes_with_spaces_are_read_as_detectron2_reads_them(tmp_path):
    """int(" 50 ") == 50, as detectron2's loader reads it."""
    spaced = "<size><width> 50 </width><height>40\n</height></size>"
    _tree(tmp_path, {"a": _annotation(_object(), size=spaced), "b": _annotation(_object(), size=spaced)})
    assert validate_voc(str(tmp_path), "trainval", CLASSES).problems == []


def test_a_one_pixel_image_with_its_one_pixel_box_is_valid(tmp_path):
    _tree(tmp_path, {"a": _annotation(_object(box=(1, 1, 1, 1)), width=1, height=1), "b": _annotation(_object())})
    _save_jpeg(tmp_path / "JPEGImages" / "a.jpg", 1, 1)
    assert validate_voc(str(tmp_path), "trainval", CLASSES, decode_images=True, evaluated=True).problems == []


def test_unknown_class_names_are_named_with_the_closest_class(tmp_path):
    objects = (_object("dog"), _object("dgo"), _object("zebra"), _object(None), _object(""), _object("dog "))
    ids, details = _details(tmp_path, "unknown class names", *objects)
    assert ids == [_xml(tmp_path, "000001")] * 5
    assert details == [
        "object 2 'dgo': closest class 'dog'", "object 3 'zebra': no class is close", "object 4: no <name>",
        "object 5: no <name>", "object 6 'dog ': closest class 'dog'",  # detectron2 matches the text exactly
    ]
    problem = _problems(tmp_path, _object("dgo"))["unknown class names"]
    assert problem.fatal
    assert problem.what == "objects have a <name> not among the dataset's classes ['cat', 'dog', 'person']"
    assert problem.fix.startswith("correct the <name>") and "register_pascal_voc's class_names" in problem.fix


@pytest.mark.parametrize(
    "box,detail",
    [
        (None, "no <bndbox>"),
        ((5, 6, 20, None), "no <ymax>"),
        ((None, 6, 20, 30), "no <xmin>"),
        (("abc", 6, 20, 30), "xmin='abc'"),
        ((5, "", 20, 30), "ymin=''"),
        ((5, 6, "2O", 30), "xmax='2O'"),
    ],
)
def test_malformed_boxes_are_named(tmp_path, box, detail):
    ids, details = _details(tmp_path, "malformed boxes", _object(box=box))
    assert ids == [_xml(tmp_path, "000001")] and details == [f"object 1 'dog': {detail}"]
    # ... and are not looked at further, also not by the evaluator's check.
    assert list(_problems(tmp_path, _object(box=box), evaluated=True)) == ["malformed boxes"]


@pytest.mark.parametrize(
    "box,shown",
    [
        (("nan", 6, 20, 30), "nan, 6, 20, 30"),
        ((5, 6, "inf", 30), "5, 6, inf, 30"),
        ((5, "-inf", 20, 30), "5, -inf, 20, 30"),
        ((5, 6, 20, "NaN"), "5, 6, 20, nan"),
    ],
)
def test_non_finite_boxes_are_named(tmp_path, box, shown):
    """float() reads "nan" and "inf"; detectron2 would drop such boxes without a word."""
    ids, details = _details(tmp_path, "non-finite boxes", _object(box=box), evaluated=True)
    assert ids == [_xml(tmp_path, "000001")] and details == [f"object 1 'dog': (xmin, ymin, xmax, ymax)=({shown})"]


@pytest.mark.parametrize(
    "box,empty",
    [
        ((10, 6, 9, 30), True),  # xmax < xmin
        ((5, 30, 20, 29), True),  # ymax < ymin
        ((10, 6, 10, 30), False),  # xmax == xmin: one pixel wide (1-based, inclusive)
        ((5, 30, 20, 30), False),  # one pixel high
        ((10.5, 6, 10, 30), False),  # (9.5, 10) in detectron2's coordinates: half a pixel
        ((11, 6, 10, 30), True),  # (10, 10): nothing
        ((5, 31, 20, 30), True),
        ((11.5, 6, 10, 30), True),
    ],
)
def test_empty_boxes_as_detectron2_reads_voc_coordinates(tmp_path, box, empty):
    problems = _problems(tmp_path, _object(box=box), evaluated=False)
    if empty:
        assert list(problems) == ["empty boxes"] and problems["empty boxes"].fatal
        shown = ", ".join(f"{v:g}" for v in box)
        assert problems["empty boxes"].details == [f"object 1 'dog': (xmin, ymin, xmax, ymax)=({shown})"]
    else:
        assert problems == {}


@pytest.mark.parametrize(
    "box,kind",
    [  # the image is 50x40; detectron2's box is (xmin - 1, ymin - 1, xmax, ymax)
        ((51, 1, 60, 10), "boxes outside the image"),  # starts at the right edge
        ((50, 1, 60, 10), "boxes partly outside the image"),  # its last column is inside
        ((1, 41, 10, 50), "boxes outside the image"),  # starts at the bottom edge
        ((1, 40, 10, 50), "boxes partly outside the image"),
        ((-10, 1, 0, 10), "boxes outside the image"),  # ends at the left edge
        ((-10, 1, 1, 10), "boxes partly outside the image"),
        ((1, -10, 10, 0), "boxes outside the image"),  # ends at the top edge
        ((1, -10, 10, 1), "boxes partly outside the image"),
        ((0, 1, 10, 10), None),  # (-1, 0, 10, 10): 1 px out, within the tolerance
        ((-0.5, 1, 10, 10), "boxes partly outside the image"),
        ((1, 0, 10, 10), None),
        ((1, -0.5, 10, 10), "boxes partly outside the image"),
        ((1, 1, 51, 10), None),
        ((1, 1, 51.5, 10), "boxes partly outside the image"),
        ((1, 1, 10, 41), None),
        ((1, 1, 10, 41.5), "boxes partly outside the image"),
    ],
)
def test_boxes_outside_the_image(tmp_path, box, kind):
    problems = _problems(tmp_path, _object(box=box))
    assert list(problems) == ([kind] if kind else [])
    if kind:
        shown = ", ".join(f"{v:g}" for v in box)
        assert problems[kind].details == [f"object 1 'dog': (xmin, ymin, xmax, ymax)=({shown}) in a 50x40 image"]
        assert problems[kind].fatal == (kind == "boxes outside the image")


def test_a_box_partly_outside_is_a_warning_with_the_clip_note(tmp_path):
    problem = _problems(tmp_path, _object(box=(45, 1, 60, 10)))["boxes partly outside the image"]
    assert problem.severity == "warning"
    assert problem.what == "boxes extend more than 1px beyond their image; detectron2 clips them"
    assert problem.fix == "clip them to 1..width and 1..height if that is not intended."


def test_the_difficult_flag_is_no_problem_but_must_be_an_integer(tmp_path):
    """d2imbalance's VOC loader reads <difficult> with int() (absent: 0)."""
    assert _problems(tmp_path, _object(difficult=1), _object(difficult=None)) == {}
    ids, details = _details(tmp_path, "bad difficult flags", _object(difficult="yes"), _object(difficult=""))
    assert ids == [_xml(tmp_path, "000001")] * 2
    assert details == ["object 1 'dog': difficult='yes'", "object 2 'dog': difficult=''"]


@pytest.mark.parametrize(
    "obj,detail",
    [
        (_object(pose=None), "no <pose>"),
        (_object(difficult=None), "no <difficult>"),
        (_object(truncated=None), "truncated=None"),
        (_object(truncated="no"), "truncated='no'"),
        (_object(box=(5.5, 6, 20, 30)), "xmin='5.5'"),
        (_object(box=(5, 6.5, 20, 30)), "ymin='6.5'"),
        (_object(box=(5, 6, 20.5, 30)), "xmax='20.5'"),
        (_object(box=(5, 6, 20, "30.0")), "ymax='30.0'"),
    ],
)
def test_evaluated_datasets_need_what_the_voc_evaluator_reads(tmp_path, obj, detail):
    """detectron2's parse_rec reads <pose>, int(<truncated>), int(<difficult>) and int() box coordinates."""
    assert _problems(tmp_path, obj) == {}
    ids, details = _details(tmp_path, "fields the VOC evaluator needs", obj, evaluated=True)
    assert ids == [_xml(tmp_path, "000001")] and details == [f"object 1 'dog': {detail}"]
    assert _problems(tmp_path, obj, evaluated=True)["fields the VOC evaluator needs"].fatal


def test_image_file_problems_are_named_with_xml_and_image(tmp_path):
    names = ("missing", "empty", "text", "wide", "ok")
    _tree(tmp_path, {name: _annotation(_object()) for name in names})
    (tmp_path / "JPEGImages" / "missing.jpg").unlink()
    (tmp_path / "JPEGImages" / "empty.jpg").write_bytes(b"")
    (tmp_path / "JPEGImages" / "text.jpg").write_bytes(b"not an image")
    _save_jpeg(tmp_path / "JPEGImages" / "wide.jpg", 60, 40)
    report = validate_voc(str(tmp_path), "trainval", CLASSES)
    assert [p.kind for p in report.problems] == [
        "missing image files", "empty image files", "unreadable image files", "image sizes disagree with the XML"]
    assert all(p.fatal for p in report.problems)
    problems = report.by_kind()
    assert problems["missing image files"].ids == [_xml(tmp_path, "missing")]
    assert problems["missing image files"].details == [_jpeg(tmp_path, "missing")]
    assert problems["empty image files"].details == [_jpeg(tmp_path, "empty")]
    assert problems["unreadable image files"].ids == [_xml(tmp_path, "text")]
    assert problems["unreadable image files"].details == [f"cannot identify image file {_jpeg(tmp_path, 'text')!r}"]
    assert problems["image sizes disagree with the XML"].ids == [_xml(tmp_path, "wide")]
    assert problems["image sizes disagree with the XML"].details == [
        f"{_jpeg(tmp_path, 'wide')}: XML 50x40, file 60x40 (width x height)"]
    assert problems["image sizes disagree with the XML"].fix == (
        "set <width> and <height> in the XML's <size> to the file's size.")
    assert problems["missing image files"].fix.startswith("restore the files or remove those ids from ")


def test_truncated_images_are_found_only_when_decoding(tmp_path):
    _tree(tmp_path, {"a": _annotation(_object()), "b": _annotation(_object())})
    data = (tmp_path / "JPEGImages" / "b.jpg").read_bytes()
    (tmp_path / "JPEGImages" / "b.jpg").write_bytes(data[: len(data) // 2])
    assert validate_voc(str(tmp_path), "trainval", CLASSES).problems == []
    problem = validate_voc(str(tmp_path), "trainval", CLASSES, decode_images=True).by_kind()["undecodable image files"]
    assert problem.ids == [_xml(tmp_path, "b")] and problem.fatal
    assert problem.details[0].startswith(f"{_jpeg(tmp_path, 'b')}: image file is truncated")


@pytest.mark.parametrize(
    "policy,severity,fix",
    [
        ("keep", "info", ""),
        ("drop", "warning", "set filter_empty=False in this dataloader's dataset to keep them as negatives."),
        ("error", "error", "annotate them or remove their ids from {split_file}."),
    ],
)
def test_images_without_objects_follow_the_policy(tmp_path, policy, severity, fix):
    _tree(tmp_path, {"a": _annotation(_object()), "b": _annotation()})
    report = validate_voc(str(tmp_path), "trainval", CLASSES, empty_images=policy)
    assert [p.kind for p in report.problems] == ["images without objects"]
    problem = report.problems[0]
    assert problem.ids == [_xml(tmp_path, "b")] and problem.severity == severity
    assert problem.fix == fix.format(split_file=tmp_path / "ImageSets" / "Main" / "trainval.txt")


def test_unknown_policy_is_rejected(tmp_path):
    with pytest.raises(ValueError, match="'sometimes'"):
        validate_voc(str(tmp_path), "trainval", CLASSES, empty_images="sometimes")


def test_problems_of_every_kind_are_listed_in_order_and_stop_the_run(tmp_path):
    _tree(tmp_path, {
        "a": _annotation(_object("dgo", box=(60, 1, 70, 10)), _object(box=(1, 1, 55, 10)), _object(box=(9, 1, 5, 5))),
        "b": _annotation(),
        "c": "<annotation>",
    }, ids=["a", "b", "c", "d", "b"])
    (tmp_path / "JPEGImages" / "a.jpg").unlink()
    report = validate_voc(str(tmp_path), "trainval", CLASSES, dataset="mine")
    assert [p.kind for p in report.problems] == [
        "duplicate ids", "missing XML files", "unreadable XML files", "unknown class names", "empty boxes",
        "boxes outside the image", "boxes partly outside the image", "missing image files", "images without objects",
    ]
    assert (report.num_images, report.num_annotations) == (5, 3)
    with pytest.raises(DatasetValidationError) as err:
        report.raise_if_fatal()
    text = str(err.value)
    split_file = tmp_path / "ImageSets" / "Main" / "trainval.txt"
    assert text.startswith(f"Dataset mine ({split_file}): 5 images, 3 annotations. Found:\n")
    assert (
        f"  [ERROR] unknown class names: 1 objects have a <name> not among the dataset's classes "
        f"['cat', 'dog', 'person'] (ids: {_xml(tmp_path, 'a')} (object 1 'dgo': closest class 'dog')). "
        "Fix: correct the <name>"
    ) in text
    assert ("[ERROR] missing XML files: 1 listed ids have no annotation file <id>.xml "
            f"(ids: {_xml(tmp_path, 'd')})") in text
    assert "[WARNING] boxes partly outside the image" in text and "[INFO] images without objects" in text
    assert "Training stopped: fix the ERROR lines above" in text


def test_warnings_and_information_do_not_stop(tmp_path):
    _tree(tmp_path, {"a": _annotation(_object(box=(45, 1, 60, 10))), "b": _annotation()})
    report = validate_voc(str(tmp_path), "trainval", CLASSES, empty_images="drop")
    assert [p.severity for p in report.problems] == ["warning", "warning"] and report.fatal == []
    report.raise_if_fatal()


# detectron2: the validator's reading agrees with detectron2's loader, and train_net runs it.


@pytest.mark.detectron2
def test_detectron2_reads_the_boxes_and_fails_as_the_validator_says(tmp_path):
    from detectron2.data.datasets.pascal_voc import load_voc_instances
    from detectron2.evaluation.pascal_voc_evaluation import parse_rec

    dirname = _tree(tmp_path, {"a": _annotation(_object(box=(1, 1, 50, 40)), _object("cat", box=(7, 8, 7, 8))),
                               "b": _annotation(_object("person"))})
    dicts = load_voc_instances(dirname, "trainval", CLASSES)
    assert [a["bbox"] for a in dicts[0]["annotations"]] == [[0, 0, 50, 40], [6, 7, 7, 8]]  # one pixel: not empty
    assert parse_rec(_xml(tmp_path, "a"))[1]["bbox"] == [7, 8, 7, 8]
    (tmp_path / "ImageSets" / "Main" / "trainval.txt").write_text("a\n")
    with pytest.raises(TypeError, match="0-d array"):
        load_voc_instances(dirname, "trainval", CLASSES)
    _tree(tmp_path, {"a": _annotation(_object("dog "))}, ids=["a", "a"])
    with pytest.raises(ValueError, match="'dog ' is not in list"):
        load_voc_instances(dirname, "trainval", list(CLASSES))
    _tree(tmp_path, {"b": _annotation(_object(), size="<size><width>50.0</width><height>40</height></size>")},
          ids=["b"] * 2)
    with pytest.raises(ValueError, match="'50.0'"):
        load_voc_instances(dirname, "trainval", CLASSES)
    (tmp_path / "Annotations" / "c.xml").write_text(_annotation(_object(box=(5.5, 6, 20, 30))))
    with pytest.raises(ValueError, match="'5.5'"):
        parse_rec(_xml(tmp_path, "c"))


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


def _register(tmp_path, name, annotations, split):
    from detectron2.data.datasets import register_pascal_voc

    dirname = _tree(tmp_path / name, annotations, split=split)
    register_pascal_voc(name, dirname, split, 2007, class_names=CLASSES)
    return tmp_path / name / "ImageSets" / "Main" / f"{split}.txt"


@pytest.mark.detectron2
def test_train_net_validates_voc_datasets_before_training(tmp_path, log_lines):
    from d2imbalance import get_config
    from d2imbalance.engine import validate_datasets

    train = _register(tmp_path, "voccheck_train", {"a": _annotation(_object()), "b": _annotation()}, "trainval")
    test = _register(tmp_path, "voccheck_test", {"c": _annotation(_object(pose=None)), "d": _annotation(_object())},
                     "test")
    cfg = get_config("Baselines/retinanet_shapes.py")
    cfg.dataloader.train.dataset.names = "voccheck_train"
    cfg.dataloader.test.dataset.names = "voccheck_test"
    cfg.dataloader.train.dataset.filter_empty = True
    with pytest.raises(DatasetValidationError) as err:
        validate_datasets(cfg)
    # The test set is evaluated: its <pose>-less object would fail detectron2's VOC evaluator after training.
    text = str(err.value)
    assert text.startswith(f"Dataset voccheck_test in dataloader.test ({test}): 2 images, 2 annotations. Found:\n")
    assert "fields the VOC evaluator needs: 1 objects" in text
    assert f"(ids: {tmp_path / 'voccheck_test' / 'Annotations' / 'c.xml'} (object 1 'dog': no <pose>))" in text
    # The training set was checked first: its empty image will be dropped (filter_empty=True), a warning.
    level, message = log_lines[0]
    assert level == "WARNING" and message.startswith(f"Dataset voccheck_train in dataloader.train ({train}): 2 images")
    assert "will be DROPPED by the dataloader (filter_empty=True)" in message
    log_lines.clear()
    cfg.dataloader.train.dataset.filter_empty = False
    cfg.dataloader.test.dataset.names = "voccheck_train"
    validate_datasets(cfg)  # only information: kept as negatives
    assert [level for level, _ in log_lines] == ["INFO", "INFO"]
    assert "no <object>; they are kept as negatives" in log_lines[0][1]


@pytest.mark.detectron2
def test_train_net_passes_the_decode_switch_to_voc_datasets(tmp_path):
    from d2imbalance import get_config
    from d2imbalance.engine import validate_datasets

    _register(tmp_path, "voccheck_truncated", {"a": _annotation(_object()), "b": _annotation(_object())}, "train")
    data = (tmp_path / "voccheck_truncated" / "JPEGImages" / "b.jpg").read_bytes()
    (tmp_path / "voccheck_truncated" / "JPEGImages" / "b.jpg").write_bytes(data[: len(data) // 2])
    cfg = get_config("Baselines/retinanet_shapes.py")
    cfg.dataloader.train.dataset.names = cfg.dataloader.test.dataset.names = "voccheck_truncated"
    validate_datasets(cfg)
    cfg.train.validate_decode_images = True
    with pytest.raises(DatasetValidationError, match=r"undecodable image files: 1 .*b\.xml \(.*b\.jpg: image file is"):
        validate_datasets(cfg)
