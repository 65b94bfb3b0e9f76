"""The Snakemake workflow: lint, planning (dry runs), config checks, the download rule, a real run.

Snakemake runs in a process of its own (tests/pyproc.py) with --directory in a tmp folder, so
results/ in the repository is never touched.
"""

import hashlib
import json
import math
import re
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest
import yaml

import pyproc

pytestmark = pytest.mark.slow  # every test here runs Snakemake

ROOT = Path(__file__).resolve().parents[1]
SNAKEFILE = ROOT / "Snakefile"
CONFIG = ROOT / "config" / "config.yaml"
DEMO = ROOT / "config" / "demo.yaml"
CPU = ROOT / "config" / "cpu.yaml"
ZOO = ROOT / "config" / "zoo-demo.yaml"
KFOLD = ROOT / "config" / "kfold-demo.yaml"

# Subject -> ages; irregular ids, to show the subject list comes from the data, not a constant.
FAKE = {1: [2, 5, 11], 2: [3, 20], 5: [8, 9, 30], 17: [1, 43], 82: [4, 7]}
SUFFIXES = {(1, 5): ["a", "b"]}  # FG-NET's two photos at one age: 001A05a.JPG, 001A05b.JPG


def snakemake(workdir, *args, timeout=900):
    r = pyproc.snakemake(["-s", SNAKEFILE, "--directory", workdir, *args], timeout=timeout)
    return r.returncode, r.stdout + r.stderr


def job_counts(output):
    """{rule: count} from the 'Job stats' table of snakemake's output."""
    block = output.split("Job stats:", 1)[1]
    counts = {}
    for line in block.splitlines()[3:]:
        m = re.fullmatch(r"(\w+)\s+(\d+)", line.strip())
        if not m:
            break
        counts[m.group(1)] = int(m.group(2))
    return counts


def make_fake_fgnet(root):
    """Tiny valid JPEGs (and .pts files) laid out like FG-NET: root/images, root/points."""
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "points").mkdir()
    names = []
    for subject, ages in FAKE.items():
        for age in ages:
            for suffix in SUFFIXES.get((subject, age), [""]):
                name = f"{subject:03d}A{age:02d}{suffix}"
                Image.new("RGB", (24, 32), (subject * 3 % 255, age * 5 % 255, 90)).save(
                    root / "images" / f"{name}.JPG", quality=90)
                pts = ["version: 1", "n_points: 68", "{"] + [f"{i % 24} {i % 32}" for i in range(68)] + ["}"]
                (root / "points" / f"{name.lower()}.pts").write_text("\n".join(pts) + "\n")
                names.append(f"{name}.JPG")
    return root / "images", sorted(names)


def write_sums(images, path):
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}" for p in sorted(images.iterdir())]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_yaml(path, data):
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def fake(tmp_path_factory):
    root = tmp_path_factory.mktemp("fgnet")
    images, names = make_fake_fgnet(root / "FGNET")
    return images, names


def n_fake_subjects():
    return len(FAKE)


def _run_demo(work):
    """The demo for real, for the tests that read a finished study: subjects 1 and 2 x both losses
    + the three baselines, 1 epoch, out of 8 synthetic people (the demo makes 82: the same rules on
    fewer images). One job per fold: a fold's own input then reruns that fold alone (with
    folds_per_job K, its job); one thread a job. A test that changes the study works on a copy
    (copy_study). Returns (folder, the config over the demo's)."""
    over = write_yaml(work.parent / f"{work.name}.yaml", {"subjects": [1, 2], "data": {"synth_subjects": 8},
                                                           "training": {"epochs": 1, "image_size": 32},
                                                           "resources": {"folds_per_job": 1, "train_threads": 1}})
    rc, out = snakemake(work, "--configfile", DEMO, over, "--cores", "2")
    assert rc == 0, out[-5000:]
    return work, over


KFOLD_PEOPLE = 10


def _run_kfold(work):
    """config/kfold-demo.yaml as shipped but for 1 epoch and 10 people (of its 82; 2 a fold): `ageest
    synth --manifest` writes the people under faces/person-NNN/ (no FG-NET names), the study reads
    them through the manifest alone. Returns (folder, exit status, output)."""
    over = write_yaml(work / "over.yaml", {"training": {"epochs": 1}, "data": {"synth_subjects": KFOLD_PEOPLE}})
    return (work, *snakemake(work, "--configfile", KFOLD, over, "--cores", "2"))


@pytest.fixture(scope="module")
def studies(request, tmp_path_factory):
    """The real studies that the selected tests read, run once and side by side: each is mostly one
    process on one core at a time (synthesis, manifest, gather, plots), so two share the machine's
    cores. {fixture name: future of its run}."""
    runs = {"demo_study": _run_demo, "kfold_study": _run_kfold}
    wanted = sorted({name for item in request.session.items for name in runs
                     if name in getattr(item, "fixturenames", ())})
    with ThreadPoolExecutor(2) as pool:
        yield {name: pool.submit(runs[name], tmp_path_factory.mktemp(name)) for name in wanted}


@pytest.fixture(scope="module")
def demo_study(studies):
    return studies["demo_study"].result()


@pytest.fixture(scope="module")
def kfold_study(studies):
    return studies["kfold_study"].result()


def copy_study(study, dest):
    """A copy of a study's folder that Snakemake sees as the same study (time stamps kept)."""
    import shutil

    return shutil.copytree(study, dest, symlinks=True)


# --- lint ------------------------------------------------------------------------------------


@pytest.mark.parametrize("configfile", [CONFIG, DEMO, CPU, ZOO, KFOLD], ids=["config", "demo", "cpu", "zoo-demo", "kfold-demo"])
def test_lint_clean(tmp_path, configfile):
    rc, out = snakemake(tmp_path, "--lint", "--configfile", configfile)
    assert rc == 0, out
    assert "Congratulations, your workflow is in a good condition!" in out, out
    assert "Lints for" not in out, out


# --- planning ---------------------------------------------------------------------------------


def test_a_folds_own_target_plans_that_fold_alone_whatever_folds_per_job(tmp_path):
    # The demo trains 41 folds per job; naming one fold's file plans (and with -F forces) one fold.
    assert yaml.safe_load(DEMO.read_text())["resources"]["folds_per_job"] == 41
    rc, out = snakemake(tmp_path, "-n", "-F", "results/folds/mean_variance/001/metrics.json", "--configfile", DEMO)
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["train"] == 1 and not any(r.startswith("train_") for r in counts), counts
    rc, out = snakemake(tmp_path, "-n", "--configfile", DEMO)  # the whole study keeps its chunks
    assert rc == 0, out
    assert job_counts(out)["train_001_041"] == 2 and "train" not in job_counts(out), out


def test_real_study_plans_one_job_per_loss_and_subject(tmp_path, fake):
    images, _ = fake
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}})
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--dry-run", "--quiet", "rules")
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["train"] == 2 * n_fake_subjects()
    assert counts["gather"] == 1 and counts["plots"] == 1 and counts["prepare"] == 1
    # Images given as a folder: nothing downloaded; checked against the project's sums first.
    assert "download" not in counts and counts["verify_checksums"] == 1
    assert counts["weights"] == 1  # ImageNet weights fetched by a local rule before training


def test_default_config_without_data_downloads_and_plans_all_82(tmp_path):
    # No FG-NET folder: download + unpack, subjects known from the project's checksum list.
    rc, out = snakemake(tmp_path, "--dry-run", "--quiet", "rules")
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["download"] == 1 and counts["unpack"] == 1
    assert counts["train"] == 2 * 82


def test_cpu_study_plans_164_training_and_164_baseline_folds(tmp_path):
    rc, out = snakemake(tmp_path, "--configfile", CPU, "--dry-run")
    assert rc == 0, out
    counts = job_counts(out)
    trained = set(re.findall(r"results/folds/(?:mean_variance|softmax)/(\d{3})/metrics\.json", out))
    # folds_per_job 8: 11 jobs per loss (10 of 8 subjects, one of 2), 164 folds.
    assert len(trained) == 82 and sum(n for r, n in counts.items() if r.startswith("train_")) == 22, counts
    assert counts["baseline"] == 2 and counts["gather"] == 1
    for base in ("mean", "ridge"):  # one job per method, one fold folder per subject
        folds = set(re.findall(rf"results/folds/{base}/(\d{{3}})/metrics\.json", out))
        assert len(folds) == 82, base
    assert "weights" not in counts  # from scratch: nothing to fetch


def test_demo_plans_164_training_folds_in_4_jobs(tmp_path):
    rc, out = snakemake(tmp_path, "--configfile", DEMO, "--dry-run")
    assert rc == 0, out
    counts = job_counts(out)
    # resources.folds_per_job 41: one job per loss and 41 subjects, every fold's outputs declared.
    assert {r: n for r, n in counts.items() if r.startswith("train_")} == {"train_001_041": 2, "train_042_082": 2}
    folds = set(re.findall(r"results/folds/(?:mean_variance|softmax)/\d{3}/metrics\.json", out))
    assert len(folds) == 164 and counts["synth"] == 1 and "verify_checksums" not in counts


def test_a_5_fold_study_plans_5_folds_per_loss_and_seed_plus_the_baselines(tmp_path):
    for over, seeds in (({}, [""]), ({"seeds": [0, 1]}, ["seed0/", "seed1/"])):
        rc, out = snakemake(tmp_path, "--configfile", KFOLD, write_yaml(tmp_path / "over.yaml", over), "--dry-run")
        assert rc == 0, out
        counts = job_counts(out)
        trained = set(re.findall(r"results/folds/((?:mean_variance|softmax)/(?:seed\d/)?\d{3})/metrics\.json", out))
        assert trained == {f"{loss}/{seed}{f:03d}" for loss in ("mean_variance", "softmax") for seed in seeds
                           for f in range(1, 6)}
        assert counts["split"] == 5 and counts["baseline"] == 2 and counts["synth"] == 1
        assert set(re.findall(r"results/folds/(?:mean|ridge)/(\d{3})/metrics\.json", out)) == {f"{f:03d}" for f in range(1, 6)}
    # A single fold still reruns alone.
    one = write_yaml(tmp_path / "one.yaml", {"resources": {**yaml.safe_load(KFOLD.read_text())["resources"], "folds_per_job": 1}})
    rc, out = snakemake(tmp_path, "results/folds/softmax/003/metrics.json", "--configfile", KFOLD, one, "--dry-run")
    assert rc == 0 and job_counts(out).get("train") == 1 and "gather" not in job_counts(out), out


def test_a_split_file_study_plans_the_files_folds_and_reads_it_in_every_split_job(tmp_path, fake):
    images, _ = fake
    table = tmp_path / "benchmark-split.tsv"
    rows = [f"{fold}\t{name}\t{role}" for fold, roles in (("a", ("001A02.JPG", "002A03.JPG", "005A08.JPG")),
                                                          ("b", ("005A08.JPG", "001A02.JPG", "017A01.JPG")))
            for name, role in zip(roles, ("train", "val", "test"))]
    table.write_text("fold\timage\trole\n" + "\n".join(rows) + "\n")
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}, "protocol": {"split_file": str(table)}})
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--dry-run", "-p")
    assert rc == 0, out
    assert job_counts(out)["train"] == 4 and job_counts(out)["split"] == 2
    assert set(re.findall(r"results/folds/softmax/(\d{3})/metrics\.json", out)) == {"001", "002"}
    assert out.count(f"input: results/data/manifest.tsv, results/config/training.yaml, {table}") == 2, out


def test_single_fold_target_plans_exactly_one_training_job(tmp_path, fake):
    images, _ = fake
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}})
    rc, out = snakemake(tmp_path, "results/folds/mean_variance/005/metrics.json",
                        "--configfile", CONFIG, over, "--dry-run", "--quiet", "rules")
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["train"] == 1 and "gather" not in counts and "plots" not in counts


def test_subject_list_restricts_folds(tmp_path, fake):
    images, _ = fake
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}, "subjects": [5, 82]})
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--dry-run", "--quiet", "rules")
    assert rc == 0, out
    assert job_counts(out)["train"] == 4


# --- training seeds ------------------------------------------------------------------------------


def planned(output, rule):
    """[(output paths, shell command)] of each planned job of `rule`, from a `-n -p` listing."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        if re.match(rf"(?:local)?rule {rule}:", block):
            outputs = re.search(r"^\s+output: (.*)$", block, re.M).group(1).split(", ")
            jobs.append((outputs, re.search(r"^Shell command: (.*)$", block, re.M).group(1)))
    return jobs


def test_three_seeds_plan_one_fold_per_loss_seed_and_subject(tmp_path, fake):
    images, _ = fake
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}, "seeds": [0, 1, 2]})
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--dry-run", "--printshellcmds")
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["train"] == 2 * 3 * n_fake_subjects() and counts["baseline"] == 2, counts
    assert counts["split"] == n_fake_subjects(), counts  # one split per subject, shared by the seeds
    trained = set()
    for outputs, shell in planned(out, "train"):
        loss, seed, subject = re.fullmatch(r"results/folds/(\w+)/seed(\d)/(\d{3})/metrics\.json", outputs[0]).groups()
        assert f"--set seed={seed} " in shell and f"--split results/splits/{subject}.tsv" in shell, shell
        assert f"results/logs/train/{loss}/seed{seed}/{subject}.log" in shell, shell
        assert f"--state-dir results/state/{loss}/seed{seed}/{subject}" in shell, shell
        trained.add((loss, int(seed), int(subject)))
    assert trained == {(loss, seed, s) for loss in ("mean_variance", "softmax") for seed in (0, 1, 2) for s in FAKE}
    # The baselines are deterministic: one run each, in the folder a one-seed study has.
    (ridge,) = [o for o, _ in planned(out, "baseline") if "/ridge/" in o[0]]
    assert [o for o in ridge if o.endswith("metrics.json")] == [f"results/folds/ridge/{s:03d}/metrics.json"
                                                                for s in sorted(FAKE)]


def test_one_seed_keeps_the_fold_folders(tmp_path, fake):
    # `seeds: [4]`, one seed: the folders of a study without `seeds`, trained with seed 4.
    images, _ = fake
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images)}, "seeds": [4]})
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--dry-run", "--printshellcmds")
    assert rc == 0, out
    jobs = planned(out, "train")
    assert len(jobs) == 2 * n_fake_subjects()
    for outputs, shell in jobs:
        assert re.fullmatch(r"results/folds/(mean_variance|softmax)/\d{3}/metrics\.json", outputs[0]), outputs
        assert "--set seed=4 " in shell, shell


def test_zoo_demo_plans_every_loss_times_two_seeds(tmp_path):
    from ageest.nn.losses import LOSSES

    zoo = yaml.safe_load(ZOO.read_text())
    assert zoo["losses"] == "all" and len(zoo["seeds"]) == 2 and zoo["data"]["source"] == "synthetic"
    rc, out = snakemake(tmp_path, "--configfile", ZOO, "--dry-run", "--quiet", "rules")
    assert rc == 0, out
    counts = job_counts(out)
    # folds_per_job 3: one job per loss and seed trains its 3 subjects.
    assert counts["train_001_003"] == len(LOSSES) * 2 and zoo["resources"]["folds_per_job"] == 3, counts
    assert counts["baseline"] == 2 and counts["gather"] == 1 and counts["plots"] == 1, counts
    # The zoo over another protocol and backbone: 3 subject-disjoint folds, VGG-16.
    over = write_yaml(tmp_path / "over.yaml", {"protocol": {"kfold": 3}, "subjects": "all",
                                               "training": {**zoo["training"], "arch": "vgg16"}})
    rc, out = snakemake(tmp_path, "--configfile", ZOO, over, "--dry-run", "-p")
    assert rc == 0, out
    assert job_counts(out)["train_001_003"] == len(LOSSES) * 2, out
    trained = set(re.findall(r"results/folds/(\w+)/seed\d/(\d{3})/metrics\.json", out))
    assert trained == {(loss, f"{f:03d}") for loss in LOSSES for f in (1, 2, 3)}


def test_two_seeds_train_apart_on_one_split(demo_study, tmp_path):
    # A real run of one subject's softmax folds with two seeds: each trains with its own seed on the
    # same validation people, and their predictions differ. In a copy of the demo study: its data,
    # cache and split of subject 1 are this study's, so only the two folds run.
    work = copy_study(demo_study[0], tmp_path / "study")
    over = write_yaml(tmp_path / "over.yaml", {"subjects": [1], "seeds": [0, 1], "baselines": [], "compare_with": [],
                                               "data": {"synth_subjects": 8}, "training": {"epochs": 1},
                                               "resources": {"train_threads": 1}})
    targets = [f"results/folds/softmax/seed{n}/001/metrics.json" for n in (0, 1)]
    rc, out = snakemake(work, *targets, "--configfile", DEMO, over, "--cores", "2")
    assert rc == 0, out[-5000:]
    folds = [work / t for t in targets]
    m0, m1 = (json.loads(f.read_text()) for f in folds)
    assert (m0["config"]["seed"], m1["config"]["seed"]) == (0, 1)
    assert m0["split_digest"] == m1["split_digest"]
    p0, p1 = (pd.read_csv(f.parent / "predictions.tsv", sep="\t") for f in folds)
    assert list(p0["image"]) == list(p1["image"]) and not p0["predicted_age"].equals(p1["predicted_age"])


# --- profiles: each plans the demo study (the SLURM one through its executor plugin) -------------


def job_resources(output, rule):
    """[{resource: value}] of each planned job of `rule`, from a dry run's job listing."""
    found = []
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", output):
        if re.match(rf"(?:local)?rule {rule}:", block):
            line = re.search(r"^\s+resources: (.*)$", block, re.M).group(1)
            found.append(dict(kv.split("=", 1) for kv in line.split(", ")))
    return found


@pytest.mark.parametrize("profile", ["local", "slurm"])
def test_profile_dry_run(tmp_path, profile):
    path = ROOT / "profiles" / profile
    rc, out = snakemake(tmp_path, "--profile", path, "--configfile", DEMO, "--config", "subjects=[1,2]",
                        "--dry-run")
    assert rc == 0, out
    assert f"Using profile {path}" in out, out
    counts = job_counts(out)
    assert counts["split"] == 2 and counts["gather"] == 1, counts
    if profile == "slurm":
        # Under SLURM every fold is its own job, whatever the demo's folds_per_job.
        assert counts["train"] == 4, counts
        train = job_resources(out, "train")
        assert len(train) == 4  # only with snakemake-executor-plugin-slurm installed (the test extra)
        # Threads, memory and time limit come from the study config (the demo: CPU, 30 min,
        # 2000 MB), the partition and account from the profile, the SIGTERM warning from the rule.
        for r in train:
            assert (r["slurm_partition"], r["runtime"], r["mem_mb"]) == ("YOUR_GPU_PARTITION", "30", "2000"), r
            assert "gpu" not in r, r  # the demo trains on CPU: no GPU asked for
            assert r["slurm_extra"] == "--signal=TERM@120" and r["slurm_account"] == "YOUR_ACCOUNT", r
        (prepare,) = job_resources(out, "prepare")
        assert (prepare["slurm_partition"], prepare["mem_mb"]) == ("YOUR_CPU_PARTITION", "2000"), prepare
    else:  # locally the demo's folds_per_job trains both subjects of a loss in one job
        assert counts["train_001_002"] == 2, counts
        assert all("slurm_partition" not in r for r in job_resources(out, "train_001_002"))


# --- config checks: stop before any job, naming the key (every case: tests/test_plan.py) ---------


@pytest.mark.parametrize("override, key", [
    ({"training": {"epochs": -1}}, "training.epochs"),
    ({"gather": {"bootstrap": 5}}, "gather.bootstrap"),
])
def test_bad_config_stops_before_any_job(tmp_path, fake, override, key):
    images, _ = fake
    data = {"data": {"images": str(images)}, **override}
    if "data" in override:
        data["data"] = override["data"]
    over = write_yaml(tmp_path / "over.yaml", data)
    rc, out = snakemake(tmp_path, "--configfile", CONFIG, over, "--cores", "1")
    assert rc != 0
    assert f"config error: {key}: " in out, out  # one line naming the key, from the workflow's own check
    assert "Traceback" not in out, out
    assert not (tmp_path / "results").exists()  # nothing ran


# --- download rule and checksum verification --------------------------------------------------


def test_download_unpack_verify(tmp_path, fake):
    images, names = fake
    archive = tmp_path / "FGNET.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for p in sorted(images.parent.rglob("*")):
            if p.is_file():
                z.write(p, Path("FGNET") / p.relative_to(images.parent))
    sums = write_sums(images, tmp_path / "sums.sha256")
    work = tmp_path / "work"
    work.mkdir()
    over = write_yaml(tmp_path / "over.yaml", {"data": {"url": archive.as_uri(), "sha256": str(sums)}})
    rc, out = snakemake(work, "results/data/manifest.tsv", "--configfile", CONFIG, over, "--cores", "1")
    assert rc == 0, out
    assert sorted(p.name for p in (work / "resources" / "FGNET" / "images").iterdir()) == names
    assert (work / "resources" / "FGNET" / "points").is_dir()
    assert not (work / "resources" / "FGNET.zip").exists()  # temporary: removed once unpacked
    manifest = pd.read_csv(work / "results" / "data" / "manifest.tsv", sep="\t")
    assert list(manifest.columns) == ["image", "subject", "age"] and len(manifest) == len(names)
    assert sorted(manifest["subject"].unique()) == sorted(FAKE)

    # Unpacked once: nothing to do on a second run, although the archive is gone.
    rc, out = snakemake(work, "results/data/manifest.tsv", "--configfile", CONFIG, over, "-n")
    assert rc == 0 and "Nothing to be done" in out, out

    # Every image is verified file by file: missing, extra and altered ones are named.
    got = work / "resources" / "FGNET" / "images"
    (got / "002A20.JPG").unlink()  # missing
    (got / "005A09.JPG").write_bytes((got / "005A08.JPG").read_bytes())  # altered
    (got / "017A50.JPG").write_bytes((got / "017A43.JPG").read_bytes())  # extra
    (work / "results" / "data" / "checksums.ok").unlink()
    rc, out = snakemake(work, "results/data/checksums.ok", "--configfile", CONFIG, over, "--cores", "1")
    assert rc != 0
    assert "missing (1): 002A20.JPG" in out and "extra (1): 017A50.JPG" in out
    assert "altered (1): 005A09.JPG" in out, out
    assert "Rule: download" not in out and "rule download" not in out


def test_data_rule_failures_show_their_line_on_the_console(tmp_path, fake):
    """A truncated JPEG (manifest, a shell rule) and a broken archive (unpack, a script rule): the
    error line itself in Snakemake's output, under the rule's report, not only in the log."""
    import shutil

    root = shutil.copytree(fake[0].parent, tmp_path / "FGNET")
    victim = root / "images" / "005A09.JPG"
    victim.write_bytes(victim.read_bytes()[:100])
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(root / "images"), "sha256": None}})
    rc, out = snakemake(tmp_path / "w1", "results/data/manifest.tsv", "--configfile", CONFIG, over, "--cores", "1")
    report = "ageest manifest failed (exit 2); the end of results/logs/data/manifest.log:\n"
    assert rc != 0 and report + f"ageest manifest: error: {victim}: cannot decode image" in out, out

    (tmp_path / "FGNET.zip").write_bytes(b"PK not really a zip")
    sums = write_sums(fake[0], tmp_path / "sums.sha256")  # the subjects, known before the download
    over = write_yaml(tmp_path / "over2.yaml", {"data": {"url": (tmp_path / "FGNET.zip").as_uri(), "sha256": str(sums)}})
    rc, out = snakemake(tmp_path / "w2", "results/data/manifest.tsv", "--configfile", CONFIG, over, "--cores", "1")
    assert rc != 0 and "rule unpack failed (exit 1); the end of results/logs/data/unpack.log:" in out, out
    assert "zipfile.BadZipFile: File is not a zip file" in out, out


def test_a_file_name_that_is_not_utf8_is_shown_escaped(tmp_path, fake):
    """Snakemake's logger refuses lone surrogates (UnicodeEncodeError): the name comes escaped."""
    import os
    import shutil

    root = shutil.copytree(fake[0].parent, tmp_path / "FGNET")
    shutil.copy(root / "images" / "001A02.JPG", os.fsdecode(bytes(root / "images") + b"/00\xff1A03.JPG"))
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(root / "images"), "sha256": None}})
    rc, out = snakemake(tmp_path / "w", "--configfile", CONFIG, over, "--cores", "1")
    assert rc != 0 and "config error: data.images: " in out, out
    assert "00\\xff1A03.JPG: not an FG-NET image name" in out, out
    assert "UnicodeEncodeError" not in out and "Logging error" not in out, out


def test_edited_landmark_file_rebuilds_the_cache_and_reruns_the_folds(tmp_path, fake):
    import shutil

    root = shutil.copytree(fake[0].parent, tmp_path / "FGNET")
    images, victim = root / "images", root / "points" / "005a09.pts"
    # The project's list format: images by name, landmark files as ../points/NAME.
    sums = tmp_path / "sums.sha256"
    sums.write_text("".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n"
                            for p in sorted(images.iterdir()))
                    + "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  ../points/{p.name}\n"
                              for p in sorted((root / "points").iterdir())))
    work = tmp_path / "work"
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images), "sha256": None},
                                               "training": {"image_size": 32}})
    rc, out = snakemake(work, "results/data/cache.npy", "--configfile", CONFIG, over, "--cores", "1")
    assert rc == 0, out
    rc, out = snakemake(work, "--configfile", CONFIG, over, "-n", "--quiet", "rules")
    assert rc == 0 and "prepare" not in job_counts(out) and job_counts(out)["train"] == 10, out

    text = victim.read_text()
    victim.write_text(text.replace("\n3 27\n", "\n3.5 27\n"))  # point 27 (an eye) moved half a pixel
    assert victim.read_text() != text
    rc, out = snakemake(work, "--configfile", CONFIG, over, "-n")
    assert rc == 0, out
    counts = job_counts(out)
    assert counts["prepare"] == 1 and counts["train"] == 10, counts  # cache rebuilt, every fold rerun
    assert "manifest" not in counts, counts  # the landmarks are not in the image list
    assert "Params have changed since last execution" in out, out

    # Against a list that covers the landmark files, verification names the edited one.
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(images), "sha256": str(sums)},
                                               "training": {"image_size": 32}})
    rc, out = snakemake(work, "results/data/checksums.ok", "--configfile", CONFIG, over, "--cores", "1")
    assert rc != 0 and "altered (1): ../points/005a09.pts" in out, out


def test_failed_fold_shows_its_error_and_leaves_no_output(tmp_path, fake):
    """A fold that fails for good: its error in Snakemake's own output (on SLURM: in the job's log,
    tests/cluster/slurm_e2e.sh test d), not only in the fold's log; no partial fold left behind."""
    import os
    import shutil

    root = shutil.copytree(fake[0].parent, tmp_path / "FGNET")
    work = tmp_path / "work"
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(root / "images"), "sha256": None},
                                               "training": {"image_size": 32, "epochs": 1},
                                               "resources": {"folds_per_job": 1}})
    rc, out = snakemake(work, "results/data/cache.npy", "--configfile", CPU, over, "--cores", "1")
    assert rc == 0, out
    # The cache's record of its data altered behind Snakemake's back (an edited image now reruns
    # the cache itself: test_an_image_edited_in_place_reruns_the_cache_and_the_folds).
    meta = work / "results" / "data" / "cache.npy.json"
    stamp = meta.stat().st_mtime
    meta.write_text(meta.read_text().replace('"fingerprint": "', '"fingerprint": "0', 1))
    os.utime(meta, (stamp, stamp))
    rc, out = snakemake(work, "results/folds/softmax/001/metrics.json", "--configfile", CPU, over, "--cores", "1")
    err = "was built for other data or settings (differs in: fingerprint)"
    assert rc != 0 and "ageest train failed (exit 2); the end of results/logs/train/softmax/001.log:" in out, out
    assert err in out and err in (work / "results/logs/train/softmax/001.log").read_text(), out
    assert not (work / "results" / "folds").exists() or not any((work / "results" / "folds").rglob("*.*"))


# --- a real run of the demo ------------------------------------------------------------------


def test_demo_real_run_two_subjects(demo_study, tmp_path):
    work, over = demo_study
    res = work / "results"
    for loss in ("mean_variance", "softmax"):
        for s in ("001", "002"):
            m = json.loads((res / "folds" / loss / s / "metrics.json").read_text())
            assert m["loss"] == loss and m["subject"] == int(s) and m["config"]["epochs"] == 1
            assert not (res / "folds" / loss / s / "model.pt").exists()  # keep_models: false
            assert (res / "logs" / "train" / loss / f"{s}.log").is_file()
            assert (res / "benchmarks" / "train" / loss / f"{s}.tsv").is_file()
    assert not (res / "folds" / "softmax" / "003").exists()
    # The baselines ran on exactly each fold's split, and left a trained fold's files.
    for base in ("mean", "ridge", "zero_shot"):
        for s in ("001", "002"):
            b = json.loads((res / "folds" / base / s / "metrics.json").read_text())
            trained = json.loads((res / "folds" / "softmax" / s / "metrics.json").read_text())
            assert b["loss"] == base and b["split_digest"] == trained["split_digest"]
            assert (res / "folds" / base / s / "predictions.tsv").is_file()
        assert (res / "logs" / "baseline" / f"{base}.log").is_file()

    t = {n: pd.read_csv(res / "tables" / f"{n}.tsv", sep="\t")
         for n in ("folds", "summary", "comparison", "predictions", "history")}
    assert list(t["folds"].columns) == ["loss", "subject", "n_test", "mae", "best_epoch", "val_mae", "seconds", "skipped",
                                        "protocol"]
    assert all((df["protocol"] == "lopo").all() for df in t.values())
    assert len(t["folds"]) == 10
    s = t["summary"]
    assert sorted(s["loss"]) == ["mean", "mean_variance", "ridge", "softmax", "zero_shot"]
    cols = ["loss", "n_subjects", "images", "mae", "mae_rounded", "subject_mae_mean", "subject_mae_sd"] + [
        f"cs_{i}" for i in range(11)]
    assert list(s.columns[:len(cols)]) == cols
    bands = [c for c in s.columns if re.fullmatch(r"mae_\d\d_\d\d", c)]
    assert bands and all(f"n_{b[4:]}" in s.columns for b in bands)
    c = t["comparison"]
    # Against softmax, then against zero_shot (softmax's pair with it is already there, the other way).
    assert list(c["loss"]) == ["mean_variance", "mean", "ridge", "zero_shot", "mean_variance", "mean", "ridge"]
    assert list(c["reference"]) == ["softmax"] * 4 + ["zero_shot"] * 3
    for col in ("image_mae_diff", "image_clustered_ci_low", "image_clustered_ci_high", "image_clustered_p",
                "subject_mae_diff", "subject_wilcoxon_p", "subject_ci_low", "subject_ci_high",
                "subjects_improved", "subjects_worse", "subjects_tied"):
        assert col in c.columns
    assert "image_wilcoxon_p" not in c.columns
    for name, df in t.items():
        if "loss" in df.columns and name in ("folds", "predictions"):
            # Baselines have no epochs and no predicted spread: NaN there by design.
            base = df["loss"].isin(["mean", "ridge", "zero_shot"])
            assert df.loc[base, ["best_epoch" if name == "folds" else "predicted_std"]].isna().all().all()
            df = df.drop(columns=["best_epoch" if name == "folds" else "predicted_std"])
        if name == "summary":  # one training seed: no sd over seeds, NaN by design
            assert df["mae_seed_sd"].isna().all() and (df["n_seeds"] == 1).all()
            df = df.drop(columns="mae_seed_sd")
        num = df.select_dtypes("number")
        if name == "history":  # softmax has no mean/variance terms: NaN there by design
            num = num[["epoch", "train_loss", "val_mae"]]
        assert all(math.isfinite(v) for v in num.to_numpy().ravel()), name
    assert len(t["predictions"]) == t["folds"]["n_test"].sum()
    assert {"loss", "subject", "epoch", "val_mae"} <= set(t["history"].columns)

    for p in ("subject_mae_paired", "cs_curves", "predicted_vs_true", "mae_by_age_band", "training_curves"):
        png = res / "plots" / f"{p}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10000, p
    for log in ("gather", "plots"):
        assert (res / "logs" / f"{log}.log").is_file()

    # Everything done: nothing left to do; the report builds.
    rc, out = snakemake(work, "--configfile", DEMO, over, "-n")
    assert rc == 0 and "Nothing to be done" in out, out
    rc, out = snakemake(work, "--configfile", DEMO, over, "--report", tmp_path / "report.html")
    assert rc == 0 and (tmp_path / "report.html").stat().st_size > 10000, out


def test_demo_split_edit_reruns_that_subjects_folds_only(demo_study, tmp_path):
    # Changing one fold's own input (its split file) reruns that subject's folds and the gather only.
    # (A bare touch is not enough: Snakemake 9 sees that a small file's checksum is unchanged.)
    work, over = demo_study
    work = copy_study(work, tmp_path / "study")
    rc, out = snakemake(work, "--configfile", DEMO, over, "-n")
    assert rc == 0 and "Nothing to be done" in out, out  # the copy is the same finished study
    res = work / "results"
    split = res / "splits" / "002.tsv"
    assert split.read_text().splitlines()[0] == "image\tsubject\tage\trole"
    split.write_text(split.read_text() + "\n")  # a trailing blank line: same split, new content
    rc, out = snakemake(work, "--configfile", DEMO, over, "-n")
    counts = job_counts(out)
    # The baselines rerun too: one job per method covers every subject, in seconds.
    assert rc == 0 and counts["train"] == 2 and counts["baseline"] == 3 and counts["gather"] == 1, out
    assert not {"split", "prepare", "manifest"} & set(counts), counts
    trained = re.findall(r"output: results/folds/(?:mean_variance|softmax)/(\d{3})/metrics\.json", out)
    assert set(trained) == {"002"}, out


def test_kfold_demo_runs_a_manifest_under_another_layout_into_tables_and_plots(kfold_study):
    work, rc, out = kfold_study
    people = KFOLD_PEOPLE
    assert rc == 0, out[-5000:]
    data = work / "resources" / "synth-manifest"
    assert not list(data.rglob("*.JPG")) and len(list((data / "faces").glob("person-*"))) == people
    res = work / "results"
    t = {n: pd.read_csv(res / "tables" / f"{n}.tsv", sep="\t") for n in ("folds", "summary", "predictions", "comparison")}
    assert sorted(t["folds"]["fold"].unique()) == [1, 2, 3, 4, 5] and len(t["folds"]) == 20  # 2 losses + 2 baselines
    p = t["predictions"]
    n_images = len((data / "faces.tsv").read_text().splitlines()) - 1
    for loss, d in p.groupby("loss"):  # every image scored exactly once per method; a person in one fold
        assert len(d) == n_images and d["image"].is_unique and (d.groupby("subject")["fold"].nunique() == 1).all()
    assert p["image"].str.startswith("faces/person-").all() and (p["person"] == p["subject"].map("person-{:03d}".format)).all()
    s = t["summary"].set_index("loss")
    assert (s["n_subjects"] == people).all() and (s["images"] == n_images).all() and (s["protocol"] == "kfold:5").all()
    assert t["comparison"]["n_subjects"].eq(people).all()
    for name in ("ranking", "subject_mae_paired", "cs_curves", "training_curves"):
        assert (res / "plots" / f"{name}.png").stat().st_size > 10000


def test_an_image_edited_in_place_reruns_the_cache_and_the_folds(tmp_path, fake):
    """Content decides what is stale: a same-size edit with the old time stamp reruns the checks'
    successors, the cache and every fold; one photo copied under another person stops the plan."""
    import os
    import shutil

    root = shutil.copytree(fake[0].parent, tmp_path / "FGNET")
    work = tmp_path / "work"
    over = write_yaml(tmp_path / "over.yaml", {"data": {"images": str(root / "images"), "sha256": None},
                                               "training": {"image_size": 32, "epochs": 1}})
    rc, out = snakemake(work, "results/data/cache.npy", "--configfile", CPU, over, "--cores", "1")
    assert rc == 0, out
    rc, out = snakemake(work, "results/data/cache.npy", "--configfile", CPU, over, "-n")
    assert rc == 0 and "Nothing to be done" in out, out
    victim = root / "images" / "005A09.JPG"
    data, stat = bytearray(victim.read_bytes()), victim.stat()
    data[-3] ^= 0xFF  # one byte of the picture: same name, same size
    victim.write_bytes(bytes(data))
    os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rc, out = snakemake(work, "results/folds/softmax/001/metrics.json", "--configfile", CPU, over, "-n")
    assert rc == 0 and "prepare" in job_counts(out) and any(r.startswith("train") for r in job_counts(out)), out
    assert "params" in out.lower(), out
    # One photo under two people: the plan stops with one line naming both.
    shutil.copy2(root / "images" / "001A02.JPG", root / "images" / "005A31.JPG")
    rc, out = snakemake(work, "-n", "--configfile", CPU, over)
    assert rc != 0 and "005A31.JPG (subject 5) is the same file as" in out and "001A02.JPG (subject 1)" in out, out
