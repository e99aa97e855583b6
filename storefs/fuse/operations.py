"""pyfuse3 ``Operations``: each handler decodes, calls ``Filesystem``, encodes the reply."""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import sys
from collections.abc import Sequence
from typing import Any

import pyfuse3

from storefs.fs.filesystem import NAME_MAX, AttrChanges, Filesystem
from storefs.fs.inodes import Inode
from storefs.fuse.boundary import fuse_errors

#: st_blksize: programs size their buffers from it (cp reads/writes in this unit), and
#: bigger writes mean fewer FUSE requests
BLKSIZE = 1 << 20
_FS_ENCODING = sys.getfilesystemencoding()


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)


def _raw(name: str) -> bytes:
    """``os.fsencode`` without its per-call checks (readdir encodes every name)."""
    return name.encode(_FS_ENCODING, "surrogateescape")


class Operations(pyfuse3.Operations):
    """The FUSE face of a ``Filesystem``."""

    supports_dot_lookup = True
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, fs: Filesystem) -> None:
        super().__init__()
        self.fs = fs
        o = fs.opts
        self.entry_timeout = o.entry_timeout
        self.attr_timeout = o.attr_timeout
        self.negative_timeout = o.negative_timeout

    # -- encoding ------------------------------------------------------------------------

    def entry(self, inode: Inode) -> pyfuse3.EntryAttributes:
        # ls -l of a big directory encodes the same attributes again and again: reuse the
        # reply while the inode's attributes are the same (pyfuse3 copies it when sending)
        cached = inode.fuse_entry
        if cached is not None and cached[0] is inode.attr and cached[1] == inode.complete:
            return cached[2]  # type: ignore[return-value]
        a = self.fs.shown(inode.attr)
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode.ino
        e.generation = 0
        e.entry_timeout = self.entry_timeout
        # attributes from a listing without metadata are provisional: let the kernel ask
        # again (getattr then fetches the full metadata once)
        e.attr_timeout = self.attr_timeout if inode.complete else 0
        e.st_mode = a.mode
        e.st_nlink = 2 if stat.S_ISDIR(a.mode) else 1
        e.st_uid = a.uid
        e.st_gid = a.gid
        e.st_rdev = 0
        e.st_size = a.size
        e.st_blksize = BLKSIZE
        e.st_blocks = (a.size + 511) // 512
        e.st_atime_ns = a.atime_ns
        e.st_mtime_ns = a.mtime_ns
        e.st_ctime_ns = a.ctime_ns
        inode.fuse_entry = (inode.attr, inode.complete, e)
        return e

    def negative(self) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = 0
        e.entry_timeout = self.negative_timeout
        return e

    # -- names ---------------------------------------------------------------------------

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: Any) -> pyfuse3.EntryAttributes:
        inode = await self.fs.lookup(parent_inode, _name(name))
        if inode is None:
            return self.negative()
        self.fs.remember(inode)
        return self.entry(inode)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        # must not raise (it answers no request)
        try:
            self.fs.forget(inode_list)
        except Exception:  # pragma: no cover - defensive
            import logging

            logging.getLogger("storefs.fuse").exception("forget failed")

    @fuse_errors
    async def getattr(self, inode: int, ctx: Any) -> pyfuse3.EntryAttributes:
        return self.entry(await self.fs.getattr(inode))

    @fuse_errors
    async def setattr(self, inode: int, attr: Any, fields: Any, fh: int | None,
                      ctx: Any) -> pyfuse3.EntryAttributes:
        changes = AttrChanges(
            size=attr.st_size if fields.update_size else None,
            mode=attr.st_mode if fields.update_mode else None,
            uid=attr.st_uid if fields.update_uid else None,
            gid=attr.st_gid if fields.update_gid else None,
            atime_ns=attr.st_atime_ns if fields.update_atime else None,
            mtime_ns=attr.st_mtime_ns if fields.update_mtime else None,
        )
        return self.entry(await self.fs.setattr(inode, changes, fh))

    @fuse_errors
    async def readlink(self, inode: int, ctx: Any) -> bytes:
        return await self.fs.readlink(inode)

    @fuse_errors
    async def mknod(self, parent_inode: int, name: bytes, mode: int, rdev: int,
                    ctx: Any) -> pyfuse3.EntryAttributes:
        if not stat.S_ISREG(mode):
            raise pyfuse3.FUSEError(errno.EPERM)  # no devices, fifos or sockets in a store
        handle, inode = await self.fs.create(parent_inode, _name(name), mode,
                                             os.O_CREAT | os.O_EXCL | os.O_WRONLY,
                                             ctx.uid, ctx.gid)
        await self.fs.flush(handle.fh)
        await self.fs.release(handle.fh)
        self.fs.remember(inode)
        return self.entry(inode)

    @fuse_errors
    async def mkdir(self, parent_inode: int, name: bytes, mode: int,
                    ctx: Any) -> pyfuse3.EntryAttributes:
        inode = await self.fs.mkdir(parent_inode, _name(name), mode, ctx.uid, ctx.gid)
        self.fs.remember(inode)
        return self.entry(inode)

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.unlink(parent_inode, _name(name))

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.rmdir(parent_inode, _name(name))

    @fuse_errors
    async def symlink(self, parent_inode: int, name: bytes, target: bytes,
                      ctx: Any) -> pyfuse3.EntryAttributes:
        inode = await self.fs.symlink(parent_inode, _name(name), target, ctx.uid, ctx.gid)
        self.fs.remember(inode)
        return self.entry(inode)

    @fuse_errors
    async def rename(self, parent_inode_old: int, name_old: bytes, parent_inode_new: int,
                     name_new: bytes, flags: int, ctx: Any) -> None:
        await self.fs.rename(parent_inode_old, _name(name_old), parent_inode_new,
                             _name(name_new), flags)

    @fuse_errors
    async def link(self, inode: int, new_parent_inode: int, new_name: bytes,
                   ctx: Any) -> pyfuse3.EntryAttributes:
        return self.entry(await self.fs.link(inode, new_parent_inode, _name(new_name)))

    # -- files ---------------------------------------------------------------------------

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: Any) -> pyfuse3.FileInfo:
        handle, keep = await self.fs.open(inode, flags)
        return pyfuse3.FileInfo(fh=handle.fh, keep_cache=keep)

    @fuse_errors
    async def create(self, parent_inode: int, name: bytes, mode: int, flags: int,
                     ctx: Any) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        handle, inode = await self.fs.create(parent_inode, _name(name), mode, flags,
                                             ctx.uid, ctx.gid)
        self.fs.remember(inode)
        return pyfuse3.FileInfo(fh=handle.fh, keep_cache=True), self.entry(inode)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        return await self.fs.read(fh, off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        return await self.fs.write(fh, off, buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        await self.fs.flush(fh)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.fs.fsync(fh, datasync)

    @fuse_errors
    async def release(self, fh: int) -> None:
        await self.fs.release(fh)

    # -- directories ---------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: Any) -> int:
        return (await self.fs.opendir(inode)).fh

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: Any) -> None:
        async with contextlib.aclosing(self.fs.readdir_batches(fh, start_id)) as batches:
            async for batch in batches:
                for name, inode, next_id in batch:
                    if not pyfuse3.readdir_reply(token, _raw(name), self.entry(inode), next_id):
                        self.fs.drop_if_unused(inode)
                        return
                    self.fs.remember(inode)

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        await self.fs.releasedir(fh)

    @fuse_errors
    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return None  # directory changes are in the store when the call that made them returns

    # -- the filesystem ------------------------------------------------------------------

    @fuse_errors
    async def statfs(self, ctx: Any) -> pyfuse3.StatvfsData:
        usage = await self.fs.statfs()
        s = pyfuse3.StatvfsData()
        s.f_bsize = BLKSIZE
        s.f_frsize = 4096
        s.f_blocks = usage.total // s.f_frsize
        s.f_bfree = usage.free // s.f_frsize
        s.f_bavail = usage.free // s.f_frsize
        s.f_files = usage.files
        s.f_ffree = usage.files_free
        s.f_favail = usage.files_free
        s.f_namemax = NAME_MAX
        return s

    # -- extended attributes -------------------------------------------------------------

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: Any) -> bytes:
        return await self.fs.getxattr(inode, _name(name))

    @fuse_errors
    async def listxattr(self, inode: int, ctx: Any) -> list[bytes]:
        return [_raw(n) for n in await self.fs.listxattr(inode)]

    @fuse_errors
    async def setxattr(self, inode: int, name: bytes, value: bytes, ctx: Any) -> None:
        await self.fs.setxattr(inode, _name(name), value)

    @fuse_errors
    async def removexattr(self, inode: int, name: bytes, ctx: Any) -> None:
        await self.fs.removexattr(inode, _name(name))
