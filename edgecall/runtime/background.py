"""Run an iterator in a background thread behind a bounded queue.

Stages are plain iterators; wrapping one here overlaps it with its consumer
while the bounded queue keeps memory flat. Exceptions cross to the consumer;
closing the consumer (or an error downstream) stops the producer.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterator, TypeVar

T = TypeVar("T")
_DONE = object()


def background(source: Iterator[T], maxsize: int = 4, name: str = "stage") -> Iterator[T]:
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
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
            if close is not None and stop.is_set():
                try:
                    close()
                except Exception:
                    pass
        put(_DONE)

    thread = threading.Thread(target=produce, name=f"edgecall-{name}", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc
