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
    assert "head.new_branch: 2 tensors" in text and "num_classes" in text and "checkpoint (36, 64, 3, 3)" in text


def test_missing_file_is_named():
    from d2imbalance.checkpoint import load_checkpoint_with_report

    with pytest.raises(FileNotFoundError, match="no_such.pth"):
        load_checkpoint_with_report(_model(), "no_such.pth")
