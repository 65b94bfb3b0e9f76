"""Losses for age estimation as classification over ages, and the one `expected_age` helper.

Ages are classes `min_age .. max_age`; the predicted age is the expectation of the softmax
(Pan et al., "Mean-Variance Loss for Deep Age Estimation from a Face", CVPR 2018).
Every function is pure and device-agnostic: it works on whatever device its tensors are on.
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


def expected_age(logits: Tensor, ages: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the age distribution softmax(logits).

    logits: (N, K) unnormalised scores over K ages; ages: (K,) the age of each class, in years.
    Returns (mean (N,), std (N,)), in years, computed in float32 whatever the logits' dtype.
    """
    p = torch.softmax(logits.float(), dim=1)
    a = ages.to(device=logits.device, dtype=torch.float32)
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
    mean_loss = 0.5 * (mean - target.float()) ** 2
    return mean_loss.mean(), (std ** 2).mean()


def softmax_loss(logits: Tensor, target: Tensor, ages: Tensor, **_: float) -> Dict[str, Tensor]:
    """Softmax cross-entropy over age classes alone. Returns {'loss', 'ce'}; target: (N,) ages."""
    ce = F.cross_entropy(logits.float(), _class_index(target, ages))
    return {"loss": ce, "ce": ce}


def mean_variance_loss(logits: Tensor, target: Tensor, ages: Tensor, lambda1: float = 0.2,
                       lambda2: float = 0.05) -> Dict[str, Tensor]:
    """Softmax CE + lambda1 * mean loss + lambda2 * variance loss (Pan et al., CVPR 2018, eq. 6).

    Returns {'loss', 'ce', 'mean', 'var'} (scalars); 'loss' is the one to backpropagate.
    """
    ce = F.cross_entropy(logits.float(), _class_index(target, ages))
    mean_l, var_l = mean_variance_terms(logits, target, ages)
    return {"loss": ce + lambda1 * mean_l + lambda2 * var_l, "ce": ce, "mean": mean_l, "var": var_l}


def _class_index(target: Tensor, ages: Tensor) -> Tensor:
    # Ages are consecutive integers from ages[0]. No range check here: it would force a device
    # sync every step; cross_entropy itself rejects an out-of-range class.
    return target.round().long() - ages[0].long()


LossFn = Callable[..., Dict[str, Tensor]]

# A third loss is one function away: add it here and name it in the config's `losses:`.
LOSSES: Dict[str, LossFn] = {
    "mean_variance": mean_variance_loss,
    "softmax": softmax_loss,
}


def get_loss(name: str) -> LossFn:
    from .errors import ConfigError

    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})") from None
