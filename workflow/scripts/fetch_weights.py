"""Snakemake adapter: put torchvision's ImageNet weights into the workflow's torch hub cache."""

import os
from pathlib import Path

from ageest.rulelog import logged_script

with logged_script(snakemake.log[0], "rule weights"):  # noqa: F821
    os.environ["TORCH_HOME"] = os.path.abspath(snakemake.params.torch_home)  # noqa: F821

    from ageest.nn.model import imagenet_state_dict

    imagenet_state_dict(snakemake.wildcards.arch)  # noqa: F821
    Path(snakemake.output[0]).write_text(f"ImageNet weights for {snakemake.wildcards.arch} cached\n")  # noqa: F821
