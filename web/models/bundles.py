"""Model bundles at the edges: download a version, import one from another site (admins; audited)."""
import tempfile
from pathlib import Path

from flask import current_app, send_file

from ml.versions.bundles import export_bundle, import_bundle
from web.db import audit, db
from web.services import get_registry
from web.uploads import private_temp_folder


def bundle_key():
    """Return the site's bundle signing key (FACEDX_BUNDLE_KEY), or None when bundles are not signed."""
    return current_app.config.get("BUNDLE_KEY") or None


def export_version(actor, version, stream):
    """Write a version's bundle (signed where the site has a key) to `stream`, audited: the one export action."""
    export_bundle(get_registry().get(version), stream, bundle_key())
    audit(actor, "model.export", version)
    db.session.commit()


def bundle_download(version, actor):
    """Answer with a version's bundle as a zip attachment; the export is audited."""
    get_registry().get(version)                                  # an unknown version: 404 before any file
    spool = tempfile.TemporaryFile(dir=private_temp_folder())     # unnamed: gone when the answer is sent
    export_version(actor, version, spool)
    spool.seek(0)
    return send_file(spool, mimetype="application/zip", as_attachment=True,
                     download_name=f"facedx-model-{version}.zip")


def bundle_upload(stream, filename, actor):
    """Import an uploaded bundle as a new, inactive version; audited. Return the ModelVersion."""
    version = import_bundle(stream, get_registry(), bundle_key(),
                            origin=f"uploaded by {getattr(actor, 'username', actor)} as {Path(filename or '').name!r}")
    audit(actor, "model.import", f"{version.version} ({'signed' if version.card.imported['signed'] else 'unsigned'})")
    db.session.commit()
    return version
