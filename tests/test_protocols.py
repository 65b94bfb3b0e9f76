"""Protocols: lopo, subject-disjoint k-fold (balanced in images and age), fixed split files,
image-level folds for data without people; how plan, split and gather take them."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ageest.config import from_dict
from ageest.data.fgnet import scan_images
from ageest.data.records import Record
from ageest.data.records import image_level
from ageest.data.protocols import (kfold_assignment, parse_protocol, read_split_table,
                                   split_file_folds)
from ageest.data.splits import read_fold_split, split_fold, fold_split_tsv
from ageest.errors import ConfigError, DataError
from conftest import write_blobs


def people(counts: dict[int, list[int]]) -> list[Record]:
    """Records of person -> ages (one FG-NET-named file each)."""
    return [Record(Path(f"{s:03d}A{a:02d}.JPG"), s, a) for s, ages in counts.items() for a in ages]


# 30 people, 1 to 9 images each, of young and old people: uneven, as real data is.
RNG = np.random.default_rng(5)
UNEVEN = people({s: sorted(RNG.choice(70, int(RNG.integers(1, 10)), replace=False).tolist()) for s in range(1, 31)})


def test_protocol_strings_parse_or_say_what_is_wrong():
    assert str(parse_protocol("lopo")) == "lopo" and parse_protocol("kfold:5").k == 5
    assert parse_protocol("split_file:a/b.tsv").path == "a/b.tsv"
    for bad, why in (("kfold:1", "K >= 2"), ("kfold:x", "K >= 2"), ("loo", "lopo, kfold:K or split_file"),
                     ("split_file:", "lopo, kfold:K or split_file")):
        with pytest.raises(ValueError, match=why):
            parse_protocol(bad)
    with pytest.raises(ConfigError, match="kfold needs a number of folds") as e:
        from_dict({"protocol": "kfold:0"})
    assert e.value.keys == ("protocol",)


def test_kfold_puts_each_person_in_one_fold_balanced_in_images_and_age():
    of = kfold_assignment(UNEVEN, 5, seed=0)
    assert set(of) == {r.subject for r in UNEVEN} and set(of.values()) == {1, 2, 3, 4, 5}
    assert Counter(of.values()) == Counter({f: 6 for f in range(1, 6)})  # one person per age stratum each
    images = Counter(of[r.subject] for r in UNEVEN)
    assert max(images.values()) - min(images.values()) <= 9  # within one person's images (at most 9)
    # Over 20 seeds, the folds' spread (max - min) of mean person age and of image count is well
    # below that of random assignments of 6 people per fold (median 9.8 years and 14 images here).
    age = np.array([np.mean([r.age for r in UNEVEN if r.subject == s]) for s in range(1, 31)])
    n = np.array([sum(r.subject == s for r in UNEVEN) for s in range(1, 31)])
    spread = lambda fold_of: (np.ptp([age[fold_of == f].mean() for f in range(1, 6)]),  # noqa: E731
                              np.ptp([n[fold_of == f].sum() for f in range(1, 6)]))
    random = np.median([spread(np.random.default_rng(i).permutation(np.repeat(np.arange(1, 6), 6)))
                        for i in range(200)], axis=0)
    ours = np.median([spread(np.array([kfold_assignment(UNEVEN, 5, seed)[s] for s in range(1, 31)]))
                      for seed in range(20)], axis=0)
    assert (ours < 0.7 * random).all(), (ours, random)


def test_kfold_is_a_pure_function_of_records_k_and_seed():
    a = kfold_assignment(UNEVEN, 5, seed=0)
    assert kfold_assignment(list(reversed(UNEVEN)), 5, seed=0) == a
    assert kfold_assignment(UNEVEN, 5, seed=1) != a
    assert kfold_assignment(UNEVEN, 3, seed=0) != a
    with pytest.raises(DataError, match="kfold:31 needs at least 31 people; the data has 30"):
        kfold_assignment(UNEVEN, 31, seed=0)


@pytest.mark.parametrize("by", ["subject", "image"])
def test_kfold_splits_test_each_image_once_and_validate_on_other_people(by):
    tested = []
    for fold in parse_protocol("kfold:5").fold_ids(UNEVEN):
        sp = split_fold(UNEVEN, fold, seed=2, val_rate=0.2, by=by, protocol="kfold:5")
        tested += sp.test
        test_people = {UNEVEN[i].subject for i in sp.test}
        assert test_people.isdisjoint(UNEVEN[i].subject for i in sp.train + sp.val)
        assert sorted(sp.train + sp.val + sp.test) == list(range(len(UNEVEN)))
        if by == "subject":
            assert {UNEVEN[i].subject for i in sp.val}.isdisjoint(UNEVEN[i].subject for i in sp.train)
        # The split file written from it reads back as the same split, under the same protocol.
        assert split_fold(UNEVEN, fold, seed=2, val_rate=0.2, by=by, protocol="kfold:5") == sp
    assert sorted(tested) == list(range(len(UNEVEN)))


def test_lopo_is_unchanged_by_the_protocol_argument(tmp_path):
    records = scan_images(write_blobs(tmp_path, subjects=12, per_subject=5))
    for s in (1, 7):
        assert split_fold(records, s, seed=3) == split_fold(records, s, seed=3, protocol="lopo")
    f = tmp_path / "007.tsv"
    f.write_text(fold_split_tsv(records, split_fold(records, 3, seed=3)))
    with pytest.raises(DataError, match="not exactly those of subject 7"):
        read_fold_split(f, records, 7)


def test_a_split_file_that_lets_test_people_into_training_is_refused(tmp_path):
    sp = split_fold(UNEVEN, 2, seed=0, protocol="kfold:5")
    text = fold_split_tsv(UNEVEN, sp)
    moved = UNEVEN[sp.test[0]].name
    f = tmp_path / "002.tsv"
    f.write_text("".join(line.replace("\ttest", "\ttrain") if line.startswith(moved) else line
                         for line in text.splitlines(keepends=True)))
    with pytest.raises(DataError, match="people of the test images are also in train"):
        read_fold_split(f, UNEVEN, 2, "kfold:5")


def write_split(path: Path, *rows: str, header="fold\timage\trole") -> Path:
    path.write_text("\n".join([header, *rows]) + "\n")
    return path


FIXED = ["a\t001A02.JPG\ttrain", "a\t002A05.JPG\tval", "a\t003A08.JPG\ttest", "a\t003A12.JPG\ttest",
         "b\t003A08.JPG\ttrain", "b\t001A02.JPG\tval", "b\t002A05.JPG\ttest"]
FIXED_RECORDS = people({1: [2], 2: [5], 3: [8, 12]})


def test_a_split_file_gives_its_folds_and_roles(tmp_path):
    f = write_split(tmp_path / "fixed.tsv", *FIXED)
    assert split_file_folds(f) == [1, 2] and parse_protocol(f"split_file:{f}").fold_ids(FIXED_RECORDS) == [1, 2]
    name = lambda idx: [FIXED_RECORDS[i].name for i in idx]  # noqa: E731
    sp = split_fold(FIXED_RECORDS, 1, protocol=f"split_file:{f}")
    assert (name(sp.train), name(sp.val), name(sp.test)) == (["001A02.JPG"], ["002A05.JPG"], ["003A08.JPG", "003A12.JPG"])
    sp = split_fold(FIXED_RECORDS, 2, protocol=f"split_file:{f}")  # fold b does not use 003A12
    assert (name(sp.train), name(sp.val), name(sp.test)) == (["003A08.JPG"], ["001A02.JPG"], ["002A05.JPG"])
    numbered = write_split(tmp_path / "n.tsv", *(r.replace("a\t", "0\t", 1).replace("b\t", "4\t", 1) for r in FIXED))
    assert split_file_folds(numbered) == [0, 4]


@pytest.mark.parametrize("rows, header, message", [
    (FIXED, "fold\timage", r"row 1 \(header\): no 'role' column"),
    (["a\t009A01.JPG\ttest", *FIXED[1:]], None, r"row 2, column image: '009A01.JPG' is not an image of the data"),
    (["a\t001A02.JPG\ttesting", *FIXED[1:]], None, r"row 2, column role: 'testing' is not train, val or test"),
    ([*FIXED, "a\t001A02.JPG\tval"], None, r"row 9, column image: 001A02.JPG is also row 2 of fold a"),
    ([r for r in FIXED if r != "b\t001A02.JPG\tval"], None, "fold 2 has no val images"),
    ([*FIXED[:2], "a\t003A12.JPG\tval", FIXED[2], *FIXED[4:]], None,
     r"fold 1 validates on 1 person\(s\) it also tests on \(e.g. subject 3\)"),
    # A person in train and in test (or val) of one fold: the row of the later role, and the other.
    ([*FIXED[:2], "a\t003A12.JPG\ttrain", FIXED[2], *FIXED[4:]], None,
     r"bad.tsv, row 5: fold 1 has subject 3 in test and in train \(row 4; 1 such person\(s\)\)"),
    ([*FIXED[:4], "b\t003A08.JPG\ttrain", "b\t003A12.JPG\tval", "b\t002A05.JPG\ttest"], None,
     r"bad.tsv, row 7: fold 2 has subject 3 in val and in train \(row 6; 1 such person\(s\)\)"),
])
def test_each_bad_split_file_is_one_line_naming_row_and_column(tmp_path, rows, header, message):
    f = write_split(tmp_path / "bad.tsv", *rows, **({"header": header} if header else {}))
    with pytest.raises(DataError, match=message) as e:
        read_split_table(f, FIXED_RECORDS)
    assert "\n" not in str(e.value)


def test_a_manifest_without_people_makes_each_image_its_own_person(tmp_path):
    from PIL import Image

    from ageest.data.manifest import read_manifest

    for name in ("b.png", "a.png", "c.png"):
        Image.new("RGB", (20, 20), 90).save(tmp_path / name)
    (tmp_path / "m.tsv").write_text("image\tage\nb.png\t3\na.png\t7\nc.png\t7\n")
    m = read_manifest(tmp_path / "m.tsv")
    assert not m.has_subjects and [(r.name, r.subject) for r in m.records] == [("b.png", 2), ("a.png", 1), ("c.png", 3)]
    assert image_level(m.records) and not image_level(UNEVEN)
    assert kfold_assignment(m.records, 3, 0).keys() == {1, 2, 3}


# --- gather over k folds ------------------------------------------------------------------------


def kfold_study(root: Path, image_level_data: bool = False, swap: bool = False) -> list[Path]:
    """Two losses x 2 folds of kfold:2 over 3 people; errors chosen by hand (below)."""
    # fold 1 tests persons 1 and 2, fold 2 person 3 (swap: fold 2 also tests person 2: invalid).
    tests = {1: [(1, "p1a", 10), (1, "p1b", 20), (2, "p2a", 30)], 2: [(3, "p3a", 40), (3, "p3b", 50)]}
    if swap:
        tests[2].append((2, "p2a", 30))
    err = {"softmax": 2.0, "mean_variance": 1.0}
    paths = []
    for loss in err:
        for fold, rows in tests.items():
            d = root / loss / f"{fold:03d}"
            d.mkdir(parents=True)
            pd.DataFrame([{"image": i, "subject": s, "age": a, "predicted_age": a + err[loss] * s,
                           "predicted_std": 1.0, "predicted_age_rounded": a + err[loss] * s}
                          for s, i, a in rows]).to_csv(d / "predictions.tsv", sep="\t", index=False)
            metrics = {"fold": fold, "loss": loss, "data_fingerprint": "x", "val_mae": 1.0,
                       "config": {"epochs": 1, "protocol": "kfold:2"}}
            (d / "metrics.json").write_text(json.dumps({**metrics, **({"image_level": True} if image_level_data else {})}))
            paths.append(d / "metrics.json")
    return paths


def test_gather_over_k_folds_pairs_errors_per_person(tmp_path):
    from ageest.study.gather import gather

    t = gather(kfold_study(tmp_path), tmp_path / "out", n_boot=50)
    folds = t["folds"].set_index(["loss", "fold"])
    # softmax errors: 2 x person number, so fold 1 (persons 1, 1, 2) has MAE (2 + 2 + 4) / 3.
    assert folds.loc[("softmax", 1), "mae"] == pytest.approx(8 / 3) and folds.loc[("softmax", 2), "n_test"] == 2
    s = t["summary"].set_index("loss")
    # Per person: 2, 4, 6 years -> mean 4; over the 5 images (2 + 2 + 4 + 6 + 6) / 5 = 4.
    assert s.loc["softmax", "n_subjects"] == 3 and s.loc["softmax", "subject_mae_mean"] == pytest.approx(4.0)
    assert s.loc["softmax", "mae"] == pytest.approx(4.0) and s.loc["mean_variance", "mae"] == pytest.approx(2.0)
    c = t["comparison"].iloc[0]
    assert c["n_subjects"] == 3 and c["subject_mae_diff"] == pytest.approx(-2.0) and c["subjects_improved"] == 3
    assert list(t["predictions"]["fold"].unique()) == [1, 2] and "subject" not in t["folds"].columns
    assert all((df["protocol"] == "kfold:2").all() for df in t.values())


def test_gather_says_image_level_and_refuses_a_person_in_two_folds(tmp_path):
    from ageest.errors import AgeestError
    from ageest.study.gather import gather

    t = gather(kfold_study(tmp_path / "a", image_level_data=True), tmp_path / "out", n_boot=20)
    assert t["summary"]["protocol"].iloc[0].startswith("kfold:2, image-level (no subject column")
    with pytest.raises(AgeestError, match=r"folds softmax/001 and softmax/002 both test image p2a"):
        gather(kfold_study(tmp_path / "b", swap=True), tmp_path / "out2", n_boot=20)


# --- the study plan -----------------------------------------------------------------------------


def test_the_plan_takes_the_protocol_and_names_its_key(tmp_path):
    from test_plan import CONFIG, plan
    from test_workflow import make_fake_fgnet

    images, _ = make_fake_fgnet(tmp_path / "FGNET")
    over = {"data": {"images": str(images)}}
    s = plan(CONFIG, {**over, "protocol": {"kfold": 3}})
    assert s.folds == [1, 2, 3] and s.training["protocol"] == "kfold:3" and s.fold_key == "{loss}/{fold}"
    assert "protocol" not in plan(CONFIG, over).training  # lopo: training.yaml as it always was
    assert plan(CONFIG, {**over, "protocol": {"kfold": 3}, "subjects": [2]}).folds == [2]
    for bad, key, message in (
            ({"protocol": {"kfold": 6}}, "protocol", "6 folds need at least 6 people; the data has 5"),
            ({"protocol": {"kfold": 1}}, "protocol", "1 is less than the minimum of 2"),
            ({"protocol": {"split_file": "nope.tsv"}}, "protocol", "split file 'nope.tsv' not found"),
            ({"training": {"protocol": "kfold:3"}}, "training.protocol", "set the top-level protocol"),
            ({"protocol": {"kfold": 3}, "subjects": [4]}, "subjects", r"fold\(s\) 4 not in the study \(kfold:3\)")):
        with pytest.raises(ConfigError, match=message) as e:
            plan(CONFIG, {**over, **bad})
        assert e.value.keys == (key,)
    split = write_split(tmp_path / "fixed.tsv", "x\t001A02.JPG\ttrain", "x\t002A03.JPG\tval", "x\t005A08.JPG\ttest")
    assert plan(CONFIG, {**over, "protocol": {"split_file": str(split)}}).folds == [1]
    write_split(split, "x\t001A02.JPG\ttrain", "x\t002A03.JPG\tval", "x\t005A08.JPG\ttest", "x\t099A01.JPG\ttest")
    with pytest.raises(ConfigError, match="row 5, column image: '099A01.JPG' is not an image of the data"):
        plan(CONFIG, {**over, "protocol": {"split_file": str(split)}})
