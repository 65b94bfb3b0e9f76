"""Snakemake adapter: write the training section of the config as the YAML `ageest --config` reads."""

import yaml

with open(snakemake.output[0], "w") as f:  # noqa: F821
    yaml.safe_dump(dict(snakemake.params.training), f, sort_keys=True)  # noqa: F821
with open(snakemake.log[0], "w") as f:  # noqa: F821
    f.write(f"wrote {snakemake.output[0]}\n")  # noqa: F821
