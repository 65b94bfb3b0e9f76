"""What a study compares: every registered loss and baseline, one entry each, as plain data.

No torch, numpy or plotting here: the workflow's parse, the config schema's enums, the docs and the
tests read the names from this module without importing them. An entry names its implementation
(a function of `ageest.nn.losses` or `ageest.train.baselines`), which is where the method's maths,
paper and shapes are written; everything else about a loss is derived from its function (the
training keys it takes are its keyword parameters that are `ageest.config.Config` fields).

Adding a loss: write its function in ageest/nn/losses.py, add its entry to LOSSES, test it with a
value worked out by hand in tests/test_losses.py. Adding a baseline: its function in
ageest/train/baselines.py, its entry in BASELINES, a test in tests/test_baselines.py.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Loss:
    """A trained method. `fn`: the loss function's name in ageest.nn.losses, (logits, target,
    ages, **its config keys) -> {'loss', its terms}. `head`: the class (in_features, num_classes) ->
    module of its output layer, '' for a K-way Linear. `predict`: the function (outputs, ages) ->
    (age, spread) turning outputs into years, '' for the softmax expectation."""

    fn: str
    head: str = ""
    predict: str = ""


@dataclass(frozen=True)
class Baseline:
    """A reference method run per fold on the fold's split. `fn`: its function's name in
    ageest.train.baselines, (FoldData) -> (val ages, test ages, what it chose). `needs`: what it
    reads besides the ages and the split ('pixels': the cache's grey crops; 'zero_shot': the shipped
    face-age network's age of every image). `grey`: its line's grey in every plot; `label`: its
    legend, where the plain '(baseline)' would hide a caveat."""

    fn: str
    needs: str = ""
    grey: str = "0.5"
    label: str = ""


LOSSES: dict[str, Loss] = {
    "mean_variance": Loss("mean_variance_loss"),
    "softmax": Loss("softmax_loss"),
    "dldl": Loss("dldl_loss"),
    "dldl_v2": Loss("dldl_v2_loss"),
    "mean_residue": Loss("mean_residue_loss"),
    "sord": Loss("sord_loss"),
    "l1": Loss("l1_loss"),
    "coral": Loss("coral_loss", head="CoralHead", predict="coral_age"),
}

BASELINES: dict[str, Baseline] = {
    "mean": Baseline("mean_baseline", grey="0.65"),
    "ridge": Baseline("ridge_baseline", needs="pixels", grey="0.35"),
    # The shipped network's private training data may hold the study's people: said wherever its row is.
    "zero_shot": Baseline("zero_shot_baseline", needs="zero_shot", grey="0.1",
                          label="zero_shot (baseline: shipped network, may have seen FG-NET)"),
}
