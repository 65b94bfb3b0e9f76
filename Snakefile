# ageest: leave-one-person-out (LOPO) evaluation of ResNet age estimation on FG-NET: the config's
# losses (mean-variance vs softmax by default; `losses: all` for every registered one) and the
# mean/ridge baselines, over one or several training seeds. See README.md, docs/ and workflow/README.md.
#
#   snakemake --cores 4 --resources gpu=1 --configfile config/demo.yaml   # synthetic demo, ~4-5 min on 2 cores
#   snakemake --profile profiles/local                      # the real study, one GPU
#   snakemake --profile profiles/slurm                      # the real study on a SLURM cluster

import os

from snakemake.utils import min_version

min_version("9.0")

# snakemake --report: the page opens with what the study is (data, protocol, methods, how to read
# the tables), written from the config; each table and plot has its caption in workflow/report/.
report: "workflow/report/workflow.rst"


# config/config.yaml unless --configfile names another one (which then replaces it, not merges).
if not workflow.overwrite_configfiles:

    configfile: os.path.join(workflow.basedir, "config", "config.yaml")


# What runs (and every config check, naming its key) is decided by ageest.plan, which
# common.smk calls once, before any job is planned.
include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/gather.smk"


rule all:
    input:
        table_files(),
        plot_files(),
    default_target: True
