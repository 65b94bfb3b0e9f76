import math

import pandas as pd
import pytest
import torch

from ageest.errors import ConfigError
import inspect

from ageest.config import Config, field_names
from ageest.nn.losses import LOSSES, LossSpec, expected_age, loss_kwargs, loss_spec, mean_variance_loss, softmax_loss

AGES = torch.tensor([0.0, 1.0, 2.0])


def test_expected_age_by_hand():
    # p = softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2]: mean = 1.25, var = 0.6875
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
    mean, std = expected_age(logits, AGES)
    assert mean.tolist() == pytest.approx([1.25, 1.0])
    assert (std ** 2).tolist() == pytest.approx([0.6875, 2 / 3])


def test_mean_variance_by_hand():
    logits = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
    target = torch.tensor([2.0, 0.0])
    out = mean_variance_loss(logits, target, AGES, lambda1=0.2, lambda2=0.05)
    ce = (-math.log(0.5) - math.log(1 / 3)) / 2
    mean_l = (0.5 * 0.75 ** 2 + 0.5 * 1.0 ** 2) / 2  # 0.390625
    var_l = (0.6875 + 2 / 3) / 2
    assert out["ce"].item() == pytest.approx(ce)
    assert out["mean"].item() == pytest.approx(mean_l)
    assert out["var"].item() == pytest.approx(var_l)
    assert out["loss"].item() == pytest.approx(ce + 0.2 * mean_l + 0.05 * var_l)


def test_softmax_alone_and_offset_ages():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    ages = torch.tensor([10.0, 11.0, 12.0])  # min_age = 10
    out = softmax_loss(logits, torch.tensor([10.0]), ages)
    assert out["loss"].item() == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 2)))
    assert set(out) == {"loss", "ce"}


def test_gradients_flow_and_bf16_logits():
    logits = torch.randn(4, 3, requires_grad=True)
    mean_variance_loss(logits.bfloat16(), torch.tensor([0.0, 1.0, 2.0, 1.0]), AGES)["loss"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_registry_and_errors():
    assert set(LOSSES) >= {"mean_variance", "softmax"}
    assert loss_spec("softmax").fn is softmax_loss
    with pytest.raises(ConfigError, match="unknown loss 'huber'"):
        loss_spec("huber")
    with pytest.raises(IndexError, match="out of bounds"):
        softmax_loss(torch.zeros(1, 3), torch.tensor([5.0]), AGES)


def test_mean_variance_gradient_is_the_analytic_one():
    # p = softmax(z), m = sum p_k a_k, v = sum p_k (a_k - m)^2. Per sample:
    #   d CE / dz_j            = p_j - [j = y]
    #   d (m - y)^2/2 / dz_j   = (m - y) p_j (a_j - m)
    #   d v / dz_j             = p_j ((a_j - m)^2 - v)
    # and the loss averages over the N samples.
    torch.manual_seed(0)
    ages = torch.arange(10.0, 16.0, dtype=torch.float64)
    z = (3 * torch.randn(3, 6, dtype=torch.float64)).requires_grad_()
    y = torch.tensor([10.0, 13.0, 15.0], dtype=torch.float64)
    l1, l2 = 0.2, 0.05
    mean_variance_loss(z, y, ages, lambda1=l1, lambda2=l2)["loss"].backward()
    p = torch.softmax(z.detach(), dim=1)
    m = p @ ages
    d = ages[None, :] - m[:, None]
    v = (p * d ** 2).sum(dim=1)
    onehot = torch.nn.functional.one_hot((y - 10).long(), 6).double()
    analytic = ((p - onehot) + l1 * (m - y)[:, None] * p * d + l2 * p * (d ** 2 - v[:, None])) / 3
    assert z.grad.dtype == torch.float64
    assert torch.allclose(z.grad, analytic, rtol=0, atol=1e-10), (z.grad - analytic).abs().max()
    assert analytic.abs().max() > 1e-2  # the comparison is not between two near-zero tensors


def test_each_loss_declares_its_config_keys():
    for name, spec in LOSSES.items():
        assert isinstance(spec, LossSpec)
        assert set(spec.config_keys) <= set(field_names()), name  # keys the Config has
        params = inspect.signature(spec.fn).parameters
        assert all(k in params for k in spec.config_keys), name  # and the function takes
    c = Config(lambda1=0.7, lambda2=0.3)
    assert loss_kwargs("mean_variance", c) == {"lambda1": 0.7, "lambda2": 0.3}
    assert loss_kwargs("softmax", c) == {}
    logits, target = torch.tensor([[0.0, 0.0, math.log(2)]]), torch.tensor([2.0])
    # The registry entry is callable like the function it holds (LOSSES[name] as before).
    assert LOSSES["mean_variance"](logits, target, AGES, **loss_kwargs("mean_variance", c))["loss"].item() == \
        pytest.approx(mean_variance_loss(logits, target, AGES, lambda1=0.7, lambda2=0.3)["loss"].item())
    with pytest.raises(ConfigError, match="unknown loss 'huber'"):
        loss_kwargs("huber", c)


# --- the published losses: each checked against a value worked out by hand ---------------------

from math import exp, log

from ageest.config import choices
from ageest.nn.losses import (DLDL_V2_KL_MEANS, SORD_DISTANCES, CoralHead, coral_age, coral_loss, dldl_loss, dldl_v2_loss,
                           gaussian_labels, l1_loss, mean_residue_loss, sord_loss)

# Two samples over ages 0, 1, 2: p = (1/4, 1/4, 1/2) with mean 1.25, and p uniform with mean 1.
TWO = torch.tensor([[0.0, 0.0, math.log(2)], [0.0, 0.0, 0.0]])
P_TWO = [[0.25, 0.25, 0.5], [1 / 3, 1 / 3, 1 / 3]]


def _normalised(w):
    return [x / sum(w) for x in w]


def _kl(q, p):
    return sum(a * log(a / b) for a, b in zip(q, p))


def test_dldl_by_hand():
    # sigma = 1: q_k ~ exp(-(k - y)^2 / 2); y = 0 -> (1, e^-1/2, e^-2), y = 1 -> (e^-1/2, 1, e^-1/2).
    target = torch.tensor([0.0, 1.0])
    q = [_normalised([1, exp(-0.5), exp(-2)]), _normalised([exp(-0.5), 1, exp(-0.5)])]
    assert gaussian_labels(target, AGES, 1.0).tolist() == [pytest.approx(r) for r in q]
    kl = (_kl(q[0], P_TWO[0]) + _kl(q[1], P_TWO[1])) / 2  # 0.3101...
    out = dldl_loss(TWO, target, AGES, dldl_sigma=1.0)
    assert out["loss"].item() == pytest.approx(kl) and out["kl"].item() == pytest.approx(kl)


def test_dldl_v2_by_hand():
    target = torch.tensor([0.0, 1.0])
    q = [_normalised([1, exp(-0.5), exp(-2)]), _normalised([exp(-0.5), 1, exp(-0.5)])]
    kl = (_kl(q[0], P_TWO[0]) + _kl(q[1], P_TWO[1])) / 2
    l1 = (abs(1.25 - 0) + abs(1.0 - 1)) / 2  # expected ages 1.25 and 1
    # Paplham & Franc's balance: the per-sample KL (summed over the 3 ages, averaged over 2 samples).
    out = dldl_v2_loss(TWO, target, AGES, dldl_sigma=1.0, dldl_v2_lambda=0.5, dldl_v2_kl_mean="samples")
    assert out["kl"].item() == pytest.approx(kl)
    assert out["l1"].item() == pytest.approx(0.625)
    assert out["loss"].item() == pytest.approx(kl + 0.5 * l1)


def test_dldl_v2_authors_balance_by_hand():
    # The authors' Torch code (KLDivCriterion, sizeAverage): the KL summed over all 2 x 3 elements
    # and divided by 6, i.e. the per-sample KL / K; AbsCriterion: |E[a] - y| over the 2 samples.
    target = torch.tensor([0.0, 1.0])
    q = [_normalised([1, exp(-0.5), exp(-2)]), _normalised([exp(-0.5), 1, exp(-0.5)])]
    kl_elements = (_kl(q[0], P_TWO[0]) + _kl(q[1], P_TWO[1])) / 6
    out = dldl_v2_loss(TWO, target, AGES, dldl_sigma=1.0, dldl_v2_lambda=0.5)  # the default: elements
    assert out["loss"].item() == pytest.approx(kl_elements + 0.5 * 0.625)
    assert out["kl"].item() == pytest.approx(3 * kl_elements)  # reported per sample either way
    # The gradient of the KL term is K = 3 times smaller against the L1 term's than under 'samples'.
    z = TWO.clone().requires_grad_(True)
    dldl_v2_loss(z, target, AGES, dldl_sigma=1.0, dldl_v2_lambda=0.0)["loss"].backward()
    g_elements = z.grad.clone()
    z.grad = None
    dldl_v2_loss(z, target, AGES, dldl_sigma=1.0, dldl_v2_lambda=0.0, dldl_v2_kl_mean="samples")["loss"].backward()
    assert torch.allclose(3 * g_elements, z.grad)
    with pytest.raises(ValueError, match="dldl_v2_kl_mean must be one of elements, samples"):
        dldl_v2_loss(TWO, target, AGES, dldl_v2_kl_mean="batch")


def test_l1_by_hand():
    out = l1_loss(TWO, torch.tensor([2.0, 0.0]), AGES)
    assert out["loss"].item() == pytest.approx((0.75 + 1.0) / 2)


@pytest.mark.parametrize("distance, phi", [("absolute", abs), ("squared", lambda d: d * d)])
def test_sord_by_hand(distance, phi):
    # y = 2: q_k ~ exp(-phi(2 - k)); y = 0: q_k ~ exp(-phi(k)). CE = -sum q log p.
    q = [_normalised([exp(-phi(2 - k)) for k in range(3)]), _normalised([exp(-phi(k)) for k in range(3)])]
    ce = -sum(qk * log(pk) for qr, pr in zip(q, P_TWO) for qk, pk in zip(qr, pr)) / 2
    out = sord_loss(TWO, torch.tensor([2.0, 0.0]), AGES, sord_distance=distance)
    assert out["loss"].item() == pytest.approx(ce) and out["ce"].item() == pytest.approx(ce)


# Ages 0..3, p = (.1, .2, .3, .4) for both samples: expected age 2; targets 1 and 3.
P4 = torch.log(torch.tensor([[0.1, 0.2, 0.3, 0.4]] * 2))
AGES4 = torch.arange(4.0)


def _h(*ps):
    return -sum(p * log(p) for p in ps)


def test_mean_residue_adaptive_by_hand():
    # Adaptive K: the residue is the classes less probable than the true age's. y = 1 (p .2): {0};
    # y = 3 (p .4): {0, 1, 2}.
    out = mean_residue_loss(P4, torch.tensor([1.0, 3.0]), AGES4, residue_lambda1=0.2, residue_lambda2=0.25,
                            residue_eps=0.0)
    ce = -(log(0.2) + log(0.4)) / 2
    mean_l = (0.5 * (2 - 1) ** 2 + 0.5 * (2 - 3) ** 2) / 2
    residue = (_h(0.1) + _h(0.1, 0.2, 0.3)) / 2
    assert out["ce"].item() == pytest.approx(ce)
    assert out["mean"].item() == pytest.approx(mean_l)
    assert out["residue"].item() == pytest.approx(residue)
    assert out["loss"].item() == pytest.approx(ce + 0.2 * mean_l + 0.25 * residue)


def test_mean_residue_as_the_authors_run_it_by_hand():
    # The authors' adaptive-K code: r_k = p_k outside the top classes, 0 inside; residue =
    # sum over all 4 classes of -(r_k + eps) log(r_k + eps), eps = 1e-3, batch mean. y = 1 leaves
    # out {0} (kept: 1, 2, 3); y = 3 leaves out {0, 1, 2} (kept: 3). lambda2 0.05 by default.
    eps = 1e-3

    def g(x):
        return -(x + eps) * log(x + eps)

    residue = ((g(0.1) + 3 * g(0)) + (g(0.1) + g(0.2) + g(0.3) + g(0))) / 2
    out = mean_residue_loss(P4, torch.tensor([1.0, 3.0]), AGES4)
    ce = -(log(0.2) + log(0.4)) / 2
    mean_l = (0.5 * (2 - 1) ** 2 + 0.5 * (2 - 3) ** 2) / 2
    assert out["residue"].item() == pytest.approx(residue, rel=1e-6)
    assert out["loss"].item() == pytest.approx(ce + 0.2 * mean_l + 0.05 * residue, rel=1e-6)
    # It is not the exact entropy: the eps terms move it by about 0.02 nats here.
    assert abs(residue - (_h(0.1) + _h(0.1, 0.2, 0.3)) / 2) > 0.01


def test_mean_residue_fixed_k_by_hand():
    # K = 2 keeps ages 2 and 3 (p .3, .4) whatever the target: the residue is classes 0 and 1.
    out = mean_residue_loss(P4, torch.tensor([1.0, 3.0]), AGES4, residue_lambda1=0.0, residue_lambda2=1.0,
                            residue_k=2, residue_eps=0.0)
    ce = -(log(0.2) + log(0.4)) / 2
    assert out["residue"].item() == pytest.approx(_h(0.1, 0.2))
    assert out["loss"].item() == pytest.approx(ce + _h(0.1, 0.2))


def test_coral_by_hand_and_its_prediction():
    # Ages 10, 11, 12: tasks "age > 10", "age > 11". sigmoid(ln 3) = 3/4, sigmoid(-ln 3) = 1/4.
    ages = torch.tensor([10.0, 11.0, 12.0])
    g = torch.tensor([[math.log(3), -math.log(3)], [math.log(3), 0.0]])
    target = torch.tensor([11.0, 12.0])  # levels (1, 0) and (1, 1)
    bce = (-log(0.75) - log(1 - 0.25) + (-log(0.75) - log(0.5))) / 2
    out = coral_loss(g, target, ages)
    assert out["loss"].item() == pytest.approx(bce) and out["bce"].item() == pytest.approx(bce)
    age, spread = coral_age(g, ages)
    assert age.tolist() == [11.0, 11.0]  # 10 + the number of P(age > a_k) above 0.5 (0.5 is not)
    assert spread.tolist() == pytest.approx([math.sqrt(2 * 0.75 * 0.25), math.sqrt(0.75 * 0.25 + 0.25)])


def test_coral_head_shares_one_weight_vector():
    torch.manual_seed(0)
    head = CoralHead(8, 5)
    out = head(torch.randn(3, 8))
    assert out.shape == (3, 4) and head.shared.weight.shape == (1, 8) and head.bias.shape == (4,)
    # Every task sees the same w.x: outputs differ between tasks only by their biases.
    assert torch.allclose(out - out[:, :1], (head.bias - head.bias[0]).expand(3, 4), atol=1e-6)
    assert torch.all(head.bias[:-1] > head.bias[1:])  # starts rank-ordered


@pytest.mark.parametrize("fn", [dldl_loss, sord_loss])
def test_soft_label_gradient_is_p_minus_q(fn):
    # KL(q || p) and CE(q, p) with p = softmax(z) both have gradient (p - q) / N in z.
    torch.manual_seed(0)
    z = (2 * torch.randn(3, 6, dtype=torch.float64)).requires_grad_()
    y = torch.tensor([0.0, 2.4, 5.0], dtype=torch.float64)
    ages = torch.arange(6.0)
    fn(z, y, ages)["loss"].backward()
    q = gaussian_labels(y, ages, 2.0) if fn is dldl_loss else torch.softmax(-(ages[None] - y[:, None].float()).abs(), 1)
    expected = (torch.softmax(z.detach(), 1) - q.double()) / 3
    assert torch.allclose(z.grad, expected, atol=1e-6)


def test_loss_errors():
    with pytest.raises(ValueError, match="sigma must be positive"):
        dldl_loss(TWO, torch.tensor([0.0, 1.0]), AGES, dldl_sigma=0.0)
    with pytest.raises(ValueError, match="sigma must be positive"):
        dldl_v2_loss(TWO, torch.tensor([0.0, 1.0]), AGES, dldl_sigma=-1.0)
    with pytest.raises(ValueError, match="sord_distance must be one of absolute, squared"):
        sord_loss(TWO, torch.tensor([0.0, 1.0]), AGES, sord_distance="huber")
    with pytest.raises(ValueError, match=r"residue_k must be 0 \(adaptive\) or 1 .. 3"):
        mean_residue_loss(P4, torch.tensor([1.0, 3.0]), AGES4, residue_k=4)
    with pytest.raises(ValueError, match="CORAL takes K-1 = 2 outputs for 3 ages"):
        coral_loss(TWO, torch.tensor([0.0, 1.0]), AGES)


@pytest.mark.parametrize("key, value, why", [
    ("dldl_sigma", 0.0, "must be positive"), ("dldl_v2_lambda", -1.0, "must be >= 0"),
    ("residue_lambda1", -0.1, "must be >= 0"), ("residue_lambda2", -0.1, "must be >= 0"),
    ("residue_k", 70, "must be 0 .adaptive. or a number of top classes below the 70 ages"),
    ("residue_k", -1, "must be 0"), ("sord_distance", "huber", "must be one of absolute, squared"),
    ("residue_eps", -1e-3, r"must be in \[0, 1\)"), ("dldl_v2_kl_mean", "batch", "must be one of elements, samples"),
])
def test_loss_config_keys_are_validated(key, value, why):
    with pytest.raises(ConfigError, match=f"config key '{key}': {why}"):
        Config(**{key: value})


def test_loss_choices_are_the_configs_choices():
    assert tuple(SORD_DISTANCES) == choices("sord_distance")
    assert DLDL_V2_KL_MEANS == choices("dldl_v2_kl_mean")


def test_every_loss_takes_bf16_outputs_and_gives_finite_gradients():
    ages = torch.arange(5.0)
    target = torch.tensor([0.0, 2.0, 4.0, 3.0])
    for name, spec in LOSSES.items():
        head = spec.head(6, len(ages))
        out = head(torch.randn(4, 6)).bfloat16()
        spec(out, target, ages, **loss_kwargs(name, Config(min_age=0, max_age=4)))["loss"].backward()
        assert all(torch.isfinite(p.grad).all() for p in head.parameters()), name
        age, spread = spec.predict(out.detach(), ages)
        assert age.shape == spread.shape == (4,) and torch.isfinite(age).all(), name


def test_at_least_seven_losses_each_with_a_docstring_naming_shapes():
    assert len(LOSSES) >= 7
    for name, spec in LOSSES.items():
        assert spec.fn.__doc__ and "(N" in spec.fn.__doc__, name


def test_function_defaults_are_the_configs():
    # Called without a config (as in a notebook) a loss behaves as a default study runs it.
    defaults = Config().to_dict()
    for name, spec in LOSSES.items():
        params = inspect.signature(spec.fn).parameters
        assert {k: params[k].default for k in spec.config_keys} == {k: defaults[k] for k in spec.config_keys}, name
    assert (defaults["dldl_sigma"], defaults["dldl_v2_lambda"], defaults["dldl_v2_kl_mean"]) == (2.0, 1.0, "elements")
    assert (defaults["residue_lambda1"], defaults["residue_lambda2"], defaults["residue_k"],
            defaults["residue_eps"]) == (0.2, 0.05, 0, 1e-3)


# --- each loss end to end: one epoch on synthetic faces, scored one way everywhere ---------------


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_trains_an_epoch_and_predict_gives_the_folds_ages(name, synth_small, tmp_path):
    from ageest.config import load_config
    from ageest.data.fgnet import scan_images
    from ageest.data.imageio import load_rgb
    from ageest.predict import load_model, predict_image
    from ageest.train.fold import run_fold
    from conftest import tiny_overrides

    # fp32: the fold's scoring and `predict` then do the same arithmetic (bf16 autocast is per device).
    config = load_config(None, tiny_overrides(epochs=1, freeze_epochs=0, precision="fp32"))
    m = run_fold(synth_small, 2, name, tmp_path, config, log=lambda *_: None)
    assert m["loss"] == name and math.isfinite(m["test_mae"]) and math.isfinite(m["val_loss"])
    rows = [r.split("\t") for r in (tmp_path / "predictions.tsv").read_text().splitlines()[1:]]
    assert len(rows) == m["n_test"] > 0
    # `ageest predict` on the same photos: the loss's own head and predict function, the same ages.
    fold = load_model(tmp_path / "model.pt", torch.device("cpu"))
    assert fold.predict is LOSSES[name].predict
    paths = {r.name: r.path for r in scan_images(synth_small)}
    for image, _, age, predicted, std, _ in rows:
        (e,) = predict_image(fold, load_rgb(paths[image]), torch.device("cpu"), detect=False)
        assert (e.age, e.std) == (pytest.approx(float(predicted), abs=2e-3), pytest.approx(float(std), abs=2e-3))
    mae = sum(abs(float(r[3]) - float(r[2])) for r in rows) / len(rows)
    assert mae == pytest.approx(m["test_mae"], abs=1e-3)
    if name == "coral":  # whole years: the count of thresholds passed, not an expectation
        assert all(float(r[3]).is_integer() for r in rows)
    # history.tsv records each of the loss's own terms, not only mean-variance's.
    history = pd.read_csv(tmp_path / "history.tsv", sep="\t")
    spec = LOSSES[name]
    ages = config.age_grid()
    outputs = spec.head(4, len(ages))(torch.randn(3, 4))
    terms = spec(outputs, torch.tensor([1.0, 5.0, 9.0]), ages, **spec.kwargs(config))  # the loss's own terms
    assert set(terms) >= {"loss"} and len(terms) >= 2, name
    for term in terms:
        assert math.isfinite(history[f"train_{term}"].iloc[0]), (term, list(history.columns))


def test_a_study_listing_every_loss_plans_one_fold_per_loss_and_subject(tmp_path_factory):
    import yaml

    from ageest.errors import ConfigError
    from ageest.plan import plan_study
    from test_workflow import CONFIG, ROOT, make_fake_fgnet, n_fake_subjects

    tmp = tmp_path_factory.mktemp("plan")
    images, _ = make_fake_fgnet(tmp / "FGNET")
    config = yaml.safe_load(CONFIG.read_text())
    study = plan_study({**config, "data": {**config["data"], "images": str(images)}, "losses": sorted(LOSSES),
                        "training": {**config["training"], "dldl_sigma": 1.5, "residue_k": 3,
                                     "sord_distance": "squared"}}, ROOT)
    assert len(study.losses) * len(study.chunks) == len(LOSSES) * n_fake_subjects()
    with pytest.raises(ConfigError) as e:
        plan_study({**config, "data": {**config["data"], "images": str(images)}, "losses": ["dldl", "softmax"],
                    "training": {**config["training"], "dldl_sigma": 0}}, ROOT)
    assert "dldl_sigma" in str(e.value) and "must be positive" in str(e.value) and e.value.key == "training.dldl_sigma"
