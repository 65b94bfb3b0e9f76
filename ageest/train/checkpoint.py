"""A fold's resumable state (one typed object, saved and loaded here and nowhere else) and the
signals that make a fold save it."""

from __future__ import annotations

import contextlib
import signal
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch

from ageest.errors import AgeestError
from ageest.io import save_torch_atomic

STATE_FILE = "state.pt"


@dataclass
class FoldState:
    """Where a fold stands: what it has learnt so far, beside the model/optimizer/scheduler tensors."""

    epoch: int = 0  # epochs finished
    epoch_state: dict | None = None  # EpochState.to_dict() when stopped inside an epoch
    history: list[dict] = field(default_factory=list)  # one row per finished epoch (history.tsv)
    best: dict | None = None  # lowest validation loss: epoch, val_loss, val_mae, state (CPU weights)
    best_mae: dict | None = None  # lowest validation MAE: epoch, val_mae (reported, never selected on)
    attempt_seconds: list[float] = field(default_factory=list)  # wall time of each earlier run
    attempt_cpu_seconds: list[float] = field(default_factory=list)  # CPU time of each earlier run

    def record_best(self, epoch: int, val_loss: float, val_mae: float, model: torch.nn.Module) -> None:
        """Keep the epoch's weights if its validation loss is the lowest so far (1-based `epoch`)."""
        if self.best is None or val_loss < self.best["val_loss"]:
            self.best = {"epoch": epoch, "val_loss": val_loss, "val_mae": val_mae,
                         "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
        if self.best_mae is None or val_mae < self.best_mae["val_mae"]:
            self.best_mae = {"epoch": epoch, "val_mae": val_mae}


def save_state(path: Path, identity: dict, state: FoldState, model, optimizer, scheduler) -> None:
    """Atomically write `state`, the training tensors and every RNG state to `path`."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    # numpy's state as a tensor and plain numbers: the file then loads with weights_only.
    rng = {"torch": torch.get_rng_state(), "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                                     int(has_gauss), float(gauss))}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    save_torch_atomic(path, {"identity": identity, **{f.name: getattr(state, f.name) for f in fields(state)},
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "rng": rng})


def load_state(path: Path, identity: dict, model, optimizer, scheduler, device) -> FoldState:
    """Restore what `save_state` wrote into the training objects; refuse another run's state.

    Read with weights_only: tensors and plain data, never code. A file holding anything else (a
    crafted pickle, a state of ageest before this rule) is refused by name, unread.
    """
    try:
        ck = torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        raise AgeestError(f"resumable state {path} is not a state file ageest wrote (it holds more than tensors "
                          f"and plain data, or is damaged: {type(e).__name__}); delete it to start over") from None
    if not isinstance(ck, dict) or not all(k in ck for k in ("identity", "model", "optimizer", "scheduler", "rng")):
        raise AgeestError(f"resumable state {path} is not a state file ageest wrote (no fold state in it); "
                          "delete it to start over")
    if ck.get("identity") != identity:
        diff = [k for k in identity if ck.get("identity", {}).get(k) != identity[k]]
        raise AgeestError(f"resumable state {path} belongs to another run (differs in: {', '.join(diff)}); "
                          f"delete it to start this fold over")
    model.load_state_dict(ck["model"])
    optimizer.load_state_dict(ck["optimizer"])
    scheduler.load_state_dict(ck["scheduler"])
    torch.set_rng_state(ck["rng"]["torch"].cpu())
    name, keys, *rest = ck["rng"]["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    if "cuda" in ck["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in ck["rng"]["cuda"]])
    if ck["best"] is not None:
        ck["best"]["state"] = {k: v.cpu() for k, v in ck["best"]["state"].items()}
    return FoldState(**{f.name: ck[f.name] for f in fields(FoldState) if f.name in ck})


class StopFlag:
    """Set by SIGTERM/SIGINT inside `stop_on_signals`: the number of the signal, else None."""

    signal: int | None = None

    def __bool__(self) -> bool:
        return self.signal is not None


@contextlib.contextmanager
def stop_on_signals(signals=(signal.SIGTERM, signal.SIGINT)):
    """A SIGTERM (SLURM's warning before a time limit, preemption) or SIGINT sets the flag this
    yields instead of killing the process, so training can save its state at a batch boundary."""
    flag = StopFlag()

    def note(signum, _frame):
        flag.signal = signum

    previous = {s: signal.signal(s, note) for s in signals}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
