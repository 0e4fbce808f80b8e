"""Actions on model versions that the page, the API and the command line share: one function each."""
from web import get_registry
from web.db import audit, db


def delete_version(actor, version):
    """Delete a version that is not active (a damaged one too), record who did, and commit."""
    get_registry().delete(version)
    audit(actor, "model.delete", version)
    db.session.commit()
