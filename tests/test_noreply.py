"""noreply writes are never lost by the client's own connection handling:
a connection still owed the replies of its "mn" fences is neither taken for
stale nor closed with unread input (which would reset it while the server
may still be reading the writes)."""

import threading

from cmemcache import StringClient


def test_noreply_writes_then_disconnect_all_are_all_stored(memcached_factory):
    server = memcached_factory()
    sc = StringClient([server.address], timeout=2)
    for round_ in range(20):
        keys = [b"nr:%d:%d" % (round_, i) for i in range(200)]
        for k in keys:
            assert sc.set(k, k, noreply=True) is True
        sc.disconnect_all()  # right after the last write
        found = StringClient([server.address], timeout=2).get_multi(keys)
        assert found == {k: k for k in keys}, f"round {round_}: {len(found)} of 200 stored"


def test_noreply_writes_from_threads_over_a_small_pool(memcached_factory):
    """More threads than pool_size: connections owed fence replies are kept
    past pool_size rather than closed."""
    server = memcached_factory()
    sc = StringClient([server.address], timeout=2, pool_size=1)

    def writer(t):
        for i in range(300):
            sc.set(b"t%d:%d" % (t, i), b"v%d" % i, noreply=True)

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    sc.disconnect_all()
    check = StringClient([server.address], timeout=2)
    for t in range(6):
        keys = [b"t%d:%d" % (t, i) for i in range(300)]
        assert check.get_multi(keys) == {b"t%d:%d" % (t, i): b"v%d" % i for i in range(300)}


def test_noreply_then_reads_on_the_same_connections(memcached_factory):
    server = memcached_factory()
    sc = StringClient([server.address], timeout=2)
    for i in range(500):
        assert sc.set(b"k%d" % i, b"v%d" % i, noreply=True) is True
        if i % 7 == 0:
            assert sc.get(b"k%d" % i) == b"v%d" % i
    assert sc.get_multi([b"k%d" % i for i in range(500)]) == {
        b"k%d" % i: b"v%d" % i for i in range(500)}
