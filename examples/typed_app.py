"""A small typed program using cmemcache, checked by mypy --strict in the
tests: a read-through cache of user records and a rate counter."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import cmemcache
from cmemcache import StringClient


@dataclass
class User:
    id: int
    name: str


def load_user_from_db(user_id: int) -> User:
    return User(user_id, f"user-{user_id}")


class UserCache:
    """Users by id, read through the cache, kept for ten minutes."""

    def __init__(self, client: cmemcache.Client) -> None:
        self.client = client

    def get(self, user_id: int) -> User:
        key = f"user:{user_id}"
        cached = self.client.get(key)
        if isinstance(cached, User):
            return cached
        user = load_user_from_db(user_id)
        self.client.set(key, user, time=600)
        return user

    def get_many(self, ids: list[int]) -> dict[int, User]:
        found = self.client.get_multi([f"user:{i}" for i in ids])
        users = {int(k.split(":")[1]): v for k, v in found.items() if isinstance(v, User)}
        missing = {i: load_user_from_db(i) for i in ids if i not in users}
        if missing:
            self.client.set_multi({f"user:{i}": u for i, u in missing.items()}, time=600)
        users.update(missing)
        return users


def count_hit(raw: StringClient, page: str) -> int:
    """Hits of a page, counted with the C client's incr."""
    key = f"hits:{page}".encode()
    value = raw.incr(key)
    if value is None:
        raw.add(key, b"0")
        value = raw.incr(key)
    return value if value is not None else 0


def main(server: str) -> int:
    client = cmemcache.Client([server])
    cache = UserCache(client)
    assert cache.get(7) == User(7, "user-7")
    assert cache.get_many([7, 8]) == {7: User(7, "user-7"), 8: User(8, "user-8")}
    with StringClient(server) as raw:
        first = count_hit(raw, "home")
        second = count_hit(raw, "home")
        assert second == first + 1
        try:
            raw.get(b"a key with spaces")
        except cmemcache.InvalidKeyError:
            pass
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:11211"))
