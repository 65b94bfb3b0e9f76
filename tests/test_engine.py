"""The engine: native-bf16 detection, frozen BatchNorm in head-only epochs, batch-independent evaluation."""

import numpy as np
import pytest
import torch

from ageest.config import load_config
from ageest.pipeline.sources import TensorSource
from ageest.train.engine import evaluate, precision_name, train_one_epoch, uses_bf16
from ageest.nn.losses import softmax_loss
from ageest.nn.model import backbone_batchnorms, build_model, head_parameters
from conftest import tiny_overrides

CUDA = torch.device("cuda")
AGES = torch.arange(0, 70, dtype=torch.float32)


def _fake_cuda(monkeypatch, native: bool, capability=(8, 0), has_argument=True):
    if has_argument:
        def is_bf16_supported(including_emulation: bool = True) -> bool:
            return native or including_emulation  # emulated bf16 counts unless asked not to
    else:
        def is_bf16_supported() -> bool:  # torch < 2.3: no including_emulation argument
            return True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda index=None: capability)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_auto_only_where_native(monkeypatch, native):
    _fake_cuda(monkeypatch, native)  # False: a V100 or T4, where bf16 is only emulated
    assert uses_bf16(CUDA, "auto") is native
    assert precision_name(CUDA, "auto") == ("bf16" if native else "fp32")
    assert uses_bf16(CUDA, "bf16") and precision_name(CUDA, "bf16") == "bf16"  # asked for: used
    assert not uses_bf16(CUDA, "fp32") and precision_name(CUDA, "fp32") == "fp32"


@pytest.mark.parametrize("capability, native", [((7, 0), False), ((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_bf16_auto_by_compute_capability_on_older_torch(monkeypatch, capability, native):
    _fake_cuda(monkeypatch, native=True, capability=capability, has_argument=False)
    assert uses_bf16(CUDA, "auto") is native


def _tiny_model(seed=0):
    torch.manual_seed(seed)
    return build_model("resnet18", 70, "none")


def _batches(n_batches=2, size=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(size, 3, 32, 32, generator=g), torch.randint(0, 70, (size,), generator=g).float())
            for _ in range(n_batches)]


def _head_only_epoch(model, keep_eval):
    head = {id(p) for p in head_parameters(model)}
    for p in model.parameters():
        p.requires_grad_(id(p) in head)
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    train_one_epoch(model, _batches(), softmax_loss, opt, AGES, keep_eval=keep_eval)


def _backbone(model):
    return {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("fc.")}


def test_head_only_epoch_leaves_the_backbone_bit_identical():
    model = _tiny_model()
    before, head_bn = _backbone(model), model.fc[0].running_mean.clone()
    bns = backbone_batchnorms(model)
    assert len(bns) == 20 and model.fc[0] not in bns  # resnet18: every BatchNorm2d, not the head's
    _head_only_epoch(model, keep_eval=bns)
    after = _backbone(model)
    assert before.keys() == after.keys()
    assert any(k.endswith("num_batches_tracked") for k in after)  # buffers are compared too
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []
    assert not torch.equal(model.fc[0].running_mean, head_bn)  # the head's BatchNorm1d still trains
    assert all(m.training for m in model.fc.modules())


def test_without_keep_eval_the_running_stats_move():
    # The reference recipe's behaviour (freeze_bn false): frozen weights, moving BatchNorm statistics.
    model = _tiny_model()
    before = _backbone(model)
    _head_only_epoch(model, keep_eval=())
    after = _backbone(model)
    assert torch.equal(before["conv1.weight"], after["conv1.weight"])
    assert not torch.equal(before["bn1.running_mean"], after["bn1.running_mean"])
    assert after["bn1.num_batches_tracked"].item() == 2


def _predictions(model, images, ages, eval_batch_size):
    cfg = load_config(None, tiny_overrides(eval_batch_size=eval_batch_size))
    src = TensorSource(images, ages, cfg, torch.device("cpu"))
    model.train()  # evaluate() itself must switch to eval mode
    out = evaluate(model, src.eval_batches(), softmax_loss, AGES)
    assert out["images"] == len(ages)
    return out["predicted_age"], out["predicted_std"]


def test_evaluation_does_not_depend_on_the_batch():
    model = _tiny_model()
    with torch.no_grad():  # non-trivial running statistics, so eval mode differs from batch statistics
        model.train()
        for x, _ in _batches(3, 16, seed=5):
            model(x * 3 + 1)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 37, 37, 3), dtype=np.uint8)  # resize size of a 32-px crop
    ages = rng.integers(0, 70, 20).tolist()
    ref_mean, ref_std = _predictions(model, images, ages, 1)
    for bs in (7, 256):
        mean, std = _predictions(model, images, ages, bs)
        np.testing.assert_allclose(mean, ref_mean, rtol=0, atol=1e-4, err_msg=f"eval_batch_size={bs}")
        np.testing.assert_allclose(std, ref_std, rtol=0, atol=1e-4, err_msg=f"eval_batch_size={bs}")
    perm = rng.permutation(20)
    for bs in (7, 256):
        mean, std = _predictions(model, images[perm], [ages[i] for i in perm], bs)
        np.testing.assert_allclose(mean, ref_mean[perm], rtol=0, atol=1e-4, err_msg=f"permuted, {bs}")
        np.testing.assert_allclose(std, ref_std[perm], rtol=0, atol=1e-4, err_msg=f"permuted, {bs}")
