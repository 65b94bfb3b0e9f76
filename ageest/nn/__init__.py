"""The network and the losses.

LOSS_NAMES is the loss registry's names in its order (ageest.nn.losses.LOSSES, the source; a test
keeps them equal), here so that planning a study (ageest.study.plan) needs no torch import.
"""

LOSS_NAMES = ("mean_variance", "softmax", "dldl", "dldl_v2", "mean_residue", "sord", "l1", "coral")
