"""Reading LazyConfigs in the config tests of the projects. Needs detectron2 (imported when called)."""


def load(path):
    """``LazyConfig.load`` of a config file (a path or a str)."""
    from detectron2.config import LazyConfig

    return LazyConfig.load(str(path))


def plain(node):
    """A config node as plain dicts and lists (other values unchanged, interpolations kept), comparable with ==."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    return OmegaConf.to_container(node, resolve=False) if isinstance(node, (DictConfig, ListConfig)) else node
