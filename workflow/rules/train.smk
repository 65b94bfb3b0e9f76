# One fold per (loss, training seed, fold of the protocol; under lopo the subject left out):
# results/folds/{loss}/{fold}/metrics.json with one seed, results/folds/{loss}/seed{seed}/{fold}/
# metrics.json with several (fold_key), the fold as 3 digits. resources.folds_per_job 1 (the default;
# always under SLURM): one job per fold. K > 1: one job per loss, seed and K consecutive folds (rule
# train_FIRST_LAST), which trains its folds one after another in one process (one torch import);
# each fold's outputs stay declared. A command line naming a fold's own files as targets plans one
# job per fold (ageest.plan.names_one_fold): `snakemake -F results/folds/LOSS/001/metrics.json`
# trains that fold alone.

# A failed job's own message belongs where the user looks first: Snakemake's output and, on SLURM,
# the job's log, not only in the rule's log: every shell rule is reported(...) (ageest/rulelog.py).
from ageest.rulelog import reported


rule training_config:
    localrule: True
    output:
        TRAINING_YAML,
    params:
        training=STUDY.training,
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/training_config.log",
    script:
        "../scripts/write_yaml.py"


rule split:
    # One small file per fold: the fold's own input. Touching it reruns that fold's trainings
    # and the gather, nothing else; it also records who validated each fold. Drawn from
    # training.seed, once: every training seed and baseline of a fold validates on the same
    # people, so the seeds vary the training alone (initialisation, batch order, augmentation).
    localrule: True
    input:
        manifest=MANIFEST,
        config=TRAINING_YAML,
        fixed=STUDY.split_file or [],  # protocol split_file: its table (edited -> every fold redone)
    output:
        SPLIT_FILE,
    params:
        images=IMAGES,
        data_root=ROOT,
        fold=lambda wc: int(wc.fold),
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/split/{fold}.log",
    shell:
        reported(
            "ageest split --images {params.images:q} --root {params.data_root:q} --fold {params.fold} --out {output:q} "
            "--config {input.config:q} > {log} 2>&1"
        )


for chunk in STUDY.chunks if STUDY.folds_per_job > 1 else [None]:

    rule:
        name:
            "train" if chunk is None else f"train_{sid(chunk[0])}_{sid(chunk[-1])}"
        input:
            split=[SPLIT_FILE.format(fold=sid(f)) for f in chunk] if chunk else SPLIT_FILE,
            manifest=MANIFEST,
            cache=CACHE,
            cache_meta=f"{CACHE}.json",
            config=TRAINING_YAML,
            weights=weights_input(),
        output:
            metrics=fold_files("metrics.json", chunk),
            predictions=fold_files("predictions.tsv", chunk),
            history=fold_files("history.tsv", chunk),
            model=fold_files("model.pt", chunk) if config["keep_models"] else [],
        params:
            images=IMAGES,
            data_root=ROOT,
            # With several folds these hold {fold}, which `ageest train` fills in per fold.
            outdir=lambda wc: fold_path("results/folds", **dict(wc.items())),
            # Resumable state lives outside the outputs: Snakemake deletes a failed job's outputs, and a
            # retried (preempted) fold must find its state to resume.
            state=lambda wc: fold_path("results/state", **dict(wc.items())),
            split=lambda wc: SPLIT_FILE.format(fold=wc.get("fold", "{fold}")),
            torch_threads=lambda wc, threads: STUDY.torch_threads(threads),
            folds=" ".join(str(f) for f in chunk) if chunk else lambda wc: int(wc.fold),
            seed=lambda wc: int(wc.get("seed", SEEDS[0])),
            # torch hub cache the weights rule filled (relative: jobs run in the working directory)
            torch_home=lambda wc, input: os.path.dirname(input.weights) if input.weights else TORCH_HOME,
        threads: STUDY.threads()
        resources:
            **STUDY.train_resources(len(chunk) if chunk else 1),
        conda:
            "../envs/ageest.yaml"
        log:
            fold_path("results/logs/train", fold=f"{sid(chunk[0])}-{sid(chunk[-1])}" if chunk else "{fold}",
                      suffix=".log"),
        benchmark:
            fold_path("results/benchmarks/train",
                      fold=f"{sid(chunk[0])}-{sid(chunk[-1])}" if chunk else "{fold}", suffix=".tsv")
        shell:
            reported(
                "TORCH_HOME={params.torch_home:q} ageest train --images {params.images:q} --root {params.data_root:q} "
                "--fold {params.folds} --loss {wildcards.loss} --out {params.outdir:q} "
                "--config {input.config:q} --cache {input.cache:q} --split {params.split:q} "
                "--state-dir {params.state:q} "
                "--set threads={params.torch_threads} --set seed={params.seed} > {log} 2>&1"
            )


rule baseline:
    # All folds of one reference method in one job: it takes seconds, not a GPU. Same split
    # files, cache and config as the trained folds, so gather treats its folds like any loss's.
    input:
        splits=[SPLIT_FILE.format(fold=sid(f)) for f in FOLDS],
        manifest=MANIFEST,
        cache=CACHE,
        cache_meta=f"{CACHE}.json",
        config=TRAINING_YAML,
    output:
        metrics=[baseline_file("metrics.json", loss="{baseline}", fold=sid(f)) for f in FOLDS],
        predictions=[baseline_file("predictions.tsv", loss="{baseline}", fold=sid(f)) for f in FOLDS],
    params:
        images=IMAGES,
        data_root=ROOT,
        folds=" ".join(str(f) for f in FOLDS),
        split_dir=lambda wc, input: os.path.dirname(input.splits[0]),
        # results/folds: the baseline's own folder is root/{baseline}/NNN
        root=lambda wc, output: os.path.dirname(os.path.dirname(os.path.dirname(output.metrics[0]))),
    localrule: True
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/baseline/{baseline}.log",
    shell:
        reported(
            "ageest baseline --images {params.images:q} --root {params.data_root:q} --method {wildcards.baseline} "
            "--folds {params.folds} --out {params.root:q} --config {input.config:q} "
            "--cache {input.cache:q} --split-dir {params.split_dir:q} > {log} 2>&1"
        )
