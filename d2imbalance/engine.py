"""The training and evaluation loop behind ``train_net.py``, shared by every project.

detectron2's LazyConfig loop (tools/lazyconfig_train_net.py) plus what our users asked for: config
names resolved from the installed configs, CPU fallback that says so, dataset validation before
training, a plain-words checkpoint report, a learning-rate scaling warning, AMP only where it works,
and evaluation results written next to the checkpoints.
"""
import json
import logging
import os

import torch

from ._compat import require_detectron2

require_detectron2("train_net / d2imbalance.engine")
from detectron2.config import LazyConfig, instantiate  # noqa: E402
from detectron2.engine import (  # noqa: E402
    AMPTrainer,
    SimpleTrainer,
    default_argument_parser,
    default_setup,
    default_writers,
    hooks,
    launch,
)
from detectron2.engine.defaults import create_ddp_model  # noqa: E402
from detectron2.data import MetadataCatalog  # noqa: E402
from detectron2.evaluation import DatasetEvaluators, inference_on_dataset, print_csv_format  # noqa: E402
from detectron2.utils import comm  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

from .checkpoint import ReportingCheckpointer  # noqa: E402
from .data.datasets import dataset_names, prepare_datasets, register_coco_datasets  # noqa: E402
from .data.validation import validate_coco_json  # noqa: E402
from .lr_scaling import lr_scaling_warning  # noqa: E402
from .model_zoo import get_config_file  # noqa: E402

logger = logging.getLogger("d2imbalance")

__all__ = ["default_argument_parser", "launch_from_args", "main", "setup", "do_train", "do_test"]


def setup(args):
    """Load the config (path or model-zoo-style name), apply overrides, pick the device, set up
    logging / seeding / the saved config (detectron2's default_setup), and check the lr scaling."""
    args.config_file = get_config_file(args.config_file)  # default_setup re-reads it to log it
    cfg = LazyConfig.load(args.config_file)
    reference = cfg.train.get("lr_reference") or dict(
        lr=cfg.optimizer.lr, total_batch_size=cfg.dataloader.train.total_batch_size
    )
    cfg = LazyConfig.apply_overrides(cfg, args.opts)
    cpu_fallback = str(cfg.train.device).startswith("cuda") and not torch.cuda.is_available()
    if cpu_fallback:
        cfg.train.device = "cpu"
    default_setup(cfg, args)  # logger, environment info, config.yaml in output_dir, seed
    setup_logger(cfg.train.output_dir, distributed_rank=comm.get_rank(), name="d2imbalance")
    if cpu_fallback:
        logger.warning("No GPU found: running on CPU (train.device=cpu). Expect it to be slow.")
    if cfg.train.amp.enabled and cfg.train.device == "cpu":
        logger.warning("train.amp.enabled=True needs a GPU; training in float32 on CPU instead.")
        cfg.train.amp.enabled = False
    warning = lr_scaling_warning(
        cfg.optimizer.lr,
        cfg.dataloader.train.total_batch_size,
        reference["lr"],
        reference["total_batch_size"],
    )
    if warning:
        logger.warning(warning)
    register_coco_datasets(cfg.train.get("datasets", []))
    return cfg


def validate_datasets(cfg) -> None:
    """Validate every COCO-format dataset of ``dataloader.train`` and ``dataloader.test`` before the
    first iteration (a broken test set would otherwise fail after training); log problems, stop on
    fatal ones. ``train.validate_decode_images=True`` also decodes every image."""
    decode = cfg.train.get("validate_decode_images", False)
    for split in ("train", "test"):
        dataset_cfg = cfg.dataloader[split].dataset
        # get_detection_dataset_dicts' default is filter_empty=True.
        policy = "drop" if dataset_cfg.get("filter_empty", True) else "keep"
        for name in dataset_names(dataset_cfg.names):
            label = f"{name} in dataloader.{split}"
            metadata = MetadataCatalog.get(name)
            json_file = metadata.get("json_file")
            if not json_file:
                logger.info(f"Dataset {label} has no json_file in its metadata; not a COCO file, not validated.")
                continue
            report = validate_coco_json(
                json_file, metadata.get("image_root"), dataset=label, empty_images=policy,
                decode_images=decode, evaluated=split == "test",
            )
            serious = any(p.severity != "info" for p in report.problems)
            (logger.warning if serious else logger.info)(report.summary())
            report.raise_if_fatal()


def prepare_all_datasets(cfg) -> None:
    """Generate on-demand datasets (shapes) once, on the main process, before other ranks read them."""
    names = dataset_names(cfg.dataloader.train.dataset.names) + dataset_names(cfg.dataloader.test.dataset.names)
    if comm.is_main_process():
        prepare_datasets(names)
    comm.synchronize()


def build_evaluator(cfg):
    """``dataloader.evaluator`` may be one evaluator or a list of them."""
    evaluators = instantiate(cfg.dataloader.evaluator)
    return DatasetEvaluators(list(evaluators)) if isinstance(evaluators, (list, tuple)) else evaluators


def do_test(cfg, model):
    if "evaluator" not in cfg.dataloader:
        return {}
    results = inference_on_dataset(model, instantiate(cfg.dataloader.test), build_evaluator(cfg))
    if comm.is_main_process():
        print_csv_format(results)
    return results


def wrap_ddp(model, device: str, ddp_cfg):
    """detectron2's create_ddp_model, which also works for CPU (gloo) processes: DDP must not be
    given device_ids for a CPU module."""
    kwargs = dict(ddp_cfg)
    if device == "cpu":
        kwargs["device_ids"] = None
    return create_ddp_model(model, **kwargs)


def do_train(args, cfg):
    model = instantiate(cfg.model)
    logger.info(f"Model:\n{model}")
    model.to(cfg.train.device)

    cfg.optimizer.params.model = model
    optimizer = instantiate(cfg.optimizer)
    train_loader = instantiate(cfg.dataloader.train)

    model = wrap_ddp(model, cfg.train.device, cfg.train.ddp)
    trainer = (AMPTrainer if cfg.train.amp.enabled else SimpleTrainer)(model, train_loader, optimizer)
    checkpointer = ReportingCheckpointer(model, cfg.train.output_dir, trainer=trainer)
    trainer.register_hooks(
        [
            hooks.IterationTimer(),
            hooks.LRScheduler(scheduler=instantiate(cfg.lr_multiplier)),
            hooks.PeriodicCheckpointer(checkpointer, **cfg.train.checkpointer) if comm.is_main_process() else None,
            hooks.EvalHook(cfg.train.eval_period, lambda: do_test(cfg, model)),
            hooks.PeriodicWriter(
                default_writers(cfg.train.output_dir, cfg.train.max_iter), period=cfg.train.log_period
            )
            if comm.is_main_process()
            else None,
        ]
    )
    resuming = args.resume and checkpointer.has_checkpoint()
    if args.resume and not resuming:
        logger.warning(
            f"--resume given but {cfg.train.output_dir} has no checkpoint: starting from "
            f"train.init_checkpoint={cfg.train.init_checkpoint!r}."
        )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    start_iter = trainer.iter + 1 if resuming else 0
    if resuming:
        logger.info(f"Resuming from {checkpointer.get_checkpoint_file()} at iteration {start_iter}.")
    trainer.train(start_iter, cfg.train.max_iter)


def do_eval_only(args, cfg):
    model = instantiate(cfg.model)
    model.to(cfg.train.device)
    model = wrap_ddp(model, cfg.train.device, cfg.train.ddp)
    checkpointer = ReportingCheckpointer(model, cfg.train.output_dir)
    if not cfg.train.init_checkpoint and not (args.resume and checkpointer.has_checkpoint()):
        logger.warning(
            "--eval-only without weights: evaluating a freshly initialised model. Pass "
            "train.init_checkpoint=<path or URL>, or --resume to use the last checkpoint in train.output_dir."
        )
    checkpointer.resume_or_load(cfg.train.init_checkpoint, resume=args.resume)
    results = do_test(cfg, model)
    if comm.is_main_process():
        path = os.path.join(cfg.train.output_dir, "eval_results.json")
        with open(path, "w") as f:
            json.dump(results, f, indent=1)
        logger.info(f"Evaluation results written to {path}")
    return results


def main(args):
    cfg = setup(args)
    prepare_all_datasets(cfg)
    if args.eval_only:
        return do_eval_only(args, cfg)
    if cfg.train.get("validate_datasets", True):
        validate_datasets(cfg)
    do_train(args, cfg)


def launch_from_args(args):
    """Run :func:`main` in ``args.num_gpus`` processes per machine (CPU processes with gloo when
    no GPU is present) through detectron2's launch."""
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
