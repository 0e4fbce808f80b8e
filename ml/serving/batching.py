"""Gather concurrent predictions into small batches: a burst of requests uses the batch throughput."""
import queue
import threading
import time
from concurrent.futures import Future

import numpy as np

from ml.errors import Overloaded


class MicroBatcher:
    """Run `predict(model, crops)` on batches of the crops that arrive within a few milliseconds.

    One thread does the work; callers wait on a future. A single request pays at most `window_s`
    extra; at most `max_pending` requests wait, beyond that `submit` raises Overloaded at once.
    """

    def __init__(self, predict, max_batch=16, window_s=0.005, max_pending=64):
        self.predict, self.max_batch, self.window_s = predict, max_batch, window_s
        self._queue = queue.Queue(maxsize=max_pending)
        self._thread = threading.Thread(target=self._run, name="facedx-batcher", daemon=True)
        self._thread.start()

    def submit(self, model, crop):
        """Return the prediction for one crop with `model`, computed in a batch with concurrent ones."""
        future = Future()
        try:
            self._queue.put_nowait((model, crop, future))
        except queue.Full:
            raise Overloaded("The server is busy; try again in a few seconds.") from None
        return future.result()

    def _run(self):
        while True:
            batch = [self._queue.get()]
            deadline = time.monotonic() + self.window_s
            while len(batch) < self.max_batch:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(self._queue.get(timeout=remaining))
                except queue.Empty:
                    break
            self._process(batch)

    def _process(self, batch):
        """Predict each model's share of the batch in one call (a batch may span an activation)."""
        by_model = {}
        for item in batch:
            by_model.setdefault(id(item[0]), []).append(item)
        for items in by_model.values():
            try:
                results = self.predict(items[0][0], np.stack([crop for _, crop, _ in items]))
            except Exception as exc:                     # every caller learns of the failure
                for _, _, future in items:
                    future.set_exception(exc)
                continue
            for (_, _, future), result in zip(items, results):
                future.set_result(result)
