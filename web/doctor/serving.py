"""What keeps doctors from waiting on each other: places per account, maps in their own pool, clients that left.

nginx (deploy/nginx.conf) gives photos a fixed number of places in gunicorn; these checks are the
application's side of it, and hold without nginx too.
"""
import select
import socket
import threading
from collections import Counter
from contextlib import contextmanager

from flask import current_app, request

from ml.errors import FaceDxError
from ml.serving.explanation_pool import ExplanationPool


class TooManyAtOnce(FaceDxError):
    """One account already has as many photos being analysed as it may (429)."""


class AccountPlaces:
    """At most `limit` photos analysed at once per account, so that one account cannot take every place."""

    def __init__(self, limit):
        self.limit = limit
        self._held = Counter()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)

    @contextmanager
    def held(self, account):
        """Hold one of `account`'s places while the block runs; raise TooManyAtOnce when all are held."""
        with self._lock:
            if self._held[account] >= self.limit:
                raise TooManyAtOnce(f"This account already has {self.limit} photos being analysed; "
                                    "wait for their results, then send this one again.")
            self._held[account] += 1
        try:
            yield
        finally:
            with self._lock:
                self._held[account] -= 1
                if not self._held[account]:
                    del self._held[account]
                if not self._held:
                    self._idle.notify_all()

    def wait_idle(self, timeout):
        """Wait until no photo is being analysed, or `timeout` seconds; return whether none is."""
        with self._idle:
            return self._idle.wait_for(lambda: not self._held, timeout)


_CREATING = threading.Lock()


def _extension(name, create):
    """Return the application's one `name`, created (once, whichever thread asks first) on first use."""
    found = current_app.extensions.get(name)
    if found is None:
        with _CREATING:
            found = current_app.extensions.get(name)
            if found is None:
                found = current_app.extensions[name] = create(current_app.config)
    return found


def account_places():
    """Return the application's one AccountPlaces."""
    return _extension("facedx.account_places", lambda c: AccountPlaces(c["PREDICTIONS_PER_ACCOUNT"]))


def analysing(account):
    """Hold one of the account's places for a photo's analysis."""
    return account_places().held(account)


def explanation_pool():
    """Return the application's one ExplanationPool (its maps let photos being analysed go first)."""
    places = account_places()
    return _extension("facedx.explanation_pool", lambda c: ExplanationPool(
        c["MAP_WORKERS"], c["MAX_WAITING_MAPS"], yield_to=places.wait_idle))


def explained(account, work):
    """Return `work()` computed in the explanation pool for `account`, dropped if this request's client leaves."""
    return explanation_pool().submit(account, work, client_gone(request.environ))


def client_gone(environ):
    """Return a function that says whether the client of this request has closed its connection.

    gunicorn hands the request's socket to the application; the body has been read, so the socket
    turns readable with nothing to read only when the client (or nginx for it) hung up. Elsewhere
    (tests, another server) it always says no.
    """
    sock = environ.get("gunicorn.socket")
    if sock is None:
        return lambda: False

    def gone():
        try:
            readable, _, _ = select.select([sock], [], [], 0)
            return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True
    return gone
