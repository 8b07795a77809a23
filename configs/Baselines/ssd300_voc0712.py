"""SSD300 on Pascal VOC 07+12, tested on VOC07: the Caffe recipe (weiliu89/caffe, branch ssd,
examples/ssd/ssd_pascal.py; Liu et al., ECCV 2016).

ImageNet VGG16 from torchvision, converted on first use (fc6/fc7 subsampled); 32 images per batch,
SGD lr 1e-3, momentum 0.9, weight decay 5e-4 (none on biases, whose lr is doubled, as Caffe's layers),
120k iterations with x0.1 at 80k and 100k, no warm-up.
"""
from ..common.models.ssd import model
from ..common.optim import SGD as optimizer
from ..common.schedules import lr_multiplier_ssd_voc as lr_multiplier
from ..common.train import train
from ..common.recall_by_size import with_recall_by_size
from ..common.voc0712 import dataloader

optimizer.lr = 1e-3
optimizer.weight_decay = 5e-4
optimizer.params.base_lr = "${..lr}"  # needed by bias_lr_factor
optimizer.params.bias_lr_factor = 2.0
optimizer.params.weight_decay_bias = 0.0
train.lr_reference = dict(lr=1e-3, total_batch_size=32)
train.init_checkpoint = "torchvision-vgg16://IMAGENET1K_V1"  # see d2imbalance/modeling/vgg.py
train.trained_checkpoint = ""
train.max_iter = 120000
train.eval_period = 10000  # the recipe's test_interval
train.checkpointer.period = 10000
dataloader.evaluator = with_recall_by_size(dataloader.evaluator, size_by="input")  # sizes in the 300x300 input (§3.1)
train.output_dir = "./output/ssd300_voc0712"
