# The data: FG-NET from a folder (or downloaded once), or the demo's synthetic set; verified file
# by file (images and landmark files) against the project's SHA-256 list, listed in a manifest, and
# decoded once into a cache that every fold job memory-maps. ImageNet weights are fetched here too,
# by a local rule, so compute nodes without internet never need it.

from ageest.data.checksums import LANDMARKS, read_sums
from ageest.data.reader import is_manifest, read_records
from ageest.data.fingerprint import data_fingerprint, landmarks_digest
from ageest.errors import AgeestError
from ageest.data.landmarks import default_points_dir
from ageest.rulelog import reported

# Digests of the landmark files' bytes, as job parameters: edit, add or remove a `.pts` file and the
# parameter changes, so Snakemake reruns the job (and, after the cache, every fold).
# PREPARE_LANDMARKS: the files the images are aligned with, when training aligns on them (`landmarks`).
# VERIFY_LANDMARKS: every `.pts` file of the folder, when the checksum list covers them.
# Only for a data folder given as is: data made by a rule (download, synth) does not exist yet when
# a first run is planned, so a digest would differ on the next run and redo everything. For those,
# `ageest` itself refuses a cache whose landmark files changed (its cache key holds the digest).
# DATA_CONTENT: the images' names and bytes (SHA-256 each, remembered by file identity, so a
# re-plan costs a stat per file): an image edited in place, same size or not, reruns the checks,
# the cache and the folds. Planning it also refuses one photo under two people, naming both.
_GIVEN_FOLDER = DATA_RULE is None
try:
    _RECORDS = (STUDY.records or read_records(IMAGES, ROOT)) if _GIVEN_FOLDER else None
    DATA_CONTENT = data_fingerprint(_RECORDS) if _RECORDS else None
    PREPARE_LANDMARKS = (landmarks_digest(default_points_dir(IMAGES), _RECORDS)
                         if _RECORDS and config["training"].get("align", "none") == "landmarks" else None)
    VERIFY_LANDMARKS = (landmarks_digest(default_points_dir(IMAGES))
                        if _RECORDS and SUMS and read_sums(SUMS, LANDMARKS) else None)
except AgeestError as e:
    raise WorkflowError(f"data: {e}") from None


if DATA_RULE == "download":

    rule download:
        localrule: True
        output:
            temp(DOWNLOAD_ZIP),
        params:
            url=config["data"]["url"],
        conda:
            "../envs/ageest.yaml"
        log:
            "results/logs/data/download.log",
        script:
            "../scripts/download.py"

    rule unpack:
        localrule: True
        input:
            DOWNLOAD_ZIP,
        output:
            directory(DOWNLOAD_ROOT),
        conda:
            "../envs/ageest.yaml"
        log:
            "results/logs/data/unpack.log",
        script:
            "../scripts/unpack.py"


if DATA_RULE == "synth":

    rule synth:
        localrule: True
        output:
            directory(DATA_ROOT),
        params:
            seed=config["data"]["synth_seed"],
            subjects=config["data"]["synth_subjects"],
            # data.manifest set: the synthetic people under another layout, listed in that table
            layout=f"--manifest {os.path.basename(IMAGES)}" if is_manifest(IMAGES) else "",
        conda:
            "../envs/ageest.yaml"
        log:
            "results/logs/data/synth.log",
        shell:
            reported(
                "ageest synth {output:q} --seed {params.seed} --subjects {params.subjects} {params.layout} > {log} 2>&1"
            )


if SUMS:

    rule verify_checksums:
        localrule: True
        input:
            data=data_input(),
            sums=SUMS,
        output:
            "results/data/checksums.ok",
        params:
            images=IMAGES,
            content=DATA_CONTENT,
            landmarks=VERIFY_LANDMARKS,
        conda:
            "../envs/ageest.yaml"
        log:
            "results/logs/data/verify_checksums.log",
        script:
            "../scripts/verify_checksums.py"


rule manifest:
    localrule: True
    input:
        data=data_input(),
        verified="results/data/checksums.ok" if SUMS else [],
    output:
        MANIFEST,
    params:
        images=IMAGES,
        # The data input itself for a synthetic manifest: its folder is both (linted as a prefix).
        data_root=lambda wc, input: input.data if ROOT == input.data else ROOT,
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/data/manifest.log",
    shell:
        reported(
            "ageest manifest --images {params.images:q} --root {params.data_root:q} --out {output:q} > {log} 2>&1"
        )


rule weights:
    localrule: True
    output:
        f"{TORCH_HOME}/{{arch}}-imagenet.ok",
    params:
        torch_home=lambda wc, output: os.path.dirname(output[0]),
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/data/weights_{arch}.log",
    script:
        "../scripts/fetch_weights.py"


rule prepare:
    input:
        manifest=MANIFEST,
        config=TRAINING_YAML,
    output:
        cache=CACHE,
        meta=f"{CACHE}.json",
    params:
        images=IMAGES,
        data_root=ROOT,
        content=DATA_CONTENT,
        landmarks=PREPARE_LANDMARKS,
    threads: STUDY.threads()
    resources:
        **STUDY.prepare_resources(),
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/data/prepare.log",
    shell:
        reported(
            "ageest prepare --images {params.images:q} --root {params.data_root:q} --out {output.cache:q} --config {input.config:q} "
            "> {log} 2>&1"
        )
