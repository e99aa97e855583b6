"""S3 and botocore failures as storefs errors, by a table kept as data.

``ERROR_CODES`` maps an S3 error code (the ``<Code>`` of the error document, or the HTTP
status for HEAD requests, which have no body) to a storefs error class and the few words a
user reads.  ``STATUS_FALLBACK`` covers codes the table does not know.  Messages are one
line: where (``s3://bucket/key``), what, and the code in parentheses; never the server's
own message (some servers echo the string to sign), never a credential.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any

from botocore import exceptions as bx

from storefs.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    ConnectError,
    IntegrityError,
    NameTooLong,
    NotEmpty,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TooLarge,
    TransientError,
    Unsupported,
)

Entry = tuple[type[StorefsError], str]

#: S3 error code -> (storefs error, what it means for the user)
ERROR_CODES: dict[str, Entry] = {
    # not there
    "NoSuchKey": (NotFound, "no such object"),
    "404": (NotFound, "no such object"),
    "NotFound": (NotFound, "no such object"),
    "NoSuchBucket": (NotFound, "no such bucket"),
    "NoSuchUpload": (NotFound, "the multipart upload is gone (aborted or completed)"),
    # who you are / what you may do
    "AccessDenied": (PermissionDenied, "access denied"),
    "403": (PermissionDenied, "access denied"),
    "AllAccessDisabled": (PermissionDenied, "all access to this bucket is disabled"),
    "AccountProblem": (PermissionDenied, "the account has a problem that blocks this request"),
    "InvalidObjectState": (PermissionDenied, "the object is archived; restore it before reading"),
    "InvalidAccessKeyId": (AuthError, "access key not recognised"),
    "SignatureDoesNotMatch": (
        AuthError,
        "credentials refused: wrong secret key, or an access key this server does not know",
    ),
    "InvalidToken": (AuthError, "session token refused"),
    "ExpiredToken": (AuthError, "session token expired"),
    "TokenRefreshRequired": (AuthError, "session token must be refreshed"),
    "MissingSecurityHeader": (AuthError, "request not signed"),
    "RequestTimeTooSkewed": (ConfigError, "this machine's clock is too far off the server's"),
    "AuthorizationHeaderMalformed": (ConfigError, "wrong region for this bucket (set -o region)"),
    "PermanentRedirect": (ConfigError, "the bucket is in another region (set -o region)"),
    "301": (ConfigError, "the bucket is in another region (set -o region)"),
    "IllegalLocationConstraintException": (ConfigError, "wrong region for this bucket"),
    "InvalidBucketName": (ConfigError, "invalid bucket name"),
    "InvalidStorageClass": (ConfigError, "the server does not offer this storage class"),
    "KMS.NotFoundException": (ConfigError, "KMS key not found"),
    # conditions
    "PreconditionFailed": (PreconditionFailed, "changed since it was read (precondition failed)"),
    "412": (PreconditionFailed, "changed since it was read (precondition failed)"),
    # sizes and names
    "EntityTooLarge": (TooLarge, "too large for the store"),
    "413": (TooLarge, "too large for the store"),
    "MetadataTooLarge": (TooLarge, "user metadata too large for the store"),
    "KeyTooLongError": (NameTooLong, "key too long for the store"),
    "EntityTooSmall": (StorefsError, "a part is below the store's minimum part size"),
    "InvalidPart": (StorefsError, "a part of the upload is missing or changed"),
    "InvalidPartOrder": (StorefsError, "upload parts out of order"),
    "BucketNotEmpty": (NotEmpty, "bucket not empty"),
    "BucketAlreadyOwnedByYou": (AlreadyExists, "bucket already exists"),
    "BucketAlreadyExists": (AlreadyExists, "bucket name already taken"),
    "NotImplemented": (Unsupported, "not supported by this server"),
    "501": (Unsupported, "not supported by this server"),
    "InvalidDigest": (IntegrityError, "the Content-MD5 sent was malformed"),
    # worth another try
    "BadDigest": (TransientError, "bytes damaged on the way (Content-MD5 mismatch)"),
    "XAmzContentSHA256Mismatch": (TransientError, "bytes damaged on the way (SHA-256 mismatch)"),
    "IncompleteBody": (TransientError, "request body cut short"),
    "SlowDown": (TransientError, "throttled by the server (SlowDown)"),
    "Throttling": (TransientError, "throttled by the server"),
    "ThrottlingException": (TransientError, "throttled by the server"),
    "RequestLimitExceeded": (TransientError, "throttled by the server"),
    "TooManyRequests": (TransientError, "throttled by the server"),
    "429": (TransientError, "throttled by the server"),
    "InternalError": (TransientError, "server error"),
    "ServiceUnavailable": (TransientError, "service unavailable"),
    "503": (TransientError, "service unavailable"),
    "RequestTimeout": (TransientError, "the server timed out reading the request"),
    "OperationAborted": (TransientError, "a conflicting operation is in progress"),
    "ConditionalRequestConflict": (TransientError, "a concurrent conditional write conflicted"),
}

#: by HTTP status, for codes the table does not know
STATUS_FALLBACK: dict[int, Entry] = {
    400: (StorefsError, "request refused"),
    401: (AuthError, "credentials refused"),
    403: (PermissionDenied, "access denied"),
    404: (NotFound, "not found"),
    405: (Unsupported, "method not allowed by this server"),
    409: (TransientError, "conflict"),
    412: (PreconditionFailed, "changed since it was read (precondition failed)"),
    413: (TooLarge, "too large for the store"),
    416: (StorefsError, "range not satisfiable"),
    429: (TransientError, "throttled by the server"),
    501: (Unsupported, "not supported by this server"),
}

#: botocore's own (non-HTTP) failures -> (class, what); checked in order, first match wins
BOTOCORE_ERRORS: tuple[tuple[type[Exception], type[StorefsError], str], ...] = (
    (bx.NoCredentialsError, AuthError,
     "no S3 credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, -o profile, "
     "access_key/secret_key in the storefs config, or -o anonymous)"),
    (bx.PartialCredentialsError, AuthError, "incomplete S3 credentials in the AWS config files"),
    (bx.CredentialRetrievalError, AuthError, "could not obtain S3 credentials"),
    (bx.TokenRetrievalError, AuthError, "could not obtain an SSO token (run: aws sso login)"),
    (bx.ProfileNotFound, ConfigError, "no such profile in the AWS config files"),
    (bx.NoRegionError, ConfigError, "no region set (-o region or AWS_REGION)"),
    (bx.ParamValidationError, StorefsError, "request refused by botocore"),
)


def code_of(exc: bx.ClientError) -> tuple[str, int]:
    err: dict[str, Any] = exc.response.get("Error", {}) or {}
    meta: dict[str, Any] = exc.response.get("ResponseMetadata", {}) or {}
    status = int(meta.get("HTTPStatusCode") or 0)
    return str(err.get("Code") or status or "Unknown"), status


def network_reason(exc: BaseException) -> str:
    """A few words saying why a connection failed (no URL: it may carry signed queries)."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(chain) < 20:
        e = todo.pop()
        if e is None or any(e is c for c in chain):
            continue
        chain.append(e)
        todo += [e.__cause__, e.__context__]
        kwargs = getattr(e, "kwargs", None)  # botocore keeps the cause in kwargs["error"]
        if isinstance(kwargs, dict) and isinstance(kwargs.get("error"), BaseException):
            todo.append(kwargs["error"])
        todo += [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
    text = " ".join(f"{type(e).__name__}: {e}" for e in chain)
    if any(isinstance(e, ssl.SSLCertVerificationError) for e in chain) \
            or "CERTIFICATE_VERIFY_FAILED" in text:
        return "TLS certificate not trusted"
    if "WRONG_VERSION_NUMBER" in text or "wrong version number" in text:
        return "TLS handshake failed (is the endpoint plain http?)"
    if any(isinstance(e, bx.SSLError | ssl.SSLError) for e in chain):
        return "TLS handshake failed"
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "Connection refused" in text:
        return "connection refused"
    if any(isinstance(e, socket.gaierror) for e in chain) or "Name or service not known" in text:
        return "host name not found"
    if any(isinstance(e, bx.ConnectTimeoutError) for e in chain):
        return "timed out connecting"
    if any(isinstance(e, bx.ReadTimeoutError | TimeoutError) for e in chain):
        return "timed out waiting for the server"
    if "reset" in text.lower():
        return "connection reset"
    if any(isinstance(e, bx.ConnectionClosedError) for e in chain) or "closed" in text.lower():
        return "connection closed by the server"
    return "connection failed"


def translate(exc: BaseException, where: str) -> StorefsError:
    """The storefs error for ``exc`` raised while working on ``where`` (``s3://b/k``)."""
    if isinstance(exc, StorefsError):
        return exc
    if isinstance(exc, bx.ClientError):
        code, status = code_of(exc)
        entry = ERROR_CODES.get(code)
        if entry is None:
            entry = STATUS_FALLBACK.get(status)
        if entry is None:
            entry = (TransientError, "server error") if status >= 500 else (
                StorefsError, "request refused")
        cls, what = entry
        shown = code if code == str(status) else f"{code}, HTTP {status}" if status else code
        return cls(f"{where}: {what} ({shown})")
    for kind, cls, what in BOTOCORE_ERRORS:
        if isinstance(exc, kind):
            return cls(f"{where}: {what}")
    if isinstance(exc, bx.SSLError) and network_reason(exc) == "TLS certificate not trusted":
        # a certificate does not fix itself: no point in retrying
        return ConnectError(f"{where}: TLS certificate not trusted "
                            "(set -o ca_bundle=FILE, or -o insecure)")
    if isinstance(exc, bx.BotoCoreError | OSError):
        # connection refused/reset, timeouts, truncated bodies: worth retrying
        return TransientError(f"{where}: {network_reason(exc)}")
    return StorefsError(f"{where}: unexpected {type(exc).__name__}")


def connect_error(exc: StorefsError, endpoint: str) -> StorefsError:
    """A network failure during ``connect`` is a ``ConnectError`` naming the endpoint."""
    if isinstance(exc, TransientError) and not isinstance(exc, ConnectError):
        reason = str(exc).split(": ", 1)[-1]
        return ConnectError(f"cannot reach S3 endpoint {endpoint}: {reason}")
    if isinstance(exc, ConnectError) and endpoint not in str(exc):
        return ConnectError(f"S3 endpoint {endpoint}: {str(exc).split(': ', 1)[-1]}")
    return exc
