# Every fold -> tidy tables (folds, summary, seeds, comparison, predictions, history) -> plots.

from ageest.rulelog import reported


rule gather:
    localrule: True
    input:
        metrics=all_fold_files("metrics.json"),
        predictions=all_fold_files("predictions.tsv"),
        history=all_fold_files("history.tsv", baselines=False),
    output:
        folds=report("results/tables/folds.tsv", caption="../report/folds.rst", category="Tables"),
        summary=report("results/tables/summary.tsv", caption="../report/summary.rst", category="Tables"),
        seeds=report("results/tables/seeds.tsv", caption="../report/seeds.rst", category="Tables"),
        comparison=report("results/tables/comparison.tsv", caption="../report/comparison.rst",
                          category="Tables"),
        predictions="results/tables/predictions.tsv",
        history="results/tables/history.tsv",
    params:
        outdir=lambda wc, output: os.path.dirname(output.folds),
        reference=config["reference_loss"],
        compare_with="".join(f" --compare-with {m}" for m in config.get("compare_with") or []),
        prediction=config["gather"]["prediction"],
        bootstrap=config["gather"]["bootstrap"],
        seed=config["gather"]["seed"],
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/gather.log",
    shell:
        reported(
            "ageest gather {input.metrics:q} --out {params.outdir:q} --reference {params.reference}{params.compare_with} "
            "--prediction {params.prediction} --bootstrap {params.bootstrap} --seed {params.seed} "
            "> {log} 2>&1"
        )


rule plots:
    localrule: True
    input:
        table_files(),
    output:
        **{p: report(f"results/plots/{p}.png", caption=f"../report/{p}.rst", category="Plots")
           for p in PLOTS},
    params:
        tables=lambda wc, input: os.path.dirname(input[0]),
        outdir=lambda wc, output: os.path.dirname(output[0]),
        reference=config["reference_loss"],
    conda:
        "../envs/ageest.yaml"
    log:
        "results/logs/plots.log",
    shell:
        reported(
            "ageest plots --tables {params.tables:q} --out {params.outdir:q} "
            "--reference {params.reference} > {log} 2>&1"
        )
