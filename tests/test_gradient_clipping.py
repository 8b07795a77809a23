"""train.grad_clip: the global gradient norm clipped between backward and step, and logged as grad_norm."""
import math
from types import SimpleNamespace

import pytest
import torch

pytestmark = pytest.mark.detectron2


class _LinearLoss(torch.nn.Module):
    """loss = 3 w_0 + 4 w_1: the gradient is (3, 4) whatever w is, its 2-norm 5 and its 1-norm 7."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.unused = torch.nn.Parameter(torch.zeros(3))  # no gradient: left out of the norm

    def forward(self, data):
        return {"loss": (self.w * torch.tensor([3.0, 4.0])).sum()}


def _train_one_step(hook, trainer_class=None):
    from detectron2.engine import SimpleTrainer

    model = _LinearLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    trainer = (trainer_class or SimpleTrainer)(model, [None] * 2, optimizer)
    trainer.register_hooks([hook])
    trainer.train(0, 1)
    return model.w.detach().tolist(), trainer.storage.history("grad_norm").values()


@pytest.mark.parametrize(
    "max_norm, norm_type, step, logged",
    [
        (1.0, 2.0, [-0.6, -0.8], 5.0),  # (3, 4) * 1 / 5
        (3.5, 1.0, [-1.5, -2.0], 7.0),  # (3, 4) * 3.5 / 7
        (10.0, 2.0, [-3.0, -4.0], 5.0),  # below max_norm: untouched
        (math.inf, 2.0, [-3.0, -4.0], 5.0),  # logged only
    ],
)
def test_the_step_uses_the_clipped_gradient_and_the_norm_before_clipping_is_logged(max_norm, norm_type, step, logged):
    from d2imbalance.gradient_clipping import GradientClipping

    w, history = _train_one_step(GradientClipping(max_norm, norm_type))
    assert w == pytest.approx(step, abs=1e-6)
    assert [value for value, _ in history] == pytest.approx([logged])


def _hook_on_a_stub_trainer(grad_scaler=None):
    """GradientClipping(max_norm=1) on a trainer stub: (hook, model, optimizer, the scalars it logs)."""
    from d2imbalance.gradient_clipping import GradientClipping

    model = _LinearLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    logged = {}
    storage = SimpleNamespace(put_scalar=lambda name, value: logged.update({name: value}))
    hook = GradientClipping(1.0)
    hook.trainer = SimpleNamespace(optimizer=optimizer, grad_scaler=grad_scaler, storage=storage)
    return hook, model, optimizer, logged


def test_amp_gradients_are_unscaled_before_clipping():
    grad_scaler = torch.amp.GradScaler("cpu", init_scale=8.0)
    hook, model, optimizer, logged = _hook_on_a_stub_trainer(grad_scaler)
    grad_scaler.scale(model(None)["loss"]).backward()  # gradients (24, 32)
    hook.after_backward()
    assert logged == {"grad_norm": pytest.approx(5.0)}
    grad_scaler.step(optimizer)  # already unscaled: must not divide by 8 again
    assert model.w.detach().tolist() == pytest.approx([-0.6, -0.8], abs=1e-6)


def test_a_trainer_that_skips_after_backward_is_an_error_not_a_silent_unclipped_run():
    from detectron2.engine import SimpleTrainer

    from d2imbalance.gradient_clipping import GradientClipping

    class NoAfterBackward(SimpleTrainer):  # what detectron2's trainers did before 2022
        def run_step(self):
            losses = sum(self.model(next(self._data_loader_iter)).values())
            self.optimizer.zero_grad()
            losses.backward()
            self.optimizer.step()

    with pytest.raises(RuntimeError, match="did not call the hooks' after_backward"):
        _train_one_step(GradientClipping(1.0), NoAfterBackward)
    # Checked at every step, not only the first.
    hook, model, _, _ = _hook_on_a_stub_trainer()
    model(None)["loss"].backward()
    hook.after_backward()
    hook.after_step()
    with pytest.raises(RuntimeError, match="did not call the hooks' after_backward"):
        hook.after_step()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(max_norm=0.0), r"max_norm=0\.0 must be > 0"),
        (dict(max_norm=-35.0), r"max_norm=-35\.0 must be > 0"),
        (dict(max_norm=float("nan")), r"max_norm=nan must be > 0"),
        (dict(max_norm=35.0, norm_type=0.0), r"norm_type=0\.0 must be > 0"),
    ],
)
def test_invalid_settings_name_the_value_and_the_fix(kwargs, message):
    from d2imbalance.gradient_clipping import GradientClipping

    with pytest.raises(ValueError, match=message):
        GradientClipping(**kwargs)


def test_the_config_switch_builds_the_hook_with_its_values():
    from d2imbalance import get_config
    from d2imbalance.engine import gradient_clipping
    from d2imbalance.overrides import apply_overrides

    cfg = get_config("Baselines/retinanet_shapes.py")
    assert dict(cfg.train.grad_clip) == dict(enabled=False, max_norm=35.0, norm_type=2.0)
    assert gradient_clipping(cfg) is None
    apply_overrides(cfg, ["train.grad_clip.enabled=true", "train.grad_clip.max_norm=10", "train.grad_clip.norm_type=1"])
    hook = gradient_clipping(cfg)
    assert (hook.max_norm, hook.norm_type) == (10.0, 1.0)
    cfg.train.grad_clip = dict(enabled=True, max_norm=5.0)  # a user's own dict, without norm_type
    assert (gradient_clipping(cfg).max_norm, gradient_clipping(cfg).norm_type) == (5.0, 2.0)
    del cfg.train.grad_clip  # a config not derived from configs/common/train.py
    assert gradient_clipping(cfg) is None
