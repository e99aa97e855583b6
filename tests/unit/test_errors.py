"""The errno table and the FUSE boundary: what a failing call returns to the program."""

from __future__ import annotations

import errno

import pyfuse3
import pytest
import trio

from storefs import errors
from storefs.fuse.boundary import fuse_errors, to_errno

EXPECTED = {
    errors.StorefsError: errno.EIO,
    errors.NotFound: errno.ENOENT,
    errors.AlreadyExists: errno.EEXIST,
    errors.NotEmpty: errno.ENOTEMPTY,
    errors.NotADirectory: errno.ENOTDIR,
    errors.IsADirectory: errno.EISDIR,
    errors.PermissionDenied: errno.EACCES,
    errors.PreconditionFailed: errno.ESTALE,
    errors.Unsupported: errno.EOPNOTSUPP,
    errors.ReadOnly: errno.EROFS,
    errors.TooLarge: errno.EFBIG,
    errors.QuotaExceeded: errno.EDQUOT,
    errors.NoSpace: errno.ENOSPC,
    errors.InvalidName: errno.EINVAL,
    errors.NameTooLong: errno.ENAMETOOLONG,
    errors.IntegrityError: errno.EIO,
    errors.TransientError: errno.EIO,
    errors.UploadInterrupted: errno.EIO,
    errors.AuthError: errno.EACCES,
    errors.ConfigError: errno.EINVAL,
    errors.ConnectError: errno.EIO,
}


def test_every_error_class_has_its_errno() -> None:
    assert set(EXPECTED) == set(errors.ALL_ERRORS)
    for cls, code in EXPECTED.items():
        assert cls("x").errno == code, cls.__name__
        assert errors.errno_of(cls("x")) == code


def test_os_errors_keep_their_errno_and_the_unexpected_is_eio() -> None:
    assert errors.errno_of(OSError(errno.ENOSPC, "full")) == errno.ENOSPC
    assert errors.errno_of(ValueError("bug")) == errno.EIO
    assert to_errno(ExceptionGroup("g", [errors.NotFound("a"), ValueError()])) == errno.ENOENT


async def test_boundary_lets_only_fuse_errors_out() -> None:
    @fuse_errors
    async def handler(exc: BaseException | None) -> str:
        if exc is not None:
            raise exc
        return "ok"

    assert await handler(None) == "ok"
    cases: list[tuple[BaseException, int]] = [
        (errors.NotEmpty("d"), errno.ENOTEMPTY),
        (OSError(errno.ENOSPC, "full"), errno.ENOSPC),
        (KeyError("a bug"), errno.EIO),
        (ExceptionGroup("nursery", [errors.PreconditionFailed("x")]), errno.ESTALE),
        (pyfuse3.FUSEError(errno.EPERM), errno.EPERM),
    ]
    for exc, code in cases:
        with pytest.raises(pyfuse3.FUSEError) as info:
            await handler(exc)
        assert info.value.errno == code, exc


async def test_boundary_lets_cancellation_through() -> None:
    @fuse_errors
    async def slow() -> None:
        await trio.sleep_forever()

    with trio.move_on_after(0.01) as scope:
        await slow()
    assert scope.cancelled_caught
