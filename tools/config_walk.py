"""Walk a fold's config through the code: every call, from `run_fold` down, that is handed the
fold's Config (as an argument, or inside the Fold that carries it), in the order they happen.

    PYTHONPATH=. python tools/config_walk.py            # this tree
    PYTHONPATH=/path/to/other/checkout python tools/config_walk.py   # another, to compare

It trains one tiny fold (3 synthetic people, 1 epoch, 32 px) and prints the walk as stays (runs
of calls in one file), then:
  files    the files the config visits;
  returns  stays in a file the walk had already left;
  climbs   calls from a module into a module of a higher layer (a lower layer calling up):
           study (0, the analysis of what folds wrote) > train and plan (1) > pipeline and
           predict (2) > nn (3) > data (4) > config, methods, io, errors (5). The data path runs
           one way when this is small.
The config's own methods and properties (it is their `self`) are not stays: reading a key is not
handing the config on.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

LAYERS = {"study": 0, "train": 1, "plan": 1, "pipeline": 2, "predict": 2, "nn": 3, "data": 4}


def layer(module_file: str) -> int:
    """The layer of a file under ageest/ (5 for config, methods, io, errors and the package root)."""
    parts = Path(module_file).parts
    rel = parts[len(parts) - parts[::-1].index("ageest"):]
    return LAYERS.get(rel[0].removesuffix(".py"), 5)


def short(module_file: str) -> str:
    parts = Path(module_file).parts
    return "/".join(parts[len(parts) - parts[::-1].index("ageest") - 1:])


def walk(config, run) -> list[tuple[str, str, str]]:
    """(caller file, callee file, function) of every ageest call handed `config`, while `run()` runs."""
    calls = []

    def carries(v) -> bool:
        return v is config or getattr(v, "config", None) is config

    def profile(frame, event, arg):
        if event != "call" or "/ageest/" not in frame.f_code.co_filename:
            return
        code = frame.f_code
        args = [frame.f_locals.get(n) for n in code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]]
        if args and args[0] is config:  # the config's own method or property
            return
        if any(carries(a) for a in args):
            caller = frame.f_back.f_code.co_filename if frame.f_back else ""
            calls.append((caller, code.co_filename, code.co_name))

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls


def summary(calls: list[tuple[str, str, str]]) -> dict:
    stays, left = [], set()
    returns = 0
    for _, callee, fn in calls:
        f = short(callee)
        if stays and stays[-1][0] == f:
            stays[-1][1].append(fn)
            continue
        if stays:
            left.add(stays[-1][0])
        returns += f in left
        stays.append((f, [fn]))
    climbs = [(short(a), short(b), fn) for a, b, fn in calls
              if "/ageest/" in a and layer(a) > layer(b)]
    return {"stays": stays, "files": sorted({s[0] for s in stays}), "returns": returns, "climbs": climbs}


def main() -> int:
    from ageest.config import load_config
    from ageest.data.synth import make_synthetic
    from ageest.train.fold import run_fold

    with tempfile.TemporaryDirectory() as tmp:
        make_synthetic(tmp, seed=0, n_subjects=3)
        config = load_config(None, ["epochs=1", "freeze_epochs=0", "image_size=32", "pretrained=none",
                                    "arch=resnet18", "batch_size=16", "threads=2"])
        calls = walk(config, lambda: run_fold(Path(tmp) / "images", 1, "mean_variance", Path(tmp) / "out",
                                              config, log=lambda *_: None))
    s = summary(calls)
    for f, fns in s["stays"]:
        print(f"  {f}: {', '.join(dict.fromkeys(fns))}")
    print(f"{len(s['stays'])} stays in {len(s['files'])} files, {s['returns']} returns to a file already left, "
          f"{len(s['climbs'])} climbs to a higher layer")
    for a, b, fn in s["climbs"]:
        print(f"  climb: {a} -> {b}:{fn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
