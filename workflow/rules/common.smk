# Helpers shared by the other .smk files: config validation, the subject list (read from the data),
# path helpers. Everything here runs when the workflow is parsed, before any job.

import os
import shutil
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

PROJECT_DIR = Path(workflow.basedir)

# Fixed locations inside the working directory.
DOWNLOAD_ZIP = "resources/FGNET.zip"
DOWNLOAD_ROOT = "resources/FGNET"
TORCH_HOME = "resources/torch"
TRAINING_YAML = "results/config/training.yaml"
MANIFEST = "results/data/manifest.tsv"
SPLIT_FILE = "results/splits/{subject}.tsv"
CACHE = "results/data/cache.npy"  # + cache.npy.json (metadata) beside it
TABLES = ["folds", "summary", "seeds", "comparison", "predictions", "history"]
PLOTS = ["ranking", "subject_mae_paired", "cs_curves", "predicted_vs_true", "mae_by_age_band", "training_curves"]


def _put_ageest_on_path():
    """Shell commands call `ageest`: the one installed beside the Python running snakemake (jobs
    re-parse this file, so they see it too), else whatever PATH holds."""
    bindir = str(Path(sys.executable).parent)
    if (Path(bindir) / "ageest").is_file() and bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ.update(PATH=bindir + os.pathsep + os.environ.get("PATH", ""))
    if not shutil.which("ageest"):
        raise WorkflowError("the `ageest` command is not installed (pip install -e '.[workflow]')")


_put_ageest_on_path()


def config_error(key, why):
    """Stop before any job runs, naming the config key."""
    raise WorkflowError(f"config error: {key}: {why}")


def _validate_schema():
    """The schema's checks, reported like every other config error: one line naming the key."""
    from jsonschema.exceptions import ValidationError

    try:
        validate(config, str(PROJECT_DIR / "workflow" / "schemas" / "config.schema.yaml"), set_default=True)
        return
    except WorkflowError as e:
        bad = e.__cause__ or e.__context__  # Snakemake raises it while handling jsonschema's error
        if not isinstance(bad, ValidationError):
            raise
    # Outside the except block: Snakemake would show the chained schema dump instead of this line.
    config_error(".".join(map(str, bad.absolute_path)) or "(top level)", _closest(bad).message)


def _closest(error):
    """For a value that matches none of a oneOf's choices, the error of the choice of its type
    (e.g. 'less than the minimum of 0' rather than 'not valid under any of the given schemas')."""
    context = error.context or []
    wrong_type = {e.relative_schema_path[0] for e in context if e.validator == "type"}
    deeper = [e for e in context if e.relative_schema_path[0] not in wrong_type]
    return _closest(max(deeper, key=lambda e: len(e.absolute_path))) if deeper else error


_validate_schema()


def _check_losses():
    from ageest.nn.losses import LOSSES

    if config["losses"] == "all":
        # Every registered loss, in the registry's order: a study that grows with the registry.
        config["losses"] = list(LOSSES)
    for name in config["losses"]:
        if name not in LOSSES:
            config_error("losses", f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})")
    clash = sorted(set(config["losses"]) & set(config["baselines"]))
    if clash:
        config_error("losses", f"{', '.join(clash)} is also a baseline name; rename or drop it from baselines")
    if config["reference_loss"] not in config["losses"]:
        config_error("reference_loss", f"'{config['reference_loss']}' is not one of losses "
                     f"({', '.join(config['losses'])})")


def _check_training():
    """The training section, checked by ageest's own config class (names the key on error)."""
    from ageest.config import from_dict
    from ageest.errors import ConfigError

    training = dict(config["training"])
    if "save_model" in training:
        config_error("training.save_model", "set keep_models instead (it decides whether model.pt is kept)")
    try:
        from_dict(training)
    except ConfigError as e:
        import re

        m = re.search(r"config key '(\w+)'|unknown config key\(s\): ([\w, ]+)", str(e))
        keys = (m.group(1) or m.group(2)).split(", ") if m else []
        config_error(", ".join(f"training.{k}" for k in keys) or "training", str(e))
    dev = str(training.get("device", "auto"))
    if dev.startswith("cuda"):
        config["resources"]["gpu"] = True
    elif dev == "cpu" and config["resources"]["gpu"]:
        config_error("resources.gpu", "is true but training.device is 'cpu'")


def _training_seeds():
    """The training seeds: `seeds`, else the one seed of the training section."""
    from ageest.config import from_dict

    if config["seeds"] is None:
        return [from_dict(dict(config["training"])).seed]
    seeds = [int(s) for s in config["seeds"]]  # --config seeds=[0,1] gives strings
    if len(set(seeds)) != len(seeds):
        config_error("seeds", f"{config['seeds']} lists a seed twice")
    return seeds


_check_losses()
_check_training()
SEEDS = _training_seeds()
# One seed: results/folds/{loss}/{subject}, as a study without `seeds` always had. Several: a seed
# level between the loss and the subject, so each (loss, seed) is one folder of LOPO folds, like a
# loss of a one-seed study. Baselines are deterministic: one run, no seed level, ever.
FOLD_KEY = "{loss}/seed{seed}/{subject}" if len(SEEDS) > 1 else "{loss}/{subject}"
BASELINE_KEY = "{loss}/{subject}"


def training_config():
    """The YAML written for `ageest prepare/train --config`: the training section plus save_model."""
    return {**config["training"], "save_model": bool(config["keep_models"])}


def train_resources():
    """A fold's memory, time limit and GPU, from the study's config alone (a profile's set-resources
    for train would override them, so profiles/slurm sets none of these). On SLURM the fold is told
    by SIGTERM before its time limit (`ageest train` then saves its state and exits; the retry
    resumes): two minutes before, or a tenth of the limit for limits under 20 minutes."""
    runtime = int(config["resources"]["train_runtime"])
    res = {
        "mem_mb": config["resources"]["train_mem_mb"],
        "runtime": runtime,
        "slurm_extra": f"--signal=TERM@{min(120, max(10, 6 * runtime))}",
    }
    if config["resources"]["gpu"]:
        res["gpu"] = 1
    return res


def train_threads():
    """Cores a training job reserves from Snakemake's --cores."""
    return int(config["resources"]["train_threads"])


def profile_placeholders():
    """Resources still at a profile's placeholder (profiles/slurm ships YOUR_ACCOUNT,
    YOUR_CPU_PARTITION, YOUR_GPU_PARTITION): ["default-resources: slurm_account (YOUR_ACCOUNT)", ...]."""
    settings = workflow.resource_settings
    left = []

    def scan(where, resources):
        for name, value in resources.items():
            text = str(getattr(value, "raw", value)).strip("'\"")
            if text.startswith("YOUR_"):
                left.append(f"{where}{name} ({text})")

    scan("default-resources: ", settings.default_resources or {})
    for rule, resources in (settings.overwrite_resources or {}).items():
        scan(f"set-resources: {rule}: ", resources)
    return left


PROFILE_PLACEHOLDERS = profile_placeholders()
if PROFILE_PLACEHOLDERS:
    print("Profile placeholders not filled in yet: " + "; ".join(PROFILE_PLACEHOLDERS)
          + ". A dry run plans with them; a real run stops before submitting anything.", file=sys.stderr)


onstart:
    # Not called for dry runs: planning with an unfilled profile is fine, submitting is not.
    if PROFILE_PLACEHOLDERS:
        raise WorkflowError("fill in the profile (profiles/slurm/config.yaml) before running: "
                            + "; ".join(PROFILE_PLACEHOLDERS) + " still hold placeholders")


def torch_threads(wildcards, threads):
    """Threads torch uses inside a job: training.threads, else all the cores the job reserved."""
    t = int(config["training"].get("threads", 0) or 0)
    return t if t > 0 else threads


# ---------------------------------------------------------------------------------------------
# The data: where it is, what produces it, which subjects it holds.

IMAGES = os.path.normpath(config["data"]["images"])
SOURCE = config["data"]["source"]
IMAGES_PRESENT = os.path.isdir(IMAGES)
DATA_ROOT = os.path.dirname(IMAGES) or "."

# DATA_RULE: the job that makes the image folder, or None for a folder given as is. Decided by the
# config alone, never by whether the folder exists yet: a folder made by a rule stays that rule's
# output on later runs, so finished folds are not redone because the data now exists.
if SOURCE == "synthetic":
    if os.path.basename(IMAGES) != "images" or DATA_ROOT == ".":
        config_error("data.images", f"'{IMAGES}' must be a folder named images inside the folder "
                     "`ageest synth` writes (e.g. resources/synth/images)")
    DATA_RULE = "synth"
elif IMAGES == os.path.join(DOWNLOAD_ROOT, "images") and config["data"]["url"]:
    DATA_RULE = "download"
elif IMAGES_PRESENT:
    DATA_RULE = None
else:
    config_error("data.images", f"image folder '{IMAGES}' does not exist (point data.images at the "
                 f"FG-NET images, or leave it at {os.path.join(DOWNLOAD_ROOT, 'images')} with data.url set to download)")


def sums_file():
    """The SHA-256 list to verify the images against, or None."""
    s = config["data"]["sha256"]
    if not s:
        return None
    for cand in (Path(s), PROJECT_DIR / s):
        if cand.is_file():
            return str(cand if cand.is_absolute() else cand.resolve())
    config_error("data.sha256", f"checksum file '{s}' not found (in the working directory or {PROJECT_DIR})")


SUMS = sums_file()


def _subjects_from_names(names):
    from ageest.data.fgnet import parse_name

    return sorted({parse_name(n)[0] for n in names})


def data_subjects():
    """Subject numbers of the data set, read from its file names.

    The folder is scanned when it exists. Before a download the names come from the checksum list
    (the very list the images are then verified against); before `ageest synth` they come from the
    synthesiser's own plan of file names, so a dry run plans every fold.
    """
    from ageest.errors import AgeestError

    try:
        if IMAGES_PRESENT:
            from ageest.data.fgnet import scan_images, subjects_of

            return subjects_of(scan_images(IMAGES))
        if DATA_RULE == "download" and SUMS:
            from ageest.data.checksums import read_sums

            return _subjects_from_names(read_sums(SUMS))
        if DATA_RULE == "synth":
            return synth_subjects()
    except AgeestError as e:
        config_error("data.images", str(e))
    config_error("data.sha256", "needed to know the subjects before the download (or download first)")


def synth_subjects():
    """Subjects `ageest synth` will make: its plan of file names, computed without drawing."""
    from ageest.data.synth import synthetic_plan

    return sorted({s for s, _, _ in synthetic_plan(config["data"]["synth_seed"],
                                                   config["data"]["synth_subjects"])})


ALL_SUBJECTS = data_subjects()


def selected_subjects():
    wanted = config["subjects"]
    if wanted == "all":
        return ALL_SUBJECTS
    wanted = [int(s) for s in wanted]  # --config subjects=[1,2] gives strings
    missing = sorted(set(wanted) - set(ALL_SUBJECTS))
    if missing:
        config_error("subjects", f"subject(s) {', '.join(map(str, missing))} not in the data "
                     f"({len(ALL_SUBJECTS)} subjects: {ALL_SUBJECTS[0]}..{ALL_SUBJECTS[-1]})")
    return sorted(wanted)


SUBJECTS = selected_subjects()


def sid(subject):
    """Subject number as the 3-digit folder name used by FG-NET (1 -> '001')."""
    return f"{int(subject):03d}"


def fold_path(prefix, key=None, suffix="", **fields):
    """prefix/KEY suffix with the fields given filled in (the others stay {wildcards}): the one
    place fold keys become paths (folds, logs, benchmarks, resumable state)."""
    key = key or FOLD_KEY
    wildcards = {"loss": "{loss}", "seed": "{seed}", "subject": "{subject}"}
    return f"{prefix}/{key.format(**{**wildcards, **fields})}{suffix}"


def fold_file(name, **fields):
    return os.path.join(fold_path("results/folds", **fields), name)


def baseline_file(name, **fields):
    return os.path.join(fold_path("results/folds", BASELINE_KEY, **fields), name)


def all_fold_files(name, baselines=True):
    """One path per trained (loss, seed, subject), then, with baselines, per (baseline, subject)."""
    trained = [fold_file(name, loss=m, seed=seed, subject=sid(s))
               for m in config["losses"] for seed in SEEDS for s in SUBJECTS]
    base = [baseline_file(name, loss=b, subject=sid(s)) for b in config["baselines"] for s in SUBJECTS]
    return trained + (base if baselines else [])


def data_input():
    """What jobs reading the images depend on: the rule output that makes them, or the folder."""
    if DATA_RULE == "download":
        return DOWNLOAD_ROOT
    if DATA_RULE == "synth":
        return DATA_ROOT
    return IMAGES


def weights_input():
    """Flag that ImageNet weights are in the local torch hub cache (fetched by a local rule)."""
    if config["training"].get("pretrained", "imagenet") == "imagenet":
        return f"{TORCH_HOME}/{config['training'].get('arch', 'resnet34')}-imagenet.ok"
    return []


def table_files():
    return [f"results/tables/{t}.tsv" for t in TABLES]


def plot_files():
    return [f"results/plots/{p}.png" for p in PLOTS]


wildcard_constraints:
    loss="|".join(config["losses"]),
    seed="|".join(map(str, SEEDS)),
    baseline="|".join(config["baselines"]) or "(?!)",
    subject="|".join(sid(s) for s in ALL_SUBJECTS),
