"""Reading LazyConfigs, and training one on shapes_mini, in the config tests of the projects. Needs detectron2
(imported when called)."""
from pathlib import Path


def load(path):
    """``LazyConfig.load`` of a config file (a path or a str)."""
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(path))


def plain(node):
    """A config node as plain dicts and lists (other values unchanged, interpolations kept), comparable with ==."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node


def train_on_shapes_mini(config, output_dir, iterations=2):
    """train_net's own loop on ``config``: ``iterations`` steps of 2 images of shapes_mini_train (lr 0.01,
    one step per log line), then its COCO evaluation on shapes_mini_val.

    Returns:
        (rows, steps): every line of metrics.json, and those with a ``total_loss``, after checking that
        there is one per iteration.
    """
    import json

    from d2imbalance.engine import default_argument_parser, do_train, prepare_all_datasets, setup

    args = default_argument_parser().parse_args([
        "--config-file", str(config),
        "dataloader.train.dataset.names=shapes_mini_train", "dataloader.test.dataset.names=shapes_mini_val",
        "dataloader.train.total_batch_size=2", "dataloader.train.num_workers=0", "dataloader.test.num_workers=0",
        "optimizer.lr=0.01", f"train.max_iter={iterations}", "train.eval_period=0", "train.log_period=1",
        "train.checkpointer.period=100", "train.seed=0", f"train.output_dir={output_dir}"])  # fmt: skip
    cfg = setup(args)
    prepare_all_datasets(cfg)
    do_train(args, cfg)
    rows = [json.loads(line) for line in (Path(output_dir) / "metrics.json").read_text().splitlines()]
    steps = [r for r in rows if "total_loss" in r]
    assert [r["iteration"] for r in steps] == list(range(iterations))
    return rows, steps


def assert_recipe_changes_only(cfg, base, changes):
    """Assert that ``cfg`` is ``base``'s recipe with only the named model keys changed: the contract of a
    method config against its baseline.

    ``dataloader``, ``optimizer``, ``lr_multiplier`` and ``train`` (but its ``output_dir`` and
    ``trained_checkpoint``) must be equal. ``changes`` maps a dotted path of a model node ("" for the model
    itself, "roi_heads", "roi_heads.box_predictor") to the keys that node may set, change or drop; each must
    be a key of the node or of the baseline's node, and a listed ``_target_`` must name another class. Every
    other key of the model, at any depth, must be the baseline's.
    """
    for key in ("dataloader", "optimizer", "lr_multiplier"):
        assert plain(cfg[key]) == plain(base[key]), key
    train, base_train = plain(cfg.train), plain(base.train)
    for key in ("output_dir", "trained_checkpoint"):
        train.pop(key, None), base_train.pop(key, None)
    assert train == base_train
    model, base_model = plain(cfg.model), plain(base.model)
    for path, keys in changes.items():
        node, base_node = model, base_model
        for part in filter(None, path.split(".")):
            node, base_node = node[part], base_node[part]
        unknown = set(keys) - set(node) - set(base_node)
        assert not unknown, f"{path or 'model'}: {sorted(unknown)} is in neither config"
        if "_target_" in keys:
            assert node["_target_"] != base_node["_target_"], f"{path or 'model'}._target_ is the baseline's"
        for key in keys:
            node.pop(key, None), base_node.pop(key, None)
    assert model == base_model
