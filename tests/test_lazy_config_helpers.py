"""tests/lazy_config_helpers.assert_recipe_changes_only, the config-contract check of the projects' config
tests: it must pass a method config that changes only the listed keys, and fail on anything else."""
import pytest

from lazy_config_helpers import assert_recipe_changes_only


def config(**model_changes):
    """A LazyConfig-like tree: a baseline recipe, with ``model_changes`` applied (a value None drops the key)."""
    from omegaconf import OmegaConf

    model = {"_target_": "Base", "backbone": {"depth": 50}, "focal": 0.25,
             "roi_heads": {"_target_": "StandardROIHeads", "batch": 512,
                           "box_predictor": {"_target_": "Predictor", "thresh": 0.05}}}  # fmt: skip
    for path, value in model_changes.items():
        *parents, key = path.split("__")
        node = model
        for part in parents:
            node = node[part]
        if value is None:
            node.pop(key)
        else:
            node[key] = value
    return OmegaConf.create({
        "model": model, "dataloader": {"batch": 16}, "optimizer": {"lr": 0.02}, "lr_multiplier": {"steps": [6]},
        "train": {"max_iter": 90, "output_dir": "./output/base", "trained_checkpoint": ""},
    })  # fmt: skip


def test_listed_changes_pass_and_the_output_dir_may_differ():
    method = config(roi_heads___target_="OHEM", roi_heads__nms=0.7, roi_heads__box_predictor__thresh=0.1,
                    _target_="Method", focal=None)  # fmt: skip
    method.train.output_dir = "./output/method"
    assert_recipe_changes_only(method, config(), {"": {"_target_", "focal"}, "roi_heads": {"_target_", "nms"},
                                                  "roi_heads.box_predictor": {"thresh"}})  # fmt: skip


@pytest.mark.parametrize(
    "method_changes, changes",
    [
        (dict(roi_heads__batch=256), {"roi_heads": {"_target_"}}),  # an unlisted key of a listed node
        (dict(backbone__depth=101), {"roi_heads": {"batch"}}),  # an unlisted node
        (dict(roi_heads__box_predictor__thresh=0.1), {"roi_heads": {"thresh"}}),  # listed at the wrong depth
        (dict(focal=None), {}),  # a dropped key not listed
        ({}, {"roi_heads": {"_target_"}}),  # a listed _target_ that is the baseline's
        ({}, {"roi_heads": {"nms"}}),  # a listed key in neither config
    ],
)
def test_anything_else_fails(method_changes, changes):
    with pytest.raises(AssertionError):
        assert_recipe_changes_only(config(**method_changes), config(), changes)


@pytest.mark.parametrize("part, key, value", [("dataloader", "batch", 8), ("optimizer", "lr", 0.01),
                                              ("lr_multiplier", "steps", [5]), ("train", "max_iter", 1)])
def test_a_changed_recipe_fails(part, key, value):
    method = config()
    method[part][key] = value
    with pytest.raises(AssertionError):
        assert_recipe_changes_only(method, config(), {})
