"""Manta error codes -> storefs errors, as data (manta-protocol.md §1.6, §3-§5).

``error_for`` builds the one-line exception for a failed response: the class comes from
``CODES`` by the JSON body's ``code`` (GET, PUT, POST, DELETE), else from ``STATUSES`` by
the HTTP status (HEAD errors carry no body), and every 5xx, 408, 429 and 499 is
``TransientError`` so the retry wrapper tries again.
"""

from __future__ import annotations

from storefs.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    IntegrityError,
    InvalidName,
    IsADirectory,
    NotADirectory,
    NotEmpty,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    QuotaExceeded,
    StorefsError,
    TooLarge,
    TransientError,
    Unsupported,
)

#: muskie's error code -> storefs error class
CODES: dict[str, type[StorefsError]] = {
    # not there
    "ResourceNotFound": NotFound,
    "DirectoryDoesNotExist": NotFound,
    "SourceObjectNotFound": NotFound,
    # wrong kind of entry
    "ParentNotDirectory": NotADirectory,
    "OperationNotAllowedOnDirectory": IsADirectory,
    "LinkNotObject": IsADirectory,
    "DirectoryNotEmpty": NotEmpty,
    "OperationNotAllowedOnRootDirectory": PermissionDenied,
    # credentials refused (reported at connect with their own messages)
    "InvalidHeader": AuthError,
    "RequestExpired": AuthError,
    "AuthorizationSchemeNotAllowed": AuthError,
    "InvalidAlgorithm": AuthError,
    "InvalidKeyId": AuthError,
    "AccountDoesNotExist": AuthError,
    "UserDoesNotExist": AuthError,
    "KeyDoesNotExist": AuthError,
    "InvalidSignature": AuthError,
    "AccountBlocked": AuthError,
    "InvalidRole": AuthError,
    "SecureTransportRequired": AuthError,
    "InvalidQueryStringAuthentication": AuthError,
    # authenticated, but not allowed
    "AuthorizationFailed": PermissionDenied,
    "NoMatchingRoleTag": PermissionDenied,
    "QueryParameterForbidden": PermissionDenied,
    "InvalidRoleTag": PermissionDenied,
    # conditions
    "PreconditionFailed": PreconditionFailed,
    "ConcurrentRequest": PreconditionFailed,
    "AlreadyExists": AlreadyExists,
    # size and space
    "MaxContentLengthExceeded": TooLarge,
    "NotEnoughSpace": QuotaExceeded,
    "DirectoryLimitExceeded": QuotaExceeded,
    "AccountQuotaExceeded": QuotaExceeded,
    # bytes damaged on the way
    "ContentMD5Mismatch": IntegrityError,
    # features
    "SnaplinksDisabledError": Unsupported,
    "NotImplemented": Unsupported,
    # requests storefs should not have made
    "InvalidArgumentError": ConfigError,
    "InvalidParameter": ConfigError,
    "InvalidUpdate": ConfigError,
    "InvalidDurabilityLevel": ConfigError,
    "InvalidMaxContentLength": ConfigError,
    "ContentLengthRequired": ConfigError,
    "LocationRequired": ConfigError,
    "InvalidLink": InvalidName,
    "BadRequest": ConfigError,
    "MultipartUploadInvalidArgument": ConfigError,
    "InvalidMultipartUploadState": ConfigError,
    # worth retrying
    "UploadTimeout": TransientError,
    "UploadAbandoned": TransientError,
    "RequestThrottled": TransientError,
    "ThrottledError": TransientError,
    "ServiceUnavailable": TransientError,
    "InternalError": TransientError,
}

#: HTTP status -> class, when the body names no known code
STATUSES: dict[int, type[StorefsError]] = {
    400: ConfigError,
    401: AuthError,
    403: PermissionDenied,
    404: NotFound,
    405: Unsupported,
    408: TransientError,
    409: PreconditionFailed,
    411: ConfigError,
    412: PreconditionFailed,
    413: TooLarge,
    429: TransientError,
    499: TransientError,
    501: Unsupported,
    507: QuotaExceeded,
}


def error_class(status: int, code: str | None) -> type[StorefsError]:
    """The storefs class for a failed response."""
    if status >= 500 and status != 507 and status != 501:
        return TransientError
    if code and code in CODES:
        return CODES[code]
    return STATUSES.get(status, StorefsError)


def error_for(status: int, code: str | None, message: str | None, what: str) -> StorefsError:
    """``manta: WHAT: MESSAGE (CODE)`` as the right storefs exception, one line."""
    detail = " ".join((message or "").split())[:300] or f"HTTP {status}"
    suffix = f" ({code})" if code else f" (HTTP {status})" if message else ""
    return error_class(status, code)(f"manta: {what}: {detail}{suffix}")
