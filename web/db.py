"""The database in the web app: Flask-SQLAlchemy over the records of web/records.py, and the audit line."""
from flask_sqlalchemy import SQLAlchemy

from web.records import AuditEvent, Base

db = SQLAlchemy(model_class=Base)


def audit(actor, action, target=""):
    """Record an administrative action by a user, or by a name such as the command line's (committed by the caller)."""
    db.session.add(AuditEvent(username=getattr(actor, "username", actor), action=action, target=str(target)))
