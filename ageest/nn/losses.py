"""Losses for age estimation, each a registry entry, and the one `expected_age` helper.

Ages are classes `min_age .. max_age`, one per year. All losses but CORAL read the network's K
outputs as logits of a distribution over those ages, and predict its expectation (Pan et al.,
"Mean-Variance Loss for Deep Age Estimation from a Face", CVPR 2018). CORAL has a head of its own
(K-1 binary outputs) and predicts by counting the thresholds passed; its registry entry says so.
Every function is pure and device-agnostic: it works on whatever device its tensors are on.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Dict

import torch
import torch.nn as nn
import torch.nn.functional as F

from ageest import methods
from ageest.config import choices, default, field_names  # each loss key's default is the training config's
from ageest.errors import ConfigError

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


def mean_variance_loss(logits: Tensor, target: Tensor, ages: Tensor, lambda1: float = default("lambda1"),
                       lambda2: float = default("lambda2")) -> Dict[str, Tensor]:
    """Softmax CE + lambda1 * mean loss + lambda2 * variance loss (Pan et al., CVPR 2018, eq. 6).

    logits: (N, K); target: (N,) ages in years; ages: (K,).
    Returns {'loss', 'ce', 'mean', 'var'} (scalars); 'loss' is the one to backpropagate.
    """
    ce = F.cross_entropy(_at_least_fp32(logits), _class_index(target, ages))
    mean_l, var_l = mean_variance_terms(logits, target, ages)
    return {"loss": ce + lambda1 * mean_l + lambda2 * var_l, "ce": ce, "mean": mean_l, "var": var_l}


def soft_labels(target: Tensor, ages: Tensor, penalty: Callable[[Tensor], Tensor]) -> Tensor:
    """Target distribution q_k = exp(-penalty(a_k - y)) / sum_j exp(-penalty(a_j - y)).

    target: (N,) true ages; ages: (K,); penalty maps the (N, K) age differences, in years, to
    non-negative costs. Returns q, (N, K), each row summing to 1 over the K class ages (float32).
    A discretised Gaussian (DLDL) is penalty d^2 / (2 sigma^2); SORD's soft labels are its metric.
    """
    a = ages.to(dtype=torch.float32)
    diff = a[None, :] - target.to(device=a.device, dtype=a.dtype)[:, None]
    return torch.softmax(-penalty(diff), dim=1)


def gaussian_labels(target: Tensor, ages: Tensor, sigma: float) -> Tensor:
    """DLDL's label distribution: a Gaussian N(y, sigma^2) (sigma in years) at the class ages,
    normalised over them (Gao et al., TIP 2017). (N,) -> (N, K)."""
    if not sigma > 0:
        raise ValueError(f"sigma must be positive (got {sigma})")
    return soft_labels(target, ages, lambda d: d ** 2 / (2 * sigma ** 2))


def dldl_loss(logits: Tensor, target: Tensor, ages: Tensor, dldl_sigma: float = default("dldl_sigma")) -> Dict[str, Tensor]:
    """DLDL: KL(q || softmax(logits)), q the Gaussian label distribution around the true age.

    After Gao, Xing, Xie, Wu & Geng, "Deep Label Distribution Learning With Label Ambiguity", IEEE
    TIP 2017, as DLDL-v2 (IJCAI 2018) and Paplham & Franc's reimplementation (CVPR 2024) compute it,
    not as the 2017 code does: q is normalised over the class ages (the 2017 code feeds raw Gaussian
    values, clipped at 1e-15) and the age is the expectation of p (the 2017 code predicts the argmax).
    dldl_sigma: the Gaussian's sd in years, default 2 as in Paplham & Franc's code.
    logits: (N, K); target: (N,) ages in years; ages: (K,).
    Returns {'loss', 'kl'}: KL in nats, summed over the K ages, averaged over the N samples.
    """
    log_p = F.log_softmax(_at_least_fp32(logits), dim=1)
    q = gaussian_labels(target, ages, dldl_sigma).to(log_p.dtype)
    kl = F.kl_div(log_p, q, reduction="batchmean")  # sum_k q_k (log q_k - log p_k); 0 log 0 = 0
    return {"loss": kl, "kl": kl}


def l1_loss(logits: Tensor, target: Tensor, ages: Tensor) -> Dict[str, Tensor]:
    """L1 regression on the expected age: mean |E[a] - y| in years, the plain regression baseline
    (the same term is DLDL-v2's expectation loss). logits: (N, K); target: (N,) ages in years;
    ages: (K,). Returns {'loss', 'l1'} (years)."""
    mean, _ = expected_age(logits, ages)
    l1 = (mean - target.to(mean.dtype)).abs().mean()
    return {"loss": l1, "l1": l1}


DLDL_V2_KL_MEANS = choices("dldl_v2_kl_mean")


def dldl_v2_loss(logits: Tensor, target: Tensor, ages: Tensor, dldl_sigma: float = default("dldl_sigma"),
                 dldl_v2_lambda: float = default("dldl_v2_lambda"),
                 dldl_v2_kl_mean: str = default("dldl_v2_kl_mean")) -> Dict[str, Tensor]:
    """DLDL-v2: KL(q || p) + lambda * |E[a] - y|, label distribution plus expectation regression.

    Gao, Zhou, Wu & Geng, "Age Estimation Using Expectation of Label Distribution Learning",
    IJCAI 2018: L = L_ld + lambda L_er, q DLDL's Gaussian (dldl_sigma, 2 years), lambda 1.
    The paper leaves the KL term's normalisation open, and it sets the balance of the two terms:
    dldl_v2_kl_mean 'elements' averages the KL over all N*K (sample, age) elements, as the authors'
    Torch code does (KLDivCriterion with sizeAverage; the L1 term averaged over N); 'samples' sums
    it over the K ages and averages over N, as Paplham & Franc's reimplementation does, which makes
    the KL term's gradient K times larger against the L1 term's.
    logits: (N, K); target: (N,) ages in years; ages: (K,).
    Returns {'loss', 'kl', 'l1'}: 'kl' is the per-sample KL (nats) whatever the normalisation.
    """
    if dldl_v2_kl_mean not in DLDL_V2_KL_MEANS:
        raise ValueError(f"dldl_v2_kl_mean must be one of {', '.join(DLDL_V2_KL_MEANS)} (got {dldl_v2_kl_mean!r})")
    kl = dldl_loss(logits, target, ages, dldl_sigma)["kl"]
    l1 = l1_loss(logits, target, ages)["l1"]
    kl_term = kl / logits.shape[1] if dldl_v2_kl_mean == "elements" else kl
    return {"loss": kl_term + dldl_v2_lambda * l1, "kl": kl, "l1": l1}


SORD_DISTANCES: Dict[str, Callable[[Tensor], Tensor]] = {
    "absolute": torch.abs,
    "squared": torch.square,
}


def sord_loss(logits: Tensor, target: Tensor, ages: Tensor,
              sord_distance: str = default("sord_distance")) -> Dict[str, Tensor]:
    """SORD: cross-entropy to soft labels q_k = softmax_k(-phi(y, a_k)), phi a metric in years.

    Diaz & Marathe, "Soft Labels for Ordinal Regression", CVPR 2019.
    sord_distance: phi = |y - a| ('absolute') or (y - a)^2 ('squared'). logits: (N, K);
    target: (N,) ages in years; ages: (K,).
    Returns {'loss', 'ce'}; CE is KL + the (constant) entropy of q, so the gradient is KL's.
    """
    if sord_distance not in SORD_DISTANCES:
        raise ValueError(f"sord_distance must be one of {', '.join(SORD_DISTANCES)} (got {sord_distance!r})")
    z = _at_least_fp32(logits)
    q = soft_labels(target, ages, SORD_DISTANCES[sord_distance]).to(z.dtype)
    ce = F.cross_entropy(z, q)
    return {"loss": ce, "ce": ce}


def mean_residue_loss(logits: Tensor, target: Tensor, ages: Tensor, residue_lambda1: float = default("residue_lambda1"),
                      residue_lambda2: float = default("residue_lambda2"), residue_k: int = default("residue_k"),
                      residue_eps: float = default("residue_eps")) -> Dict[str, Tensor]:
    """Softmax CE + lambda1 * mean loss + lambda2 * residue loss (Zhao, Qian, Hou & Zeng,
    "Adaptive Mean-Residue Loss for Robust Facial Age Estimation", ICME 2022).

    mean loss    = 1/2 (E[a] - y)^2, as Pan et al.'s (years^2), batch mean;
    residue loss = sum_k -(r_k + eps) log(r_k + eps), r_k = p_k for the classes outside the top K
                   and 0 for the top K (nats, batch mean), so mass concentrates on a few ages.
    From the paper: the three terms and the entropy of the classes outside the top K; residue_k >= 1
    fixes K (the paper's plain mean-residue loss). From the authors' code (AMR-Loss,
    residue_loss_adaptive_K.py), not the paper: residue_k = 0, the adaptive K, where the top classes
    are those at least as probable as the true age's, so K follows each sample; residue_eps, the
    1e-3 inside the log, added to every class's term (a kept class adds the constant -eps log eps,
    no gradient); lambda2 = 0.05, what their FG-NET and CLAP experiment scripts pass (their argparse
    default is 0.25). residue_eps = 0 gives the paper's exact entropy. Which classes are outside is
    not differentiated through, as in their code.
    logits: (N, K); target: (N,) ages; ages: (K,). Returns {'loss', 'ce', 'mean', 'residue'}.
    """
    z = _at_least_fp32(logits)
    log_p = F.log_softmax(z, dim=1)
    p = log_p.exp()
    idx = _class_index(target, ages)
    ce = F.nll_loss(log_p, idx)
    mean_l, _ = mean_variance_terms(logits, target, ages)
    with torch.no_grad():
        if residue_k == 0:
            outside = p < p.gather(1, idx[:, None])
        elif 1 <= residue_k < p.shape[1]:
            outside = torch.ones_like(p, dtype=torch.bool).scatter_(1, p.topk(residue_k, dim=1).indices, False)
        else:
            raise ValueError(f"residue_k must be 0 (adaptive) or 1 .. {p.shape[1] - 1} (got {residue_k})")
    if residue_eps > 0:
        r = p * outside + residue_eps
        residue = -(r * r.log()).sum(dim=1).mean()
    else:  # log p from log_softmax: exact where p underflows
        residue = -(p * log_p * outside).sum(dim=1).mean()
    return {"loss": ce + residue_lambda1 * mean_l + residue_lambda2 * residue, "ce": ce, "mean": mean_l,
            "residue": residue}


class CoralHead(nn.Module):
    """CORAL's output layer: K-1 logits g_k = w.x + b_k, one weight vector shared by the K-1 binary
    tasks "age > a_k" and one bias each (Cao, Mirjalili & Raschka 2020). (N, F) -> (N, K-1)."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.shared = nn.Linear(in_features, 1, bias=False)
        # Biases start ordered (decreasing), the order the rank-consistency theorem says they keep.
        self.bias = nn.Parameter(torch.arange(num_classes - 1, 0, -1, dtype=torch.float32) / (num_classes - 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.shared(x) + self.bias


def coral_loss(logits: Tensor, target: Tensor, ages: Tensor) -> Dict[str, Tensor]:
    """CORAL: binary cross-entropy of the K-1 tasks "age > a_k", summed over tasks, batch mean.

    Cao, Mirjalili & Raschka, "Rank consistent ordinal regression for neural networks with
    application to age estimation", Pattern Recognition Letters 140 (2020), with every task
    weight lambda_k = 1. logits: (N, K-1) from CoralHead; target: (N,) ages in years;
    ages: (K,). Returns {'loss', 'bce'} (nats).
    """
    z = _at_least_fp32(logits)
    if z.shape[1] != len(ages) - 1:
        raise ValueError(f"CORAL takes K-1 = {len(ages) - 1} outputs for {len(ages)} ages (got {z.shape[1]})")
    bce = F.binary_cross_entropy_with_logits(z, _levels(target, ages, z.dtype), reduction="none").sum(1).mean()
    return {"loss": bce, "bce": bce}


def coral_age(logits: Tensor, ages: Tensor) -> tuple[Tensor, Tensor]:
    """CORAL's prediction: a_0 + the number of tasks with P(age > a_k) > 0.5, in whole years, not a
    softmax expectation. The spread is sqrt(sum_k P_k (1 - P_k)), the sd of that count were the
    K-1 answers independent. logits: (N, K-1); ages: (K,). Returns (age (N,), spread (N,))."""
    prob = torch.sigmoid(_at_least_fp32(logits))
    age = ages[0].to(prob) + (prob > 0.5).sum(dim=1).to(prob.dtype)
    return age, (prob * (1 - prob)).sum(dim=1).sqrt()


def _levels(target: Tensor, ages: Tensor, dtype: torch.dtype) -> Tensor:
    # Task k asks "age > a_k" for k = 0 .. K-2 (the oldest class has no task above it).
    a = ages.to(device=target.device, dtype=torch.float32)
    return (target.to(torch.float32)[:, None] > a[None, :-1]).to(dtype)


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
    """A registered loss resolved (its entry in ageest.methods.LOSSES): its function, the
    training-config keys it takes as keyword arguments (its keyword parameters that are Config
    fields), its output layer and how its outputs become an age.

    head(in_features, num_classes) builds the network's last layer. predict(outputs, ages) ->
    (age, spread), both (N,) in years: training's evaluation, metrics, predictions.tsv and
    `ageest predict` all go through it. Calling a LossSpec calls its function.
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


def _resolve(entry: methods.Loss) -> LossSpec:
    fn = globals()[entry.fn]
    keys = tuple(k for k in inspect.signature(fn).parameters if k in field_names())
    return LossSpec(fn, keys, globals()[entry.head] if entry.head else nn.Linear,
                    globals()[entry.predict] if entry.predict else expected_age)


LOSSES: Dict[str, LossSpec] = {name: _resolve(entry) for name, entry in methods.LOSSES.items()}


def loss_kwargs(name: str, config: Any) -> Dict[str, Any]:
    """The keyword arguments loss `name` takes from `config`, as its function declares them."""
    return loss_spec(name).kwargs(config)


def loss_spec(name: str) -> LossSpec:
    """The registry entry of loss `name`; ConfigError naming the known ones otherwise."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ConfigError(f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})") from None
