"""Training-loop settings read by train_net.py: detectron2's common/train.py plus our additions.

Additions:
  lr_reference: the learning rate the recipe was tuned for, at its total batch size; train_net
      warns when a run's lr / total_batch_size departs from it (linear scaling rule).
  trained_checkpoint: published weights for ``d2imbalance.get(name, trained=True)``, if any.
  validate_datasets: check every COCO-format dataset of dataloader.train and dataloader.test before
      the first iteration (fatal problems stop). Image headers are always read (file present, an
      image, the width/height the JSON gives).
  validate_decode_images: also decode every image while validating, which finds truncated or corrupt
      pixel data; off by default because it reads every image in full.
  grad_clip: off by default, as in detectron2's recipes. ``enabled=True`` clips the global norm of the
      gradients to ``max_norm`` before each step (mmdetection's grad_clip; 35 in its RetinaNet and GHM
      recipes) and logs the norm before clipping as ``grad_norm``; max_norm=float("inf") only logs it.
"""
from d2imbalance.model_zoo import detectron2_common_config

train = detectron2_common_config("common/train.py").train
train.lr_reference = dict(lr=0.01, total_batch_size=16)
train.trained_checkpoint = ""
train.validate_datasets = True
train.validate_decode_images = False
train.grad_clip = dict(enabled=False, max_norm=35.0, norm_type=2.0)
train.seed = -1  # < 0: a random seed, logged
