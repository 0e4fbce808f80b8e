"""The audit log: who did what, written by every action (web.db.audit) and read on its page."""
