"""Any data set by manifest (ageest.data.manifest): the reader's checks, one line naming row and
column each; the plan's refusals naming data.manifest; and a manifest of the synthetic FG-NET-layout
data under other folders and names giving FG-NET's own splits and fold results."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pyproc

from ageest.data.reader import read_records
from ageest.data.fgnet import scan_images
from ageest.data.landmarks import write_pts
from ageest.data.manifest import read_manifest
from ageest.data.records import subject_ids
from ageest.data.splits import split_fold, fold_split_tsv
from ageest.errors import ConfigError, DataError
from ageest.plan import plan_study

ROOT = Path(__file__).resolve().parents[1]


def face(path: Path, value: int = 100) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (value, value, value)).save(path)
    return path.name


@pytest.fixture
def root(tmp_path):
    # Each photo its own pixels: one photo under two people is refused (a leak between train and test).
    for i, name in enumerate(("a.jpg", "b.jpg", "c.png", "d.jpg")):
        face(tmp_path / "faces" / name, 100 + 10 * i)
    return tmp_path


def write(root: Path, *rows: str, name="faces.tsv", header="image\tage\tsubject") -> Path:
    p = root / name
    p.write_text("\n".join([header, *rows]) + "\n")
    return p


def test_rows_become_records_with_their_people(root):
    m = read_manifest(write(root, "faces/a.jpg\t3\tann", "faces/b.jpg\t41.0\tbob", "faces/c.png\t7\tann"))
    assert [(r.name, r.subject, r.age, r.person) for r in m.records] == [
        ("faces/a.jpg", 1, 3, "ann"), ("faces/b.jpg", 2, 41, "bob"), ("faces/c.png", 1, 7, "ann")]
    assert m.people == {1: "ann", 2: "bob"} and m.has_subjects
    assert m.records[0].path == root / "faces" / "a.jpg" and m.records[0].from_table


def test_subject_ids_keep_numbers_else_number_the_sorted_strings():
    assert subject_ids(["017", "3", "017"]) == {"017": 17, "3": 3}
    assert subject_ids(["zoe", "ann", "7"]) == {"7": 1, "ann": 2, "zoe": 3}


def test_a_csv_under_another_root_and_points(root, tmp_path):
    write_pts(root / "faces" / "a.pts", [[i, i] for i in range(68)])
    (tmp_path / "tables").mkdir()
    p = write(tmp_path / "tables", "faces/a.jpg,30,1,faces/a.pts", "faces/b.jpg,31,1,", name="t.csv",
              header="image,age,subject,points")
    m = read_manifest(p, root)
    assert m.records[0].points == root / "faces" / "a.pts" and m.records[1].points is None


@pytest.mark.parametrize("rows, header, message", [
    (["faces/a.jpg\t3"], "image\tage", None),  # no subject column: fine for the reader
    (["faces/a.jpg\tann"], "image\tsubject", r"row 1 \(header\): no 'age' column"),
    (["3\tann"], "age\tsubject", r"row 1 \(header\): no 'image' column"),
    (["faces/zz.jpg\t3\tann"], None, r"row 2, column image: .*zz.jpg not found"),
    (["faces/a.jpg\t3\tann", "faces/junk.jpg\t4\tann"], None, r"row 3, column image: .*junk.jpg is not a readable image"),
    (["faces/a.jpg\t3\tann", "faces/b.jpg\t4\tbob", "faces/./a.jpg\t5\tbob"], None,
     r"row 4, column image: faces/./a.jpg is also row 2 \(a duplicate image\)"),
    (["faces/a.jpg\tthree\tann"], None, r"row 2, column age: 'three' is not a number of years"),
    (["faces/a.jpg\tnan\tann"], None, r"row 2, column age: 'nan' is not a number of years"),
    (["faces/a.jpg\t3.5\tann"], None, r"row 2, column age: 3.5 is not a whole number of years"),
    (["faces/a.jpg\t3\tann", "faces/b.jpg\t70\tbob"], None, r"row 3, column age: 70 lies outside min_age..max_age \(0..69\)"),
    (["faces/a.jpg\t3\tann", "\t5\tbob"], None, r"row 3, column image: empty: subject 'bob' has no image here"),
    (["faces/a.jpg\t3\t"], None, r"row 2, column subject: empty"),
    (["faces/a.jpg\t3\t1", "faces/b.jpg\t4\t001"], None, r"row 3, column subject: '001' and '1' \(row 2\) are both person 1"),
    (["../x.jpg\t3\tann"], None, r"row 2, column image: ../x.jpg must be a relative path under the root"),
    (["faces/a.jpg\t3"], None, r"row 2, column image: 2 cells where the header has 3"),
])
def test_each_bad_manifest_is_one_line_naming_row_and_column(root, rows, header, message):
    (root / "faces" / "junk.jpg").write_text("not an image")
    p = write(root, *rows, **({"header": header} if header else {}))
    if message is None:
        assert not read_manifest(p, ages=(0, 69)).has_subjects
        return
    with pytest.raises(DataError, match=message) as e:
        read_manifest(p, ages=(0, 69))
    assert "\n" not in str(e.value) and str(e.value).startswith(str(p))


def test_a_landmark_file_with_the_wrong_point_count(root):
    pts = root / "faces" / "a.pts"
    write_pts(pts, [[i, i] for i in range(68)])
    pts.write_text(pts.read_text().replace("67.0000 67.0000\n", ""))  # 67 points under 'n_points: 68'
    p = write(root, "faces/a.jpg\t3\tann\tfaces/a.pts", header="image\tage\tsubject\tpoints")
    with pytest.raises(DataError, match=r"row 2, column points: .*a.pts: expected 68 points, found 67"):
        read_manifest(p)
    p = write(root, "faces/a.jpg\t3\tann\tfaces/none.pts", header="image\tage\tsubject\tpoints")
    with pytest.raises(DataError, match=r"row 2, column points: .*none.pts not found"):
        read_manifest(p)


def xy_header(n: int, lead: str = "image\tage\tsubject") -> str:
    return "\t".join([lead] + [f"{a}{k}" for k in range(1, n + 1) for a in "xy"])


def xy_cells(points) -> str:
    return "\t".join(f"{v:.4f}" for xy in points for v in xy)


FIVE = xy_cells([(10, 12), (30, 12), (20, 20), (14, 26), (26, 26)])


@pytest.mark.parametrize("rows, header, message", [
    ([f"faces/a.jpg\t3\tann\t{FIVE.replace('30.0000', 'left', 1)}"], None, r"row 2, column x2: 'left' is not a number \(pixels\)"),
    ([f"faces/a.jpg\t3\tann\t{FIVE.replace('10.0000', 'nan', 1)}"], None, r"row 2, column x1: 'nan' is not a number"),
    ([f"faces/a.jpg\t3\tann\t{FIVE.rsplit(chr(9), 1)[0]}\t"], None, r"row 2, column y5: empty while x1 is filled"),
    ([f"faces/a.jpg\t3\tann\t{FIVE.rsplit(chr(9), 2)[0]}"], xy_header(4), r"row 1 \(header\): landmark columns x1, x2, x3, x4 \(4 points\): need x1 y1 ... x5 y5"),
    ([f"faces/a.jpg\t3\tann\t{FIVE}\t1\t2"], xy_header(6), r"row 1 \(header\): landmark columns .* \(6 points\): need"),
    ([f"faces/a.jpg\t3\tann\t{FIVE}"], xy_header(5).replace("\ty3", "\ty33"), r"row 1 \(header\): column x3 has no y3"),
    ([f"faces/a.jpg\t3\tann\t{FIVE.rsplit(chr(9), 1)[0]}"], xy_header(5).rsplit("\t", 1)[0], r"row 1 \(header\): column x5 has no y5"),
    ([f"faces/a.jpg\t3\tann\t\t{FIVE}"], xy_header(5, "image\tage\tsubject\tpoints"),
     r"row 1 \(header\): both a points column and x/y landmark columns"),
])
def test_each_bad_landmark_column_is_one_line_naming_row_and_column(root, rows, header, message):
    p = write(root, *rows, header=header or xy_header(5))
    with pytest.raises(DataError, match=message) as e:
        read_manifest(p)
    assert "\n" not in str(e.value) and str(e.value).startswith(str(p))


def test_landmark_columns_align_as_the_same_points_in_a_pts_file(synth_small, tmp_path):
    """68 points in x/y columns give the crops their `.pts` files give; 5 points (MTCNN's order)
    placing the eyes and mouth there too give them as well; an edited point is another cache."""
    from ageest.config import Config
    from ageest.data.align import LEFT_EYE, MOUTH, RIGHT_EYE
    from ageest.data.fingerprint import data_fingerprint
    from ageest.data.landmarks import read_pts
    from ageest.pipeline.cache import open_cache

    root = shutil.copytree(synth_small.parent, tmp_path / "d")
    images = sorted((root / "images").glob("*.JPG"))[:6]
    pts = {i.name: read_pts(root / "points" / f"{i.stem.lower()}.pts") for i in images}

    def five(p):
        mouth, half = p[MOUTH].mean(0), np.array([5.0, 0.0])
        return [p[LEFT_EYE].mean(0), p[RIGHT_EYE].mean(0), p[37], mouth - half, mouth + half]

    tables = {
        "pts": ("image\tage\tsubject\tpoints", lambda i: f"points/{i.stem.lower()}.pts"),
        "x68": (xy_header(68), lambda i: xy_cells(pts[i.name])),
        "x5": (xy_header(5), lambda i: xy_cells(five(pts[i.name]))),
    }
    config = Config(image_size=32, pretrained="none", align="landmarks")
    crops, records = {}, {}
    for name, (header, cells) in tables.items():
        p = write(root, *[f"images/{i.name}\t{int(i.name[4:6])}\t{i.name[:3]}\t{cells(i)}" for i in images],
                  name=f"{name}.tsv", header=header)
        records[name] = read_manifest(p).records
        crops[name] = np.asarray(open_cache(tmp_path / f"{name}.npy", records[name], config, None)[0], int)
    assert records["x68"][0].keypoints is not None and records["x68"][0].points is None
    assert len(records["x5"][0].keypoints) == 5
    assert np.array_equal(crops["x68"], crops["pts"])
    # (5 points: the eye means written to 4 decimals; OpenCV warps on a 1/32-pixel grid, so a pixel
    # or two at an edge may land in the neighbouring bin.)
    assert np.abs(crops["x5"] - crops["pts"]).mean() < 0.05 and np.abs(crops["x5"] - crops["pts"]).max() <= 8
    # One coordinate moved by a pixel: another fingerprint, and the cache built on the old one is refused.
    moved = write(root, *[f"images/{i.name}\t{int(i.name[4:6])}\t{i.name[:3]}\t{xy_cells(five(pts[i.name]) if k else [v + (1, 0) if j == 0 else v for j, v in enumerate(five(pts[i.name]))])}"
                          for k, i in enumerate(images)], name="x5.tsv", header=xy_header(5))
    edited = read_manifest(moved).records
    assert data_fingerprint(edited, root / "points") != data_fingerprint(records["x5"], root / "points")
    with pytest.raises(DataError, match="differs in: landmarks"):
        open_cache(tmp_path / "x5.npy", edited, config, None)


def merged(base: dict, over: dict) -> dict:
    return {k: {**base[k], **over[k]} if k in over else base[k] for k in base}


def manifest_config(manifest: Path, **data) -> dict:
    return {"data": {"source": "manifest", "manifest": str(manifest), **data},
            "training": {"max_age": 60}, "losses": ["softmax"], "reference_loss": "softmax"}


def test_the_plan_checks_every_row_and_names_data_manifest(root):
    good = write(root, "faces/a.jpg\t3\t12", "faces/b.jpg\t41\t12", "faces/c.png\t7\t5")
    s = plan_study(manifest_config(good), ROOT)
    assert (s.folds, s.images, s.root, s.data_rule, s.sums) == ([5, 12], str(good), str(root), None, None)
    bad = write(root, "faces/a.jpg\t3\t12", "faces/b.jpg\t61\t5", name="bad.tsv")
    with pytest.raises(ConfigError, match=r"bad.tsv, row 3, column age: 61 lies outside min_age..max_age \(0..60\)") as e:
        plan_study(manifest_config(bad), ROOT)
    assert e.value.keys == ("data.manifest",)
    with pytest.raises(ConfigError, match="names no landmark file .points column. to align on") as e:
        plan_study(merged(manifest_config(good), {"training": {"align": "landmarks"}}), ROOT)
    assert e.value.keys == ("data.manifest",)
    with pytest.raises(ConfigError, match="folder .*nowhere' not found") as e:
        plan_study(manifest_config(good, root=str(root / "nowhere")), ROOT)
    assert e.value.keys == ("data.root",)


def test_without_a_subject_column_leave_one_person_out_is_refused(root):
    p = write(root, "faces/a.jpg\t3", "faces/b.jpg\t41", header="image\tage")
    with pytest.raises(ConfigError, match="has no subject column: leave-one-person-out needs each image's person") as e:
        plan_study(manifest_config(p), ROOT)
    assert e.value.keys == ("data.manifest",)
    with pytest.raises(ConfigError, match="needs data.manifest") as e:
        plan_study({"data": {"source": "manifest"}}, ROOT)


def relayout(synth_images: Path, dest: Path) -> tuple[Path, dict[str, str]]:
    """The synthetic data under another layout (`ageest synth --manifest`'s) and manifest name -> FG-NET name."""
    from ageest.data.synth import write_manifest_layout

    manifest = write_manifest_layout(synth_images, dest / "faces.tsv")
    fg = {(r.subject, r.age, r.suffix): r.name for r in scan_images(synth_images)}
    names = {}
    for line in manifest.read_text().splitlines()[1:]:
        image, age, person, _ = line.split("\t")
        stem = Path(image).stem
        names[image] = fg[int(person.split("-")[1]), 99 - int(stem[:2]), " ab"["xyz".index(stem[2])].strip()]
    return manifest, names


@pytest.mark.slow
def test_a_manifest_of_fgnet_data_gives_its_splits_and_fold_results(synth_small, tmp_path):
    from ageest.config import load_config
    from ageest.train.fold import run_fold
    from conftest import tiny_overrides

    manifest, names = relayout(synth_small, tmp_path / "other")
    fg, man = scan_images(synth_small), read_records(manifest, check_decode=True)
    assert sorted((names[r.name], r.subject, r.age) for r in man) == sorted((r.name, r.subject, r.age) for r in fg)
    for subject in (1, 5):
        for by in ("subject", "image"):
            a, b = (fold_split_tsv(recs, split_fold(recs, subject, seed=3, by=by)) for recs in (fg, man))
            translated = "".join(names.get(line.split("\t")[0], line.split("\t")[0]) + line[line.index("\t"):]
                                 for line in b.splitlines(keepends=True))
            assert translated == a
    config = load_config(None, tiny_overrides(epochs=1, freeze_epochs=0, align="landmarks"))
    fold = [run_fold(images, 3, "softmax", tmp_path / out, config, log=lambda m: None)
            for images, out in ((synth_small, "fg"), (manifest, "man"))]
    assert fold[0]["test_mae"] == fold[1]["test_mae"] and fold[0]["n_train"] == fold[1]["n_train"]
    assert (tmp_path / "man" / "predictions.tsv").read_text().count("faces/person-003/") == fold[1]["n_test"]


@pytest.mark.slow
def test_the_workflow_stops_on_a_bad_row_before_any_job(root, tmp_path):
    write(root, "faces/a.jpg\t3\tann", "faces/b.jpg\t4\tann", "faces/c.png\tforty\tbob")
    (tmp_path / "mine.yaml").write_text(f"data: {{source: manifest, manifest: {root / 'faces.tsv'}}}\n")
    r = pyproc.snakemake(["-s", ROOT / "Snakefile", "--directory", tmp_path, "--cores", "1",
                          "--configfile", ROOT / "config" / "demo.yaml", tmp_path / "mine.yaml"], timeout=600)
    assert r.returncode != 0
    assert "config error: data.manifest: " in r.stderr and "row 4, column age: 'forty' is not a number" in r.stderr
    assert not (tmp_path / "results").exists()


def test_the_commands_take_a_manifest_and_record_who_each_id_is(root, tmp_path):
    from ageest.cli import main

    face(root / "faces" / "e.jpg", 200)
    p = write(root, "faces/a.jpg\t3\tzoe", "faces/b.jpg\t41\tann", "faces/c.png\t7\tzoe", "faces/d.jpg\t9\tann",
              "faces/e.jpg\t20\tbob")
    elsewhere = tmp_path / "t" / "faces.tsv"
    elsewhere.parent.mkdir()
    shutil.copy(p, elsewhere)
    assert main(["manifest", "--images", str(elsewhere), "--root", str(root), "--out", str(tmp_path / "m.tsv")]) == 0
    assert (tmp_path / "m.tsv").read_text().splitlines() == [
        "image\tsubject\tage\tperson", "faces/a.jpg\t3\t3\tzoe", "faces/b.jpg\t1\t41\tann",
        "faces/c.png\t3\t7\tzoe", "faces/d.jpg\t1\t9\tann", "faces/e.jpg\t2\t20\tbob"]
    assert main(["split", "--images", str(elsewhere), "--root", str(root), "--leave-subject", "3",
                 "--out", str(tmp_path / "003.tsv"), "--set", "val_rate=0.3"]) == 0
    rows = [line.split("\t") for line in (tmp_path / "003.tsv").read_text().splitlines()[1:]]
    assert [(r[0], r[1]) for r in rows] == [("faces/d.jpg", "1"), ("faces/b.jpg", "1"), ("faces/e.jpg", "2"),
                                            ("faces/a.jpg", "3"), ("faces/c.png", "3")]  # person, age, name
    assert [r[3] for r in rows][3:] == ["test", "test"] and {r[3] for r in rows[:3]} == {"train", "val"}
    assert main(["manifest", "--images", str(elsewhere), "--out", str(tmp_path / "x.tsv")]) == 2  # root: its folder


def test_a_cluster_job_reads_the_rows_without_opening_the_files(root):
    # The submitting process checked every file; a job re-parsing the workflow reads the cells only.
    from ageest.data.manifest import read_manifest

    m = write(root, "faces/gone.jpg\t20\tann", "faces/a.jpg\t30\tbob")
    with pytest.raises(DataError, match="row 2, column image: .*gone.jpg not found"):
        read_manifest(m)
    assert [r.age for r in read_manifest(m, check_files=False).records] == [20, 30]
    with pytest.raises(DataError, match="row 3, column age: 'x' is not a number"):
        read_manifest(write(root, "faces/gone.jpg\t20\tann", "faces/a.jpg\tx\tbob", name="b.tsv"), check_files=False)
