"""Reading ahead and writing behind, for the offline tools (`extract`, `bag process`).

Disk I/O, image decoding and message (de)serialisation run in background threads while the extractor works, so
that a tool's time per frame approaches the extractor's. Both are bounded (a slow disk holds the tool back, it does
not fill the memory), keep the order of their items, and raise a background thread's error in the calling thread.
The native work of those threads (OpenCV's decoders, sqlite, zlib, numpy copies) releases the GIL.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_END = object()
_POLL_S = 0.05  # how often a blocked thread looks whether the other side has gone


def _put(items: queue.Queue, item: Any, gone: Callable[[], bool]) -> bool:
    """Put `item`, waiting for room while the consumer is there; False once `gone()`."""
    while not gone():
        try:
            items.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def read_ahead(produce: Callable[[], Iterable[T]], depth: int = 4) -> Iterator[T]:
    """The items of `produce()`, made in a background thread up to `depth` ahead of the consumer, in order.

    `produce` is called in that thread, so whatever it opens belongs to it (sqlite connections may only be used by
    the thread that made them). An exception raised there is raised here after the items made before it; closing
    this iterator early stops the thread after its current item."""
    items: queue.Queue = queue.Queue(depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for item in produce():
                if not _put(items, (True, item), stop.is_set):
                    return
        except BaseException as exc:  # handed to the consumer, raised there
            _put(items, (False, exc), stop.is_set)
            return
        _put(items, (False, _END), stop.is_set)

    thread = threading.Thread(target=run, name="read-ahead", daemon=True)
    thread.start()
    try:
        while True:
            ok, value = items.get()
            if ok:
                yield value
            elif value is _END:
                return
            else:
                raise value
    finally:
        stop.set()
        thread.join()


class WriteBehind(AbstractContextManager, Generic[R]):
    """Jobs on one resource, run in order by a background thread that opens and closes the resource itself.

    `with WriteBehind(lambda: write_bag(...)) as behind: behind.submit(lambda bag: bag.write(...))`. Entering opens
    the resource (its error raised here); at most `depth` jobs wait. A job's error stops the thread: the resource's
    context exits with it (a bag in the making is discarded) and the next `submit`, or the end of the block, raises
    it. An error in the block makes the thread drop the jobs still waiting and exit the resource's context with that
    error. Leaving the block normally waits for every job and closes the resource."""

    def __init__(self, open_resource: Callable[[], AbstractContextManager[R]], depth: int = 8):
        self._open = open_resource
        self._jobs: queue.Queue = queue.Queue(depth)
        self._opened = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="write-behind", daemon=True)

    def _run(self) -> None:
        try:
            with self._open() as resource:
                self._opened.set()
                while (job := self._jobs.get()) is not _END:
                    if isinstance(job, BaseException):  # the block failed: leave the resource's context with it
                        raise job
                    job(resource)
        except BaseException as exc:
            self._error = exc
        finally:
            self._opened.set()

    def __enter__(self) -> WriteBehind[R]:
        self._thread.start()
        self._opened.wait()
        if self._error is not None:
            self._thread.join()
            raise self._error
        return self

    def submit(self, job: Callable[[R], Any]) -> None:
        """Queue `job(resource)`; raises the error of an earlier job, if one failed."""
        if self._error is None and _put(self._jobs, job, lambda: not self._thread.is_alive()):
            return
        self._thread.join()
        raise self._error or RuntimeError("the write-behind thread has stopped")

    def __exit__(self, kind, error, traceback) -> None:
        if error is not None:
            while True:  # drop what waits: nothing more is to be written
                try:
                    self._jobs.get_nowait()
                except queue.Empty:
                    break
            _put(self._jobs, error, lambda: not self._thread.is_alive())
            self._thread.join()
            return None  # the block's own error propagates
        _put(self._jobs, _END, lambda: not self._thread.is_alive())
        self._thread.join()
        if self._error is not None:
            raise self._error
        return None
