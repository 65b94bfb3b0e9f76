# Constants, the study plan (ageest.plan: validation, losses, seeds, protocol and folds, data source,
# training jobs and their resources, config errors named by key) and path helpers. No torch import.

import os
import sys

from snakemake.exceptions import WorkflowError

from ageest.errors import ConfigError
from ageest.study.catalog import PLOTS, TABLES
from ageest.plan import DOWNLOAD_ROOT, ageest_on_path, names_one_fold, placeholders, plan_study, runs_jobs_here

DOWNLOAD_ZIP = "resources/FGNET.zip"
TORCH_HOME = "resources/torch"
TRAINING_YAML = "results/config/training.yaml"
MANIFEST = "results/data/manifest.tsv"
SPLIT_FILE = "results/splits/{fold}.tsv"
CACHE = "results/data/cache.npy"  # + cache.npy.json (metadata) beside it

if not ageest_on_path():  # shell commands call `ageest`: the one beside this Python, else PATH's
    raise WorkflowError("the `ageest` command is not installed (pip install -e '.[workflow]')")

try:
    # A job a cluster node runs re-parses the workflow: the submitting process checked the files.
    # Folds share a job (folds_per_job) only for whole studies run here: a fold's own target trains that fold alone.
    STUDY = plan_study(config, workflow.basedir, local=runs_jobs_here(workflow) and not names_one_fold(),
                       check_files=not workflow.remote_exec)
except ConfigError as e:
    raise WorkflowError(f"config error: {', '.join(e.keys) or '(top level)'}: {e}") from None
config.update(STUDY.config)  # the schema's defaults, `losses: all` resolved
SEEDS, FOLDS, IMAGES, DATA_RULE, SUMS = STUDY.seeds, STUDY.folds, STUDY.images, STUDY.data_rule, STUDY.sums
DATA_ROOT = STUDY.data_root
# A manifest's root folder, passed as --root; "." for an image folder, which ignores it (a shell
# `{params.x:q}` of '' is no word at all, and --root would take the next option as its value).
ROOT = STUDY.root or "."

PROFILE_PLACEHOLDERS = "; ".join(placeholders(workflow.resource_settings))
if PROFILE_PLACEHOLDERS:
    print(f"Profile placeholders not filled in yet: {PROFILE_PLACEHOLDERS}. A dry run plans with them; "
          "a real run stops before submitting anything.", file=sys.stderr)


onstart:
    # Not called for dry runs: planning with an unfilled profile is fine, submitting is not.
    if PROFILE_PLACEHOLDERS:
        raise WorkflowError(f"fill in the profile (profiles/slurm/config.yaml) before running: "
                            f"{PROFILE_PLACEHOLDERS} still hold placeholders")


def sid(fold):
    return f"{int(fold):03d}"  # a fold's 3-digit folder name (1 -> '001'; under lopo FG-NET's subject number)


def fold_path(prefix, key=None, suffix="", **fields):
    """prefix/KEY suffix, the fields given filled in, the others left {wildcards}: where fold keys become paths."""
    wildcards = {"loss": "{loss}", "seed": "{seed}", "fold": "{fold}"}
    return f"{prefix}/{(key or STUDY.fold_key).format(**{**wildcards, **fields})}{suffix}"


def fold_file(name, **fields):
    return os.path.join(fold_path("results/folds", **fields), name)


def fold_files(name, folds=None):  # a training job's outputs: one per fold, or the pattern
    return [fold_file(name, fold=sid(f)) for f in folds] if folds else [fold_file(name)]


def baseline_file(name, **fields):
    return os.path.join(fold_path("results/folds", "{loss}/{fold}", **fields), name)  # no seed level, ever


def all_fold_files(name, baselines=True):  # each trained (loss, seed, fold), then (baseline, fold)
    trained = [fold_file(name, loss=m, seed=seed, fold=sid(f)) for m in STUDY.losses for seed in SEEDS for f in FOLDS]
    base = [baseline_file(name, loss=b, fold=sid(f)) for b in STUDY.baselines for f in FOLDS]
    return trained + (base if baselines else [])


def data_input():  # what jobs reading the images depend on: the rule output making them, or the folder
    return {"download": DOWNLOAD_ROOT, "synth": DATA_ROOT}.get(DATA_RULE, IMAGES)


def weights_input():  # flag file: ImageNet weights are in the local torch hub cache (a local rule)
    arch = STUDY.weights_arch()
    return f"{TORCH_HOME}/{arch}-imagenet.ok" if arch else []


def table_files():
    return [f"results/tables/{t}.tsv" for t in TABLES]


def plot_files():
    return [f"results/plots/{p}.png" for p in PLOTS]


wildcard_constraints:
    loss="|".join(STUDY.losses),
    seed="|".join(map(str, SEEDS)),
    baseline="|".join(STUDY.baselines) or "(?!)",
    fold="|".join(sid(f) for f in STUDY.all_folds),
