"""The checkpoint report separates loaded, new, mismatched and unused tensors."""
import pytest

pytestmark = pytest.mark.detectron2


def _model(**overrides):
    from detectron2.config import instantiate

    from d2imbalance import get_config

    cfg = get_config("Baselines/retinanet_shapes.py")
    for key, value in overrides.items():
        setattr(cfg.model, key, value)
    return instantiate(cfg.model)


def test_report_of_a_warm_start_with_other_num_classes_and_a_new_branch(tmp_path):
    import torch

    from d2imbalance.checkpoint import load_checkpoint_with_report

    source = _model()
    state = source.state_dict()
    state["head.retired_branch.weight"] = torch.zeros(3)
    torch.save({"model": state}, tmp_path / "vanilla.pth")

    target = _model(num_classes=7)
    target.head.new_branch = torch.nn.Conv2d(64, 9, 3)
    report = load_checkpoint_with_report(target, str(tmp_path / "vanilla.pth"))

    assert set(report.missing) == {"head.new_branch.weight", "head.new_branch.bias"}
    assert set(report.shape_mismatch) == {"head.cls_score.weight", "head.cls_score.bias"}
    assert report.shape_mismatch["head.cls_score.weight"] == ((36, 64, 3, 3), (63, 64, 3, 3))
    assert report.unexpected == ["head.retired_branch.weight"]
    assert len(report.loaded) == len(target.state_dict()) - 4
    assert torch.equal(target.head.bbox_pred.weight, source.head.bbox_pred.weight)
    text = report.describe()
    total = len(target.state_dict())  # loaded + 2 new + 2 mismatched
    assert text.startswith(f"Loaded {total - 4} of the model's {total} tensors from {tmp_path / 'vanilla.pth'}.")
    assert "head.new_branch: 2 tensors" in text and "num_classes" in text and "checkpoint (36, 64, 3, 3)" in text


def test_missing_file_is_named():
    from d2imbalance.checkpoint import load_checkpoint_with_report

    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        load_checkpoint_with_report(_model(), "no_such.pth")


# --- saving that a kill cannot corrupt, resuming from the newest readable checkpoint ---------------


class _Counter:
    """A checkpointable whose state is one number."""

    def __init__(self, value=0):
        self.value = value

    def state_dict(self):
        return {"value": self.value}

    def load_state_dict(self, state):
        self.value = state["value"]


def _tiny_checkpointer(directory, value):
    import torch

    from d2imbalance.checkpoint import ReportingCheckpointer

    torch.manual_seed(value)
    return ReportingCheckpointer(torch.nn.Linear(3, 2), str(directory), counter=_Counter(value))


def test_save_writes_through_a_temporary_file_and_tags_the_checkpoint_after(tmp_path, monkeypatch):
    """The previous file and tag survive a save that dies while writing (torch.save raising stands
    in for a kill): nothing but the ``.partial`` file was touched."""
    import torch

    checkpointer = _tiny_checkpointer(tmp_path, 1)
    checkpointer.save("model_final")
    before = (tmp_path / "model_final.pth").read_bytes()
    assert (tmp_path / "last_checkpoint").read_text() == "model_final.pth"
    assert not list(tmp_path.glob("*.partial"))

    def killed(data, f):
        f.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", killed)
    checkpointer.tag_last_checkpoint("model_0000009.pth")
    with pytest.raises(KeyboardInterrupt):
        checkpointer.save("model_final")
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert (tmp_path / "model_final.pth.partial").read_bytes() == b"half a checkpoint"
    assert (tmp_path / "last_checkpoint").read_text() == "model_0000009.pth"  # not re-tagged


def test_nothing_is_saved_without_a_directory_or_on_processes_that_do_not_save(tmp_path, monkeypatch):
    import torch

    from d2imbalance.checkpoint import ReportingCheckpointer

    monkeypatch.chdir(tmp_path)
    ReportingCheckpointer(torch.nn.Linear(3, 2), "").save("model_final")
    ReportingCheckpointer(torch.nn.Linear(3, 2), str(tmp_path), save_to_disk=False).save("model_final")
    assert list(tmp_path.iterdir()) == []


def test_resume_falls_back_to_the_newest_readable_checkpoint_and_says_so(tmp_path, caplog):
    """model_final.pth (tagged) truncated, as an in-place write killed half-way left it:
    --resume takes model_0000009.pth, the newest of the two readable ones, not model_0000004.pth."""
    import os

    import torch

    _tiny_checkpointer(tmp_path, 4).save("model_0000004")
    _tiny_checkpointer(tmp_path, 9).save("model_0000009")
    _tiny_checkpointer(tmp_path, 19).save("model_final")
    os.utime(tmp_path / "model_0000004.pth", (1, 1))  # the oldest
    data = (tmp_path / "model_final.pth").read_bytes()
    (tmp_path / "model_final.pth").write_bytes(data[: len(data) // 2])

    checkpointer = _tiny_checkpointer(tmp_path, 0)
    with caplog.at_level("WARNING", logger="d2imbalance.checkpoint"):
        checkpointer.resume_or_load("", resume=True)
    assert checkpointer.resumed_from == str(tmp_path / "model_0000009.pth")
    assert checkpointer.checkpointables["counter"].value == 9
    assert torch.equal(checkpointer.model.weight, _tiny_checkpointer(tmp_path, 9).model.weight)
    assert "Resuming from" in caplog.text and "model_0000009.pth, the newest readable" in caplog.text
    assert "model_final.pth: RuntimeError: PytorchStreamReader failed reading zip archive" in caplog.text


def test_resume_from_the_tagged_checkpoint_says_nothing_more(tmp_path, caplog):
    """The tagged file wins over a newer untagged one (a kill between the rename and the tag)."""
    import os

    _tiny_checkpointer(tmp_path, 9).save("model_0000009")
    _tiny_checkpointer(tmp_path, 19).save("model_0000019")
    _tiny_checkpointer(tmp_path, 0).tag_last_checkpoint("model_0000009.pth")
    os.utime(tmp_path / "model_0000009.pth", (1, 1))
    checkpointer = _tiny_checkpointer(tmp_path, 0)
    with caplog.at_level("WARNING", logger="d2imbalance.checkpoint"):
        checkpointer.resume_or_load("")  # resume=True by default, as fvcore's
    assert checkpointer.checkpointables["counter"].value == 9
    assert "newest readable" not in caplog.text


def test_newest_means_last_written_not_last_in_name_order(tmp_path):
    import os

    _tiny_checkpointer(tmp_path, 4).save("model_0000004")
    _tiny_checkpointer(tmp_path, 9).save("model_0000009")
    (tmp_path / "last_checkpoint").write_text("model_final.pth")  # never renamed into place
    os.utime(tmp_path / "model_0000009.pth", (1, 1))
    checkpointer = _tiny_checkpointer(tmp_path, 0)
    checkpointer.resume_or_load("", resume=True)
    assert checkpointer.checkpointables["counter"].value == 4


def test_resume_with_no_readable_checkpoint_names_each_file(tmp_path):
    from d2imbalance.checkpoint import CheckpointReadError

    (tmp_path / "model_0000009.pth").write_bytes(b"")
    _tiny_checkpointer(tmp_path, 0).tag_last_checkpoint("model_final.pth")  # tag of a file never renamed
    with pytest.raises(CheckpointReadError) as error:
        _tiny_checkpointer(tmp_path, 0).resume_or_load("", resume=True)
    text = str(error.value)
    assert f"{tmp_path / 'model_final.pth'}: missing" in text
    assert f"{tmp_path / 'model_0000009.pth'}: EOFError" in text
    assert "set another train.output_dir" in text


def test_without_resume_or_a_tag_the_given_weights_are_loaded_and_nothing_is_resumed(tmp_path):
    """resume=False ignores last_checkpoint; a directory without one ignores resume=True."""
    import torch

    source = _tiny_checkpointer(tmp_path / "a", 7)
    (tmp_path / "a").mkdir()
    source.save("weights")
    _tiny_checkpointer(tmp_path, 3).save("model_final")
    for directory, resume in ((tmp_path, False), (tmp_path / "empty", True)):
        checkpointer = _tiny_checkpointer(directory, 0)
        checkpointer.resume_or_load(str(tmp_path / "a" / "weights.pth"), resume=resume)
        assert checkpointer.resumed_from is None
        assert torch.equal(checkpointer.model.weight, source.model.weight)
        assert checkpointer.checkpointables["counter"].value == 0  # weights only


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "EOFError"),
        (b"hello, not a checkpoint\n", "KeyError"),
        ("truncated", "RuntimeError: PytorchStreamReader failed reading zip archive"),
        ("tensor", "RuntimeError: Tensor.__contains__"),  # DetectionCheckpointer tests `"model" in loaded`
        ("dict of numbers", "no model weights"),
    ],
)
def test_an_unreadable_init_checkpoint_is_named_with_the_fix(tmp_path, content, reason):
    import torch

    from d2imbalance.checkpoint import CheckpointReadError, ReportingCheckpointer

    path = tmp_path / "weights.pth"
    if content == "truncated":
        torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, path)
        path.write_bytes(path.read_bytes()[:200])
    elif content == "tensor":
        torch.save(torch.zeros(3), path)
    elif content == "dict of numbers":
        torch.save({"model": {"weight": 1.0}}, path)
    else:
        path.write_bytes(content)
    checkpointer = ReportingCheckpointer(torch.nn.Linear(3, 2))
    with pytest.raises(CheckpointReadError) as error:
        checkpointer.load(str(path))
    assert str(path) in str(error.value) and "train.init_checkpoint" in str(error.value)
    assert reason in error.value.reason
    # a failed load leaves the checkpointer usable
    torch.save({"model": torch.nn.Linear(3, 2).state_dict()}, tmp_path / "good.pth")
    checkpointer.load(str(tmp_path / "good.pth"))
    assert len(checkpointer.last_report.loaded) == 2


# --- which loads may be evaluated: new branch vs missing head ---------------------------------------


def _report(source_config, target_config, **target_model_overrides):
    """Load a freshly initialised model of ``source_config`` into one of ``target_config``."""
    import tempfile

    import torch
    from detectron2.config import instantiate

    from d2imbalance import get_config
    from d2imbalance.checkpoint import load_checkpoint_with_report

    target_cfg = get_config(target_config)
    for key, value in target_model_overrides.items():
        setattr(target_cfg.model, key, value)
    with tempfile.TemporaryDirectory() as d:
        torch.save({"model": instantiate(get_config(source_config).model).state_dict()}, f"{d}/m.pth")
        return load_checkpoint_with_report(instantiate(target_cfg.model), f"{d}/m.pth")


def test_retinanet_into_retinanet_resobj_is_a_new_branch_and_may_be_evaluated(caplog):
    report = _report("Baselines/retinanet_shapes.py", "ResObj/retinanet_resobj_shapes.py")
    assert report.components_not_loaded() == [] and not report.shape_mismatch
    assert report.missing and all(k.startswith(("head.obj_", "head.res_")) for k in report.missing)
    with caplog.at_level("WARNING", logger="d2imbalance.checkpoint"):
        report.check_for_evaluation()
    assert f"Evaluating with {len(report.missing)} tensors at their initialisation" in caplog.text
    assert "head.obj_score" in caplog.text


def test_the_same_architecture_is_evaluated_without_a_warning(caplog):
    report = _report("Baselines/retinanet_shapes.py", "Baselines/retinanet_shapes.py")
    with caplog.at_level("WARNING", logger="d2imbalance.checkpoint"):
        report.check_for_evaluation()
    assert caplog.text == ""


def test_a_faster_rcnn_checkpoint_in_a_retinanet_is_a_missing_head():
    report = _report("Baselines/faster_rcnn_shapes.py", "Baselines/retinanet_shapes.py")
    assert report.components_not_loaded() == ["head"]
    with pytest.raises(ValueError, match=r"head got no tensor from it .*\n.*Loaded \d+ of the model's"):
        report.check_for_evaluation()


def test_a_retinanet_checkpoint_in_a_faster_rcnn_misses_both_stages():
    report = _report("Baselines/retinanet_shapes.py", "Baselines/faster_rcnn_shapes.py")
    assert report.components_not_loaded() == ["proposal_generator", "roi_heads"]
    with pytest.raises(ValueError, match="proposal_generator, roi_heads got no tensor"):
        report.check_for_evaluation()


def test_a_checkpoint_for_another_num_classes_is_not_evaluated():
    report = _report("Baselines/retinanet_shapes.py", "Baselines/retinanet_shapes.py", num_classes=7)
    assert report.components_not_loaded() == [] and set(report.shape_mismatch) == {
        "head.cls_score.weight", "head.cls_score.bias"}
    with pytest.raises(ValueError, match="2 tensors have other shapes"):
        report.check_for_evaluation()


def test_a_checkpoint_without_the_backbone_is_not_evaluated():
    from d2imbalance.checkpoint import CheckpointLoadReport

    report = CheckpointLoadReport(source="s", loaded=["head.a", "pixel_mean"], missing=["backbone.x", "backbone.y"])
    assert report.components_not_loaded() == ["backbone"]
    assert CheckpointLoadReport(source="s", missing=["backbone.x"]).components_not_loaded() == ["backbone"]
    with pytest.raises(ValueError, match="backbone got no tensor"):
        report.check_for_evaluation()
