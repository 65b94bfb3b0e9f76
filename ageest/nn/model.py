"""The network: a registered backbone (ageest.nn.backbones) with the reference head,
BatchNorm1d -> Dropout(0.5) -> Linear, in place of its ImageNet classifier's last layer."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torchvision

from ageest.errors import ConfigError
from ageest.nn.backbones import BACKBONES, TIMM_PREFIX


def build_model(arch: str = "resnet34", num_classes: int = 70, pretrained: str = "none",
                head: Callable[[int, int], nn.Module] = nn.Linear) -> nn.Module:
    """A registered backbone with head BatchNorm1d(F) -> Dropout(0.5) -> head(F, num_classes) in
    place of its classifier's last layer (F the features that layer took).

    pretrained: 'imagenet' (torchvision's weights from the local torch hub cache), 'none', or a
    path to a state-dict file (an ImageNet-style backbone, or a full model of this shape).
    head: the last layer's factory, a K-way Linear unless the loss has its own (its LossSpec.head).
    The head's path is kept as `model.age_head` (a string) for head_parameters and the loaders.
    """
    if arch.startswith(TIMM_PREFIX):
        model = _timm_body(arch[len(TIMM_PREFIX):], pretrained == "imagenet")
    elif arch in BACKBONES:
        model = getattr(torchvision.models, BACKBONES[arch].builder)(weights=None)
        model.age_head = BACKBONES[arch].classifier
        if pretrained == "imagenet":
            _load_backbone(model, imagenet_state_dict(arch), "torchvision ImageNet weights")
    else:
        raise ConfigError(f"config key 'arch': unknown architecture {arch!r}")
    if pretrained not in ("imagenet", "none"):
        _load_backbone(model, _read_state_dict(Path(pretrained)), str(pretrained))
    features = _in_features(model.get_submodule(model.age_head))
    parent, _, name = model.age_head.rpartition(".")
    model.get_submodule(parent).register_module(
        name, nn.Sequential(nn.BatchNorm1d(features), nn.Dropout(0.5), head(features, num_classes)))
    return model


def head_parameters(model: nn.Module) -> list[nn.Parameter]:
    return list(model.get_submodule(model.age_head).parameters())


def backbone_batchnorms(model: nn.Module) -> list[nn.Module]:
    """The BatchNorm layers outside the head: what a frozen backbone keeps in eval mode (freeze_bn)."""
    head = set(model.get_submodule(model.age_head).modules())
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m not in head]


class _TimmNet(nn.Module):
    # A timm model without its classifier (num_classes=0 gives pooled features), and a slot `fc`
    # for the age head, so it is built, frozen and loaded like the torchvision ones.
    age_head = "fc"

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body
        self.fc = nn.Linear(body.num_features, 1)

    def forward(self, x):
        return self.fc(self.body(x))


def _timm_body(name: str, pretrained: bool) -> nn.Module:
    try:
        import timm
    except ImportError:
        raise ConfigError(f"config key 'arch': timm:{name} needs timm (pip install 'ageest[timm]')") from None
    try:
        return _TimmNet(timm.create_model(name, pretrained=pretrained, num_classes=0))
    except Exception as e:  # unknown name, or weights neither cached nor downloadable
        raise ConfigError(f"config key 'arch': timm could not build {name!r} "
                          f"{'with pretrained weights ' if pretrained else ''}({type(e).__name__}: {e})") from None


def _in_features(layer: nn.Module) -> int:
    if not isinstance(layer, nn.Linear):
        raise TypeError(f"the registered classifier path is a {type(layer).__name__}, not a Linear layer")
    return layer.in_features


def imagenet_state_dict(arch: str) -> dict:
    """torchvision's ImageNet weights, from the hub cache if there, else downloaded once."""
    weights = torchvision.models.get_model_weights(BACKBONES[arch].builder).IMAGENET1K_V1
    cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if cached.is_file():
        return torch.load(cached, map_location="cpu", weights_only=True)
    try:
        return torch.hub.load_state_dict_from_url(weights.url, map_location="cpu", progress=False)
    except Exception as e:  # no network on compute nodes is the usual case
        raise ConfigError(
            f"ImageNet weights for {arch} are not in the torch hub cache ({cached}) and could not be "
            f"downloaded ({type(e).__name__}). On a machine with internet run: python -c \"import "
            f"torchvision; torchvision.models.{BACKBONES[arch].builder}(weights='IMAGENET1K_V1')\" and copy {cached.name} "
            f"to {cached.parent}, or set pretrained to a local .pth file or none") from None


def _read_state_dict(path: Path) -> dict:
    if not path.is_file():
        raise ConfigError(f"config key 'pretrained': file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ConfigError(f"config key 'pretrained': {path} is not a torch state-dict file ({e})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # an ageest model.pt
    if not isinstance(obj, dict):
        raise ConfigError(f"config key 'pretrained': {path} holds no state dict")
    return obj


def _load_backbone(model: nn.Module, state: dict, source: str) -> None:
    # The classifier never transfers (1000 ImageNet classes, or another age range): load the rest.
    cls = model.age_head + "."
    state = {k.removeprefix("module."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith(cls)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(cls)}
    missing = sorted(set(own) - set(state))
    bad = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    extra = sorted(k for k in set(state) - set(own) if not k.endswith("num_batches_tracked"))
    if missing or bad or extra:
        raise ConfigError(f"pretrained weights {source} do not fit {type(model).__name__}: {len(missing)} "
                          f"missing, {len(bad)} mismatched, {len(extra)} unexpected "
                          f"(e.g. {(missing + bad + extra)[0]})")
    model.load_state_dict(state, strict=False)
