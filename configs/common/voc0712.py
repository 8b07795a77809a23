"""Pascal VOC as SSD trains on it: VOC2007 + VOC2012 trainval for training ("difficult" objects left out
of the targets), VOC2007 test with detectron2's PascalVOCDetectionEvaluator (11-point mAP for 2007, as
the Caffe recipe's "11point"; difficult objects ignored).

detectron2's builtin names read $DETECTRON2_DATASETS/VOC2007 and VOC2012 (Annotations/, ImageSets/Main/,
JPEGImages/). The mappers are SSD300's (configs/common/ssd_mappers.py).
"""
from omegaconf import OmegaConf

from detectron2.config import LazyCall as L
from detectron2.data import build_detection_test_loader, build_detection_train_loader, get_detection_dataset_dicts
from detectron2.evaluation import PascalVOCDetectionEvaluator

from d2imbalance.data.voc import voc_detection_dataset_dicts

from .ssd_mappers import test_mapper, train_mapper

dataloader = OmegaConf.create()
dataloader.train = L(build_detection_train_loader)(
    dataset=L(voc_detection_dataset_dicts)(names=("voc_2007_trainval", "voc_2012_trainval"), difficult="exclude"),
    mapper=train_mapper,
    total_batch_size=32,
    num_workers=4,
)
dataloader.test = L(build_detection_test_loader)(
    dataset=L(get_detection_dataset_dicts)(names="voc_2007_test", filter_empty=False),
    mapper=test_mapper,
    num_workers=4,
)
dataloader.evaluator = L(PascalVOCDetectionEvaluator)(dataset_name="${..test.dataset.names}")
