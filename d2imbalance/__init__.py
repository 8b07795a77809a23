"""Shared code of the d2-imbalance projects: config lookup, the embedded shapes dataset, dataset
validation, evaluators, and the training loop behind ``train_net.py``.

Importing this package never needs detectron2; the functions that do raise an ImportError that says
how to install it.
"""
from .model_zoo import get, get_config, get_config_file

__version__ = "0.1.0"
__all__ = ["get", "get_config", "get_config_file"]
