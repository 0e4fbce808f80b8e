"""The audit log page: the latest administrative actions."""
from flask import render_template

from web.admin import bp
from web.db import db
from web.records import AuditEvent


@bp.get("/audit")
def audit_log():
    """Show the latest administrative actions."""
    events = db.session.execute(db.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(500)).scalars().all()
    return render_template("admin/audit.html", events=events)
