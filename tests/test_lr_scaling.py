import pytest

from d2imbalance.lr_scaling import lr_scaling_warning, scaled_lr


def test_scaled_lr_is_linear():
    assert scaled_lr(0.01, 16, 4) == pytest.approx(0.0025)


def test_no_warning_when_scaled_or_within_tolerance():
    assert lr_scaling_warning(0.0025, 4, 0.01, 16) is None
    assert lr_scaling_warning(0.0028, 4, 0.01, 16) is None


def test_warning_names_the_values_and_the_fix():
    message = lr_scaling_warning(0.01, 4, 0.01, 16)
    assert "optimizer.lr=0.01" in message and "total_batch_size=4" in message
    assert "optimizer.lr=0.0025" in message and "4x" in message


def test_non_positive_values_are_rejected():
    with pytest.raises(ValueError, match="total_batch_size=0"):
        lr_scaling_warning(0.01, 0, 0.01, 16)
