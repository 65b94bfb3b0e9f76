"""Snakemake adapter: put torchvision's ImageNet weights into the workflow's torch hub cache."""

import os
import sys
from pathlib import Path

sys.stderr = sys.stdout = open(snakemake.log[0], "w")  # noqa: F821
os.environ["TORCH_HOME"] = os.path.abspath(snakemake.params.torch_home)  # noqa: F821

from ageest.nn.model import imagenet_state_dict  # noqa: E402

imagenet_state_dict(snakemake.wildcards.arch)  # noqa: F821
Path(snakemake.output[0]).write_text(f"ImageNet weights for {snakemake.wildcards.arch} cached\n")  # noqa: F821
