"""The job process's entry point: it builds what it needs itself and never creates the web app."""
import json
import subprocess
import sys

from tests.helpers import PROJECT, synthetic_entries, write_zip

NO_APP = """
import gc, sys
import flask
import {module}
apps = [o for o in gc.get_objects() if flask.Flask in type(o).__mro__]
print(json.dumps({{"app_module": "app" in sys.modules, "apps": len(apps)}}))
"""


def imported(module, env):
    """Import `module` in a fresh interpreter; return whether it imported app.py and how many Flask apps exist."""
    result = subprocess.run([sys.executable, "-c", "import json" + NO_APP.format(module=module)], cwd=PROJECT,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_job_process_never_imports_the_web_app(tmp_path):
    env = {"FACEDX_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    assert imported("worker", env) == {"app_module": False, "apps": 0}
    assert imported("app", env) == {"app_module": True, "apps": 0}          # importing the factory builds nothing
    assert imported("wsgi", env) == {"app_module": True, "apps": 1}         # gunicorn's entry point builds it


def test_a_recorded_import_runs_to_its_end_without_an_app(app, tmp_path):
    """worker.run_job runs outside any app context: the database and the folders come from the settings."""
    import worker
    from web.db import db
    from web.jobs.records import job_settings
    from web.records import AuditEvent, Job

    tmp = tmp_path / "data" / "uploads" / "tmp"
    tmp.mkdir(parents=True)
    write_zip(tmp / "import-1.zip", synthetic_entries(per_class=5))
    options = {"upload": "import-1.zip", "source": "clinic.zip", "face_detector": "haar", "face_fallback": "whole"}
    with app.app_context():
        job = Job(kind="import", dataset="colours", options_json=json.dumps(options), created_by="ada")
        db.session.add(job)
        db.session.commit()
        job_id, settings = job.id, job_settings(app.config)
    seen, first_shown = [], []

    def observe(progress):
        if not seen:                   # what the job's page shows before the job's first step: its start-up
            with app.app_context():
                job = db.session.get(Job, job_id)
                first_shown.append((job.status, job.progress["step"]))
        seen.append(progress)
    assert worker.run_job(job_id, settings, observe) == "succeeded"
    assert first_shown == [("running", "loading the face networks")] and seen[0].phase == "starting"
    assert [(p.done, p.total) for p in seen[1:]] == [(n, 15) for n in range(1, 16)]
    with app.app_context():
        job = db.session.get(Job, job_id)
        assert job.progress == dict(seen[-1].as_dict(), phase="succeeded") and job.heartbeat_at is not None
        assert [(e.username, e.action, e.target) for e in db.session.query(AuditEvent)] == [
            ("ada", "dataset.import", "colours")]
    manifest = json.loads((tmp_path / "data" / "uploads" / "datasets" / "colours" / "dataset.json").read_text())
    assert manifest["source"] == "clinic.zip" and manifest["counts"] == {"alpha": 5, "beta": 5, "gamma": 5}
    assert list(tmp.iterdir()) == []                       # the uploaded archive went with the job


FLASK_FREE = """
import sys
import worker
from web.jobs import run
{kinds}
print(sorted(m for m in sys.modules if m.split(".")[0] in ("flask", "flask_sqlalchemy", "flask_login", "flask_wtf")))
"""


def test_the_job_process_imports_no_flask_only_plain_sqlalchemy(tmp_path):
    """What the job process runs (worker.py, web/jobs/run.py and what each kind imports) reaches ml/ without Flask."""
    import inspect

    from web.jobs import run
    kinds = "\n".join(line.strip() for line in inspect.getsource(run).splitlines()
                      if line.startswith("    from ") or line.startswith("    import "))
    assert "ml.learning.training" in kinds and "ml.datasets" in kinds          # the kinds' own imports
    env = {"FACEDX_DATA_DIR": str(tmp_path / "data"), "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-c", FLASK_FREE.format(kinds=kinds)], cwd=PROJECT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"
