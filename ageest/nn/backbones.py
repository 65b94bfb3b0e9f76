"""The architecture registry: every network a study can name as `arch`, as plain data.

No torch here: the config check and the workflow's parse read it without importing torch. One
entry adds a torchvision network: the builder's name, the dotted path of its ImageNet classifier's
last Linear (replaced by the reference head, BatchNorm1d -> Dropout(0.5) -> Linear, on the features
that layer took), and the input sizes it takes. ImageNet weights are torchvision's IMAGENET1K_V1 of
the builder, from the torch hub cache or a local state-dict file (ageest.nn.model). `timm:NAME` names
any timm model, when timm is installed (an extra).
"""

from __future__ import annotations

from dataclasses import dataclass

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class Backbone:
    """A torchvision network: `builder` in torchvision.models, the `classifier` path the age head
    replaces, the smallest `min_size` (px) its downsampling leaves a feature map for, and the one
    `exact_size` a fixed patch grid takes (ViT), if any."""

    builder: str
    classifier: str
    min_size: int = 32
    exact_size: int | None = None
    reference: str = ""


BACKBONES: dict[str, Backbone] = {
    "resnet18": Backbone("resnet18", "fc", min_size=16),
    "resnet34": Backbone("resnet34", "fc", min_size=16, reference="the reference recipe's network"),
    "resnet50": Backbone("resnet50", "fc", min_size=16),
    "resnet101": Backbone("resnet101", "fc", min_size=16),
    # Pan et al. (CVPR 2018) report FG-NET with VGG-16; the head replaces fc8, on fc7's 4096 features.
    "vgg16": Backbone("vgg16", "classifier.6", reference="Pan et al.'s network"),
    "vgg16_bn": Backbone("vgg16_bn", "classifier.6"),
    "convnext_tiny": Backbone("convnext_tiny", "classifier.2"),
    "efficientnet_b0": Backbone("efficientnet_b0", "classifier.1"),
    "vit_b_16": Backbone("vit_b_16", "heads.head", exact_size=224),
}


def arch_problem(arch: str, image_size: int) -> str | None:
    """Why `arch` cannot run at `image_size` px (None if it can): unknown, or a size it cannot take."""
    if arch.startswith(TIMM_PREFIX):
        return None if len(arch) > len(TIMM_PREFIX) else f"must name a timm model after '{TIMM_PREFIX}'"
    b = BACKBONES.get(arch)
    if b is None:
        return f"must be one of {', '.join(BACKBONES)} or {TIMM_PREFIX}NAME"
    if b.exact_size is not None and image_size != b.exact_size:
        return f"{arch} takes image_size {b.exact_size} only (its patch grid is fixed), not {image_size}"
    if image_size < b.min_size:
        return f"{arch} needs image_size >= {b.min_size} (its downsampling), not {image_size}"
    return None
