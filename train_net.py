#!/usr/bin/env python
"""Train and evaluate any d2-imbalance (or plain detectron2) LazyConfig.

    python train_net.py --config-file ResObj/retinanet_resobj_shapes.py
    python train_net.py --config-file configs/Baselines/retinanet_R_50_FPN_1x.py --num-gpus 8
    python train_net.py --config-file <cfg> --eval-only train.init_checkpoint=<model.pth>
    python train_net.py --config-file <cfg> --resume          # continue from train.output_dir

--config-file takes a path or a name relative to configs/. Overrides go at the end as key=value.
The loop lives in d2imbalance.engine; this file only parses the command line.
"""
from d2imbalance.engine import default_argument_parser, launch_from_args

# Imported for their registrations (meta-architectures, RPNs) so configs and checkpoints find them.
import objconf  # noqa: F401
import resobj  # noqa: F401
import scale_balanced  # noqa: F401

if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch_from_args(args)
