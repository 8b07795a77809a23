"""SGD as in detectron2's model zoo (momentum 0.9, weight decay 1e-4, no decay on norm layers)."""
from d2imbalance.model_zoo import detectron2_common_config

SGD = detectron2_common_config("common/optim.py").SGD
