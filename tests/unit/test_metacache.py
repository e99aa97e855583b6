"""Metadata cache TTLs, negative entries and listings, on a controlled clock."""

from __future__ import annotations

from storefs.backends.base import ETag, ObjectMeta
from storefs.fs.metacache import Child, MetaCache


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def m(key: str) -> ObjectMeta:
    return ObjectMeta(key=key, size=1, etag=ETag("e"), mtime=0)


def test_ttls_expire_independently() -> None:
    clock = Clock()
    cache = MetaCache(attr_ttl=1.0, negative_ttl=2.0, dir_ttl=5.0, timer=clock)
    cache.put("a", m("a"))
    cache.put_negative("gone")
    cache.put_listing("d", {"x": Child(m("d/x"), False), "sub": Child(None, True)})
    clock.now = 0.9
    assert cache.get("a") is not None and cache.is_negative("gone")
    clock.now = 1.5
    assert cache.get("a") is None and cache.is_negative("gone")
    assert cache.get("d/x") is None  # its stat entry expired with attr_ttl...
    assert cache.child("d/x") is not None  # ...but the listing still answers for it
    assert cache.is_negative("d/not-there")  # a complete listing knows what is absent
    clock.now = 2.5
    assert not cache.is_negative("gone")
    clock.now = 5.5
    assert cache.listing("d") is None and not cache.is_negative("d/not-there")


def test_local_changes_update_at_once() -> None:
    clock = Clock()
    cache = MetaCache(1.0, 1.0, 5.0, clock)
    cache.put_listing("d", {"x": Child(m("d/x"), False)})
    cache.put_negative("d/new")
    cache.added("d/new", m("d/new"), False)
    assert not cache.is_negative("d/new") and cache.child("d/new") is not None
    cache.removed("d/x")
    assert cache.is_negative("d/x") and cache.child("d/x") is None
    cache.put("d/sub/deep", m("d/sub/deep"))
    cache.forget_tree("d")
    assert cache.listing("d") is None and cache.get("d/sub/deep") is None


def test_zero_ttls_disable_caching() -> None:
    cache = MetaCache(0, 0, 0, Clock())
    cache.put("a", m("a"))
    cache.put_negative("b")
    cache.put_listing("d", {})
    assert cache.get("a") is None and not cache.is_negative("b") and cache.listing("d") is None
