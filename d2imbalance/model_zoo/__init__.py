"""Config lookup by model-zoo-style name, like ``detectron2.model_zoo``.

Names are paths relative to the project's ``configs/`` directory, e.g.
``"ResObj/retinanet_resobj_R_50_FPN_1x.py"``. The configs are installed as package data
(``d2imbalance/model_zoo/configs``), so lookups work outside the repository too.
"""
import difflib
from pathlib import Path
from typing import List, Optional

from .._compat import require_detectron2

_PACKAGED_CONFIGS = Path(__file__).resolve().parent / "configs"
_REPO_CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def config_root() -> Path:
    """The directory holding the installed configs (package data first, then the source checkout)."""
    for root in (_PACKAGED_CONFIGS, _REPO_CONFIGS):
        if (root / "common").is_dir():
            return root
    raise FileNotFoundError(
        f"d2imbalance's configs were found neither in {_PACKAGED_CONFIGS} nor in {_REPO_CONFIGS}; "
        "reinstall the project with `pip install -e .` from its repository."
    )


def available_configs() -> list:
    """Every config name that :func:`get_config_file` accepts, sorted."""
    root = config_root()
    return sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*.py")
        if p.parts[len(root.parts)] != "common" and p.name != "__init__.py"
    )


def get_config_file(name_or_path: str) -> str:
    """Resolve a config given as a file path or as a name relative to ``configs/``.

    Raises:
        FileNotFoundError: naming the input and the closest available names.
    """
    as_path = Path(name_or_path).expanduser()
    if as_path.is_file():
        return str(as_path.absolute())
    root = config_root()
    candidate = root / name_or_path
    if candidate.is_file():
        return str(candidate)
    close = closest_config_names(name_or_path)
    hint = f"Closest names: {close}." if close else (
        "No name is close; `python -c 'from d2imbalance.model_zoo import available_configs; "
        "print(available_configs())'` lists them all."
    )
    raise FileNotFoundError(
        f"Config {name_or_path!r} is neither an existing file nor a name under {root}. "
        f"Names look like 'Baselines/retinanet_R_50_FPN_1x.py'. {hint}"
    )


def closest_config_names(name: str, n: int = 5) -> List[str]:
    """The ``n`` available config names most similar to ``name`` (difflib ratio >= 0.6), best first.

    A name is compared whole and by its file name alone, so a typo in a name given without its
    project directory ("retinanet_resobj_shape.py") still finds "ResObj/retinanet_resobj_shapes.py".
    """
    typed_file = Path(name).name

    def similarity(candidate: str) -> float:
        return max(
            difflib.SequenceMatcher(None, name, candidate).ratio(),
            difflib.SequenceMatcher(None, typed_file, Path(candidate).name).ratio(),
        )

    scored = sorted(((similarity(c), c) for c in available_configs()), key=lambda sc: -sc[0])
    return [c for score, c in scored[:n] if score >= 0.6]


def get_config(name_or_path: str, trained: bool = False):
    """Load a LazyConfig by name or path.

    Args:
        trained: point ``train.init_checkpoint`` at the config's published weights
            (``train.trained_checkpoint``); raises ValueError where none are published.
    """
    require_detectron2("d2imbalance.get_config")
    from detectron2.config import LazyConfig

    cfg = LazyConfig.load(get_config_file(name_or_path))
    if trained:
        url = cfg.train.get("trained_checkpoint", "")
        if not url:
            raise ValueError(
                f"No trained weights are published for {name_or_path!r}. Train it with "
                f"`python train_net.py --config-file {name_or_path}` and load the result with "
                "train.init_checkpoint=<output_dir>/model_final.pth."
            )
        cfg.train.init_checkpoint = url
    return cfg


def get(name_or_path: str, trained: bool = False, device: Optional[str] = None):
    """Build the model of a config (weights loaded when ``trained``), in eval mode on ``device``."""
    require_detectron2("d2imbalance.get")
    import torch
    from detectron2.checkpoint import DetectionCheckpointer
    from detectron2.config import instantiate

    cfg = get_config(name_or_path, trained)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = instantiate(cfg.model).to(device)
    if trained:
        DetectionCheckpointer(model).load(cfg.train.init_checkpoint)
    return model.eval()


def detectron2_common_config(name: str):
    """One of detectron2's own model-zoo LazyConfigs (e.g. ``"common/models/retinanet.py"``).

    Our config files derive from these instead of copying them; going through here makes sure
    detectron2.model_zoo's ``pkg_resources`` import works on setuptools >= 81.
    """
    require_detectron2("detectron2's model-zoo configs")
    from detectron2.model_zoo import get_config as d2_get_config

    return d2_get_config(name)
