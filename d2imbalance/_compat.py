"""Optional-dependency handling: detectron2 is not on PyPI, so every module that needs it goes
through :func:`require_detectron2`, and the pure-torch parts of the project import without it."""
import importlib
import importlib.util
import sys
import types

DETECTRON2_INSTALL_HINT = (
    "detectron2 is distributed only from its git repository. Install it next to this project with\n"
    "    pip install 'setuptools<81'\n"
    "    pip install --no-build-isolation 'git+https://github.com/facebookresearch/detectron2.git'\n"
    "into the environment that already has torch and torchvision (see README.md, 'Install for real use')."
)


def detectron2_available() -> bool:
    """True when ``import detectron2`` would succeed (checked without importing it)."""
    if "detectron2" in sys.modules:  # None there means imports of it are blocked
        return sys.modules["detectron2"] is not None
    return importlib.util.find_spec("detectron2") is not None


def require_detectron2(feature: str) -> None:
    """Raise an ImportError that names ``feature`` and says how to install detectron2."""
    if not detectron2_available():
        raise ImportError(f"{feature} needs detectron2, which is not installed.\n{DETECTRON2_INSTALL_HINT}")
    ensure_pkg_resources()


def ensure_pkg_resources() -> None:
    """detectron2.model_zoo does ``import pkg_resources``, which setuptools >= 81 no longer ships.

    Where it is missing, install a minimal stand-in offering the one function detectron2 uses
    (``resource_filename``), backed by importlib. setup.py also pins ``setuptools<81``; this covers
    environments where a later install upgraded setuptools.
    """
    if "pkg_resources" in sys.modules:
        return
    try:
        importlib.import_module("pkg_resources")
        return
    except ImportError:
        pass

    def resource_filename(package: str, resource: str) -> str:
        import os

        module = importlib.import_module(package)
        return os.path.join(os.path.dirname(module.__file__), resource)

    shim = types.ModuleType("pkg_resources")
    shim.resource_filename = resource_filename
    shim.__doc__ = "d2imbalance stand-in for setuptools' pkg_resources (resource_filename only)."
    sys.modules["pkg_resources"] = shim
