#!/usr/bin/env python
"""Histogram of anchors matched per ground truth (scale-balanced loss paper, Figs. 1 and 3).

    python tools/anchor_match_histogram.py --config-file configs/Baselines/retinanet_shapes.py \
        --dataset shapes_train --output output/match_hist_shapes.png

Works with any RetinaNet-like, RPN-based or SSD config and any registered dataset (e.g. one registered
with register_coco_instances, or declared in the config's train.datasets). Prints the table overall and
by COCO size class (box area in the network input, as the training statistics; --size-by original for
the dataset image's) and saves the PNG. See d2imbalance.analysis.anchor_matches for the protocol.
"""
import argparse
import os
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config file or name under configs/")
    parser.add_argument("--dataset", help="registered dataset (default: the config's test dataset)")
    parser.add_argument("--max-bin", type=int, default=20, help="last bin is '>= max-bin' (default 20)")
    parser.add_argument("--num-images", type=int, default=0, help="analyse only the first N images")
    parser.add_argument("--short-edge", type=int, help="resize short edge (default: the config's test mapper)")
    parser.add_argument("--max-size", type=int, help="resize max size (default: the config's test mapper)")
    parser.add_argument("--size-by", choices=("input", "original"), default="input",
                        help="size classes by box area in the network input (default, as the training "
                             "statistics scb/mean_M_*) or in the original image")
    parser.add_argument("--output", default="anchor_match_histogram.png", help="PNG path")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides, key=value")
    args = parser.parse_args(argv)

    from d2imbalance._compat import require_detectron2

    require_detectron2("tools/anchor_match_histogram.py")
    import d2imbalance.data.datasets as datasets  # registers shapes_train / shapes_val
    from d2imbalance.analysis import anchor_matches as am
    from d2imbalance.model_zoo import get_config
    from detectron2.config import LazyConfig, instantiate
    from detectron2.data import DatasetCatalog

    cfg = get_config(args.config_file)
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    if "datasets" in cfg.train:
        datasets.register_coco_datasets(cfg.train.datasets)
    name = args.dataset or datasets.dataset_names(cfg.dataloader.test.dataset.names)[0]
    if name not in DatasetCatalog.list():
        sys.exit(f"Dataset {name!r} is not registered. Registered: {', '.join(sorted(DatasetCatalog.list()))}")
    short_edge, max_size = am.resize_from_config(cfg)
    short_edge = args.short_edge or short_edge
    max_size = args.max_size or max_size
    resize_to = None if args.short_edge else am.fixed_resize_from_config(cfg)  # SSD: 300x300

    model = instantiate(cfg.model)
    dicts = DatasetCatalog.get(name)
    if args.num_images > 0:
        dicts = dicts[: args.num_images]
    counts, areas = am.count_matches(
        model, dicts, short_edge=short_edge, max_size=max_size, resize_to=resize_to, size_by=args.size_by
    )
    resize = f"resize to {resize_to[0]}x{resize_to[1]}" if resize_to else f"resize short edge {short_edge}, max {max_size}"
    hist = am.match_histogram(counts, areas, args.max_bin)
    print(f"Anchors matched per ground truth: {args.config_file} on {name} ({len(dicts)} images, "
          f"{resize}; sizes by {args.size_by} area)")
    print(am.format_histogram(hist))
    os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
    am.save_histogram_png(hist, args.output, title=f"{os.path.basename(args.config_file)} on {name}")
    print(f"Saved {args.output}")
    return hist


if __name__ == "__main__":
    main()
