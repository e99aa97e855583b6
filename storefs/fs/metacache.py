"""The metadata cache: what the store said about paths, for a while.

Three kinds of entries, each with its own time-to-live (cachetools TTL caches on the trio
clock):

* *stat entries* (``attr_timeout``): path -> the ``ObjectMeta`` a HEAD or listing gave;
* *negative entries* (``negative_timeout``): paths known not to exist, so tools that probe
  many names (git, compilers, shells) do not ask the store each time;
* *listings* (``dir_timeout``): a directory's complete entry list, which answers lookups
  of its names (present or absent) and repeated ``ls`` without a request.

Local changes update the cache at once (``put``, ``remove``, ``add_child``...), so this
mount always sees its own changes; the TTLs only bound how long a change made by another
client can go unseen.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from cachetools import LRUCache, TTLCache

from storefs.backends.base import ObjectMeta


@dataclass
class Child:
    """One entry of a listing: a file/marker/real-dir meta, or None for a bare prefix."""

    meta: ObjectMeta | None
    is_dir: bool


Listing = dict[str, Child]
#: a listing's entries in order, as a list an open directory indexes by offset
Entries = list[tuple[str, Child]]


def _parent(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


class MetaCache:
    def __init__(self, attr_ttl: float, negative_ttl: float, dir_ttl: float,
                 timer: Callable[[], float], maxsize: int = 200_000) -> None:
        self._stat: TTLCache[str, ObjectMeta] = TTLCache(maxsize, max(attr_ttl, 1e-9), timer)
        self._neg: TTLCache[str, bool] = TTLCache(maxsize, max(negative_ttl, 1e-9), timer)
        #: attributes fetched for the entries of a listing (the attribute prefetch): as
        #: fresh as the listing, so trusted as long (a 10,000-entry ``ls -l`` outlasts
        #: attr_timeout, and must not fetch an entry twice)
        self._listed: TTLCache[str, ObjectMeta] = TTLCache(maxsize, max(dir_ttl, 1e-9), timer)
        self._dirs: TTLCache[str, Listing] = TTLCache(max(64, maxsize // 1000),
                                                      max(dir_ttl, 1e-9), timer)
        #: path -> (listing, its entries): built once per listing, not per opendir, and
        #: shared (never changed) by the open directories; dropped when the listing changes
        self._entries: LRUCache[str, tuple[Listing, Entries]] = LRUCache(64)
        self.enabled = (attr_ttl > 0, negative_ttl > 0, dir_ttl > 0)

    # -- single paths ------------------------------------------------------------------

    def get(self, path: str) -> ObjectMeta | None:
        meta = self._stat.get(path)
        return meta if meta is not None else self._listed.get(path)

    def is_negative(self, path: str) -> bool:
        if self._neg.get(path):
            return True
        parent, name = _parent(path)
        listing = self._dirs.get(parent)
        return listing is not None and name not in listing

    def child(self, path: str) -> Child | None:
        """The entry for ``path`` from its parent's fresh listing, if there is one."""
        parent, name = _parent(path)
        listing = self._dirs.get(parent)
        return None if listing is None else listing.get(name)

    def put(self, path: str, meta: ObjectMeta, *, listed: bool = False) -> None:
        """Remember what the store said of ``path``; ``listed``: complete attributes of an
        entry of a listing being read, kept for ``dir_timeout``."""
        kept = self._listed.get(path)
        if kept is not None and (meta.metadata_complete or kept.etag != meta.etag):
            del self._listed[path]  # superseded (an incomplete entry of its version is not)
        if listed and self.enabled[2] and meta.metadata_complete:
            self._listed[path] = meta
        if self.enabled[0]:
            old = self._stat.get(path)
            if (old is None or meta.metadata_complete or not old.metadata_complete
                    or old.etag != meta.etag):
                # (a listing without metadata adds nothing to a HEAD of the same version)
                self._stat[path] = meta
        self._neg.pop(path, None)

    def put_negative(self, path: str) -> None:
        self._stat.pop(path, None)
        self._listed.pop(path, None)
        if self.enabled[1]:
            self._neg[path] = True

    # -- listings ----------------------------------------------------------------------

    def listing(self, path: str) -> Listing | None:
        return self._dirs.get(path)

    def listing_entries(self, path: str) -> tuple[Listing, Entries] | None:
        """``path``'s cached listing and its entries as a list, which the caller must not
        change (it is shared until the listing changes)."""
        listing = self._dirs.get(path)
        if listing is None:
            return None
        known = self._entries.get(path)
        if known is None or known[0] is not listing:
            known = self._entries[path] = (listing, list(listing.items()))
        return known

    def put_listing(self, path: str, listing: Listing, *, entries: bool = True) -> None:
        """Remember ``path``'s complete listing; ``entries=False``: its entries' metadata
        was already ``put`` page by page."""
        if self.enabled[2]:
            self._dirs[path] = listing
        if not entries:
            return
        for name, child in listing.items():
            if child.meta is not None:
                self.put(f"{path}/{name}" if path else name, child.meta)

    # -- local changes -----------------------------------------------------------------

    def added(self, path: str, meta: ObjectMeta | None, is_dir: bool) -> None:
        """``path`` was created (or replaced) by this mount."""
        if not path:
            return  # the root has no parent listing
        self._neg.pop(path, None)
        if meta is not None:
            self.put(path, meta)
        else:
            self._stat.pop(path, None)
            self._listed.pop(path, None)
        parent, name = _parent(path)
        listing = self._dirs.get(parent)
        if listing is not None:
            listing[name] = Child(meta, is_dir)
            self._entries.pop(parent, None)

    def removed(self, path: str) -> None:
        """``path`` was deleted by this mount (and everything below it, for a dir)."""
        self._stat.pop(path, None)
        self._dirs.pop(path, None)
        parent, name = _parent(path)
        listing = self._dirs.get(parent)
        if listing is not None:
            listing.pop(name, None)
            self._entries.pop(parent, None)
        self.put_negative(path)

    def forget_tree(self, path: str) -> None:
        """Drop everything cached at or below ``path`` (after a directory rename)."""
        prefix = path + "/"
        for cache in (self._stat, self._neg, self._dirs, self._listed, self._entries):
            for key in [k for k in list(cache.keys()) if k == path or k.startswith(prefix)]:
                cache.pop(key, None)

    def invalidate(self, path: str) -> None:
        self._stat.pop(path, None)
        self._listed.pop(path, None)
        self._neg.pop(path, None)

    def clear(self) -> None:
        self._stat.clear()
        self._listed.clear()
        self._neg.clear()
        self._dirs.clear()
        self._entries.clear()
