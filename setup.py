"""d2-imbalance: detectron2 projects for the foreground-background and scale imbalance of object detectors.

detectron2 itself is not declared here: it is distributed only from its git repository, so it must be
installed beforehand (see README.md). The install never tries to fetch it and uses the one present.
"""
import os
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).resolve().parent
CONFIG_LINK = HERE / "d2imbalance" / "model_zoo" / "configs"


def link_configs_as_package_data():
    """Expose ``configs/`` inside the package (as detectron2 does for its model zoo), so wheels carry
    the configs and ``d2imbalance.get_config(name)`` works outside the repository."""
    if not CONFIG_LINK.exists() and (HERE / "configs").is_dir():
        os.symlink(os.path.join("..", "..", "configs"), CONFIG_LINK)


link_configs_as_package_data()

PROJECT_PACKAGES = {
    "resobj": "projects/ResObj/resobj",
    "scale_balanced": "projects/ScaleBalanced/scale_balanced",
    "objconf": "projects/ObjConf/objconf",
    "drloss": "projects/DRLoss/drloss",
    "sampling_free": "projects/SamplingFree/sampling_free",
    "ghm": "projects/GHM/ghm",
    "aploss": "projects/APLoss/aploss",
    "iou_balanced": "projects/IoUBalancedSampling/iou_balanced",
    "ohem": "projects/OHEM/ohem",
    "pisa": "projects/PISA/pisa",
}

setup(
    name="d2-imbalance",
    version="0.1.0",
    description="Detectron2 projects for imbalance in object detection: Residual Objectness, "
    "scale-balanced loss, RetinaNet-Conf, GHM, AP-Loss, DR Loss, Sampling-Free, IoU-balanced sampling, OHEM, "
    "ISR (PISA)",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["d2imbalance", "d2imbalance.*"]) + list(PROJECT_PACKAGES),
    package_dir=PROJECT_PACKAGES,
    package_data={"d2imbalance.model_zoo": ["configs/*.py", "configs/**/*.py"]},
    install_requires=[
        "torch>=1.13",
        "torchvision",
        "fvcore",
        "iopath",
        "omegaconf>=2.1",
        "pycocotools>=2.0.2",
        "opencv-python-headless",
        "numpy",
        "matplotlib",
        "tensorboard",
        # detectron2.model_zoo does `import pkg_resources`, removed in setuptools 81.
        "setuptools<81",
    ],
    extras_require={"test": ["pytest>=7"]},
    scripts=[],
)
