"""The one error hierarchy of storefs.

Every layer below ``fuse/`` raises these (backends translate their SDK's errors into them
through tables kept as data, with ``raise ... from exc``).  Each class carries the errno the
FUSE boundary answers with, so the mapping is a class attribute, not a chain of ``if``s, and
``tests/unit/test_errors.py`` checks the table exhaustively.

User-facing failures outside FUSE (a bad URL, wrong credentials, an unreachable endpoint) are
``StorefsError`` too: the CLI prints ``str(exc)`` as its one-line message, so messages must
be complete sentences fragments that name the cause and never contain secrets.
"""

from __future__ import annotations

import errno as _errno


class StorefsError(Exception):
    """Base class; ``errno`` is what a FUSE handler returns for it."""

    errno: int = _errno.EIO


class NotFound(StorefsError):
    errno = _errno.ENOENT


class AlreadyExists(StorefsError):
    errno = _errno.EEXIST


class NotEmpty(StorefsError):
    errno = _errno.ENOTEMPTY


class NotADirectory(StorefsError):
    errno = _errno.ENOTDIR


class IsADirectory(StorefsError):
    errno = _errno.EISDIR


class PermissionDenied(StorefsError):
    errno = _errno.EACCES


class PreconditionFailed(StorefsError):
    """A conditional request failed: the object changed under us (another writer)."""

    errno = _errno.ESTALE


class Unsupported(StorefsError):
    errno = _errno.EOPNOTSUPP


class ReadOnly(StorefsError):
    errno = _errno.EROFS


class TooLarge(StorefsError):
    errno = _errno.EFBIG


class QuotaExceeded(StorefsError):
    errno = _errno.EDQUOT


class NoSpace(StorefsError):
    """The local cache disk is full."""

    errno = _errno.ENOSPC


class InvalidName(StorefsError):
    """The store refuses this name (too long, forbidden characters)."""

    errno = _errno.EINVAL


class NameTooLong(StorefsError):
    errno = _errno.ENAMETOOLONG


class IntegrityError(StorefsError):
    """A checksum did not match: the bytes are not the ones the store holds."""

    errno = _errno.EIO
    #: the version the failed upload left at the name, when it did leave one (a streamed
    #: PUT is committed before its checksum can be compared): the next attempt replaces
    #: it instead of taking it for another writer's
    stored_etag: str | None = None


class TransientError(StorefsError):
    """Worth retrying (5xx, throttling, connection reset, timeout); EIO once retries end."""

    errno = _errno.EIO


class UploadInterrupted(StorefsError):
    """An upload that is one stream (``capabilities.sequential_parts``) broke part-way: its
    parts cannot be sent again one by one, so the whole upload starts over (write-back does
    that) instead of retrying the part."""

    errno = _errno.EIO


class AuthError(StorefsError):
    """Credentials were refused or are missing."""

    errno = _errno.EACCES


class ConfigError(StorefsError):
    """Bad user input: a malformed source URL, an unknown option, an unusable directory."""

    errno = _errno.EINVAL


class ConnectError(StorefsError):
    """The endpoint could not be reached (DNS, refused connection, TLS failure)."""

    errno = _errno.EIO


#: Every class above, for the exhaustive errno table test and for documentation.
ALL_ERRORS: tuple[type[StorefsError], ...] = (
    StorefsError,
    NotFound,
    AlreadyExists,
    NotEmpty,
    NotADirectory,
    IsADirectory,
    PermissionDenied,
    PreconditionFailed,
    Unsupported,
    ReadOnly,
    TooLarge,
    QuotaExceeded,
    NoSpace,
    InvalidName,
    NameTooLong,
    IntegrityError,
    TransientError,
    UploadInterrupted,
    AuthError,
    ConfigError,
    ConnectError,
)


def errno_of(exc: BaseException) -> int:
    """The errno the FUSE boundary answers for ``exc`` (EIO for anything unexpected)."""
    if isinstance(exc, StorefsError):
        return exc.errno
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return _errno.EIO
