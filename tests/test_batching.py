import threading

import numpy as np
import pytest

from ml.errors import Overloaded
from ml.serving.batching import MicroBatcher


def run_together(batcher, calls):
    """Submit every (model, crop) at once from its own thread; return the results in order."""
    results = [None] * len(calls)
    start = threading.Barrier(len(calls))

    def call(i, model, crop):
        start.wait()
        try:
            results[i] = batcher.submit(model, crop)
        except Exception as exc:        # collected and asserted on by the tests
            results[i] = exc
    threads = [threading.Thread(target=call, args=(i, *c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_concurrent_requests_share_a_batch_and_each_gets_its_own_answer():
    sizes = []

    def predict(model, crops):
        sizes.append(len(crops))
        return crops.reshape(len(crops), -1).mean(axis=1) * model
    batcher = MicroBatcher(predict, max_batch=16, window_s=0.2)
    crops = [np.full((4, 4, 3), i, np.uint8) for i in range(8)]
    results = run_together(batcher, [(2, crop) for crop in crops])
    assert results == [2.0 * i for i in range(8)]
    assert max(sizes) > 1 and sum(sizes) == 8


def test_a_batch_spanning_an_activation_uses_each_requests_model():
    calls = []

    def predict(model, crops):
        calls.append((model, len(crops)))
        return [model] * len(crops)
    batcher = MicroBatcher(predict, window_s=0.2)
    results = run_together(batcher, [("old", np.zeros((2, 2, 3))), ("new", np.zeros((2, 2, 3)))] * 3)
    assert results == ["old", "new"] * 3 and sum(n for _, n in calls) == 6


def test_a_failure_reaches_every_caller_in_the_batch():
    def predict(model, crops):
        raise RuntimeError("model exploded")
    batcher = MicroBatcher(predict, window_s=0.1)
    results = run_together(batcher, [(1, np.zeros((2, 2, 3)))] * 3)
    assert all(isinstance(r, RuntimeError) for r in results)


def test_too_many_waiting_requests_are_refused_at_once():
    busy, release = threading.Event(), threading.Event()

    def predict(model, crops):
        busy.set()
        release.wait(5)
        return [0] * len(crops)
    batcher = MicroBatcher(predict, max_batch=1, window_s=0, max_pending=2)
    waiting = [threading.Thread(target=batcher.submit, args=(1, np.zeros(1))) for _ in range(3)]
    waiting[0].start()
    assert busy.wait(10)                  # the first is being predicted before the others queue behind it
    for thread in waiting[1:]:
        thread.start()
    import time
    deadline = time.monotonic() + 10      # one is being predicted, two wait: the queue is full
    while batcher._queue.qsize() < 2:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    with pytest.raises(Overloaded, match="busy"):
        batcher.submit(1, np.zeros(1))
    release.set()
    for thread in waiting:
        thread.join()
