"""A failed server is probed: after a restart it serves again about a second
later, while a dead or black-holed one costs one connect per hold-down.

The policy: a failure holds the server down for 1 s (or dead_retry, when
shorter); calls meanwhile fail at once.  The first call after that probes it
with a connect, one call at a time; each failed probe doubles the hold-down,
up to dead_retry.  A connect that succeeds ends it.
"""

from __future__ import annotations

import threading
import time

import pytest

import cmemcache
from cmemcache import StringClient
from conftest import free_port, wait_until

SLACK = 0.6


def test_first_failure_holds_down_for_one_second(memcached_factory):
    sc = StringClient(["127.0.0.1:%d" % free_port()], dead_retry=30)
    with pytest.raises(cmemcache.ConnectionError, match="refused"):
        sc.get(b"k")
    (hold,) = sc.hold_downs()
    assert 0.8 < hold <= 1.0
    with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
        sc.get(b"k")


def test_hold_down_never_exceeds_a_short_dead_retry():
    sc = StringClient(["127.0.0.1:%d" % free_port()], dead_retry=0.25)
    with pytest.raises(cmemcache.ConnectionError):
        sc.get(b"k")
    (hold,) = sc.hold_downs()
    assert 0.1 < hold <= 0.25


def test_failed_probes_double_the_hold_down_up_to_dead_retry():
    sc = StringClient(["127.0.0.1:%d" % free_port()], dead_retry=0.5)
    sc.mark_dead(0, 0.04)
    seen = []
    for _ in range(5):
        assert wait_until(lambda: sc.hold_downs() == (0.0,), timeout=2.0, interval=0.005)
        with pytest.raises(cmemcache.ConnectionError, match="refused"):
            sc.get(b"k")  # the probe
        seen.append(sc.hold_downs()[0])
    # 0.08, 0.16, 0.32, then dead_retry
    expected = [0.08, 0.16, 0.32, 0.5, 0.5]
    for got, want in zip(seen, expected):
        assert want - 0.05 < got <= want, seen


def test_restarted_server_serves_again_about_a_second_later(memcached_factory):
    server = memcached_factory(port=free_port())
    sc = StringClient([server.address], dead_retry=30, timeout=1)
    assert sc.set(b"k", b"v") is True
    server.stop()
    with pytest.raises(cmemcache.ConnectionError):
        sc.get(b"k")
    failed_at = time.monotonic()
    server.start()
    served_at = None
    deadline = failed_at + 5
    while time.monotonic() < deadline:
        try:
            if sc.set(b"k", b"back") is True:
                served_at = time.monotonic()
                break
        except cmemcache.ConnectionError as e:
            assert "marked dead" in str(e)
        time.sleep(0.02)
    assert served_at is not None
    assert served_at - failed_at < 1.0 + SLACK
    assert sc.get(b"k") == b"back"
    assert sc.hold_downs() == (0.0,)


def test_restart_recovery_through_the_compat_client(memcached_factory):
    server = memcached_factory(port=free_port())
    mc = cmemcache.Client([server.address])  # python-memcached's dead_retry: 30 s
    assert mc.set("k", {"v": 1}) is True
    server.stop()
    assert mc.get("k") is None  # down: a miss, logged
    server.start()
    assert wait_until(lambda: mc.set("k", {"v": 2}) is True, timeout=1.0 + SLACK, interval=0.02)
    assert mc.get("k") == {"v": 2}


def test_multi_key_calls_probe_too(memcached_factory):
    server = memcached_factory(port=free_port())
    sc = StringClient([server.address], dead_retry=30)
    server.stop()
    with pytest.raises(cmemcache.ConnectionError):
        sc.get_multi([b"a", b"b"])
    server.start()
    assert wait_until(
        lambda: _quiet(lambda: sc.set_multi({b"a": b"1", b"b": b"2"}) == []),
        timeout=1.0 + SLACK,
        interval=0.02,
    )
    assert sc.get_multi([b"a", b"b"]) == {b"a": b"1", b"b": b"2"}


def _quiet(fn):
    try:
        return fn()
    except cmemcache.ConnectionError:
        return False


def test_black_holed_server_costs_one_connect_timeout_per_hold_down(black_hole):
    sc = StringClient(["127.0.0.1:%d" % black_hole.port], connect_timeout=0.4, dead_retry=30)
    start = time.monotonic()
    with pytest.raises(cmemcache.TimeoutError):
        sc.get(b"k")
    assert 0.35 < time.monotonic() - start < 0.4 + SLACK
    # held down: no call waits for a connect until the hold-down passes
    start = time.monotonic()
    for _ in range(20):
        with pytest.raises(cmemcache.ConnectionError, match="marked dead"):
            sc.get(b"k")
    assert time.monotonic() - start < 0.2


def test_one_probe_at_a_time_while_threads_wait(black_hole):
    sc = StringClient(["127.0.0.1:%d" % black_hole.port], connect_timeout=0.5, dead_retry=30)
    sc.mark_dead(0, 0.01)
    assert wait_until(lambda: sc.hold_downs() == (0.0,), timeout=1.0, interval=0.002)
    barrier = threading.Barrier(8)
    results = []
    lock = threading.Lock()

    def call():
        barrier.wait()
        start = time.monotonic()
        try:
            sc.get(b"k")
            outcome = "returned"
        except cmemcache.TimeoutError:
            outcome = "timeout"
        except cmemcache.ConnectionError as e:
            outcome = "dead" if "marked dead" in str(e) else repr(e)
        with lock:
            results.append((outcome, time.monotonic() - start))

    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    outcomes = sorted(o for o, _ in results)
    assert outcomes == ["dead"] * 7 + ["timeout"], results
    for outcome, took in results:
        if outcome == "dead":
            assert took < 0.4, results  # failed fast while the probe waited


def test_forget_dead_ends_the_hold_down():
    sc = StringClient(["127.0.0.1:%d" % free_port()], dead_retry=30)
    with pytest.raises(cmemcache.ConnectionError):
        sc.get(b"k")
    assert sc.hold_downs()[0] > 0
    sc.forget_dead()
    assert sc.hold_downs() == (0.0,)
    with pytest.raises(cmemcache.ConnectionError, match="refused"):
        sc.get(b"k")  # tried again at once
    # a failure after forget_dead starts again at the first hold-down
    assert 0.8 < sc.hold_downs()[0] <= 1.0


def test_mark_dead_checks_its_arguments():
    sc = StringClient(["127.0.0.1:1", "127.0.0.1:2"])
    with pytest.raises(ValueError):
        sc.mark_dead(2)
    with pytest.raises(ValueError):
        sc.mark_dead(-1)
    with pytest.raises(TypeError):
        sc.mark_dead("0")
    with pytest.raises(ValueError):
        sc.mark_dead(0, -1.0)
    sc.mark_dead(1, 5)
    assert sc.hold_downs()[0] == 0.0 and 4.5 < sc.hold_downs()[1] <= 5.0
    assert sc.dead_servers() == [1]
