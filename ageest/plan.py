"""What a study config makes the workflow run, decided in one place (and no torch imported).

`plan_study(config, project_dir)` validates the workflow config (the schema, then the training
section by ageest.config.Config), and says which losses, seeds and folds (under the protocol:
subjects left out, k-fold or a split file's) are trained, where the data comes from, which
training jobs there are (`folds_per_job` folds each) and what each job asks for. Every problem is a ConfigError naming the config key (`error.key`, e.g. 'training.epochs').
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ageest.config import default
from ageest.errors import AgeestError, ConfigError
from ageest.methods import BASELINES, LOSSES

DOWNLOAD_ROOT = "resources/FGNET"
SCHEMA = "workflow/schemas/config.schema.yaml"


@dataclass(frozen=True)
class Study:
    """The plan of one study: everything the rules read from the config, resolved."""

    config: dict  # the config with the schema's defaults filled in and `losses: all` resolved
    losses: list[str]
    baselines: list[str]
    seeds: list[int]  # training seeds; one seed keeps results/folds/LOSS/NNN
    folds: list[int]  # the folds run (under lopo: the subjects left out)
    all_folds: list[int]  # every fold of the protocol on this data
    images: str  # the FG-NET-layout folder, or the manifest table (data.source manifest)
    data_rule: str | None  # 'synth' or 'download': the rule that makes `images`; None: given as is
    sums: str | None  # the SHA-256 list the data is verified against
    training: dict  # results/config/training.yaml: the training section plus save_model
    chunks: list[list[int]]  # the folds of each training job, folds_per_job at most
    gpu: bool
    root: str = ""  # the folder a manifest's paths are under ('' for an image folder)
    records: list | None = None  # a manifest's records, read once per parse (None for an image folder)

    @property
    def folds_per_job(self) -> int:
        return max(map(len, self.chunks), default=1)

    @property
    def fold_key(self) -> str:
        """Fold folders below results/folds: a seed level only with several seeds."""
        return "{loss}/seed{seed}/{fold}" if len(self.seeds) > 1 else "{loss}/{fold}"

    @property
    def split_file(self) -> str | None:
        """protocol split_file: the table the split jobs read (their input); None otherwise."""
        from ageest.data.protocols import parse_protocol

        return parse_protocol(self.training.get("protocol", "lopo")).table

    @property
    def data_root(self) -> str:
        return os.path.dirname(self.images) or "."

    def train_resources(self, folds: int = 1) -> dict:
        """What a training job of `folds` folds asks for: memory, time limit (train_runtime is per
        fold) and a GPU. Under SLURM the job gets SIGTERM before its limit (`ageest train` then
        saves its state; the retry resumes): two minutes before, a tenth of limits under 20 min."""
        r = self.config["resources"]
        runtime = int(r["train_runtime"]) * folds
        res = {"mem_mb": r["train_mem_mb"], "runtime": runtime,
               "slurm_extra": f"--signal=TERM@{min(120, max(10, 6 * runtime))}"}
        return {**res, "gpu": 1} if self.gpu else res

    def prepare_resources(self) -> dict:
        r = self.config["resources"]
        return {"mem_mb": r["prepare_mem_mb"], "runtime": r["prepare_runtime"]}

    def threads(self) -> int:
        """Cores a training (or prepare) job reserves from Snakemake's --cores."""
        return int(self.config["resources"]["train_threads"])

    def torch_threads(self, threads: int) -> int:
        """Threads torch uses inside a job: training.threads, else the job's cores."""
        return int(self.training.get("threads", 0) or 0) or threads

    def weights_arch(self) -> str | None:
        """The architecture whose ImageNet weights the study needs fetched from the torch hub, or
        None (no pretrained weights, or weights that ship in a registry package)."""
        from ageest.nn.backbones import BACKBONES, TorchHub

        t = self.training
        arch, weights = t.get("arch", "resnet34"), t.get("pretrained", "imagenet")
        entry = BACKBONES.get(arch)
        return arch if entry is not None and isinstance(entry.weights.get(weights), TorchHub) else None


def plan_study(config: dict, project_dir: str | Path, local: bool = True, check_files: bool = True) -> Study:
    """Validate `config` (a Snakemake config dict, left unchanged) and plan the study. `local`:
    jobs run on this machine; elsewhere (SLURM) every fold is its own job, whatever folds_per_job.
    `check_files=False`: a manifest's rows are read but its files not opened (a job re-parsing the
    workflow on a cluster node: the submitting process checked them)."""
    project_dir = Path(project_dir)
    config = validated(config, load_schema(project_dir))
    losses = _losses(config)
    protocol = _protocol(config)
    training = _training(config)
    gpu = bool(config["resources"]["gpu"]) or str(training.get("device", "auto")).startswith("cuda")
    if gpu and str(training.get("device", "auto")) == "cpu":
        raise ConfigError("is true but training.device is 'cpu'", "resources.gpu")
    if config["data"]["source"] == "manifest":
        images, root = _manifest_source(config)
        rule, sums = None, None
        records = _manifest_records(config, images, root, training, protocol, check_files)
        every = sorted({r.subject for r in records})
    elif config["data"]["source"] == "synthetic" and config["data"]["manifest"]:
        images = os.path.normpath(config["data"]["manifest"])
        if not images.lower().endswith(".tsv") or os.path.dirname(images) in ("", "."):
            raise ConfigError(f"'{images}' must be a .tsv table inside the folder `ageest synth --manifest` "
                              "writes (e.g. resources/synth-manifest/faces.tsv)", "data.manifest")
        root, rule, sums, records = os.path.dirname(images), "synth", None, None
        every = _data_subjects(config, images, rule, sums)
    else:
        images, root = os.path.normpath(config["data"]["images"]), ""
        rule = _data_rule(config, images)
        sums = _sums_file(config["data"]["sha256"], project_dir)
        every = _data_subjects(config, images, rule, sums)
        records = None
    all_folds = _protocol_folds(protocol, every, records, images if rule is None else None)
    folds = _selected(config["subjects"], all_folds, protocol)
    k = int(config["resources"]["folds_per_job"]) if local else 1
    if str(protocol) != default("protocol"):
        training["protocol"] = str(protocol)  # absent under lopo: a LOPO study's training.yaml is unchanged
    return Study(config, losses, list(config["baselines"]), _seeds(config, training), folds, all_folds, images,
                 rule, sums, {**training, "save_model": bool(config["keep_models"])},
                 [folds[i:i + k] for i in range(0, len(folds), k)], gpu, root,
                 records if config["data"]["source"] == "manifest" else None)


def load_schema(project_dir: str | Path) -> dict:
    """The workflow config's JSON schema, with what it allows from their one source added: the
    baseline names (ageest.methods), the prediction columns and the bootstrap's bound (the catalog)."""
    from ageest.study.catalog import MAX_BOOTSTRAP, PREDICTION_COLUMNS

    schema = yaml.safe_load((Path(project_dir) / SCHEMA).read_text())
    schema["properties"]["baselines"]["items"]["enum"] = list(BASELINES)
    gather = schema["properties"]["gather"]["properties"]
    gather["prediction"]["enum"], gather["bootstrap"]["maximum"] = list(PREDICTION_COLUMNS), MAX_BOOTSTRAP
    return schema


def validated(config: dict, schema: dict) -> dict:
    """A copy of `config` with the schema's defaults filled in, or a ConfigError naming the first
    bad key (for a value matching none of a oneOf's choices, the message of the choice of its type)."""
    from jsonschema import Draft202012Validator

    config = copy.deepcopy(config)
    _fill_defaults(schema, config)
    errors = sorted(Draft202012Validator(schema).iter_errors(config), key=lambda e: list(map(str, e.absolute_path)))
    if errors:
        bad = errors[0]
        key = ".".join(map(str, bad.absolute_path)) or "(top level)"
        raise ConfigError(f"{_closest(bad).message}", key)
    return config


def _fill_defaults(schema: dict, config: dict) -> None:
    for name, prop in schema.get("properties", {}).items():
        if name not in config and "default" in prop:
            config[name] = copy.deepcopy(prop["default"])
        if isinstance(config.get(name), dict) and "properties" in prop:
            _fill_defaults(prop, config[name])


def _closest(error):
    context = error.context or []
    wrong_type = {e.relative_schema_path[0] for e in context if e.validator == "type"}
    deeper = [e for e in context if e.relative_schema_path[0] not in wrong_type]
    return _closest(max(deeper, key=lambda e: len(e.absolute_path))) if deeper else error


def _losses(config: dict) -> list[str]:
    if config["losses"] == "all":
        # Every registered loss, in the registry's order: a study that grows with the registry.
        config["losses"] = list(LOSSES)
    _no_repeats(config["losses"], "losses")
    _no_repeats(config["baselines"], "baselines")
    for name in config["losses"]:
        if name not in LOSSES:
            raise ConfigError(f"unknown loss '{name}' (known: {', '.join(sorted(LOSSES))})", "losses")
    clash = sorted(set(config["losses"]) & set(config["baselines"]))
    if clash:
        raise ConfigError(f"{', '.join(clash)} is also a baseline name; rename or drop it from baselines", "losses")
    if config["reference_loss"] not in config["losses"]:
        raise ConfigError(f"'{config['reference_loss']}' is not one of losses ({', '.join(config['losses'])})",
                          "reference_loss")
    methods = [*config["losses"], *config["baselines"]]
    for name in config.get("compare_with") or []:
        if name not in methods:
            raise ConfigError(f"'{name}' is not one of the study's losses or baselines ({', '.join(methods)})",
                              "compare_with")
    return list(config["losses"])


def _protocol(config: dict):
    """The top-level `protocol` as an ageest.data.protocols.Protocol."""
    from ageest.data.protocols import parse_protocol

    if "protocol" in config["training"]:
        raise ConfigError("set the top-level protocol instead (lopo, {kfold: K} or {split_file: PATH})",
                          "training.protocol")
    p = config["protocol"]
    text = p if isinstance(p, str) else (f"kfold:{p['kfold']}" if "kfold" in p else f"split_file:{p['split_file']}")
    try:
        protocol = parse_protocol(text)
    except ValueError as e:
        raise ConfigError(str(e), "protocol") from None
    if protocol.table and not os.path.isfile(protocol.table):
        raise ConfigError(f"split file '{protocol.table}' not found", "protocol")
    return protocol


def _protocol_folds(protocol, people: list[int], records, images: str | None) -> list[int]:
    """The protocol's folds: under lopo the people; kfold 1..K (K at most the people); a split
    file's, every row checked against the data when the data is there (else in the split jobs)."""
    if records is None and protocol.table and images and os.path.isdir(images):
        from ageest.data.fgnet import scan_images

        records = scan_images(images)
    try:
        return protocol.folds(people, records)
    except AgeestError as e:
        raise ConfigError(str(e), "protocol") from None


def _training(config: dict) -> dict:
    """The training section, checked by ageest's own Config (which names the key)."""
    from ageest.config import from_dict

    training = dict(config["training"])
    if "save_model" in training:
        raise ConfigError("set keep_models instead (it decides whether model.pt is kept)", "training.save_model")
    try:
        resolved = from_dict(training).to_dict()
    except ConfigError as e:
        raise ConfigError(str(e), *(f"training.{k}" for k in e.keys or ("",))) from None
    # The values as Config reads them (YAML 1.1 reads 1e-3 as a string; Config as the number).
    return {k: resolved[k] for k in training}


def _seeds(config: dict, training: dict) -> list[int]:
    from ageest.config import from_dict

    if config["seeds"] is None:
        return [from_dict(training).seed]
    seeds = [int(s) for s in config["seeds"]]  # --config seeds=[0,1] gives strings
    _no_repeats(seeds, "seeds")
    return seeds


def _no_repeats(values: list, key: str) -> None:
    """A ConfigError naming `key` where a value comes twice (values already of one type): the same
    fold would be planned twice, and gather would refuse the study only after it trained."""
    twice = sorted({str(v) for v in values if values.count(v) > 1})
    if twice:
        raise ConfigError(f"{values} lists {', '.join(twice)} more than once", key)


def _data_rule(config: dict, images: str) -> str | None:
    """The rule that makes the image folder, decided by the config alone, never by whether the
    folder exists yet: a folder made by a rule stays its output, so folds are not redone."""
    if config["data"]["source"] == "synthetic":
        if os.path.basename(images) != "images" or os.path.dirname(images) in ("", "."):
            raise ConfigError(f"'{images}' must be a folder named images inside the folder `ageest synth` "
                              "writes (e.g. resources/synth/images)", "data.images")
        return "synth"
    if images == os.path.join(DOWNLOAD_ROOT, "images") and config["data"]["url"]:
        return "download"
    if os.path.isdir(images):
        return None
    raise ConfigError(f"image folder '{images}' does not exist (point data.images at the FG-NET images, or "
                      f"leave it at {DOWNLOAD_ROOT}/images with data.url set to download)", "data.images")


def _sums_file(sums: str | None, project_dir: Path) -> str | None:
    """The SHA-256 list, found in the working directory or else the project directory."""
    if not sums:
        return None
    for cand in (Path(sums), project_dir / sums):
        if cand.is_file():
            return str(cand if cand.is_absolute() else cand.resolve())
    raise ConfigError(f"checksum file '{sums}' not found (in the working directory or {project_dir})", "data.sha256")


def _data_subjects(config: dict, images: str, rule: str | None, sums: str | None) -> list[int]:
    """Subject numbers of the data set: the folder's file names when it exists; before a download
    the checksum list's; before `ageest synth` its own plan's. So a dry run plans every fold."""
    from ageest.data.fgnet import parse_name

    try:
        if os.path.isdir(images):
            from ageest.data.fgnet import scan_images
            from ageest.data.records import subjects_of

            return subjects_of(scan_images(images))
        if rule == "download" and sums:
            from ageest.data.checksums import read_sums

            return sorted({parse_name(n)[0] for n in read_sums(sums)})
        if rule == "synth":
            from ageest.data.synth import synthetic_plan

            d = config["data"]
            return sorted({s for s, _, _ in synthetic_plan(d["synth_seed"], d["synth_subjects"])})
    except AgeestError as e:
        raise ConfigError(str(e), "data.images") from None
    raise ConfigError("needed to know the subjects before the download (or download first)", "data.sha256")


def _manifest_source(config: dict) -> tuple[str, str]:
    """The manifest table and the folder its paths are under (default: the manifest's folder)."""
    from ageest.data.reader import is_manifest

    d = config["data"]
    if not d["manifest"]:
        raise ConfigError("data.source manifest needs data.manifest, the table of images (image, age, subject)",
                          "data.manifest")
    manifest = os.path.normpath(d["manifest"])
    if not is_manifest(manifest):
        raise ConfigError(f"'{manifest}' must be a .tsv or .csv table", "data.manifest")
    if not os.path.isfile(manifest):
        raise ConfigError(f"manifest '{manifest}' not found", "data.manifest")
    root = os.path.normpath(d["root"]) if d["root"] else os.path.dirname(manifest) or "."
    if not os.path.isdir(root):
        raise ConfigError(f"folder '{root}' not found", "data.root")
    return manifest, root


def _manifest_records(config: dict, manifest: str, root: str, training: dict, protocol,
                      check_files: bool = True) -> list:
    """The records of a manifest, every row checked now (before any job), ages against the training
    age range: a bad row is a ConfigError naming data.manifest, its message the row and column."""
    from ageest.config import from_dict
    from ageest.data.manifest import read_manifest

    c = from_dict(training)
    try:
        m = read_manifest(manifest, root, ages=(c.min_age, c.max_age), check_files=check_files)
    except AgeestError as e:
        raise ConfigError(str(e), "data.manifest") from None
    if not m.has_subjects and protocol.needs_people:
        # Without people only image-level protocols run: each image is then its own person.
        raise ConfigError(f"{manifest} has no subject column: leave-one-person-out needs each image's "
                          "person (add a subject column, or set protocol: {kfold: K} for image-level folds)",
                          "data.manifest")
    if c.align == "landmarks" and not c.align_fallback and all(r.points is None and r.keypoints is None
                                                               for r in m.records):
        raise ConfigError(f"{manifest} names no landmark file (points column) to align on, nor x/y landmark "
                          "columns; add them, or set training.align: detector or none", "data.manifest")
    return m.records


def _selected(wanted: Any, every: list[int], protocol) -> list[int]:
    if wanted == "all":
        return every
    wanted = [int(s) for s in wanted]  # --config subjects=[1,2] gives strings
    _no_repeats(wanted, "subjects")
    missing = sorted(set(wanted) - set(every))
    if missing:
        what, where = protocol.unit, protocol.folds_of
        raise ConfigError(f"{what}(s) {', '.join(map(str, missing))} not in the {where} ({len(every)} {what}s: "
                          f"{every[0]}..{every[-1]})", "subjects")
    return sorted(wanted)


def ageest_on_path() -> bool:
    """Put the `ageest` installed beside this Python first on PATH (jobs re-parse the workflow, so
    they see it too); whether an `ageest` command is then found."""
    import shutil
    import sys

    bindir = os.path.dirname(sys.executable)
    if os.path.isfile(os.path.join(bindir, "ageest")) and bindir not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = bindir + os.pathsep + os.environ.get("PATH", "")
    return shutil.which("ageest") is not None


def runs_jobs_here(workflow: Any) -> bool:
    """Whether training jobs run on this machine, as Snakemake's workflow object shows it when the
    Snakefile is parsed (its executor is not known yet then): not a job a remote executor started
    (it re-parses the workflow), and not a run whose profile submits to SLURM (resources slurm_*)."""
    settings = workflow.resource_settings
    named = [*(settings.default_resources or {}), *(k for r in (settings.overwrite_resources or {}).values() for k in r)]
    return not workflow.remote_exec and not any(str(k).startswith("slurm_") for k in named)


def names_one_fold(argv: list[str] | None = None) -> bool:
    """Whether Snakemake's command line (`argv`, default this process's) names a fold's own files
    as targets (results/folds/...), read with Snakemake's own parser. Then each fold is its own
    job, whatever folds_per_job says: Snakemake deletes a job's outputs before running it, so a
    rerun of one fold inside a chunk of 41 would train 41."""
    import sys

    argv = sys.argv if argv is None else argv
    program = Path(argv[0]) if argv else Path()
    if program.name != "snakemake" and program.parts[-2:] != ("snakemake", "__main__.py"):
        return False  # Snakemake's API, or another program: no command-line targets
    from snakemake.cli import get_argument_parser

    try:
        targets = get_argument_parser().parse_args(argv[1:]).targets or []
    except SystemExit:  # a command line Snakemake itself refuses: it says why
        return False
    folds = os.path.join("results", "folds") + os.sep
    return any(os.path.normpath(t).startswith(folds) for t in targets)


def placeholders(settings: Any) -> list[str]:
    """Profile resources still at a placeholder (profiles/slurm ships YOUR_ACCOUNT, ...), from
    Snakemake's resource settings: ["default-resources: slurm_account (YOUR_ACCOUNT)", ...]."""
    left, per_rule = [], settings.overwrite_resources or {}
    for where, resources in [("default-resources: ", settings.default_resources or {}),
                             *((f"set-resources: {rule}: ", r) for rule, r in per_rule.items())]:
        for name, value in resources.items():
            text = str(getattr(value, "raw", value)).strip("'\"")
            if text.startswith("YOUR_"):
                left.append(f"{where}{name} ({text})")
    return left
