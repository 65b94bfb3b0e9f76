"""One typed, frozen training config: the seed's recipe as defaults, validated on construction."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from .backbones import arch_problem
from .errors import ConfigError

_CHOICES = {
    "val_split": ("subject", "image"),
    "align": ("none", "landmarks"),
    "precision": ("auto", "bf16", "fp32"),
    "pipeline": ("fast", "plain"),
    "sord_distance": ("absolute", "squared"),  # ageest.losses.SORD_DISTANCES (a test keeps them equal)
    "dldl_v2_kl_mean": ("elements", "samples"),  # ageest.losses.DLDL_V2_KL_MEANS (likewise)
}

# Keys that change how a fold runs, not what it computes: ignored when checking that folds of one
# study (and a checkpoint and the run resuming it) share a config.
OPERATIONAL_KEYS = frozenset({"device", "threads", "save_model", "keep_checkpoint", "eval_batch_size",
                              "checkpoint_every_s", "channels_last", "folds_per_gpu"})


@dataclass(frozen=True)
class Config:
    """Everything that decides a fold's result. Saved beside every checkpoint and metrics file."""

    epochs: int = 100
    freeze_epochs: int = 10  # first epochs update only the head (backbone frozen)
    # In those epochs the backbone's BatchNorm layers stay in eval mode, so their running statistics
    # do not move either. false matches the seed (model.train() on everything: the stats moved).
    freeze_bn: bool = True
    batch_size: int = 64
    eval_batch_size: int = 256
    lr: float = 0.002
    lr_milestones: tuple[int, ...] = (80,)
    lr_gamma: float = 0.1
    weight_decay: float = 0.0
    image_size: int = 224  # the crop; images are first resized to round(image_size * 256 / 224)
    rotate: float = 10.0  # degrees, uniform in [-rotate, rotate]
    shear: float = 16.0  # degrees
    flip: bool = True
    val_rate: float = 0.1
    val_split: str = "subject"  # 'subject': validation people disjoint from training people
    seed: int = 0
    device: str = "auto"
    pretrained: str = "imagenet"  # 'imagenet', 'none' or a path to a state-dict file
    arch: str = "resnet34"
    lambda1: float = 0.2
    lambda2: float = 0.05
    # Each other loss's own keys (ageest.losses.LOSSES names which loss reads which).
    dldl_sigma: float = 2.0  # years: sd of the Gaussian label distribution (dldl, dldl_v2)
    dldl_v2_lambda: float = 1.0  # weight of the L1 expectation term (dldl_v2)
    dldl_v2_kl_mean: str = "elements"  # KL averaged over N*K (the authors' code) or over N samples (dldl_v2)
    residue_lambda1: float = 0.2  # weight of the mean term (mean_residue)
    residue_lambda2: float = 0.05  # weight of the residue term; the authors' FG-NET value (mean_residue)
    residue_k: int = 0  # top-K classes spared the residue term; 0: adaptive (mean_residue)
    residue_eps: float = 1e-3  # inside the residue entropy's log, as the authors' code; 0: exact (mean_residue)
    sord_distance: str = "absolute"  # SORD's metric between ages: absolute or squared (sord)
    min_age: int = 0
    max_age: int = 69
    align: str = "none"
    align_fallback: bool = False  # unaligned image where a .pts file is missing or malformed
    precision: str = "auto"  # bf16 autocast where the device supports it fast
    channels_last: bool = True
    threads: int = 0  # torch intra-op threads, 0 = torch's default
    pipeline: str = "fast"  # 'plain': the seed's per-sample PIL pipeline (reference, benchmarks)
    save_model: bool = True
    keep_checkpoint: bool = False  # keep the resumable state after the fold finishes
    checkpoint_every_s: float = 0.0  # save resumable state at an epoch's end if this old; 0 = every epoch
    folds_per_gpu: int = 1  # concurrent fold jobs one GPU takes (device: auto picks a free slot)

    def __post_init__(self) -> None:
        _validate(self)

    @property
    def num_classes(self) -> int:
        return self.max_age - self.min_age + 1

    @property
    def resize_size(self) -> int:
        return int(round(self.image_size * 256 / 224))

    def age_grid(self, device=None):
        """The age of each class, min_age .. max_age years, as a float32 tensor: the one definition
        of the grid that training, evaluation and prediction take the expectation over."""
        import torch

        return torch.arange(self.min_age, self.max_age + 1, dtype=torch.float32, device=device)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["lr_milestones"] = list(self.lr_milestones)
        return d

    def result_keys(self) -> dict[str, Any]:
        """The config without OPERATIONAL_KEYS: what must match across a study."""
        return {k: v for k, v in self.to_dict().items() if k not in OPERATIONAL_KEYS}

    def replace(self, **changes: Any) -> "Config":
        return from_dict({**self.to_dict(), **changes})


def _validate(c: Config) -> None:
    def need(ok: bool, key: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{key}': {why} (got {getattr(c, key)!r})")

    for f in fields(c):
        v = getattr(c, f.name)
        typ = _base_type(f)
        if typ is float:
            need(isinstance(v, (int, float)) and not isinstance(v, bool), f.name, "must be a number")
        elif typ is int:
            need(isinstance(v, int) and not isinstance(v, bool), f.name, "must be an integer")
        elif typ is bool:
            need(isinstance(v, bool), f.name, "must be true or false")
        elif typ is str:
            need(isinstance(v, str), f.name, "must be a string")
    for key, allowed in _CHOICES.items():
        need(getattr(c, key) in allowed, key, f"must be one of {', '.join(allowed)}")
    need(c.epochs >= 1, "epochs", "must be at least 1")
    need(0 <= c.freeze_epochs <= c.epochs, "freeze_epochs", "must be between 0 and epochs")
    need(c.batch_size >= 2, "batch_size", "must be at least 2 (BatchNorm needs two samples)")
    need(c.eval_batch_size >= 1, "eval_batch_size", "must be at least 1")
    need(c.lr > 0, "lr", "must be positive")
    need(all(isinstance(m, int) and m >= 1 for m in c.lr_milestones), "lr_milestones",
         "must be a list of positive epoch numbers")
    need(0 < c.lr_gamma <= 1, "lr_gamma", "must be in (0, 1]")
    need(c.weight_decay >= 0, "weight_decay", "must be >= 0")
    need(16 <= c.image_size <= 1024, "image_size", "must be between 16 and 1024")
    problem = arch_problem(c.arch, c.image_size)
    need(problem is None, "arch", problem or "")
    need(0 <= c.rotate <= 180, "rotate", "must be between 0 and 180 degrees")
    need(0 <= c.shear < 90, "shear", "must be between 0 and 90 degrees")
    need(0 < c.val_rate < 1, "val_rate", "must be strictly between 0 and 1")
    need(c.seed >= 0, "seed", "must be >= 0")
    need(c.device == "auto" or c.device == "cpu" or c.device.startswith("cuda") or c.device == "mps",
         "device", "must be auto, cpu, cuda, cuda:N or mps")
    need(c.pretrained in ("imagenet", "none") or c.pretrained.endswith((".pt", ".pth", ".bin")),
         "pretrained", "must be imagenet, none or a path to a .pt/.pth state-dict file")
    need(c.lambda1 >= 0, "lambda1", "must be >= 0")
    need(c.lambda2 >= 0, "lambda2", "must be >= 0")
    need(c.dldl_sigma > 0, "dldl_sigma", "must be positive (years)")
    need(c.dldl_v2_lambda >= 0, "dldl_v2_lambda", "must be >= 0")
    need(c.residue_lambda1 >= 0, "residue_lambda1", "must be >= 0")
    need(c.residue_lambda2 >= 0, "residue_lambda2", "must be >= 0")
    need(0 <= c.residue_eps < 1, "residue_eps", "must be in [0, 1)")
    need(c.min_age >= 0, "min_age", "must be >= 0")
    need(c.max_age > c.min_age, "max_age", "must be greater than min_age")
    need(0 <= c.residue_k < c.num_classes, "residue_k",
         f"must be 0 (adaptive) or a number of top classes below the {c.num_classes} ages")
    need(c.threads >= 0, "threads", "must be >= 0")
    need(c.checkpoint_every_s >= 0, "checkpoint_every_s", "must be >= 0")
    need(c.folds_per_gpu >= 1, "folds_per_gpu", "must be at least 1")


def _base_type(f: dataclasses.Field) -> type:
    # Annotations are strings under `from __future__ import annotations`.
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type), object)


_FIELDS = {f.name: f for f in fields(Config)}


def from_dict(d: dict[str, Any]) -> Config:
    """Build a Config, rejecting unknown keys by name."""
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}")
    d = dict(d)
    if "lr_milestones" in d:
        m = d["lr_milestones"]
        if isinstance(m, int) and not isinstance(m, bool):
            m = [m]
        if not isinstance(m, (list, tuple)):
            raise ConfigError(f"config key 'lr_milestones': must be a list of epochs (got {m!r})")
        d["lr_milestones"] = tuple(m)
    for k, v in d.items():
        # YAML reads 1e-3 as a string and 2 as an int; lift ints to floats where a float is asked.
        if _base_type(_FIELDS[k]) is float and isinstance(v, int) and not isinstance(v, bool):
            d[k] = float(v)
        if _base_type(_FIELDS[k]) is float and isinstance(v, str):
            try:
                d[k] = float(v)
            except ValueError:
                pass
    return Config(**d)


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value` from the command line; the value is read as YAML (so 3, 0.1, true, [80, 90])."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set expects key=value (got {text!r})")
    if key not in _FIELDS:
        raise ConfigError(f"unknown config key(s): {key}")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if _base_type(_FIELDS[key]) is str and value is not None and not isinstance(value, str):
        value = raw  # e.g. `pretrained=none` stays a string, `device=0` too
    return key, value


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then a YAML file (a mapping of keys), then `key=value` overrides, in that order."""
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        try:
            loaded = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of keys")
        d.update(loaded)
    for text in overrides:
        k, v = parse_override(text)
        d[k] = v
    return from_dict(d)


def add_config_arguments(p, what: str = "training config YAML") -> None:
    """`--config FILE` and repeatable `--set key=value`, as every command that reads a config takes them."""
    p.add_argument("--config", default=None, help=what)
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one config key, e.g. --set epochs=5 (repeatable)")


def field_names() -> list[str]:
    return list(_FIELDS)


__all__ = ["Config", "OPERATIONAL_KEYS", "add_config_arguments", "from_dict", "load_config", "parse_override",
           "field_names"]
