"""The authors'-code variant (chenjoya/resobj@15da804) of RetinaNet-ResObj, R50-FPN, 1x, 800px.

One residual stage on the objectness feature; the objectness logit is o_0 + r_1 with ONE BCE on all
valid anchors (no gate, nothing detached); both biases start at P = 0.001; losses divided by
20x (objectness), 10x (class) and 1x (box) the positive-count EMA, per GPU. Their EMA is updated three
times per step under one name (effective momentum 0.9^3 ~ 0.73 and three slightly different
normalisers); we update it once per step with momentum 0.9 (set loss_normalizer_momentum=0.729 to match
its smoothing). Their hidden convs keep PyTorch's default init; ours use N(0, 0.01) like the rest.
"""
from .retinanet_resobj_R_50_FPN_1x import dataloader, lr_multiplier, model, optimizer, train

model.cascade_mode = "official"
model.test_score_thresh = 0.05  # the authors' code (detectron2's RetinaNet test settings)
model.test_nms_thresh = 0.5
model.head.num_steps = 1
model.head.isolate_residual_grad = False
model.head.objectness_conv_dim = 256  # the tower width, as in the authors' head
model.head.objectness_prior = 0.001
model.head.residual_prior = 0.001
train.output_dir = "./output/retinanet_resobj_official_R_50_FPN_1x"
