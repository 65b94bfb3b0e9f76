"""Train and score a protocol's folds (leave-one-person-out by default): the one training entry point.

A fold is prepared (data, split, network, optimiser), fitted (one loop, one checkpoint rule) and
finished (its test images scored once, the outputs written). `ageest train` trains several folds
one after another in one process when given several `--fold`s (one torch import for all).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ageest import __version__
from ageest.config import Config, add_config_arguments, load_config
from ageest.data.protocols import parse_protocol
from ageest.data.reader import add_data_arguments, read_records
from ageest.data.fingerprint import Fingerprint, fold_fingerprint
from ageest.errors import AgeestError, DataError
from ageest.io import check_writable, remove_temporaries, save_torch_atomic, write_json_atomic, write_text_atomic
from ageest.nn.losses import LOSSES, LossSpec, loss_spec
from ageest.nn.model import backbone_batchnorms, build_model, head_parameters
from ageest.pipeline.cache import default_cache_path, default_points_dir, open_cache
from ageest.pipeline.sources import PlainSource, TensorSource
from ageest.data.splits import drop_skipped, fold_split
from ageest.train.outputs import fold_identity, predictions_tsv, provenance
from ageest.train.checkpoint import STATE_FILE, FoldState, StopFlag, load_state, save_state, stop_on_signals
from ageest.train.devices import resolve_device
from ageest.train.engine import EpochState, autocast_for, evaluate, precision_name, train_one_epoch, uses_bf16
from ageest.train.usage import FoldUsage, process_start

HISTORY_COLUMNS = ("epoch", "train_loss", "train_ce", "train_mean", "train_var", "val_loss", "val_mae",
                   "lr", "seconds", "images_per_second", "val_seconds")
FOLD_FILES = ("predictions.tsv", "history.tsv", "model.pt", "metrics.json")  # what a fold writes to --out


class Interrupted(AgeestError):
    """SIGTERM/SIGINT arrived; the fold's state was saved and a rerun resumes it."""


def run_fold(images: str | Path, fold_id: int, loss: str, out: str | Path, config: Config, *,
             cache: str | Path | None = None, points: str | Path | None = None, root: str | Path | None = None,
             state_dir: str | Path | None = None, split_file: str | Path | None = None,
             log=print, started: float | None = None) -> dict:
    """Train fold `fold_id` of the config's protocol (under LOPO: the one leaving that person out)
    with loss `loss`; write its outputs into `out`.

    Writes predictions.tsv, history.tsv, model.pt (if config.save_model) and, last, metrics.json,
    each atomically. Resumable state goes to `state_dir` (default: `out`) as the checkpoint rule
    says. `split_file` (from `ageest split`) fixes the split instead of drawing it from the seed.
    `started` (unix time, default: the process's start) is where the start-up figure counts from.
    Returns the metrics dict.
    """
    usage = FoldUsage.start()
    fold = prepare_fold(images, fold_id, loss, out, config, cache=cache, points=points, root=root,
                        state_dir=state_dir, split_file=split_file, log=log)
    state = resume_state(fold, log)
    startup = time.time() - (started or process_start())  # the fixed cost of a fold, imports included
    log(f"first training step {startup:.2f} s after the {'fold' if started else 'process'} started")
    last_save = time.monotonic()
    with stop_on_signals() as stop:
        for epoch in range(state.epoch, config.epochs):
            fit_epoch(fold, state, epoch, stop, log)
            if state.epoch == config.epochs:
                break
            # The one checkpoint rule: a stopped fold always saves; a running one once the last
            # save is checkpoint_every_s old (0: every epoch).
            if stop or time.monotonic() - last_save >= config.checkpoint_every_s:
                save_state(fold.state_path, fold.identity, usage.stamp(state), fold.model, fold.optimizer,
                           fold.scheduler)
                last_save = time.monotonic()
            if stop:
                where = f"in epoch {epoch + 1}" if state.epoch_state else f"after epoch {epoch + 1}"
                raise Interrupted(f"fold {fold_id:03d} {loss}: stopped by signal {stop.signal} {where}; "
                                  f"state saved to {fold.state_path}, rerun to resume")
    return finish_fold(fold, state, usage, startup, log)


def resume_state(fold: "Fold", log=print) -> FoldState:
    """The fold's saved state where a stopped run left one (its identity checked), else a fresh one."""
    if not fold.state_path.exists():
        return FoldState()
    state = load_state(fold.state_path, fold.identity, fold.model, fold.optimizer, fold.scheduler, fold.device)
    log(f"resuming from {fold.state_path}: epoch {state.epoch + 1}"
        + (f", batch {state.epoch_state['next_batch']}" if state.epoch_state else ""))
    return state


@dataclass
class Fold:
    """A fold ready to train: its data and split, its network, optimiser and loss, where it writes."""

    fold_id: int  # the fold's number (under LOPO the person left out)
    loss: str
    config: Config
    images: Path
    out: Path
    state_path: Path
    records: list
    split: Any  # ageest.data.splits.Split
    identity: dict  # what a resumable state must match
    fingerprint: Fingerprint
    split_digest: str
    fallback: int  # images of this fold's split that fell back to the unaligned crop
    device: torch.device
    sources: tuple  # train, val, test batch sources
    spec: LossSpec
    loss_kwargs: dict
    ages: torch.Tensor  # (K,) the class ages in years
    autocast: Any
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any
    head: set  # ids of the head's parameters (trained in head-only epochs)
    frozen_bns: list  # backbone BatchNorms kept in eval mode in head-only epochs
    skipped: dict = dataclasses.field(default_factory=dict)  # n_{train,val,test}_skipped (on_no_face: skip)


def prepare_fold(images, fold_id: int, loss: str, out, config: Config, *, cache=None, points=None, root=None,
                 state_dir=None, split_file=None, log=print) -> Fold:
    """Read the data, fix the split, seed the RNGs and build the network, optimiser and schedule."""
    spec = loss_spec(loss)
    images = Path(images)
    out = check_writable(out)
    state_path = check_writable(state_dir or out) / STATE_FILE
    remove_temporaries([state_path, *(out / n for n in FOLD_FILES)])  # a killed run's half-written files
    records = read_records(images, root)
    points_dir = Path(points) if points else default_points_dir(images)
    fingerprint = fold_fingerprint(records, config, points_dir)
    split, split_digest = fold_split(records, fold_id, config, split_file)
    identity = {**fold_identity(fold_id, config, records), "loss": loss, "data_fingerprint": fingerprint.data,
                "config": config.result_keys(), "split": split_digest}
    if config.threads:
        torch.set_num_threads(config.threads)
    device = resolve_device(config.device, config.folds_per_gpu)
    if device.type == "cuda":
        # Fixed input shapes: let cuDNN pick the fastest kernels (CPU runs stay bit-reproducible).
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    np.random.seed(config.seed)
    channels_last = config.channels_last and device.type != "mps"
    sources, fallback, split, skipped = _make_sources(records, split, config, device, cache, points_dir,
                                                      channels_last, fold_id, fingerprint)
    log(f"fold {_named(fold_id, config)} loss={loss}: {len(split.train)} train, {len(split.val)} val, "
        f"{len(split.test)} test images on {device}"
        + (f" ({sum(skipped.values())} skipped: no points to align on)" if any(skipped.values()) else ""))
    _check_ages([records[i].age for i in split.train + split.val + split.test], config)
    model, optimizer, scheduler = build_training(config, spec, device, channels_last)
    return Fold(fold_id, loss, config, images, out, state_path, records, split, identity, fingerprint,
                split_digest, fallback, device, tuple(sources), spec, spec.kwargs(config),
                config.age_grid(device), autocast_for(device, config.precision), model, optimizer, scheduler,
                {id(p) for p in head_parameters(model)}, backbone_batchnorms(model) if config.freeze_bn else [],
                skipped)


def build_training(config: Config, spec: LossSpec, device: torch.device, channels_last: bool,
                   fused: bool | None = None) -> tuple[torch.nn.Module, torch.optim.Optimizer, Any]:
    """The network (the loss's head), Adam and the learning-rate schedule a fold trains with, on
    `device`. `fused` None: fused Adam where torch has it (CUDA, CPU: one kernel for all
    parameters, 2x faster steps on a CPU than the foreach default); the benchmarks pass False to
    measure the reference style."""
    model = build_model(config.arch, config.num_classes, config.pretrained, spec.head).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                 fused=device.type in ("cuda", "cpu") if fused is None else fused)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)
    return model, optimizer, scheduler


def fit_epoch(fold: Fold, state: FoldState, epoch: int, stop: StopFlag, log=print) -> None:
    """Train epoch `epoch` (0-based) from where `state` stands, then validate and record it.

    Stopped by `stop` inside the epoch, `state.epoch_state` holds what resumes it exactly and the
    epoch is neither validated nor counted.
    """
    c, (train_src, val_src, _) = fold.config, fold.sources
    frozen = epoch < c.freeze_epochs
    for p in fold.model.parameters():
        p.requires_grad_(not frozen or id(p) in fold.head)
    es = EpochState.from_dict(state.epoch_state, fold.device) if state.epoch_state else None
    tm, es, finished = train_one_epoch(
        fold.model, train_src.train_batches(epoch, es.next_batch if es else 0), fold.spec.fn, fold.optimizer,
        fold.ages, loss_kwargs=fold.loss_kwargs, autocast=fold.autocast, state=es, should_stop=lambda: bool(stop),
        keep_eval=fold.frozen_bns if frozen else ())
    if not finished:
        state.epoch, state.epoch_state = epoch, es.to_dict()
        return
    lr = fold.optimizer.param_groups[0]["lr"]
    fold.scheduler.step()
    t_val = time.perf_counter()
    vm = evaluate(fold.model, val_src.eval_batches(), fold.spec.fn, fold.ages, loss_kwargs=fold.loss_kwargs,
                  autocast=fold.autocast, predict=fold.spec.predict)
    row = {"epoch": epoch + 1, **{k: v for k, v in tm.items() if k.startswith("train_")},
           "val_loss": vm["loss"], "val_mae": vm["mae"], "lr": lr, "seconds": tm["seconds"],
           "images_per_second": tm["images_per_second"], "val_seconds": time.perf_counter() - t_val}
    _check_finite(row, fold.fold_id, fold.loss)
    state.history.append(row)
    state.record_best(epoch + 1, vm["loss"], vm["mae"], fold.model)
    log(f"epoch {epoch + 1}/{c.epochs}{' (head only)' if frozen else ''}: "
        f"train {tm['train_loss']:.3f}, val loss {vm['loss']:.3f}, val MAE {vm['mae']:.2f}, "
        f"{tm['images_per_second']:.0f} img/s")
    state.epoch, state.epoch_state = epoch + 1, None


def finish_fold(fold: Fold, state: FoldState, usage: FoldUsage, startup: float, log=print) -> dict:
    """Score the test images once, with the model selected on validation loss; write the outputs."""
    config, split, records = fold.config, fold.split, fold.records
    if config.keep_checkpoint:  # the finished fold's own state: the last save may be an epoch older, or none
        save_state(fold.state_path, fold.identity, usage.stamp(state), fold.model, fold.optimizer, fold.scheduler)
    fold.model.load_state_dict(state.best["state"])
    tm = evaluate(fold.model, fold.sources[2].eval_batches(), fold.spec.fn, fold.ages,
                  loss_kwargs=fold.loss_kwargs, autocast=fold.autocast, predict=fold.spec.predict)
    done = usage.stamp(state)  # every run of the fold (a resumed fold ran more than once)
    metrics = {
        **fold_identity(fold.fold_id, config, records), "loss": fold.loss, "n_train": len(split.train), "n_val": len(split.val),
        "n_test": len(split.test), "best_epoch": state.best["epoch"], "val_loss": state.best["val_loss"],
        "val_mae": state.best["val_mae"], "best_val_mae_epoch": state.best_mae["epoch"],
        "best_val_mae": state.best_mae["val_mae"], "test_mae": tm["mae"],
        "test_mae_rounded": float(np.abs(np.rint(tm["predicted_age"]) - tm["age"]).mean()),
        "test_loss": tm["loss"], "seconds": sum(done.attempt_seconds), "attempt_seconds": done.attempt_seconds,
        "cpu_seconds": sum(done.attempt_cpu_seconds), "attempt_cpu_seconds": done.attempt_cpu_seconds,
        **usage.figures(), "startup_seconds": startup,
        "train_seconds": sum(r["seconds"] for r in state.history), "device": str(fold.device),
        "bf16": uses_bf16(fold.device, config.precision), "precision": precision_name(fold.device, config.precision),
        "unaligned_fallback": fold.fallback,
        **{"n_train_skipped": 0, "n_val_skipped": 0, "n_test_skipped": 0, **fold.skipped},
        **provenance(config, fold.fingerprint.data, fold.split_digest, fold.images), "torch_version": torch.__version__,
    }
    write_text_atomic(fold.out / "predictions.tsv", predictions_tsv([records[i] for i in split.test],
                                                                    tm["predicted_age"], tm["predicted_std"]))
    write_text_atomic(fold.out / "history.tsv", _history_tsv(state.history))
    if config.save_model:
        save_model(fold.out / "model.pt", fold.model, config, metrics)
    write_json_atomic(fold.out / "metrics.json", metrics)  # last: its presence means the fold is complete
    if not config.keep_checkpoint:
        fold.state_path.unlink(missing_ok=True)
    log(f"fold {_named(fold.fold_id, config)} loss={fold.loss}: test MAE {tm['mae']:.2f} (best epoch "
        f"{metrics['best_epoch']}, val MAE {metrics['val_mae']:.2f}) in {metrics['seconds']:.0f} s")
    return metrics


def _make_sources(records, split, config: Config, device, cache, points_dir, channels_last: bool, fold_id: int,
                  fingerprint: Fingerprint):
    """Batch sources of the split's three parts, the count of unaligned fallbacks, and the split
    without the images the cache skipped (`outputs.drop_skipped`) with its counts."""
    if config.pipeline == "plain":  # (config refuses plain with on_no_face: skip: nothing is skipped)
        return [PlainSource([records[i] for i in idx], config, device, points_dir)
                for idx in (split.train, split.val, split.test)], 0, split, {}
    arr, meta = open_cache(cache or default_cache_path(records, config, points_dir, fingerprint), records, config,
                           points_dir, fingerprint=fingerprint)
    split, skipped = drop_skipped(split, records, meta.get("skipped", []), fold_id)
    fell = set(meta.get("fallback", []))
    used = split.train + split.val + split.test
    fallback = sum(records[i].name in fell for i in used)
    return [TensorSource(arr[list(idx)], [records[i].age for i in idx], config, device, channels_last)
            for idx in (split.train, split.val, split.test)], fallback, split, skipped


def _named(fold_id: int, config: Config) -> str:
    return parse_protocol(config.protocol).fold_name(fold_id)


def _check_ages(ages: list[int], config: Config) -> None:
    bad = sorted({a for a in ages if not config.min_age <= a <= config.max_age})
    if bad:
        raise DataError(f"ages {bad} lie outside min_age..max_age ({config.min_age}..{config.max_age}); "
                        f"widen them in the config")


def _check_finite(row: dict, fold_id: int, loss: str) -> None:
    if not all(math.isfinite(row[k]) for k in ("train_loss", "val_loss") if k in row):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith("train_") or k == "val_loss")
        raise AgeestError(f"fold {fold_id:03d} {loss}: training diverged at epoch {row['epoch']} ({terms}); "
                          f"try a lower lr")


def save_model(path: Path, model, config: Config, metrics: dict) -> None:
    """All that `predict` needs: weights, config, age range."""
    save_torch_atomic(path, {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                             "config": config.to_dict(), "min_age": config.min_age,
                             "max_age": config.max_age, **{k: metrics[k] for k in ("fold", "subject") if k in metrics},
                             "loss": metrics["loss"], "ageest_version": __version__})


def _history_tsv(rows: list[dict]) -> str:
    # The fixed columns, with the loss's own training terms (train_kl, train_l1, ...) after train_var.
    extra = list(dict.fromkeys(k for r in rows for k in r if k.startswith("train_") and k not in HISTORY_COLUMNS))
    at = HISTORY_COLUMNS.index("train_var") + 1
    columns = list(HISTORY_COLUMNS[:at]) + extra + list(HISTORY_COLUMNS[at:])
    lines = ["\t".join(columns)]
    for r in rows:
        lines.append("\t".join(str(r[c]) if c == "epoch" else f"{r.get(c, float('nan')):.6g}" for c in columns))
    return "\n".join(lines) + "\n"


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_data_arguments(p)
    p.add_argument("--fold", "--leave-subject", dest="folds", type=int, nargs="+", required=True, metavar="N",
                   help="the fold (under lopo: the subject left out); several: one after another in this process")
    p.add_argument("--loss", required=True, help=f"loss name ({', '.join(LOSSES)})")
    p.add_argument("--out", required=True,
                   help="output folder of the fold; with several folds a pattern holding {fold} (3 digits)")
    add_config_arguments(p, "training config YAML")
    p.add_argument("--cache", default=None, help="preprocessing cache from `ageest prepare`")
    p.add_argument("--points", default=None, help="landmark folder (default: images/../points)")
    p.add_argument("--state-dir", default=None, help="where resumable state lives (default: --out); may hold {fold}")
    p.add_argument("--split", default=None,
                   help="the fold's split from `ageest split` (default: drawn from the config's seed); may hold {fold}")
    p.add_argument("--overwrite", action="store_true", help="replace a finished fold in --out")


def fold_paths(pattern: str | None, fold_id: int, several: bool, option: str) -> str | None:
    """`pattern` with {fold} (or, its LOPO name, {subject}) filled in (3 digits); with several
    folds --out must hold it."""
    if pattern is None:
        return None
    if several and option == "--out" and not any(p in pattern for p in ("{fold}", "{subject}")):
        raise AgeestError(f"--out {pattern}: with several --fold it must hold {{fold}}")
    return pattern.replace("{fold}", f"{fold_id:03d}").replace("{subject}", f"{fold_id:03d}")


def run(args: argparse.Namespace) -> int:
    """Train each --fold in turn. One fold: a finished fold is refused (unless
    --overwrite); several: finished folds are skipped, so a rerun resumes where a job stopped."""
    config = load_config(args.config, args.overrides)
    several, started = len(args.folds) > 1, None  # None: the first fold counts from the process start
    for fold_id in args.folds:
        out, state_dir, split = (fold_paths(v, fold_id, several, o) for v, o in
                                  ((args.out, "--out"), (args.state_dir, "--state-dir"), (args.split, "--split")))
        if (Path(out) / "metrics.json").exists() and not args.overwrite:
            if several:
                print(f"fold {_named(fold_id, config)} loss={args.loss}: finished ({out}), skipped", flush=True)
                continue
            raise AgeestError(f"{Path(out) / 'metrics.json'} exists: this fold is finished "
                              f"(use --overwrite or another --out)")
        fresh = not Path(out).exists()
        try:
            run_fold(args.images, fold_id, args.loss, out, config, cache=args.cache, points=args.points,
                     root=args.root, state_dir=state_dir, split_file=split, log=lambda m: print(m, flush=True),
                     started=started)
        except BaseException:
            if fresh:  # a fold that failed before writing anything leaves no empty folder behind
                with contextlib.suppress(OSError):
                    Path(out).rmdir()
            raise
        started = time.time()
    return 0


__all__ = ["run_fold", "prepare_fold", "fit_epoch", "finish_fold", "save_model", "Interrupted"]
