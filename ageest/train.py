"""Train and score one leave-one-person-out fold: the one training entry point."""

from __future__ import annotations

import argparse
import math
import signal
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .cache import default_cache_path, default_points_dir, open_cache
from .config import Config, add_config_arguments, load_config
from .data import PlainSource, TensorSource
from .devices import resolve_device
from .engine import EpochState, autocast_for, evaluate, precision_name, train_one_epoch, uses_bf16
from .errors import AgeestError, DataError
from .fgnet import data_fingerprint, scan_images
from .io import check_writable, remove_temporaries, save_torch_atomic, write_json_atomic, write_text_atomic
from .losses import LOSSES, loss_spec
from .model import backbone_batchnorms, build_model, head_parameters
from .folds import fold_split, predictions_tsv, provenance
from .forkserver import process_start

HISTORY_COLUMNS = ("epoch", "train_loss", "train_ce", "train_mean", "train_var", "val_loss", "val_mae",
                   "lr", "seconds", "images_per_second", "val_seconds")
STATE_FILE = "state.pt"
FOLD_FILES = ("predictions.tsv", "history.tsv", "model.pt", "metrics.json")  # what a fold writes to --out


class Interrupted(AgeestError):
    """SIGTERM/SIGINT arrived; the fold's state was saved and a rerun resumes it."""


def run_fold(images: str | Path, subject: int, loss: str, out: str | Path, config: Config, *,
             cache: str | Path | None = None, points: str | Path | None = None,
             state_dir: str | Path | None = None, split_file: str | Path | None = None,
             log=print) -> dict:
    """Train the fold that leaves `subject` out with loss `loss`; write its outputs into `out`.

    Writes predictions.tsv, history.tsv, model.pt (if config.save_model) and, last, metrics.json,
    each atomically. Resumable state goes to `state_dir` (default: `out`) after every epoch.
    `split_file` (from `ageest split`) fixes the split instead of drawing it from the seed.
    Returns the metrics dict.
    """
    t_start = time.perf_counter()
    spec = loss_spec(loss)
    loss_fn = spec.fn
    images = Path(images)
    out = check_writable(out)
    state_path = check_writable(state_dir or out) / STATE_FILE
    remove_temporaries([state_path, *(out / n for n in FOLD_FILES)])  # a killed run's half-written files
    records = scan_images(images)
    points_dir = Path(points) if points else default_points_dir(images)
    # With alignment the landmark files are part of the data: an edited .pts is another data set.
    fingerprint = data_fingerprint(records, points_dir if config.align != "none" else None)
    split, split_digest = fold_split(records, subject, config, split_file)
    identity = {"subject": subject, "loss": loss, "data_fingerprint": fingerprint,
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
    sources, fallback = _make_sources(records, split, config, device, cache, points_dir, channels_last)
    train_src, val_src, test_src = sources
    log(f"fold subject={subject:03d} loss={loss}: {len(split.train)} train, {len(split.val)} val, "
        f"{len(split.test)} test images on {device}")

    ages = config.age_grid(device)
    _check_ages([records[i].age for i in split.train + split.val + split.test], config)
    loss_kwargs = spec.kwargs(config)
    model = build_model(config.arch, config.num_classes, config.pretrained, spec.head).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    # Fused Adam: one kernel for all parameters (CPU too: 2x faster steps than the foreach default).
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay,
                                 fused=device.type in ("cuda", "cpu"))
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(config.lr_milestones), config.lr_gamma)
    autocast = autocast_for(device, config.precision)
    head = {id(p) for p in head_parameters(model)}
    frozen_bns = backbone_batchnorms(model) if config.freeze_bn else []

    st = {"epoch": 0, "epoch_state": None, "history": [], "best": None, "best_mae": None,
          "attempt_seconds": []}
    if state_path.exists():
        st = _resume(state_path, identity, model, optimizer, scheduler, device)
        log(f"resuming from {state_path}: epoch {st['epoch'] + 1}"
            + (f", batch {st['epoch_state']['next_batch']}" if st["epoch_state"] else ""))

    stop = {"signal": None}
    previous = {s: signal.signal(s, lambda signum, _f: stop.update(signal=signum))
                for s in (signal.SIGTERM, signal.SIGINT)}
    last_save = time.monotonic()
    earlier = st["attempt_seconds"]  # wall time of the runs this one resumes, as saved by each

    def attempts() -> list[float]:
        """Seconds of every run of this fold so far, this one included (kept in the state)."""
        return [*earlier, time.perf_counter() - t_start]

    def interrupted(where: str) -> Interrupted:
        return Interrupted(f"fold {subject:03d} {loss}: stopped by signal {stop['signal']} {where}; "
                           f"state saved to {state_path}, rerun to resume")

    startup = time.time() - process_start()  # the fixed cost of a fold job, imports included
    log(f"first training step {startup:.2f} s after the process started")
    try:
        for epoch in range(st["epoch"], config.epochs):
            frozen = epoch < config.freeze_epochs
            for p in model.parameters():
                p.requires_grad_(not frozen or id(p) in head)
            es = EpochState.from_dict(st["epoch_state"], device) if st["epoch_state"] else None
            tm, es, finished = train_one_epoch(
                model, train_src.train_batches(epoch, es.next_batch if es else 0), loss_fn, optimizer,
                ages, loss_kwargs=loss_kwargs, autocast=autocast, state=es,
                should_stop=lambda: stop["signal"] is not None, keep_eval=frozen_bns if frozen else ())
            if not finished:
                st.update(epoch=epoch, epoch_state=es.to_dict(), attempt_seconds=attempts())
                _save_state(state_path, identity, st, model, optimizer, scheduler)
                raise interrupted(f"in epoch {epoch + 1}")
            lr = optimizer.param_groups[0]["lr"]
            scheduler.step()
            t_val = time.perf_counter()
            vm = evaluate(model, val_src.eval_batches(), loss_fn, ages, loss_kwargs=loss_kwargs,
                          autocast=autocast, predict=spec.predict)
            t_val = time.perf_counter() - t_val
            row = {"epoch": epoch + 1, **{k: v for k, v in tm.items() if k.startswith("train_")},
                   "val_loss": vm["loss"], "val_mae": vm["mae"], "lr": lr, "seconds": tm["seconds"],
                   "images_per_second": tm["images_per_second"], "val_seconds": t_val}
            _check_finite(row, subject, loss)
            st["history"].append(row)
            if st["best"] is None or vm["loss"] < st["best"]["val_loss"]:
                st["best"] = {"epoch": epoch + 1, "val_loss": vm["loss"], "val_mae": vm["mae"],
                              "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
            if st["best_mae"] is None or vm["mae"] < st["best_mae"]["val_mae"]:
                st["best_mae"] = {"epoch": epoch + 1, "val_mae": vm["mae"]}
            log(f"epoch {epoch + 1}/{config.epochs}{' (head only)' if frozen else ''}: "
                f"train {tm['train_loss']:.3f}, val loss {vm['loss']:.3f}, val MAE {vm['mae']:.2f}, "
                f"{tm['images_per_second']:.0f} img/s")
            st.update(epoch=epoch + 1, epoch_state=None)
            done = epoch + 1 == config.epochs
            if not done and (stop["signal"] is not None
                             or time.monotonic() - last_save >= config.checkpoint_every_s):
                st["attempt_seconds"] = attempts()
                _save_state(state_path, identity, st, model, optimizer, scheduler)
                last_save = time.monotonic()
            if stop["signal"] is not None and not done:
                raise interrupted(f"after epoch {epoch + 1}")
    finally:
        for s, h in previous.items():
            signal.signal(s, h)

    # The test subject is scored once, with the model selected on validation loss.
    model.load_state_dict(st["best"]["state"])
    tm = evaluate(model, test_src.eval_batches(), loss_fn, ages, loss_kwargs=loss_kwargs, autocast=autocast,
                  predict=spec.predict)
    test_records = [records[i] for i in split.test]
    runs = attempts()  # seconds: every run of the fold added up (a resumed fold ran more than once)
    metrics = {
        "subject": subject, "loss": loss, "n_train": len(split.train), "n_val": len(split.val),
        "n_test": len(split.test), "best_epoch": st["best"]["epoch"], "val_loss": st["best"]["val_loss"],
        "val_mae": st["best"]["val_mae"], "best_val_mae_epoch": st["best_mae"]["epoch"],
        "best_val_mae": st["best_mae"]["val_mae"], "test_mae": tm["mae"],
        "test_mae_rounded": float(np.abs(np.rint(tm["predicted_age"]) - tm["age"]).mean()),
        "test_loss": tm["loss"], "seconds": sum(runs), "attempt_seconds": runs, "startup_seconds": startup,
        "train_seconds": sum(r["seconds"] for r in st["history"]), "device": str(device),
        "bf16": uses_bf16(device, config.precision), "precision": precision_name(device, config.precision),
        "unaligned_fallback": fallback,
        **provenance(config, fingerprint, split_digest, images), "torch_version": torch.__version__,
    }
    write_text_atomic(out / "predictions.tsv", predictions_tsv(test_records, tm["predicted_age"],
                                                               tm["predicted_std"]))
    write_text_atomic(out / "history.tsv", _history_tsv(st["history"]))
    if config.save_model:
        save_model(out / "model.pt", model, config, metrics)
    write_json_atomic(out / "metrics.json", metrics)  # last: its presence means the fold is complete
    if not config.keep_checkpoint:
        state_path.unlink(missing_ok=True)
    log(f"fold subject={subject:03d} loss={loss}: test MAE {tm['mae']:.2f} (best epoch "
        f"{metrics['best_epoch']}, val MAE {metrics['val_mae']:.2f}) in {metrics['seconds']:.0f} s")
    return metrics


def _make_sources(records, split, config: Config, device, cache, points_dir, channels_last: bool):
    if config.pipeline == "plain":
        return [PlainSource([records[i] for i in idx], config, device, points_dir)
                for idx in (split.train, split.val, split.test)], 0
    arr, meta = open_cache(cache or default_cache_path(records, config, points_dir), records, config,
                           points_dir)
    fell = set(meta.get("fallback", []))
    used = split.train + split.val + split.test
    fallback = sum(records[i].name in fell for i in used)
    return [TensorSource(arr[list(idx)], [records[i].age for i in idx], config, device, channels_last)
            for idx in (split.train, split.val, split.test)], fallback


def _check_ages(ages: list[int], config: Config) -> None:
    bad = sorted({a for a in ages if not config.min_age <= a <= config.max_age})
    if bad:
        raise DataError(f"ages {bad} lie outside min_age..max_age ({config.min_age}..{config.max_age}); "
                        f"widen them in the config")


def _check_finite(row: dict, subject: int, loss: str) -> None:
    if not all(math.isfinite(row[k]) for k in ("train_loss", "val_loss") if k in row):
        terms = ", ".join(f"{k}={v:.4g}" for k, v in row.items() if k.startswith("train_") or k == "val_loss")
        raise AgeestError(f"fold {subject:03d} {loss}: training diverged at epoch {row['epoch']} ({terms}); "
                          f"try a lower lr")


def _save_state(path: Path, identity: dict, st: dict, model, optimizer, scheduler) -> None:
    rng = {"torch": torch.get_rng_state(), "numpy": np.random.get_state()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_torch_atomic(path, {"identity": identity, "epoch": st["epoch"], "epoch_state": st["epoch_state"],
                             "history": st["history"], "best": st["best"], "best_mae": st["best_mae"],
                             "attempt_seconds": st["attempt_seconds"],
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng})


def _resume(path: Path, identity: dict, model, optimizer, scheduler, device) -> dict:
    try:
        ck = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:
        raise AgeestError(f"resumable state {path} is unreadable ({type(e).__name__}); delete it to start over") from None
    if ck.get("identity") != identity:
        diff = [k for k in identity if ck.get("identity", {}).get(k) != identity[k]]
        raise AgeestError(f"resumable state {path} belongs to another run (differs in: {', '.join(diff)}); "
                          f"delete it to start this fold over")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"]["torch"].cpu())
    np.random.set_state(ck["rng"]["numpy"])
    if "cuda" in ck["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ck["rng"]["cuda"]])
    if ck["best"] is not None:
        ck["best"]["state"] = {k: v.cpu() for k, v in ck["best"]["state"].items()}
    return {**{k: ck[k] for k in ("epoch", "epoch_state", "history", "best", "best_mae")},
            "attempt_seconds": ck.get("attempt_seconds", [])}


def save_model(path: Path, model, config: Config, metrics: dict) -> None:
    """All that `predict` needs: weights, config, age range."""
    save_torch_atomic(path, {"model": {k: v.cpu() for k, v in model.state_dict().items()},
                             "config": config.to_dict(), "min_age": config.min_age,
                             "max_age": config.max_age, "subject": metrics["subject"],
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
    p.add_argument("--images", required=True, help="FG-NET-layout image folder")
    p.add_argument("--leave-subject", type=int, required=True, metavar="N", help="subject left out (test)")
    p.add_argument("--loss", required=True, help=f"loss name ({', '.join(LOSSES)})")
    p.add_argument("--out", required=True, help="output folder of the fold")
    add_config_arguments(p, "training config YAML")
    p.add_argument("--cache", default=None, help="preprocessing cache from `ageest prepare`")
    p.add_argument("--points", default=None, help="landmark folder (default: images/../points)")
    p.add_argument("--state-dir", default=None, help="where resumable state lives (default: --out)")
    p.add_argument("--split", default=None, help="split file from `ageest split` (default: drawn from the seed)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished fold in --out")


def run(args: argparse.Namespace) -> int:
    """Train one leave-one-person-out fold and score its left-out subject."""
    config = load_config(args.config, args.overrides)
    if (Path(args.out) / "metrics.json").exists() and not args.overwrite:
        raise AgeestError(f"{Path(args.out) / 'metrics.json'} exists: this fold is finished "
                          f"(use --overwrite or another --out)")
    run_fold(args.images, args.leave_subject, args.loss, args.out, config, cache=args.cache,
             points=args.points, state_dir=args.state_dir, split_file=args.split,
             log=lambda m: print(m, flush=True))
    return 0


__all__ = ["run_fold", "save_model", "Interrupted"]
