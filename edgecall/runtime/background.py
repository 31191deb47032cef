"""Run iterators in background threads behind bounded queues, and stop them all together.

Stages are plain iterators; :meth:`Stages.background` overlaps one with its
consumer while the bounded queue keeps memory flat. Exceptions cross to the
consumer. :meth:`Stages.close` stops every stage of a run and waits for its
thread: a process must not exit while a stage is inside native inference code
(the C++ runtime aborts it: "terminate called without an active exception").
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()
POLL_SECONDS = 0.1  # how often a blocked producer or consumer looks whether the run is stopping


class Stages:
    """The background threads of one run."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def background(self, source: Iterator[T], maxsize: int = 4, name: str = "stage") -> Iterator[T]:
        """``source``'s items, produced in a thread of their own while the consumer works."""
        q: queue.Queue = queue.Queue(maxsize=maxsize)
        stopping = self.stopping

        def put(item: object) -> bool:
            while not stopping.is_set():
                try:
                    q.put(item, timeout=POLL_SECONDS)
                    return True
                except queue.Full:
                    continue
            return False

        def produce() -> None:
            try:
                for item in source:
                    if not put(item):
                        return
            except BaseException as exc:  # handed to the consumer, which re-raises it
                put(_Failure(exc))
                return
            finally:
                close = getattr(source, "close", None)
                if close is not None and stopping.is_set():
                    try:
                        close()  # runs the source's own cleanup (waiting for inference in flight) in this thread
                    except Exception:
                        pass
            put(_DONE)

        thread = threading.Thread(target=produce, name=f"edgecall-{name}", daemon=True)
        self._threads.append(thread)
        thread.start()
        return self._consume(q)

    def _consume(self, q: queue.Queue) -> Iterator:
        finished = False
        try:
            while True:
                try:
                    item = q.get(timeout=POLL_SECONDS)
                except queue.Empty:
                    if self.stopping.is_set():
                        return
                    continue
                if item is _DONE:
                    finished = True
                    return
                if isinstance(item, _Failure):
                    raise item.exc
                yield item
        finally:
            if not finished:  # the consumer stopped early (an error, a closed output): stop the whole run
                self.stopping.set()

    def close(self, timeout: float = 30.0) -> bool:
        """Stop every stage and wait for its thread; False when one is still running after ``timeout``."""
        self.stopping.set()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(thread.is_alive() for thread in self._threads)


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
