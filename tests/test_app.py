"""The application factory: what every FaceDx process sets up before it serves or runs anything."""
import os
import stat

from tests.helpers import SYNTHETIC_FACES, synthetic_entries, write_zip


def test_files_in_the_data_folder_are_private(app, tmp_path):
    from ml.datasets import import_dataset
    from web.services import datasets_root

    archive = write_zip(tmp_path / "c.zip", synthetic_entries(per_class=5))
    with app.app_context():
        import_dataset(archive, "colours", datasets_root(), face=SYNTHETIC_FACES)
    data = app.config["DATA_DIR"]
    paths = [os.path.join(folder, name) for folder, folders, files in os.walk(data) for name in folders + files]
    modes = {os.path.relpath(path, data): stat.S_IMODE(os.stat(path).st_mode) for path in paths}
    assert "instance/facedx.sqlite" in modes and "uploads/datasets/colours/dataset.json" in modes
    assert {path: mode for path, mode in modes.items() if mode & 0o077} == {}


def test_folders_of_an_earlier_version_are_closed_to_other_users(tmp_path, monkeypatch):
    from app import create_app

    data = tmp_path / "data"
    for name in ("instance", "uploads", "models"):
        (data / name).mkdir(parents=True, mode=0o755)
        os.chmod(data / name, 0o755)
    monkeypatch.setenv("FACEDX_DATA_DIR", str(data))
    create_app({"TESTING": True})
    assert {name: stat.S_IMODE(os.stat(data / name).st_mode) for name in ("instance", "uploads", "models")} == {
        "instance": 0o700, "uploads": 0o700, "models": 0o700}


def test_the_migrations_build_the_schema_the_models_declare(app):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from web.db import db

    with app.app_context(), db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), db.metadata) == []
