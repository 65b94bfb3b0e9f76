"""Losses for age estimation as classification over ages, and the one `expected_age` helper.

Ages are classes `min_age .. max_age`; the predicted age is the expectation of the softmax
(Pan et al., "Mean-Variance Loss for Deep Age Estimation from a Face", CVPR 2018).
Every function is pure and device-agnostic: it works on whatever device its tensors are on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

Tensor = torch.Tensor


def expected_age(logits: Tensor, ages: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the age distribution softmax(logits).

    logits: (N, K) unnormalised scores over K ages; ages: (K,) the age of each class, in years.
    Returns (mean (N,), std (N,)), in years, computed in float32 (float64 for float64 logits) whatever
    the logits' dtype.
    """
    p = torch.softmax(_at_least_fp32(logits), dim=1)
    a = ages.to(device=logits.device, dtype=p.dtype)
    mean = p @ a
    var = (p * (a[None, :] - mean[:, None]) ** 2).sum(dim=1)
    return mean, var.clamp_min(0).sqrt()


def mean_variance_terms(logits: Tensor, target: Tensor, ages: Tensor) -> tuple[Tensor, Tensor]:
    """The two terms of Pan et al.'s loss, each averaged over the batch.

    mean loss     = 1/2 * (E[a] - y)^2           (years^2)
    variance loss = E[(a - E[a])^2]              (years^2)
    logits: (N, K); target: (N,) true ages in years (float or int); ages: (K,).
    """
    mean, std = expected_age(logits, ages)
    mean_loss = 0.5 * (mean - target.to(mean.dtype)) ** 2
    return mean_loss.mean(), (std ** 2).mean()


def softmax_loss(logits: Tensor, target: Tensor, ages: Tensor, **_: float) -> Dict[str, Tensor]:
    """Softmax cross-entropy over age classes alone. Returns {'loss', 'ce'}; target: (N,) ages."""
    ce = F.cross_entropy(_at_least_fp32(logits), _class_index(target, ages))
    return {"loss": ce, "ce": ce}


def mean_variance_loss(logits: Tensor, target: Tensor, ages: Tensor, lambda1: float = 0.2,
                       lambda2: float = 0.05) -> Dict[str, Tensor]:
    """Softmax CE + lambda1 * mean loss + lambda2 * variance loss (Pan et al., CVPR 2018, eq. 6).

    Returns {'loss', 'ce', 'mean', 'var'} (scalars); 'loss' is the one to backpropagate.
    """
    ce = F.cross_entropy(_at_least_fp32(logits), _class_index(target, ages))
    mean_l, var_l = mean_variance_terms(logits, target, ages)
    return {"loss": ce + lambda1 * mean_l + lambda2 * var_l, "ce": ce, "mean": mean_l, "var": var_l}


def _at_least_fp32(x: Tensor) -> Tensor:
    # bf16/fp16 logits (autocast) are lifted to float32; float64 stays float64 (exact gradient tests).
    return x if x.dtype == torch.float64 else x.float()


def _class_index(target: Tensor, ages: Tensor) -> Tensor:
    # Ages are consecutive integers from ages[0]. No range check here: it would force a device
    # sync every step; cross_entropy itself rejects an out-of-range class.
    return target.round().long() - ages[0].long()


LossFn = Callable[..., Dict[str, Tensor]]
Head = Callable[[int, int], nn.Module]
Predict = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


@dataclass(frozen=True)
class LossSpec:
    """A registered loss: its function, the training-config keys it takes as keyword arguments,
    its output layer and how its outputs become an age.

    head(in_features, num_classes) builds the network's last layer (a K-way Linear unless the
    loss needs another). predict(outputs, ages) -> (age, spread), both (N,) in years: training's
    evaluation, metrics, predictions.tsv and `ageest predict` all go through it.
    Calling a LossSpec calls its function, so `LOSSES[name](logits, target, ages, ...)` works.
    """

    fn: LossFn
    config_keys: tuple[str, ...] = ()
    head: Head = nn.Linear
    predict: Predict = expected_age

    def __call__(self, *args: Any, **kwargs: Any) -> Dict[str, Tensor]:
        return self.fn(*args, **kwargs)

    def kwargs(self, config: Any) -> Dict[str, Any]:
        """The keyword arguments this loss takes from a training config (an ageest Config)."""
        return {k: getattr(config, k) for k in self.config_keys}


# A third loss is one entry away: write its function, register it here with the config keys it
# reads (add any new key to ageest.config.Config), and name it in the config's `losses:`.
LOSSES: Dict[str, LossSpec] = {
    "mean_variance": LossSpec(mean_variance_loss, ("lambda1", "lambda2")),
    "softmax": LossSpec(softmax_loss),
}


def get_loss(name: str) -> LossFn:
    """The loss function registered as `name`; ConfigError naming the known ones otherwise."""
    return loss_spec(name).fn


def loss_kwargs(name: str, config: Any) -> Dict[str, Any]:
    """The keyword arguments loss `name` takes from `config`, as its registry entry declares them."""
    return loss_spec(name).kwargs(config)


def loss_spec(name: str) -> LossSpec:
    """The registry entry of loss `name`; ConfigError naming the known ones otherwise."""
    from .errors import ConfigError

    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})") from None
