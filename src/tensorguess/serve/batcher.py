"""The request queue of serve: photos of concurrent requests scored together, in batches.

A request puts its photo in a bounded queue and awaits the answer; one scoring thread
takes the oldest photo and those already waiting, up to a batch, and, when the server is
busy (more than one photo in this batch or the last), whatever arrives within a few
milliseconds more; then it scores them in one call. Under load the batches fill and the
server runs at the batch speed of guessDir; a lone client (the camera page, one frame at
a time) waits for nothing: that wait was 5 ms of its 25 ms a frame. A full queue
refuses at once (`QueueFull`: the server answers 503) instead of growing without bound,
and a request that gave up (its timeout) is dropped before it is scored.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


class QueueFull(Exception):
    """Every place of the queue is taken: come back later (HTTP 503)."""


@dataclass
class _Pending:
    photo: bytes
    future: asyncio.Future
    loop: asyncio.AbstractEventLoop


_STOP = object()


class Batcher:
    """Scores photos with `score` (a list of photos -> a list of results, in order) in batches.

    `max_batch` photos at most per call; the first photo of a batch waits at most
    `max_wait_s` for others to join it; at most `max_queue` photos wait (those being
    scored not counted). `score` runs on this batcher's one thread only, so a
    classifier that is not thread-safe needs no lock.
    """

    def __init__(self, score: Callable[[list[bytes]], Sequence[object]], max_batch: int = 32,
                 max_wait_s: float = 0.005, max_queue: int = 64):
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("a batch and the queue need at least one place, and the wait can't be negative")
        self.score = score
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue: queue.Queue = queue.Queue(maxsize=max_queue)
        # What /healthz tells, tests and benchmarks check: how well requests were batched.
        self.photos_scored = self.batches = self.largest_batch = 0
        self._last_batch = 0
        self._thread = threading.Thread(target=self._work, name="tensor-guess-batcher", daemon=True)
        self._thread.start()

    async def submit(self, photo: bytes) -> object:
        """The result for one photo (what `score` gave for it); QueueFull when the queue is full."""
        loop = asyncio.get_running_loop()
        pending = _Pending(photo, loop.create_future(), loop)
        try:
            self.queue.put_nowait(pending)
        except queue.Full:
            raise QueueFull from None
        return await pending.future

    def close(self) -> None:
        """Stop the scoring thread once the photos already queued are done."""
        self.queue.put(_STOP)
        self._thread.join()

    def _work(self) -> None:
        while True:
            first = self.queue.get()
            if first is _STOP:
                return
            batch, stop = [first], False
            deadline = time.monotonic() + self.max_wait_s
            while len(batch) < self.max_batch:
                busy = len(batch) > 1 or self._last_batch > 1
                try:
                    item = self.queue.get(timeout=max(0.0, deadline - time.monotonic())) if busy \
                        else self.queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stop = True
                    break
                batch.append(item)
            self._last_batch = len(batch)
            self._score(batch)
            if stop:
                return

    def _score(self, batch: list[_Pending]) -> None:
        # A request that timed out (its future cancelled) is not worth scoring.
        wanted = [item for item in batch if not item.future.cancelled()]
        if not wanted:
            return
        self.photos_scored += len(wanted)
        self.batches += 1
        self.largest_batch = max(self.largest_batch, len(wanted))
        try:
            results = list(self.score([item.photo for item in wanted]))
            if len(results) != len(wanted):
                raise RuntimeError(f"the scorer gave {len(results)} results for {len(wanted)} photos")
        except Exception as error:  # the whole batch failed: each request hears why
            for item in wanted:
                item.loop.call_soon_threadsafe(_settle, item.future, None, error)
            return
        for item, result in zip(wanted, results, strict=True):
            item.loop.call_soon_threadsafe(_settle, item.future, result, None)


def _settle(future: asyncio.Future, result: object, error: BaseException | None) -> None:
    """On the event loop: answer a request that is still waiting."""
    if future.done():  # cancelled meanwhile (timed out, or the client went away)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
