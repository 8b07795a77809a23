"""Training-loop settings read by train_net.py: detectron2's common/train.py plus our additions.

Additions:
  lr_reference: the learning rate the recipe was tuned for, at its total batch size; train_net
      warns when a run's lr / total_batch_size departs from it (linear scaling rule).
  trained_checkpoint: published weights for ``d2imbalance.get(name, trained=True)``, if any.
  validate_datasets: check every COCO-format training dataset before training (fatal problems stop).
"""
from d2imbalance.model_zoo import detectron2_common_config

train = detectron2_common_config("common/train.py").train
train.lr_reference = dict(lr=0.01, total_batch_size=16)
train.trained_checkpoint = ""
train.validate_datasets = True
train.seed = -1  # < 0: a random seed, logged
