import json
import os
import re
import stat
import zipfile

import numpy as np
import pytest

from ml.datasets import ImportLimits, delete_dataset, get_dataset, import_dataset, list_datasets
from ml.errors import DatasetError
from ml.faces import FaceOptions
from tests.conftest import (SYNTHETIC_FACES, coloured_image, face_variants, png_bytes, synthetic_entries,
                            write_zip)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_import_zip_stores_crops_under_generated_names(tmp_path, synthetic_zip):
    dataset = import_dataset(synthetic_zip, "colours", tmp_path / "datasets", face=SYNTHETIC_FACES)
    manifest = json.loads((tmp_path / "datasets" / "colours" / "dataset.json").read_text())
    assert manifest["labels"] == ["alpha", "beta", "gamma"]
    assert manifest["counts"] == {"alpha": 10, "beta": 10, "gamma": 10}
    assert manifest["rejected"] == []
    assert manifest["face"] == {"detector": "haar", "fallback": "whole"}
    for item in manifest["images"]:
        assert re.fullmatch(r"\d/\d{5}\.png", item["file"])
        assert (dataset.path / item["file"]).is_file()
    crops, labels, digests, subjects = dataset.load_crops()
    assert crops.shape == (30, 256, 256, 3) and list(np.bincount(labels)) == [10, 10, 10]
    assert len(set(digests)) == 30 and subjects is None and not dataset.grouped


def test_bad_files_are_listed_and_nothing_is_written_outside(tmp_path, face_photos):
    entries = {f"adults/{i}.jpg": data for i, data in enumerate(face_variants(face_photos["astronaut"], 5))}
    entries |= {f"elders/{i}.jpg": data for i, data in enumerate(face_variants(face_photos["grace_hopper"], 5))}
    entries |= {
        "../../escaped.jpg": entries["adults/0.jpg"],
        "/etc/absolute.jpg": entries["adults/1.jpg"],
        "adults/notes.txt": b"not a photo",
        "elders/truncated.jpg": entries["elders/0.jpg"][:400],
        "elders/landscape.png": png_bytes(coloured_image("gamma", seed=3, size=160)),
    }
    work = tmp_path / "work"
    work.mkdir()
    archive = write_zip(tmp_path / "upload.zip", entries)
    before = tree(tmp_path)
    dataset = import_dataset(archive, "mixed", work / "datasets", face=FaceOptions("mtcnn"))
    reasons = {item["file"]: item["reason"] for item in dataset.manifest["rejected"]}
    assert "unsafe path" in reasons["../../escaped.jpg"]
    assert "unsafe path" in reasons["/etc/absolute.jpg"]
    assert "not an image" in reasons["adults/notes.txt"]
    assert "truncated" in reasons["elders/truncated.jpg"]
    assert reasons["elders/landscape.png"] == "no face found"
    assert dataset.manifest["counts"] == {"adults": 5, "elders": 5}
    created = set(tree(tmp_path)) - set(before)
    assert all(path.startswith(os.path.join("work", "datasets")) for path in created)
    assert not (tmp_path.parent / "escaped.jpg").exists()


def test_a_zipped_top_folder_is_stripped(tmp_path):
    entries = {f"my-data/{name}": data for name, data in synthetic_entries(per_class=5).items()}
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "top", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.labels == ["alpha", "beta", "gamma"]


def test_import_from_a_folder_skips_symbolic_links(tmp_path):
    source = tmp_path / "source"
    for name, data in synthetic_entries(per_class=5).items():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
    secret = tmp_path / "secret.png"
    secret.write_bytes(png_bytes(coloured_image("alpha", seed=99)))
    (source / "alpha" / "link.png").symlink_to(secret)
    dataset = import_dataset(source, "folder", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.manifest["counts"] == {"alpha": 5, "beta": 5, "gamma": 5}
    assert {"file": "alpha/link.png", "reason": "symbolic link"} in dataset.manifest["rejected"]


def test_symlink_hidden_and_duplicate_entries_are_rejected_with_reasons(tmp_path):
    entries = synthetic_entries(per_class=5)
    entries["__MACOSX/alpha/._photo0.png"] = b"resource fork"
    entries["beta/copy.png"] = entries["beta/photo0.png"]
    archive = write_zip(tmp_path / "a.zip", entries)
    with zipfile.ZipFile(archive, "a") as zf:
        link = zipfile.ZipInfo("gamma/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    dataset = import_dataset(archive, "odd", tmp_path / "d", face=SYNTHETIC_FACES)
    reasons = {item["file"]: item["reason"] for item in dataset.manifest["rejected"]}
    assert reasons == {"__MACOSX/alpha/._photo0.png": "hidden or system file",
                       "beta/copy.png": "duplicate of beta/photo0.png",
                       "gamma/link.png": "symbolic link"}


@pytest.mark.parametrize("limits, message", [
    (ImportLimits(max_entries=10), "entries; the limit is 10"),
    (ImportLimits(max_total_bytes=10_000), "unpacks to"),
])
def test_archives_over_the_limits_are_refused(tmp_path, synthetic_zip, limits, message):
    with pytest.raises(DatasetError, match=message):
        import_dataset(synthetic_zip, "big", tmp_path / "d", limits=limits, face=SYNTHETIC_FACES)
    assert not (tmp_path / "d").exists() or tree(tmp_path / "d") == []


def test_a_zip_bomb_is_refused(tmp_path):
    entries = synthetic_entries(per_class=5)
    entries["alpha/bomb.png"] = b"\0" * (20 * 1024 ** 2)
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    with pytest.raises(DatasetError, match="zip bomb"):
        import_dataset(archive, "bomb", tmp_path / "d", face=SYNTHETIC_FACES)


def test_an_oversized_file_is_rejected_without_reading_it(tmp_path):
    entries = synthetic_entries(per_class=5)
    entries["alpha/huge.png"] = png_bytes(np.random.default_rng(0).integers(0, 255, (300, 300, 3), np.uint8))
    limits = ImportLimits(max_file_bytes=100_000)
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "sized", tmp_path / "d", limits=limits,
                             face=SYNTHETIC_FACES)
    assert dataset.manifest["rejected"][0]["reason"].startswith("too large")


def test_fewer_than_two_classes_is_refused(tmp_path):
    entries = synthetic_entries(per_class=6, labels=("alpha",))
    with pytest.raises(DatasetError, match="at least 2 classes"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "one", tmp_path / "d", face=SYNTHETIC_FACES)


def test_a_class_below_the_minimum_is_refused_and_nothing_is_kept(tmp_path):
    entries = synthetic_entries(per_class=6)
    for i in range(3):
        entries[f"gamma/photo{i}.png"] = b"broken"
    with pytest.raises(DatasetError, match=r"gamma: 3.*3 x The file is not an image"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "small", tmp_path / "d", face=SYNTHETIC_FACES)
    assert tree(tmp_path / "d") == []


@pytest.mark.parametrize("name", ["", "../up", "a/b", "x" * 65, "-dash", "spa ce"])
def test_unsafe_dataset_names_are_refused(tmp_path, synthetic_zip, name):
    with pytest.raises(DatasetError, match="dataset name"):
        import_dataset(synthetic_zip, name, tmp_path / "d", face=SYNTHETIC_FACES)


def test_names_are_unique_and_not_a_zip_is_refused(tmp_path, synthetic_zip):
    import_dataset(synthetic_zip, "once", tmp_path / "d", face=SYNTHETIC_FACES)
    with pytest.raises(DatasetError, match="already exists"):
        import_dataset(synthetic_zip, "once", tmp_path / "d", face=SYNTHETIC_FACES)
    text = tmp_path / "notes.zip"
    text.write_text("not an archive")
    with pytest.raises(DatasetError, match="neither a zip"):
        import_dataset(text, "other", tmp_path / "d", face=SYNTHETIC_FACES)


def test_list_get_and_delete(tmp_path, synthetic_zip):
    root = tmp_path / "d"
    import_dataset(synthetic_zip, "first", root, face=SYNTHETIC_FACES)
    import_dataset(synthetic_zip, "second", root, face=SYNTHETIC_FACES)
    assert [d.id for d in list_datasets(root)] == ["first", "second"]
    delete_dataset(root, "first")
    assert [d.id for d in list_datasets(root)] == ["second"]
    assert tree(root)[0].startswith("second")
    with pytest.raises(DatasetError, match="no dataset named"):
        get_dataset(root, "first")


def test_people_are_named_by_subjects_csv_or_by_file_name(tmp_path):
    entries = {f"top/{name}": data for name, data in synthetic_entries(per_class=5, labels=("alpha", "beta")).items()}
    table = "file,subject\n" + "".join(f"{name[4:]},person-{i % 4}\n" for i, name in enumerate(entries))
    entries["top/subjects.csv"] = table.encode()
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "named", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.grouped and dataset.manifest["rejected"] == []
    assert dataset.load_crops()[3] == [f"person-{i % 4}" for i in range(10)]
    assert dataset.attributes() == [{}] * 10 and dataset.manifest["warnings"] == []

    renamed = {f"{label}/p{i % 3}__{i}.png": data for i, (label, data) in
               enumerate((name.split("/")[0], data) for name, data in synthetic_entries(per_class=5).items())}
    by_name = import_dataset(write_zip(tmp_path / "b.zip", renamed), "by-name", tmp_path / "d", face=SYNTHETIC_FACES)
    assert by_name.grouped and {item["subject"] for item in by_name.manifest["images"]} == {"p0", "p1", "p2"}


def test_a_broken_subjects_csv_is_refused(tmp_path):
    entries = synthetic_entries(per_class=5) | {"subjects.csv": b"name,person\nx,y\n"}
    with pytest.raises(DatasetError, match="column file and one or more of the columns subject, sex, age"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "bad", tmp_path / "d", face=SYNTHETIC_FACES)


def test_subjects_csv_gives_sex_age_and_ancestry_per_photo(tmp_path):
    entries = synthetic_entries(per_class=5, labels=("alpha", "beta"))
    entries["subjects.csv"] = ("file,subject,sex,age,ancestry\n"
                               "alpha/photo0.png,p0, F ,4,South Asian\n"
                               "alpha/photo1.png,,m,0.5,\n"
                               "alpha/photo2.png,p2,,200,\n"
                               f"alpha/photo3.png,p3,{'x' * 65},four,\n"
                               "beta/photo0.png,p4,,,\n").encode()
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "people", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.manifest["rejected"] == [] and len(dataset.manifest["images"]) == 10
    given = [{"sex": "F", "age": 4.0, "ancestry": "South Asian"}, {"sex": "m", "age": 0.5}]
    assert dataset.attributes() == given + [{}] * 8
    stored = get_dataset(tmp_path / "d", "people").manifest["images"]
    assert [item.get("attributes") for item in stored[:3]] == given + [None]
    assert dataset.manifest["warnings"] == [
        {"file": "alpha/photo2.png", "reason": "subjects.csv: age '200' ignored (not a number of years from 0 to 130)"},
        {"file": "alpha/photo3.png",
         "reason": "subjects.csv: sex 'xxxxxxxxxxxxxxxxxxxx' ignored (longer than 64 characters or unprintable)"},
        {"file": "alpha/photo3.png",
         "reason": "subjects.csv: age 'four' ignored (not a number of years from 0 to 130)"}]
    assert not dataset.grouped and dataset.load_crops()[3] is None
    assert len(dataset.attributes()) == len(dataset.load_crops()[0])


def test_attributes_without_a_subject_column_keep_people_from_file_names(tmp_path):
    entries = {f"{name.split('/')[0]}/p{i % 3}__{i}.png": data
               for i, (name, data) in enumerate(synthetic_entries(per_class=5, labels=("alpha", "beta")).items())}
    entries["subjects.csv"] = b"file,sex\nalpha/p0__0.png,f\nbeta/p2__5.png,\n"
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "named", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.grouped and dataset.load_crops()[3] == [f"p{i % 3}" for i in range(10)]
    assert dataset.attributes() == [{"sex": "f"}] + [{}] * 9
