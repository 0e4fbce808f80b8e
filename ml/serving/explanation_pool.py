"""Explanation maps on their own threads, apart from predictions: one per person at a time, the newest wins.

A map is asked for after its result is shown. Maps are computed by `workers` threads of their own,
never by the prediction batcher, so a doctor's photo never waits behind another doctor's map. Each
owner (a user) has at most one map waiting: asking again replaces the waiting one (a doctor who
opened a new result no longer needs the old map), and its caller is told so. A map whose client has
gone before it started is dropped. At most `max_waiting` maps wait; beyond that, Overloaded.
Before each map, `yield_to(YIELD_S)` may hold it while photos are being analysed: on a small
server a map and a photo share the same cores, and the photo comes first (for at most YIELD_S).
"""
import threading
from collections import OrderedDict
from concurrent.futures import Future

from ml.errors import FaceDxError, Overloaded

POLL_S = 0.25            # how often a waiting caller checks that its client is still there
YIELD_S = 2.0            # the longest a map waits for the photos being analysed before it runs anyway


class Replaced(FaceDxError):
    """The same person asked for a newer map before this one started (409)."""


class ClientGone(FaceDxError):
    """The client went away before its map started; nobody reads the answer."""


class ExplanationPool:
    """Run explanation work for owners on a few threads of its own; see the module's description."""

    def __init__(self, workers=1, max_waiting=16, yield_to=None):
        self.max_waiting = max_waiting
        self._yield_to = yield_to
        self._waiting = OrderedDict()        # owner -> (work, future), oldest first
        self._changed = threading.Condition()
        self._threads = [threading.Thread(target=self._run, name=f"facedx-maps-{i}", daemon=True)
                         for i in range(workers)]
        for thread in self._threads:
            thread.start()

    def submit(self, owner, work, gone=lambda: False):
        """Return `work()`'s result, computed on the pool's threads; raise Replaced, ClientGone or Overloaded.

        `gone()` says whether the caller's client has hung up; it is asked while the work waits.
        """
        future = Future()
        with self._changed:
            replaced = self._waiting.pop(owner, None)
            if replaced is None and len(self._waiting) >= self.max_waiting:
                raise Overloaded("Too many maps are being computed; the map will load if you reload the page "
                                 "in a few seconds.")
            self._waiting[owner] = (work, future)
            self._changed.notify()
        if replaced is not None:
            replaced[1].set_exception(Replaced("A newer map was asked for by the same person; this one was dropped."))
        while True:
            try:
                return future.result(timeout=POLL_S)
            except TimeoutError:
                if gone() and self._drop(owner, future):
                    raise ClientGone("The client went away before its map was computed.") from None

    def waiting(self):
        """Return how many maps wait to start."""
        with self._changed:
            return len(self._waiting)

    def _drop(self, owner, future):
        """Remove a map that has not started; return whether it was still waiting."""
        with self._changed:
            if self._waiting.get(owner, (None, None))[1] is future:
                del self._waiting[owner]
                return True
            return False

    def _run(self):
        while True:
            with self._changed:
                while not self._waiting:
                    self._changed.wait()
                _, (work, future) = self._waiting.popitem(last=False)
            if self._yield_to is not None:
                self._yield_to(YIELD_S)
            try:
                future.set_result(work())
            except BaseException as error:         # the caller learns of any failure
                future.set_exception(error)
