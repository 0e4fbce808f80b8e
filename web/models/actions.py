"""Actions on model versions, one function each: it checks, does the work, audits and commits.

The pages, the API and the command line call these; none of them audits on its own.
"""
from web.db import audit, db
from web.records import IntendedUse
from web.services import get_registry


def activate(actor, version, force=False):
    """Make `version` the one that serves predictions; one flagged as not useful needs `force` (else NotUseful)."""
    get_registry().activate(version, force)
    audit(actor, "model.activate", f"{version} (forced: flagged as not useful)" if force else version)
    db.session.commit()


def rollback(actor):
    """Re-activate the previously active version; return its name."""
    version = get_registry().rollback()
    audit(actor, "model.rollback", version)
    db.session.commit()
    return version


def delete_version(actor, version):
    """Delete a version that is not active (a damaged one too), record who did, and commit."""
    get_registry().delete(version)
    audit(actor, "model.delete", version)
    db.session.commit()


def set_thresholds(actor, version, min_probability, min_margin):
    """Set a version's abstention thresholds; they apply to the next prediction."""
    get_registry().set_thresholds(version, float(min_probability), float(min_margin))
    audit(actor, "model.thresholds", f"{version} {min_probability}/{min_margin}")
    db.session.commit()


def set_intended_use(actor, version, text):
    """Set what a version is for, as doctors read it in the model facts (stored by version)."""
    get_registry().get(version)
    row = db.session.get(IntendedUse, version) or IntendedUse(model_version=version)
    row.text, row.updated_by = text.strip(), getattr(actor, "username", actor)
    db.session.add(row)
    audit(actor, "model.intended_use", version)
    db.session.commit()
