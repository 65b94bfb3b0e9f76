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
