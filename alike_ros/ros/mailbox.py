"""The node's inbox: one slot per camera holding its newest frame, served to the worker camera by camera in turn.

A slot keeps only the newest frame, so a slow model or a slow consumer never builds a backlog (each frame replaced
unread is counted by the caller). `take` starts its search after the camera it served last: a camera that always has
a frame waiting cannot starve one that has a frame now and then. With several workers, a camera whose frame a worker
holds is not served again until that worker calls `done`, so each camera's frames stay in order.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Generic, TypeVar

Item = TypeVar("Item")


class Mailboxes(Generic[Item]):
    def __init__(self, names: Iterable[str]):
        self._cond = threading.Condition()
        self._order = list(names)
        self._slots: dict[str, Item | None] = dict.fromkeys(self._order)
        self._next = 0  # where the next search starts: after the camera served last
        self._busy: set[str] = set()  # cameras whose frame a worker holds

    def put(self, name: str, item: Item) -> bool:
        """Leave `item` in the slot of camera `name`; True when it replaced a frame not yet taken."""
        with self._cond:
            replaced = self._slots[name] is not None
            self._slots[name] = item
            self._cond.notify()
            return replaced

    def take(self, timeout: float) -> tuple[str, Item] | None:
        """The next camera in turn that has a frame and no worker on it, and the frame (the caller calls `done`
        with the name when finished); None when there was none within `timeout` s."""
        taken = self._take(timeout, limit=1)
        return taken[0] if taken else None

    def take_ready(self, timeout: float) -> list[tuple[str, Item]]:
        """Every camera that has a frame and no worker on it, in turn, with its frame (the caller calls `done` for
        each): what a batch takes. Empty when there was none within `timeout` s."""
        return self._take(timeout, limit=len(self._order))

    def _take(self, timeout: float, limit: int) -> list[tuple[str, Item]]:
        taken: list[tuple[str, Item]] = []
        with self._cond:
            if not self._ready():
                self._cond.wait(timeout)
            for offset in range(len(self._order)):
                index = (self._next + offset) % len(self._order)
                name = self._order[index]
                item = self._slots[name]
                if item is not None and name not in self._busy:
                    self._slots[name] = None
                    self._busy.add(name)
                    taken.append((name, item))
                    last = index
                    if len(taken) == limit:
                        break
            if taken:
                self._next = last + 1
        return taken

    def done(self, name: str) -> None:
        """The worker that took camera `name`'s frame has finished with it."""
        with self._cond:
            self._busy.discard(name)
            self._cond.notify()

    def _ready(self) -> bool:
        return any(item is not None and name not in self._busy for name, item in self._slots.items())
