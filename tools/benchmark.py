#!/usr/bin/env python
"""Compare a method with its baseline: median train step, inference per image, peak memory, ratios.

    python tools/benchmark.py --method ResObj/retinanet_resobj_R_50_FPN_1x.py \
        --baseline Baselines/retinanet_R_50_FPN_1x.py --image-size 320 --batch 2 --iters 20 --device cpu

The logic lives in d2imbalance.benchmark.
"""
from d2imbalance.benchmark import main

# Imported for their registrations, so method configs build.
import objconf  # noqa: F401
import resobj  # noqa: F401
import scale_balanced  # noqa: F401

if __name__ == "__main__":
    main()
