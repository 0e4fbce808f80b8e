"""How pages write times and counts for a person to read: a time with its zone, a count with its noun."""
from datetime import datetime, timezone

from markupsafe import Markup, escape


def as_utc(moment):
    """Return a datetime in UTC from a naive UTC datetime (the records') or an ISO 8601 string (cards, manifests)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def local_time(moment, seconds=False):
    """Write a time as <time>: UTC with "UTC" in the page, the reader's own time and zone once static/js/times.js runs.

    An empty or unreadable moment gives "" (an old record without one).
    """
    if not moment:
        return ""
    try:
        moment = as_utc(moment)
    except ValueError:
        return ""
    shown = moment.strftime("%Y-%m-%d %H:%M:%S" if seconds else "%Y-%m-%d %H:%M")
    precision = "second" if seconds else "minute"
    return Markup(f'<time datetime="{moment.isoformat(timespec="seconds")}" data-local="{precision}">'
                  f'{escape(shown)} UTC</time>')


def plural(count, noun, nouns=None):
    """Write a count with its noun in the right number: "1 photo", "3 photos" (`nouns` for an irregular plural)."""
    return f"{count} {noun if count == 1 else nouns or noun + 's'}"


def init_app(app):
    """Offer both to every template: `{{ job.created_at|local_time }}`, `{{ n|plural('photo') }}`."""
    app.add_template_filter(local_time)
    app.add_template_filter(plural)
