"""Command-line overrides (``key=value``) checked against the loaded config before they are applied.

detectron2's ``LazyConfig.apply_overrides`` adds a misspelt key as a new one, stores ``no`` / ``off``
as strings (which are true), and accepts ``train.max_iter=ten`` until training crashes on it. Here
every override is checked first and all problems are reported at once, naming the key or value and
what to pass instead:

- the key must exist in the config (the closest existing keys are suggested);
- where the current value is a bool, the value must be one of true/false, yes/no, on/off, 1/0
  (any case);
- where it is an int, an int; a float, an int or a float; a str, a str (a number is taken as the
  text typed, a list of strings as several names, e.g. ``dataloader.train.dataset.names=[a,b]``);
  a list, a list; a dict, a dict;
- ``null`` is accepted for every key, and a key whose current value is None (or an object of
  another type, such as a ``_target_`` class) accepts any value.

Adding a key the config does not have (e.g. a constructor argument left at its default) is explicit:
prefix it with ``+`` as in Hydra's override grammar, ``+model.head.extra_arg=3``; ``+`` on an
existing key is an error. The parsing is Hydra's, the application detectron2's.
"""
import difflib
from typing import Any, List, Optional, Sequence, Tuple

from ._compat import require_detectron2

require_detectron2("d2imbalance.overrides")
from detectron2.config import LazyConfig  # noqa: E402
from hydra.core.override_parser.overrides_parser import OverridesParser  # noqa: E402  (a detectron2 dependency)
from hydra.errors import HydraException  # noqa: E402
from omegaconf import DictConfig, ListConfig, OmegaConf  # noqa: E402

__all__ = ["apply_overrides", "check_overrides"]

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


def apply_overrides(cfg, overrides: Sequence[str]):
    """Check ``overrides`` against ``cfg`` (see the module docstring), then apply them in place with
    detectron2's ``LazyConfig.apply_overrides``.

    Raises:
        ValueError: listing every override that names an unknown key or has a value of the wrong
            type, with the closest keys or the values to pass.
    """
    return LazyConfig.apply_overrides(cfg, check_overrides(cfg, overrides))


def check_overrides(cfg, overrides: Sequence[str]) -> List[str]:
    """The overrides, checked, with booleans written as true/false, numbers given to a str key
    quoted and ints given to a float key written as floats, so that detectron2 stores the intended
    type. Raises ValueError as :func:`apply_overrides`."""
    parser = OverridesParser.create()
    checked, problems = [], []
    for text in overrides:
        try:
            (override,) = parser.parse_overrides([text])
        except HydraException as e:
            problems.append(f"{text!r} is not a key=value override: {e}".split("\n")[0])
            continue
        rewritten, problem = _check_one(cfg, text, override)
        checked.append(rewritten)
        if problem:
            problems.append(problem)
    if problems:
        raise ValueError("Invalid config override(s):\n  " + "\n  ".join(problems))
    return checked


def _check_one(cfg, text: str, override) -> Tuple[str, Optional[str]]:
    key = override.key_or_group
    if override.is_delete() or override.is_force_add():
        return text, (
            f"{text!r}: only key=value (change a key) and +key=value (add a key the config does not "
            "have) are supported."
        )
    if override.is_sweep_override():
        return text, f"{text!r} is a Hydra sweep; for a list value write {key}=[...]."
    exists, current = _lookup(cfg, key)
    if override.is_add():
        if exists:
            return text, f"{text!r}: {key} already exists; drop the '+' to change it."
        return text, None
    if not exists:
        close = difflib.get_close_matches(key, _all_keys(cfg), n=3, cutoff=0.6)
        hint = f"Did you mean {' or '.join(close)}? " if close else ""
        return text, (
            f"{text!r}: the config has no key {key!r}. {hint}To add a key it does not have, "
            f"write +{text}."
        )
    value = override.value()
    typed = override.get_value_element_as_str()
    if value is None or current is None:
        return text, None
    if isinstance(current, bool):
        word = str(value).lower()
        if word in _TRUE | _FALSE:
            return f"{key}={'true' if word in _TRUE else 'false'}", None
        return text, f"{text!r}: {key} is a bool; pass true/false, yes/no, on/off or 1/0."
    if isinstance(current, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return text, None
        return text, f"{text!r}: {key} is an int (now {current}); pass a whole number such as {key}={current}."
    if isinstance(current, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return f"{key}={float(value)!r}", None
        return text, f"{text!r}: {key} is a float (now {current}); pass a number such as {key}={current}."
    if isinstance(current, str):
        if isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            return text, None
        if isinstance(value, (int, float)):
            return f"{key}='{typed}'", None
        return text, f"{text!r}: {key} is a str (now {current!r}); pass text, or a list of names [a,b]."
    if isinstance(current, ListConfig):
        if isinstance(value, list):
            return text, None
        return text, f"{text!r}: {key} is a list (now of {len(current)} items); pass a list such as {key}=[...]."
    if isinstance(current, DictConfig):
        if isinstance(value, dict):
            return text, None
        return text, (
            f"{text!r}: {key} is a group of settings ({', '.join(map(str, current.keys()))}); "
            f"set one of them, e.g. {key}.{next(iter(current.keys()), 'x')}=..."
        )
    return text, None  # an object of another type (a class, a callable): no check


def _lookup(cfg, key: str) -> Tuple[bool, Any]:
    """(whether ``key`` exists in ``cfg``, its value with interpolations resolved, or None where
    they cannot be)."""
    parent_key, _, leaf = key.rpartition(".")
    parent = OmegaConf.select(cfg, parent_key, throw_on_resolution_failure=False) if parent_key else cfg
    if isinstance(parent, DictConfig):
        exists = leaf in parent.keys()
    elif isinstance(parent, ListConfig):
        exists = leaf.isdigit() and int(leaf) < len(parent)
    else:
        exists = False
    value = OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False) if exists else None
    return exists, value


def _all_keys(node, prefix: str = "") -> List[str]:
    """Every dotted key of a config, nested ones included (list items are not expanded)."""
    keys = []
    for k in node.keys():
        full = f"{prefix}{k}"
        keys.append(full)
        child = node._get_node(k)
        if isinstance(child, DictConfig):
            keys += _all_keys(child, full + ".")
    return keys
