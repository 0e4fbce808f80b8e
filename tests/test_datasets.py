import errno
import io
import json
import os
import re
import shutil
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from ml.datasets import ImportLimits, check_archive, delete_dataset, get_dataset, import_dataset, list_datasets
from ml.errors import DatasetError, DatasetExists, DiskFull
from ml.photos.faces import FaceOptions
from tests.helpers import (
    SYNTHETIC_FACES,
    bearer_headers,
    coloured_face,
    coloured_noise,
    face_haar_misses,
    face_variants,
    form_token,
    login,
    png_bytes,
    synthetic_entries,
    write_zip,
)


def tree(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def test_import_zip_stores_crops_under_generated_names(tmp_path, synthetic_zip):
    dataset = import_dataset(synthetic_zip, "colours", tmp_path / "datasets", face=SYNTHETIC_FACES)
    manifest = json.loads((tmp_path / "datasets" / "colours" / "dataset.json").read_text())
    assert manifest == dataset.manifest.to_dict()                 # the record is what the file says
    assert dataset.manifest.labels == ["alpha", "beta", "gamma"]
    assert dataset.manifest.counts == {"alpha": 10, "beta": 10, "gamma": 10}
    assert dataset.manifest.rejected == []
    assert dataset.manifest.face == {"detector": "haar", "fallback": "whole"}
    for item in dataset.manifest.images:
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
        "elders/landscape.png": png_bytes(coloured_face("gamma", seed=3, size=160)),
    }
    work = tmp_path / "work"
    work.mkdir()
    archive = write_zip(tmp_path / "upload.zip", entries)
    before = tree(tmp_path)
    dataset = import_dataset(archive, "mixed", work / "datasets", face=FaceOptions("mtcnn"))
    reasons = {item["file"]: item["reason"] for item in dataset.manifest.rejected}
    assert "unsafe path" in reasons["../../escaped.jpg"]
    assert "unsafe path" in reasons["/etc/absolute.jpg"]
    assert "not an image" in reasons["adults/notes.txt"]
    assert "truncated" in reasons["elders/truncated.jpg"]
    assert reasons["elders/landscape.png"] == "no face found"
    assert dataset.manifest.counts == {"adults": 5, "elders": 5}
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
    secret.write_bytes(png_bytes(coloured_face("alpha", seed=99)))
    (source / "alpha" / "link.png").symlink_to(secret)
    dataset = import_dataset(source, "folder", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.manifest.counts == {"alpha": 5, "beta": 5, "gamma": 5}
    assert {"file": "alpha/link.png", "reason": "symbolic link"} in dataset.manifest.rejected


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
    reasons = {item["file"]: item["reason"] for item in dataset.manifest.rejected}
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
    assert dataset.manifest.rejected[0]["reason"].startswith("too large")


def test_fewer_than_two_classes_is_refused_naming_what_was_found(tmp_path):
    entries = synthetic_entries(per_class=6, labels=("alpha",))
    with pytest.raises(DatasetError, match="at least 2 classes.*found 1: alpha"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "one", tmp_path / "d", face=SYNTHETIC_FACES)


def test_more_classes_than_training_handles_are_refused_before_any_photo_is_read(tmp_path):
    entries = {f"condition-{i:03d}/{j}.png": b"not even read" for i in range(400) for j in range(5)}
    with pytest.raises(DatasetError, match="400 classes .*at most 100 .FACEDX_MAX_CLASSES"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "many", tmp_path / "d", face=SYNTHETIC_FACES)
    assert not (tmp_path / "d" / "many").exists()
    with pytest.raises(DatasetError, match="at most 3 "):
        check_archive(write_zip(tmp_path / "b.zip", {f"c{i}/0.png": b"x" for i in range(4)}),
                      ImportLimits(max_classes=3))


def test_a_class_below_the_minimum_is_kept_as_gallery_only(tmp_path):
    entries = synthetic_entries(per_class=6)
    for i in range(3):
        entries[f"gamma/photo{i}.png"] = b"broken"
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "small", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.manifest.gallery_only == ["gamma"] and dataset.manifest.counts["gamma"] == 3
    assert get_dataset(tmp_path / "d", "small").manifest.gallery_only == ["gamma"]
    part = dataset.classifier_part()
    assert part.labels == ["alpha", "beta"] and part.manifest.checksum == dataset.manifest.checksum
    assert [item["label"] for item in part.manifest.images] == [0] * 6 + [1] * 6
    assert list(dataset.classifier_rows()) == list(range(12))


def test_fewer_than_two_classes_with_enough_photos_are_refused_and_nothing_is_kept(tmp_path):
    entries = synthetic_entries(per_class=6)
    for label in ("beta", "gamma"):
        for i in range(3):
            entries[f"{label}/photo{i}.png"] = b"broken"
    with pytest.raises(DatasetError, match=r"too few in beta: 3, gamma: 3\. .*gallery-only.*6 x The file is not an"):
        import_dataset(write_zip(tmp_path / "a.zip", entries), "small", tmp_path / "d", face=SYNTHETIC_FACES)
    assert tree(tmp_path / "d") == []


def test_subjects_csv_declares_which_photos_may_be_shown(tmp_path):
    entries = synthetic_entries(per_class=5, labels=("alpha", "beta"))
    entries["subjects.csv"] = ("file,display_consent\nalpha/photo0.png,yes\nalpha/photo1.png,No\n"
                               "alpha/photo2.png,perhaps\nbeta/photo4.png,TRUE\n").encode()
    dataset = import_dataset(write_zip(tmp_path / "a.zip", entries), "shown", tmp_path / "d", face=SYNTHETIC_FACES)
    assert dataset.consented().tolist() == [True] + [False] * 8 + [True]
    assert dataset.manifest.warnings == [{"file": "alpha/photo2.png", "reason": "subjects.csv: display_consent "
                                          "'perhaps' ignored (not yes or no): the photo is not shown"}]


@pytest.mark.parametrize("name", ["", "../up", "a/b", "x" * 65, "-dash", "spa ce", "utk\n", "utk\r\n"])
def test_unsafe_dataset_names_are_refused(tmp_path, synthetic_zip, name):
    with pytest.raises(DatasetError, match="dataset name"):
        import_dataset(synthetic_zip, name, tmp_path / "d", face=SYNTHETIC_FACES)
    with pytest.raises(DatasetError, match="dataset name"):
        get_dataset(tmp_path / "d", name)


def test_a_folder_named_with_a_trailing_newline_is_not_listed_as_a_dataset(tmp_path, synthetic_zip):
    root = tmp_path / "d"
    import_dataset(synthetic_zip, "utk", root, face=SYNTHETIC_FACES)
    shutil.copytree(root / "utk", root / "utk\n")
    assert [d.id for d in list_datasets(root)] == ["utk"]


def test_the_loser_of_two_imports_of_one_name_is_told_it_exists_and_leaves_nothing(tmp_path, synthetic_zip):
    root = tmp_path / "d"
    rival = []

    def the_other_import_finishes_first(progress):
        if not rival:                  # both passed the check for an existing name; the other one renames first
            rival.append(import_dataset(synthetic_zip, "same", root, face=SYNTHETIC_FACES))
    with pytest.raises(DatasetExists, match="already exists"):
        import_dataset(synthetic_zip, "same", root, face=SYNTHETIC_FACES, progress=the_other_import_finishes_first)
    assert os.listdir(root) == ["same"]
    assert get_dataset(root, "same").manifest == rival[0].manifest


def test_a_full_disk_during_an_import_leaves_nothing(tmp_path, synthetic_zip, monkeypatch):
    written = []

    def disk_full_after_three(path, data):
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(path)
        return original(path, data)
    original = Path.write_bytes
    monkeypatch.setattr(Path, "write_bytes", disk_full_after_three)
    with pytest.raises(DiskFull, match="disk is full"):
        import_dataset(synthetic_zip, "full", tmp_path / "d", face=SYNTHETIC_FACES)
    assert len(written) == 3 and tree(tmp_path / "d") == []


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
    assert dataset.grouped and dataset.manifest.rejected == []
    assert dataset.load_crops()[3] == [f"person-{i % 4}" for i in range(10)]
    assert dataset.attributes() == [{}] * 10 and dataset.manifest.warnings == []

    renamed = {f"{label}/p{i % 3}__{i}.png": data for i, (label, data) in
               enumerate((name.split("/")[0], data) for name, data in synthetic_entries(per_class=5).items())}
    by_name = import_dataset(write_zip(tmp_path / "b.zip", renamed), "by-name", tmp_path / "d", face=SYNTHETIC_FACES)
    assert by_name.grouped and {item["subject"] for item in by_name.manifest.images} == {"p0", "p1", "p2"}


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
    assert dataset.manifest.rejected == [] and len(dataset.manifest.images) == 10
    given = [{"sex": "F", "age": 4.0, "ancestry": "South Asian"}, {"sex": "m", "age": 0.5}]
    assert dataset.attributes() == given + [{}] * 8
    stored = get_dataset(tmp_path / "d", "people").manifest.images
    assert [item.get("attributes") for item in stored[:3]] == given + [None]
    assert dataset.manifest.warnings == [
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


def test_the_form_and_the_api_refuse_a_name_with_a_trailing_newline(app, client, tokens):
    app.config["FACE_DETECTOR"] = "haar"
    archive = write_zip(io.BytesIO(), synthetic_entries(per_class=5)).getvalue()
    response = client.post("/api/v1/datasets", headers=bearer_headers(tokens["admin"]), data={
        "archive": (io.BytesIO(archive), "a.zip"), "name": "utk\n", "face_fallback": "whole"})
    assert response.status_code == 400 and "A dataset name is 1-64 letters" in response.get_json()["message"]
    login(client, "ada")
    response = client.post("/admin/datasets", data={"name": "utk\n", "face_fallback": "whole", "archive": (
        io.BytesIO(archive), "a.zip"), "csrf_token": form_token(client, "/admin/datasets")})
    assert response.status_code == 400 and "A dataset name is 1-64 letters" in response.get_data(as_text=True)
    assert not (Path(app.config["UPLOAD_DIR"]) / "datasets").exists() or not os.listdir(
        Path(app.config["UPLOAD_DIR"]) / "datasets")


def test_an_import_reports_photo_n_of_n_and_a_cancelled_one_leaves_nothing(tmp_path, synthetic_zip):
    from ml.progress import Cancelled

    seen = []
    import_dataset(synthetic_zip, "counted", tmp_path / "d", face=SYNTHETIC_FACES, progress=seen.append,
                   source_name="clinic 2026.zip")
    assert seen[0].phase == "starting" and seen[0].words == "loading the face networks"     # before any photo
    assert [(p.phase, p.done, p.total) for p in seen[1:]] == [("import", n, 30) for n in range(1, 31)]
    assert seen[-1].fraction == 1.0 and seen[-1].seconds_left == 0 and seen[-1].rate > 0
    assert get_dataset(tmp_path / "d", "counted").manifest.source == "clinic 2026.zip"

    def cancel_at_ten(progress):
        if progress.done == 10:
            raise Cancelled()
    with pytest.raises(Cancelled):
        import_dataset(synthetic_zip, "stopped", tmp_path / "d", face=SYNTHETIC_FACES, progress=cancel_at_ten)
    assert os.listdir(tmp_path / "d") == ["counted"]


@pytest.fixture
def faces_and_rejects(tmp_path, face_photos):
    """An archive of real faces with a photo without a face, a tiny one, a text file and a duplicate."""
    entries = {f"first/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["astronaut"], 5))}
    entries |= {f"second/{i}.jpg": d for i, d in enumerate(face_variants(face_photos["grace_hopper"], 5))}
    # Haar misses this tight face, which passes the face gate used whole; the cup fails it.
    entries |= {"first/no-face.png": png_bytes(face_haar_misses("alpha")),
                "first/cup.png": png_bytes(skimage.data.coffee()),
                "second/tiny.png": png_bytes(coloured_noise("beta", 8, size=8)),
                "second/notes.txt": b"not a photo", "second/a copy.jpg": entries["second/0.jpg"]}
    return write_zip(tmp_path / "faces.zip", entries)


def test_rejected_photos_keep_a_thumbnail_and_duplicates_name_the_file_kept(tmp_path, faces_and_rejects):
    dataset = import_dataset(faces_and_rejects, "faces", tmp_path / "d", face=FaceOptions("haar"))
    rejected = {item["file"]: item for item in dataset.manifest.rejected}
    assert rejected["second/a copy.jpg"] == {"file": "second/a copy.jpg", "reason": "duplicate of second/0.jpg",
                                             "duplicate_of": "second/0.jpg"}
    assert rejected["second/notes.txt"].keys() == {"file", "reason"}
    for never_whole in ("second/tiny.png", "first/cup.png"):
        assert rejected[never_whole]["reason"] == "no face found" and "whole_photo" not in rejected[never_whole]
    no_face = rejected["first/no-face.png"]
    assert no_face["reason"] == "no face found" and no_face["whole_photo"]["label"] == "first"
    for item in (no_face, rejected["second/tiny.png"]):
        with Image.open(dataset.path / item["thumbnail"]) as thumbnail:
            assert thumbnail.format == "PNG" and max(thumbnail.size) <= 256
    assert dataset.path.joinpath(no_face["thumbnail"]).parent.name == "rejected"


def test_photos_without_a_face_can_be_added_whole_afterwards(tmp_path, faces_and_rejects):
    from ml.datasets import retry_whole_photos, revision

    root = tmp_path / "d"
    before = import_dataset(faces_and_rejects, "faces", root, face=FaceOptions("haar")).manifest
    assert retry_whole_photos(root, "faces") == 1
    after = get_dataset(root, "faces")
    assert after.manifest.counts == {"first": 6, "second": 5} and after.manifest.face["fallback"] == "whole"
    added = after.manifest.images[-1]
    assert added["original"] == "first/no-face.png" and added["face"] == "whole-image" and added["label"] == 0
    assert after.manifest.checksum != before.checksum
    assert [item["file"] for item in after.manifest.rejected] == [
        item["file"] for item in before.rejected if item["file"] != "first/no-face.png"]
    assert len(after.load_crops()[0]) == 11
    assert revision(root, "faces", before.checksum) == before        # the earlier revision is kept
    assert retry_whole_photos(root, "faces") == 0


@pytest.fixture
def six_each(tmp_path):
    archive = write_zip(tmp_path / "six.zip", synthetic_entries(per_class=6, labels=("alpha", "beta")))
    return import_dataset(archive, "six", tmp_path / "d", face=SYNTHETIC_FACES)


def test_removing_a_photo_makes_a_new_revision_and_keeps_the_earlier_one(tmp_path, six_each):
    from ml.datasets import remove_photo, revision

    first = six_each.manifest
    removed = first.images[2]
    after = remove_photo(tmp_path / "d", "six", 2, first.checksum)
    assert after.manifest.counts == {"alpha": 5, "beta": 6} and len(after.manifest.images) == 11
    assert removed not in after.manifest.images and not (after.path / removed["file"]).exists()
    assert after.manifest.checksum not in (first.checksum, None)
    assert after.manifest.previous == first.checksum
    assert get_dataset(tmp_path / "d", "six").manifest == after.manifest
    assert revision(tmp_path / "d", "six", first.checksum) == first           # a model trained on it is traced
    assert revision(tmp_path / "d", "six", after.manifest.checksum) == after.manifest
    assert revision(tmp_path / "d", "six", "0" * 64) is None
    assert len(after.load_crops()[0]) == 11


def test_moving_a_photo_keeps_its_crop_and_so_its_cached_features(tmp_path, six_each):
    from ml.datasets import move_photo
    from ml.learning.feature_cache import block_features

    crops, _, digests, _ = six_each.load_crops()
    block_features(["hog"], {}, crops, digests, six_each.path / "features", lambda step: None)
    moved = six_each.manifest.images[0]
    after = move_photo(tmp_path / "d", "six", 0, "beta", six_each.manifest.checksum)
    image = after.manifest.images[0]
    assert image["label"] == 1 and image["sha256"] == moved["sha256"] and image["file"].startswith("1/")
    assert (after.path / image["file"]).is_file() and not (after.path / moved["file"]).exists()
    assert after.manifest.counts == {"alpha": 5, "beta": 7}
    crops, labels, digests, _ = after.load_crops()
    events = []
    block_features(["hog"], {}, crops, digests, after.path / "features", events.append)
    assert [(step.done, step.total) for step in events] == [(12, 12)]       # nothing computed again
    assert list(np.bincount(labels)) == [5, 7]


def test_a_change_to_a_stale_revision_or_below_the_minimum_is_refused(tmp_path, six_each):
    from ml.datasets import move_photo, remove_photo

    root, checksum = tmp_path / "d", six_each.manifest.checksum
    remove_photo(root, "six", 0, checksum)
    with pytest.raises(DatasetError, match="changed since"):
        remove_photo(root, "six", 0, checksum)
    current = get_dataset(root, "six").manifest.checksum
    with pytest.raises(DatasetError, match="at least 5 usable photos; too few in alpha: 4"):
        remove_photo(root, "six", 0, current)
    for index, label, message in ((99, "beta", "no photo 99"), (7, "beta", "already"), (7, "gamma", "no class")):
        with pytest.raises(DatasetError, match=message):
            move_photo(root, "six", index, label, current)
    assert get_dataset(root, "six").manifest.checksum == current


def test_the_last_change_can_be_undone_until_the_next_one_and_no_later(tmp_path, six_each):
    from ml.datasets import last_change, move_photo, remove_photo, revision, undo_change

    root, first = tmp_path / "d", six_each.manifest
    removed = first.images[2]
    after = remove_photo(root, "six", 2, first.checksum, note="Removed photo 2 from six")
    assert last_change(root, "six") == {"from": first.checksum, "to": after.manifest.checksum,
                                        "note": "Removed photo 2 from six"}
    with pytest.raises(DatasetError, match="changed since"):
        undo_change(root, "six", first.checksum)                     # a page that showed an older revision
    back = undo_change(root, "six", after.manifest.checksum)
    assert back.manifest == first == get_dataset(root, "six").manifest       # the same revision, photo and all
    assert (back.path / removed["file"]).read_bytes() and len(back.load_crops()[0]) == 12
    assert revision(root, "six", after.manifest.checksum) == after.manifest  # a model trained on it is still traced
    assert last_change(root, "six") is None
    with pytest.raises(DatasetError, match="cannot be undone"):
        undo_change(root, "six", first.checksum)                     # undone once only

    moved = move_photo(root, "six", 0, "beta", first.checksum, note="Moved photo 0")
    new_file = moved.manifest.images[0]["file"]
    back = undo_change(root, "six", moved.manifest.checksum)
    assert back.manifest == first and not (back.path / new_file).exists()
    assert (back.path / first.images[0]["file"]).is_file()

    one = remove_photo(root, "six", 1, first.checksum)
    two = remove_photo(root, "six", 6, one.manifest.checksum)        # the next change: the first one's photo goes
    kept = [p for p in (two.path / "revisions").rglob("*.png")]
    assert len(kept) == 1 and last_change(root, "six")["from"] == one.manifest.checksum
    with pytest.raises(DatasetError, match="changed since"):
        undo_change(root, "six", one.manifest.checksum)
