import pytest
import torch
import torchvision

from ageest.errors import ConfigError
from ageest.nn.model import build_model


def test_head_shape():
    m = build_model("resnet34", 70, "none").eval()
    assert [type(x).__name__ for x in m.fc] == ["BatchNorm1d", "Dropout", "Linear"]
    assert m.fc[2].out_features == 70 and m.fc[0].num_features == 512
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 70)


def test_pretrained_from_state_dict_file(tmp_path):
    src = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(src.conv1.weight, 0.25)
    f = tmp_path / "backbone.pth"
    torch.save(src.state_dict(), f)
    m = build_model("resnet18", 10, str(f))
    assert torch.all(m.conv1.weight == 0.25)
    assert m.fc[2].out_features == 10


def test_imagenet_from_local_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    src = torchvision.models.resnet18(weights=None)
    torch.nn.init.constant_(src.conv1.weight, 0.5)
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(src.state_dict(), tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    assert torch.all(build_model("resnet18", 70, "imagenet").conv1.weight == 0.5)


def test_imagenet_missing_and_unreachable(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*a, **k):
        raise OSError("network is unreachable")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(ConfigError, match="not in the torch hub cache.*IMAGENET1K_V1"):
        build_model("resnet34", 70, "imagenet")


def test_pretrained_errors(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        build_model("resnet18", 70, str(tmp_path / "nope.pth"))
    bad = tmp_path / "wrong.pth"
    torch.save(torchvision.models.resnet34(weights=None).state_dict(), bad)
    with pytest.raises(ConfigError, match="do not fit"):
        build_model("resnet18", 70, str(bad))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not torch")
    with pytest.raises(ConfigError, match="not a torch state-dict"):
        build_model("resnet18", 70, str(junk))


# --- the architecture registry: one entry a network -----------------------------------------------

import math

from ageest.nn.backbones import BACKBONES, arch_problem
from ageest.config import Config
from ageest.nn.model import head_parameters


def _small_size(arch):
    return BACKBONES[arch].exact_size or 32


@pytest.mark.parametrize("arch", sorted(BACKBONES))
@pytest.mark.slow
def test_every_backbone_gets_the_reference_head_where_its_classifier_was(arch):
    m = build_model(arch, 7, "none").eval()
    head = m.get_submodule(BACKBONES[arch].classifier)
    assert [type(x).__name__ for x in head] == ["BatchNorm1d", "Dropout", "Linear"]
    assert head[2].out_features == 7 and head[0].num_features == head[2].in_features
    assert {id(p) for p in head_parameters(m)} == {id(p) for p in head.parameters()}
    size = _small_size(arch)
    assert m(torch.zeros(2, 3, size, size)).shape == (2, 7)


@pytest.mark.parametrize("arch", ["vgg16", "efficientnet_b0", "convnext_tiny"])
@pytest.mark.slow
def test_other_backbones_load_local_state_dicts_and_the_hub_cache(arch, tmp_path, monkeypatch):
    src = getattr(torchvision.models, arch)(weights=None)
    first = next(n for n, p in src.named_parameters() if p.dim() == 4)  # the first convolution
    torch.nn.init.constant_(src.get_parameter(first), 0.25)
    torch.save(src.state_dict(), tmp_path / "backbone.pth")
    assert torch.all(build_model(arch, 5, str(tmp_path / "backbone.pth")).get_parameter(first) == 0.25)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    url = torchvision.models.get_model_weights(arch).IMAGENET1K_V1.url
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    (tmp_path / "backbone.pth").rename(tmp_path / "hub" / "checkpoints" / url.rsplit("/", 1)[1])
    assert torch.all(build_model(arch, 5, "imagenet").get_parameter(first) == 0.25)


def test_the_config_check_names_each_architectures_input_size():
    assert arch_problem("vgg16", 32) is None and arch_problem("resnet18", 16) is None
    with pytest.raises(ConfigError, match="config key 'arch': vit_b_16 takes image_size 224 only"):
        Config(arch="vit_b_16", image_size=32)
    with pytest.raises(ConfigError, match="config key 'arch': convnext_tiny needs image_size >= 32"):
        Config(arch="convnext_tiny", image_size=16)
    with pytest.raises(ConfigError, match="config key 'arch': must be one of resnet18, .*vgg16.* or timm:NAME"):
        Config(arch="alexnet")


def test_timm_models_build_when_timm_is_installed():
    pytest.importorskip("timm")
    m = build_model("timm:resnet10t", 4, "none").eval()
    assert m(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    with pytest.raises(ConfigError, match="timm could not build 'no_such_net'"):
        build_model("timm:no_such_net", 4, "none")


@pytest.mark.slow
@pytest.mark.parametrize("arch", sorted(BACKBONES))
def test_every_backbone_trains_an_epoch(arch, tmp_path):
    # 12 plain images of 4 people: the network's own path through a fold (a training batch,
    # validation, the test person), not what it learns; ViT-B/16 at its 224 px, the others small.
    from ageest.config import load_config
    from ageest.train.fold import run_fold
    from conftest import tiny_overrides, write_blobs

    blobs = write_blobs(tmp_path / "blobs", subjects=4, per_subject=3)
    config = load_config(None, tiny_overrides(arch=arch, image_size=_small_size(arch), epochs=1, freeze_epochs=0,
                                              batch_size=8, save_model="false"))
    m = run_fold(blobs, 2, "mean_variance", tmp_path / "fold", config, log=lambda *_: None)
    assert m["config"]["arch"] == arch and math.isfinite(m["test_mae"]) and m["n_test"] > 0
