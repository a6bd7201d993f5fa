"""A process-wide budget of pixels being decoded at once, shared by every decoding thread.

Decoding runs on one worker per core, and each worker holds the pixels of the photo
it decodes until they are shrunk to the network's size. A few huge photos at once
would each hold hundreds of megabytes; the budget makes a worker wait, before it
decodes, until the pixels it is about to decode fit beside those already held.

The budget is counted in pixels as the decoder will produce them (after a JPEG's
reduced decoding has picked its size), not in bytes: pipeline.prepare_for_network
keeps a large image at about 4 bytes a pixel (Pillow's) until it is shrunk.
`TG_DECODE_BUDGET_MPIX` sets it in megapixels; 0 means no limit.
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

ENV = "TG_DECODE_BUDGET_MPIX"

# 64 MP, about 260 MB of pixels beside the ~0.8 GB that the process holds anyway: a
# 61 MP camera's photos still decode at full size (only JPEGs over the whole budget are
# decoded reduced, images.decode_bytes), 2 workers never wait on ordinary photos, and
# 16 workers stay under 1.5 GB (bench/huge_photos.py). A photo over it decodes alone.
DEFAULT_MPIX = 64.0


class DecodeBudget:
    """At most `capacity` pixels held at once (None: no limit), first come, first served.

    A request larger than the whole budget waits until nothing else is held, then takes
    all of it: such a photo still decodes, alone. Requests are granted in arrival order,
    so a large photo waiting for room is never overtaken, and so never starved, by a
    stream of small ones.
    """

    def __init__(self, capacity: int | None):
        if capacity is not None and capacity < 1:
            raise ValueError(f"a decode budget needs at least one pixel, not {capacity}")
        self.capacity = capacity
        self.peak = 0  # the most pixels ever held at once: what tests and benchmarks check
        self._held = 0
        self._waiting: deque[object] = deque()  # one ticket per waiting request, oldest first
        self._changed = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        """Wait until `pixels` fit (or the budget is empty), hold them inside the block."""
        grant = pixels if self.capacity is None else min(pixels, self.capacity)
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
            self._changed.wait_for(lambda: self._waiting[0] is ticket and self._fits(grant))
            self._waiting.popleft()
            self._held += grant
            self.peak = max(self.peak, self._held)
            self._changed.notify_all()  # the next in line may fit beside this one
        try:
            yield
        finally:
            with self._changed:
                self._held -= grant
                self._changed.notify_all()

    def _fits(self, grant: int) -> bool:
        return self.capacity is None or self._held + grant <= self.capacity


def capacity_from(env: Mapping[str, str]) -> int | None:
    """The budget in pixels that `env` asks for: TG_DECODE_BUDGET_MPIX, else the default."""
    text = env.get(ENV, "").strip()
    try:
        mpix = float(text) if text else DEFAULT_MPIX
        if not (math.isfinite(mpix) and mpix >= 0):
            raise ValueError
    except ValueError:
        print(f"tensor-guess: {ENV}={text!r} is not a number of megapixels (0: no limit); "
              f"using {DEFAULT_MPIX:g}", file=sys.stderr, flush=True)
        mpix = DEFAULT_MPIX
    if mpix == 0:
        return None
    return max(1, round(mpix * 1_000_000))


_shared: DecodeBudget | None = None
_shared_lock = threading.Lock()


def shared() -> DecodeBudget:
    """The one budget of this process, sized from the environment on first use."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = DecodeBudget(capacity_from(os.environ))
        return _shared
