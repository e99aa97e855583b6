"""``mem://NAME``: an in-memory store with a FLAT key space, like S3.

There are no real directories: a directory exists when a ``dir/`` marker exists or when a
key has it as a prefix, rename is copy + delete, metadata updates are copies onto
themselves.  mem:// therefore runs exactly the code paths the cloud stores run and is the
executable specification and test double of the backend interface.  Its bytes are lost
when the mount ends (stores of the same name are shared within one process, which the
tests use to look at what the filesystem wrote).
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    ListPage,
    Metadata,
    ObjectMeta,
    Upload,
)
from storefs.errors import AlreadyExists, ConfigError, NotFound, PreconditionFailed
from storefs.source import Source

OPTIONS: dict[str, str] = {
    "mem_page_size": "entries per listing page (default 1000; small values exercise paging)",
}

MIB = 1024 * 1024


@dataclass
class _Object:
    data: bytes
    metadata: dict[str, str]
    content_type: str | None
    etag: ETag
    mtime: float
    #: hex MD5 of ``data``, taken once (``meta`` is asked for on every read)
    md5: str = field(init=False)

    def __post_init__(self) -> None:
        self.md5 = hashlib.md5(self.data).hexdigest()

    def meta(self, key: str) -> ObjectMeta:
        return ObjectMeta(
            key=key,
            size=len(self.data),
            etag=self.etag,
            mtime=self.mtime,
            content_type=self.content_type,
            metadata=dict(self.metadata),
            checksums={"md5": self.md5},
        )


@dataclass
class MemStore:
    """The shared state of one named store: a sorted key list and the objects."""

    objects: dict[str, _Object] = field(default_factory=dict)
    keys: list[str] = field(default_factory=list)
    requests: dict[str, int] = field(default_factory=dict)

    def insert(self, key: str, obj: _Object) -> None:
        if key not in self.objects:
            bisect.insort(self.keys, key)
        self.objects[key] = obj

    def remove(self, key: str) -> None:
        if self.objects.pop(key, None) is not None:
            del self.keys[bisect.bisect_left(self.keys, key)]


_STORES: dict[str, MemStore] = {}
_etags = itertools.count(1)


def store_named(name: str) -> MemStore:
    """The process-wide store called ``name`` (created empty on first use)."""
    return _STORES.setdefault(name, MemStore())


def _new_etag(data: bytes) -> ETag:
    # unique per write even for equal bytes, like a store that versions objects
    return ETag(f"{hashlib.md5(data).hexdigest()}-{next(_etags)}")


class MemUpload(Upload):
    def __init__(self, backend: MemBackend, key: str, metadata: Metadata, part_size: int,
                 content_type: str | None, if_match: ETag | None, if_none_match: bool) -> None:
        self.backend = backend
        self.part_size = part_size
        self.key = key
        self.metadata = dict(metadata)
        self.content_type = content_type
        self.if_match = if_match
        self.if_none_match = if_none_match
        self.parts: dict[int, bytes] = {}
        self.done = False

    async def write_part(self, number: int, data: bytes) -> None:
        if number < 1 or number > self.backend.capabilities.max_parts:
            raise ConfigError(f"part number {number} out of range")
        self.backend._count("write_part")
        self.parts[number] = bytes(data)

    async def complete(self) -> ObjectMeta:
        numbers = sorted(self.parts)
        if numbers != list(range(1, len(numbers) + 1)):
            raise ConfigError(f"{self.key}: upload is missing parts (have {numbers})")
        for n in numbers[:-1]:
            if len(self.parts[n]) != self.part_size:
                raise ConfigError(f"{self.key}: part {n} is not {self.part_size} bytes")
        data = b"".join(self.parts[n] for n in numbers)
        self.done = True
        return await self.backend.put(
            self.key, data, self.metadata, content_type=self.content_type,
            if_match=self.if_match, if_none_match=self.if_none_match,
        )

    async def abort(self) -> None:
        self.parts.clear()
        self.done = True


class MemBackend(Backend):
    def __init__(self, name: str, prefix: str = "", page_size: int = 1000) -> None:
        self.name = name
        self.prefix = prefix
        self.store = store_named(name)
        self.capabilities = Capabilities(
            name="mem",
            real_directories=False,
            server_side_copy=True,
            cheap_rename=False,
            metadata_update=True,
            multipart_threshold=8 * MIB,
            min_part_size=5 * MIB,
            list_page_size=page_size,
            # like S3: 2 KiB of user metadata per object
            max_metadata_size=2048,
        )

    def describe(self) -> str:
        return f"mem://{self.name}/{self.prefix}"

    def _count(self, op: str) -> None:
        self.store.requests[op] = self.store.requests.get(op, 0) + 1

    def _get(self, key: str) -> _Object:
        obj = self.store.objects.get(self.prefix + key)
        if obj is None:
            raise NotFound(key)
        return obj

    async def head(self, key: str) -> ObjectMeta:
        self._count("head")
        return self._get(key).meta(key)

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        self._count("list")
        limit = limit or self.capabilities.list_page_size
        full = self.prefix + prefix
        keys = self.store.keys
        i = bisect.bisect_left(keys, full) if token is None else bisect.bisect_right(keys, token)
        objects: list[ObjectMeta] = []
        prefixes: list[str] = []
        last: str | None = None
        while i < len(keys) and keys[i].startswith(full):
            if len(objects) + len(prefixes) >= limit:
                return ListPage(objects, prefixes, last)
            k = keys[i]
            rest = k[len(full):]
            cut = rest.find(delimiter) if delimiter else -1
            if cut >= 0:
                # everything further down, "sub/" markers included, rolls up into one
                # common prefix, as S3 does
                common = full + rest[: cut + 1]
                prefixes.append(common[len(self.prefix):])
                last = common + "\U0010ffff"
                i = bisect.bisect_left(keys, last)
                continue
            objects.append(self.store.objects[k].meta(k[len(self.prefix):]))
            last = k
            i += 1
        return ListPage(objects, prefixes, None)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        self._count("get")
        obj = self._get(key)
        if if_match is not None and obj.etag != if_match:
            raise PreconditionFailed(f"{key}: changed (etag {obj.etag} != {if_match})")
        return obj.data[start:end]

    def _check(self, key: str, if_match: ETag | None, if_none_match: bool) -> None:
        current = self.store.objects.get(self.prefix + key)
        if if_none_match and current is not None:
            raise AlreadyExists(key)
        if if_match is not None and (current is None or current.etag != if_match):
            raise PreconditionFailed(f"{key}: changed since it was read")

    async def put(
        self,
        key: str,
        data: bytes,
        metadata: Metadata,
        *,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
    ) -> ObjectMeta:
        self._count("put")
        self._check(key, if_match, if_none_match)
        obj = _Object(bytes(data), dict(metadata), content_type, _new_etag(data), time.time())
        self.store.insert(self.prefix + key, obj)
        return obj.meta(key)

    async def begin_upload(
        self,
        key: str,
        metadata: Metadata,
        *,
        part_size: int,
        content_type: str | None = None,
        if_match: ETag | None = None,
        if_none_match: bool = False,
        size: int | None = None,
    ) -> Upload:
        self._count("begin_upload")
        if part_size < self.capabilities.min_part_size:
            raise ConfigError(f"part size {part_size} is below {self.capabilities.min_part_size}")
        return MemUpload(self, key, metadata, part_size, content_type, if_match, if_none_match)

    async def delete(self, key: str) -> None:
        self._count("delete")
        self.store.remove(self.prefix + key)

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        self._count("copy")
        obj = self._get(src)
        if if_match is not None and obj.etag != if_match:
            raise PreconditionFailed(f"{src}: changed since it was read")
        new = _Object(
            obj.data,
            dict(obj.metadata if metadata is None else metadata),
            obj.content_type,
            _new_etag(obj.data),
            time.time(),
        )
        self.store.insert(self.prefix + dst, new)
        return new.meta(dst)

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        self._count("set_metadata")
        obj = self._get(key)
        if if_match is not None and obj.etag != if_match:
            raise PreconditionFailed(f"{key}: changed since it was read")
        obj.metadata = dict(metadata)
        # like S3's copy-onto-itself, metadata changes give a new etag; data is untouched
        obj.etag = _new_etag(obj.data)
        obj.mtime = time.time()
        return obj.meta(key)

    def statistics(self) -> dict[str, object]:
        return {"requests": dict(self.store.requests), "objects": len(self.store.objects)}


def open_backend(source: Source, options: Mapping[str, str]) -> MemBackend:
    page = options.get("mem_page_size", "1000")
    if not page.isdigit() or int(page) < 1:
        raise ConfigError(f"mem_page_size={page!r}: expected a positive integer")
    return MemBackend(source.bucket, source.prefix, int(page))
