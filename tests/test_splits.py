import pytest

from ageest.errors import DataError
from ageest.data.fgnet import scan_images
from ageest.data.records import subjects_of
from ageest.data.splits import split_fold
from conftest import write_blobs


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return scan_images(write_blobs(tmp_path_factory.mktemp("s"), subjects=20, per_subject=6))


@pytest.mark.parametrize("by", ["subject", "image"])
def test_every_subject(records, by):
    for s in subjects_of(records):
        sp = split_fold(records, s, seed=3, val_rate=0.1, by=by)
        test_subjects = {records[i].subject for i in sp.test}
        assert test_subjects == {s}
        assert len(sp.test) == sum(r.subject == s for r in records)
        train_s = {records[i].subject for i in sp.train}
        val_s = {records[i].subject for i in sp.val}
        assert s not in train_s | val_s
        assert set(sp.train).isdisjoint(sp.val)
        assert len(sp.train) + len(sp.val) + len(sp.test) == len(records)
        if by == "subject":
            assert train_s.isdisjoint(val_s)
        rest = len(records) - len(sp.test)
        assert abs(len(sp.val) - 0.1 * rest) <= 6  # whole people of six images each


def test_pure_function_of_files_subject_seed(records):
    a = split_fold(records, 5, seed=1)
    shuffled = list(reversed(records))
    b = split_fold(shuffled, 5, seed=1)
    names = lambda recs, idx: sorted(recs[i].name for i in idx)  # noqa: E731
    assert names(records, a.val) == names(shuffled, b.val)
    assert names(records, a.train) == names(shuffled, b.train)
    assert split_fold(records, 5, seed=1) == a
    assert names(records, split_fold(records, 5, seed=2).val) != names(records, a.val)


def test_unknown_subject(records):
    with pytest.raises(DataError, match="subject 99 is not in the data"):
        split_fold(records, 99)


def test_split_file_round_trip_and_refusals(records, tmp_path):
    from ageest.data.splits import read_fold_split, fold_split_tsv

    sp = split_fold(records, 4, seed=0)
    f = tmp_path / "split.tsv"
    f.write_text(fold_split_tsv(records, sp))
    assert read_fold_split(f, records, 4) == sp
    lines = f.read_text().splitlines()
    # A test-subject image moved into training is refused ...
    bad = [l.replace("\ttest", "\ttrain") if l.startswith("004A") else l for l in lines]
    f.write_text("\n".join(bad) + "\n")
    with pytest.raises(DataError, match="not exactly those of subject 4"):
        read_fold_split(f, records, 4)
    # ... and so is a file that leaves an image out, or names an unknown one.
    f.write_text("\n".join(lines[:-1]) + "\n")
    with pytest.raises(DataError, match="exactly once"):
        read_fold_split(f, records, 4)
    f.write_text("\n".join(lines + ["999A01.JPG\t999\t1\ttrain"]) + "\n")
    with pytest.raises(DataError, match="line"):
        read_fold_split(f, records, 4)
