"""The network: a registered backbone (ageest.nn.backbones) with the reference head,
BatchNorm1d -> Dropout(0.5) -> Linear, in place of its ImageNet classifier's last layer."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
import torch.nn as nn
import torchvision

from ageest.errors import ConfigError
from ageest.nn.backbones import BACKBONES, TIMM_PREFIX, TorchHub


def build_model(arch: str = "resnet34", num_classes: int = 70, pretrained: str = "none",
                head: Callable[[int, int], nn.Module] = nn.Linear) -> nn.Module:
    """A registered backbone with head BatchNorm1d(F) -> Dropout(0.5) -> head(F, num_classes) in
    place of its classifier's last layer (F the features that layer took).

    pretrained: 'none', one of the entry's weight sources ('imagenet': torchvision's hub cache or
    a registry package; 'faces': the face-age network's), or a path to a state-dict file (an
    ImageNet-style backbone, or a full model of this shape). An age classifier (the entry's
    `class_ages`) keeps its own last layer, weights and all, where it has `num_classes` outputs
    and the loss's head is a Linear: it already predicts those ages.
    head: the last layer's factory, a K-way Linear unless the loss has its own (its LossSpec.head).
    The head's path is kept as `model.age_head` (a string) for head_parameters and the loaders.
    """
    if arch.startswith(TIMM_PREFIX):
        model = _timm_body(arch[len(TIMM_PREFIX):], pretrained == "imagenet")
    elif arch in BACKBONES:
        entry = BACKBONES[arch]
        model = _build_body(entry)
        model.age_head = entry.classifier
        # Kept whatever the weights, so a saved model (`ageest predict`) rebuilds the same network.
        keep = _keeps_classifier(entry, model, num_classes, head)
        if pretrained in entry.weights:
            _load_backbone(model, load_weights(arch, pretrained, model), f"{arch} {pretrained} weights", keep)
        elif pretrained not in ("imagenet", "none"):
            _load_backbone(model, _read_state_dict(Path(pretrained)), str(pretrained), keep)
        if keep:
            return model
    else:
        raise ConfigError(f"config key 'arch': unknown architecture {arch!r}")
    if arch.startswith(TIMM_PREFIX) and pretrained not in ("imagenet", "none"):
        _load_backbone(model, _read_state_dict(Path(pretrained)), str(pretrained))
    features = _in_features(model.get_submodule(model.age_head))
    parent, _, name = model.age_head.rpartition(".")
    model.get_submodule(parent).register_module(
        name, nn.Sequential(nn.BatchNorm1d(features), nn.Dropout(0.5), head(features, num_classes)))
    return model


def _build_body(entry) -> nn.Module:
    """The entry's network with its own classifier, untrained."""
    kind, _, name = entry.builder.rpartition(":")
    if kind == "timm":
        try:
            import timm
        except ImportError:
            raise ConfigError(f"config key 'arch': {entry.builder} needs timm (pip install 'ageest[weights]')") from None
        return timm.create_model(name, pretrained=False)
    if kind == "ageest":
        import importlib

        module, _, cls = name.rpartition(".")
        return getattr(importlib.import_module(f"ageest.nn.{module}"), cls)()
    return getattr(torchvision.models, entry.builder)(weights=None)


def _keeps_classifier(entry, model: nn.Module, num_classes: int, head) -> bool:
    layer = model.get_submodule(entry.classifier)
    return (entry.class_ages is not None and head is nn.Linear and isinstance(layer, nn.Linear)
            and layer.out_features == num_classes)


def load_weights(arch: str, source: str, model: nn.Module | None = None) -> dict:
    """The state dict of `arch`'s weight source `source` (its registry entry's `weights`), in the
    network's names: torchvision's hub cache, or a registry package's file, found where pip put
    it, its version and sha256 checked. `model`: the network, to name tensors held in its order."""
    spec = BACKBONES[arch].weights[source]
    if isinstance(spec, TorchHub):
        return imagenet_state_dict(arch)
    path = package_file(spec)
    if spec.format == "onnx":
        from ageest.nn.faceage import state_dict_from_onnx

        try:
            return state_dict_from_onnx(path)
        except ImportError:
            raise ConfigError(f"{arch} {source} weights are an ONNX file and need the onnx package: "
                              f"{spec.install}") from None
        except Exception as e:
            raise ConfigError(f"{path} could not be read as {arch}'s weights ({type(e).__name__}: {e})") from None
    state = _read_state_dict(path)
    if spec.keys == "order":
        state = _by_order(state, (model or _build_body(BACKBONES[arch])).state_dict(), path)
    return state


def package_file(spec) -> Path:
    """The file `spec` (a PackageFile) names, from the installed distribution: one line naming the
    pip command where the package is missing, another where its version or the file's bytes differ."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        dist = distribution(spec.package)
    except PackageNotFoundError:
        raise ConfigError(f"the weights {spec.path} ship in {spec.package} {spec.version}, which is not "
                          f"installed: {spec.install}") from None
    if dist.version != spec.version:
        raise ConfigError(f"the weights {spec.path} are pinned to {spec.package} {spec.version}, but "
                          f"{dist.version} is installed: pip install {spec.package}=={spec.version}")
    path = Path(dist.locate_file(spec.path))
    if not path.is_file():
        raise ConfigError(f"{spec.package} {spec.version} is installed without {spec.path}: "
                          f"pip install --force-reinstall {spec.package}=={spec.version}")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise ConfigError(f"{path}: sha256 {digest[:16]}... is not the pinned {spec.sha256[:16]}... of "
                          f"{spec.package} {spec.version}'s weights; reinstall it: pip install --force-reinstall "
                          f"{spec.package}=={spec.version}")
    return path


def _by_order(state: dict, own: dict, source) -> dict:
    # Tensors named otherwise (lukemelas' EfficientNet names, say) but in the network's order: paired
    # one to one, each pair's shape and kind (weight, bias, running_mean, ...) checked.
    theirs, mine = list(state.items()), list(own)
    if len(theirs) != len(mine):
        raise ConfigError(f"pretrained weights {source} hold {len(theirs)} tensors, the network {len(mine)}")
    out = {}
    for (k, v), m in zip(theirs, mine):
        if tuple(v.shape) != tuple(own[m].shape) or k.rpartition(".")[2] != m.rpartition(".")[2]:
            raise ConfigError(f"pretrained weights {source}: {k} {tuple(v.shape)} does not fit {m} "
                              f"{tuple(own[m].shape)}")
        out[m] = v
    return out


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
        raise ConfigError(f"config key 'pretrained': {path} is not a torch state-dict file "
                          f"({type(e).__name__}: {str(e).splitlines()[0][:200]})") from None
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]  # an ageest model.pt
    if not isinstance(obj, dict):
        raise ConfigError(f"config key 'pretrained': {path} holds no state dict")
    return obj


def _load_backbone(model: nn.Module, state: dict, source: str, keep_classifier: bool = False) -> None:
    # The classifier transfers only to an age classifier kept as the age head (1000 ImageNet
    # classes, or another age range, do not): load the rest.
    cls = "\0" if keep_classifier else model.age_head + "."
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
