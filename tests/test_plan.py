"""The study plan (ageest.plan): what the workflow runs, decided from the config alone, and
every config error named by its key. Unit tests: no Snakemake process (tests/test_workflow.py
keeps a few for what only Snakemake shows)."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ageest.errors import ConfigError
from ageest.plan import plan_study
from test_workflow import FAKE, make_fake_fgnet

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
DEMO = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    images, _ = make_fake_fgnet(tmp_path_factory.mktemp("fgnet") / "FGNET")
    return images


def merged(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def plan(base, over=None, cwd=None, **kw):
    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        return plan_study(merged(base, over or {}), ROOT, **kw)
    finally:
        os.chdir(old)


def test_real_study_on_a_given_folder(fake):
    s = plan(CONFIG, {"data": {"images": str(fake)}})
    assert s.losses == ["mean_variance", "softmax"] and s.seeds == [0] and s.folds == sorted(FAKE)
    assert s.data_rule is None and s.sums and s.fold_key == "{loss}/{fold}" and s.gpu
    assert s.chunks == [[s] for s in sorted(FAKE)]  # folds_per_job 1: one job per fold
    assert s.train_resources() == {"mem_mb": 16000, "runtime": 240, "slurm_extra": "--signal=TERM@120", "gpu": 1}
    assert s.training["save_model"] is False and s.weights_arch() == "resnet34"


def test_the_pretrained_studies_fetch_nothing_from_the_hub(fake):
    # Their weights ship in registry packages: no `weights` rule, whatever the ImageNet name.
    for name, arch in (("face-age", "face_age"), ("imagenet-kfold", "efficientnet_lite0")):
        study = yaml.safe_load((ROOT / "config" / f"{name}.yaml").read_text())
        s = plan(study, {"data": {"images": str(fake)}})
        assert s.training["arch"] == arch and s.weights_arch() is None and "zero_shot" in s.baselines


def test_the_papers_setting_plans_vgg16_from_imagenet(fake):
    paper = yaml.safe_load((ROOT / "config" / "paper.yaml").read_text())
    s = plan(paper, {"data": {"images": str(fake)}})
    assert s.training["arch"] == "vgg16" and s.weights_arch() == "vgg16" and s.gpu
    assert s.losses == ["mean_variance", "softmax"] and s.folds == sorted(FAKE)
    assert (s.training["lambda1"], s.training["lambda2"], s.training["image_size"]) == (0.2, 0.05, 224)


def test_default_config_without_data_downloads_and_plans_all_82(tmp_path):
    s = plan(CONFIG, cwd=tmp_path)
    assert s.data_rule == "download" and len(s.folds) == 82


def test_demo_plans_chunks_of_41_and_knows_its_subjects_before_synthesis(tmp_path):
    s = plan(DEMO, cwd=tmp_path)
    assert s.data_rule == "synth" and len(s.folds) == 82 and s.weights_arch() is None and not s.gpu
    assert [len(c) for c in s.chunks] == [41, 41] and s.folds_per_job == 41
    assert s.train_resources(41)["runtime"] == 41 * 30  # train_runtime is per fold
    assert plan(DEMO, cwd=tmp_path, local=False).chunks == [[n] for n in s.folds]  # SLURM: a job per fold


def test_seeds_add_a_level_and_losses_all_is_the_registry(tmp_path):
    from ageest import methods
    from ageest.nn.losses import LOSSES

    assert tuple(LOSSES) == tuple(methods.LOSSES)  # the resolved registry and its torch-free entries
    s = plan(DEMO, {"losses": "all", "seeds": ["0", 2], "subjects": [3, 1]}, cwd=tmp_path)
    assert s.losses == list(LOSSES) and s.seeds == [0, 2] and s.folds == [1, 3]
    assert s.fold_key == "{loss}/seed{seed}/{fold}" and s.config["losses"] == list(LOSSES)


def test_torch_threads_and_the_input_left_unchanged(tmp_path):
    config = merged(DEMO, {"training": {"threads": 0}})
    before = copy.deepcopy(config)
    s = plan_study(config, ROOT)
    assert config == before and s.torch_threads(2) == 2
    assert plan(DEMO, cwd=tmp_path).torch_threads(2) == 1


@pytest.mark.parametrize("override, key", [
    ({"losses": ["mean_variance", "hinge"]}, "losses"),
    ({"training": {"epochs": -1}}, "training.epochs"),
    ({"data": {"images": "no/such/folder/images"}}, "data.images"),
    ({"subjects": [1, 3]}, "subjects"),
    ({"reference_loss": "hinge"}, "reference_loss"),
    ({"compare_with": ["zero_shot"]}, "compare_with"),  # not among config.yaml's baselines
    ({"training": {"pretrained": "faces"}}, "training.pretrained"),  # resnet34 has no face weights
    ({"training": {"epochs": 2, "no_such_key": 1}}, "training.no_such_key"),
    ({"training": {"image_size": 8}}, "training.image_size"),
    ({"seeds": [0, -1]}, "seeds"),
    ({"seeds": [1, 1]}, "seeds"),
    ({"losses": "most"}, "losses"),
    ({"gather": {"bootstrap": 5}}, "gather.bootstrap"),
    # Bounds and names the schema takes from their one source (ageest.study.catalog, ageest.methods):
    ({"gather": {"bootstrap": 2_000_000}}, "gather.bootstrap"),
    ({"gather": {"prediction": "median_age"}}, "gather.prediction"),
    ({"baselines": ["mean", "median"]}, "baselines.1"),
    ({"training": {"save_model": True}}, "training.save_model"),
    ({"training": {"device": "cpu"}, "resources": {"gpu": True}}, "resources.gpu"),
    ({"resources": {"folds_per_job": 0}}, "resources.folds_per_job"),
    ({"data": {"sha256": "no-such.sha256"}}, "data.sha256"),
    # The same fold twice, once the types agree: refused at parse, not by gather after training.
    ({"subjects": [1, "1", 2]}, "subjects"),
    ({"losses": ["mean_variance", "softmax", "mean_variance"]}, "losses"),
    ({"baselines": ["mean", "mean"]}, "baselines"),
    ({"seeds": [0, "0"]}, "seeds"),
    # Non-finite numbers pass `> 0` and would fail every fold at its first step.
    ({"training": {"lr": float("inf")}}, "training.lr"),
    ({"training": {"lambda1": float("nan")}}, "training.lambda1"),
])
def test_bad_config_names_the_key(fake, override, key):
    over = merged({"data": {"images": str(fake)}}, override)
    with pytest.raises(ConfigError) as e:
        plan(CONFIG, over)
    assert ", ".join(e.value.keys) == key, e.value


def test_repeats_and_non_finite_numbers_say_why(fake):
    with pytest.raises(ConfigError, match=r"\[1, 1, 2\] lists 1 more than once"):
        plan(CONFIG, {"data": {"images": str(fake)}, "subjects": [1, "1", 2]})
    with pytest.raises(ConfigError, match="config key 'lr': must be a finite number"):
        plan(CONFIG, {"data": {"images": str(fake)}, "training": {"lr": float("inf")}})


def test_numbers_spelt_like_1e_3_plan_as_numbers(fake):
    # YAML 1.1 (PyYAML, Snakemake's loader) reads 1e-3 as a string: the plan reads it as Config does.
    over = yaml.safe_load("training: {lr: 1e-3, lambda2: 5e-2}")
    assert over["training"]["lr"] == "1e-3"
    s = plan(CONFIG, merged({"data": {"images": str(fake)}}, over))
    assert s.training["lr"] == 0.001 and s.training["lambda2"] == 0.05


def test_missing_subjects_are_named(fake):
    with pytest.raises(ConfigError, match=r"subject\(s\) 3, 4 not in the data") as e:
        plan(CONFIG, {"data": {"images": str(fake)}, "subjects": [1, 3, 4]})
    assert e.value.key == "subjects"


def test_placeholders_of_a_profile():
    from types import SimpleNamespace

    from ageest.plan import placeholders

    settings = SimpleNamespace(default_resources={"slurm_account": "YOUR_ACCOUNT", "mem_mb": 100},
                               overwrite_resources={"train": {"slurm_partition": "'YOUR_GPU_PARTITION'"}})
    assert placeholders(settings) == ["default-resources: slurm_account (YOUR_ACCOUNT)",
                                      "set-resources: train: slurm_partition (YOUR_GPU_PARTITION)"]


@pytest.mark.slow
def test_dry_run_of_the_demo_imports_no_torch(tmp_path):
    # A `torch` that cannot be imported, first on the path: parsing the workflow must not need it.
    fake_torch = tmp_path / "no-torch" / "torch"
    fake_torch.mkdir(parents=True)
    (fake_torch / "__init__.py").write_text("raise ImportError('torch imported while parsing the workflow')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake_torch.parent), str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "--directory",
                        str(tmp_path / "work"), "-n", "--quiet", "rules", "--configfile", str(ROOT / "config" / "demo.yaml")],
                       capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "train_001_041" in r.stdout and "gather" in r.stdout
    assert subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True).returncode != 0


def test_jobs_run_here_unless_a_remote_job_or_a_slurm_profile():
    from types import SimpleNamespace

    from ageest.plan import runs_jobs_here

    def wf(default, per_rule, remote=False):
        return SimpleNamespace(remote_exec=remote, resource_settings=SimpleNamespace(
            default_resources=default, overwrite_resources=per_rule))

    assert runs_jobs_here(wf({"mem_mb": 100}, {}))
    assert not runs_jobs_here(wf({"slurm_account": "x"}, {}))
    assert not runs_jobs_here(wf({}, {"train": {"slurm_partition": "gpu"}}))
    assert not runs_jobs_here(wf({}, {}, remote=True))


def test_names_one_fold_reads_snakemakes_command_line():
    from ageest.plan import names_one_fold

    fold = "results/folds/mean_variance/001/metrics.json"
    assert names_one_fold(["/venv/bin/snakemake", "-F", fold, "--configfile", "config/demo.yaml"])
    assert names_one_fold(["/lib/snakemake/__main__.py", "-n", "./" + fold])
    assert not names_one_fold(["/venv/bin/snakemake", "--cores", "4", "--configfile", "config/demo.yaml"])
    assert not names_one_fold(["/venv/bin/snakemake", "results/tables/folds.tsv"])
    assert not names_one_fold(["/venv/bin/pytest", fold])  # not Snakemake's command line
    assert not names_one_fold([])
