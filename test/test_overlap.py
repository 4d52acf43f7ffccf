"""Reading ahead and writing behind (alike_ros.overlap): order, bounds, errors on the right side."""

from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager

import pytest

from alike_ros.overlap import WriteBehind, read_ahead


def test_read_ahead_keeps_order_and_produces_in_another_thread():
    threads = set()

    def produce():
        for i in range(50):
            threads.add(threading.get_ident())
            yield i

    assert list(read_ahead(produce, depth=3)) == list(range(50))
    assert threads and threading.get_ident() not in threads


def test_read_ahead_is_bounded_and_stops_when_closed_early():
    made = []

    def produce():
        for i in itertools.count():
            made.append(i)
            yield i

    items = read_ahead(produce, depth=2)
    assert next(items) == 0
    items.close()  # joins the producer
    assert len(made) <= 4  # one taken, two queued, one waiting to be queued: never the endless rest
    assert not any(t.name == "read-ahead" for t in threading.enumerate())


def test_read_ahead_raises_the_producers_error_after_the_items_before_it():
    def produce():
        yield 1
        yield 2
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in read_ahead(produce):
            seen.append(item)
    assert seen == [1, 2]


class Resource:
    def __init__(self):
        self.done: list[int] = []
        self.exit_error: BaseException | None = None
        self.threads: set[int] = set()


@contextmanager
def opened(resource: Resource):
    resource.threads.add(threading.get_ident())
    try:
        yield resource
    except BaseException as exc:
        resource.exit_error = exc
        raise


def test_write_behind_runs_jobs_in_order_in_its_own_thread():
    resource = Resource()

    def job(i: int, r: Resource) -> None:
        r.threads.add(threading.get_ident())
        r.done.append(i)

    with WriteBehind(lambda: opened(resource), depth=2) as behind:
        for i in range(100):
            behind.submit(lambda r, i=i: job(i, r))
    assert resource.done == list(range(100)) and resource.exit_error is None
    assert len(resource.threads) == 1 and threading.get_ident() not in resource.threads


def test_write_behind_raises_a_jobs_error_and_closes_the_resource_with_it():
    resource = Resource()

    def job(i: int, r: Resource) -> None:
        if i == 3:
            raise OSError("disk full")
        r.done.append(i)

    with pytest.raises(OSError, match="disk full"), WriteBehind(lambda: opened(resource), depth=1) as behind:
        for i in range(1000):
            behind.submit(lambda r, i=i: job(i, r))
    assert resource.done == [0, 1, 2] and isinstance(resource.exit_error, OSError)


def test_write_behind_leaves_the_resource_with_the_blocks_error():
    resource = Resource()
    release = threading.Event()
    with pytest.raises(ValueError, match="bad frame"), WriteBehind(lambda: opened(resource), depth=8) as behind:
        behind.submit(lambda r: release.wait(5))
        for i in range(5):
            behind.submit(lambda r, i=i: r.done.append(i))
        release.set()
        raise ValueError("bad frame")
    assert isinstance(resource.exit_error, ValueError)  # e.g. a bag in the making is discarded


def test_write_behind_raises_an_error_opening_the_resource():
    def refuse():
        raise FileExistsError("out exists; pass --overwrite")

    with pytest.raises(FileExistsError, match="overwrite"), WriteBehind(refuse):
        pytest.fail("the block must not run")
