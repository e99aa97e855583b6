"""Manta's REST errors as the test server sends them: a code and its HTTP status.

The statuses are muskie's (manta-protocol.md §1.6, §3, §4, §5); ``MantaError(code, msg)``
raised anywhere in a handler becomes ``{"code": ..., "message": ...}`` with exactly
``Content-Type: application/json`` (and no body on HEAD).
"""

from __future__ import annotations

#: code -> HTTP status
STATUS: dict[str, int] = {
    # auth (§1.6)
    "InvalidHeader": 400,
    "RequestExpired": 400,
    "AuthorizationSchemeNotAllowed": 403,
    "InvalidAlgorithm": 401,
    "InvalidKeyId": 403,
    "AccountDoesNotExist": 403,
    "UserDoesNotExist": 403,
    "KeyDoesNotExist": 403,
    "InvalidSignature": 403,
    "AccountBlocked": 403,
    "AuthorizationFailed": 403,
    "NoMatchingRoleTag": 403,
    "SecureTransportRequired": 403,
    "InvalidRole": 409,
    "InvalidRoleTag": 409,
    # namespace and directories (§2, §3)
    "ResourceNotFound": 404,
    "OperationNotAllowedOnRootDirectory": 400,
    "DirectoryDoesNotExist": 404,
    "ParentNotDirectory": 400,
    "DirectoryNotEmpty": 400,
    "DirectoryLimitExceeded": 409,
    "InvalidArgumentError": 400,
    "InvalidParameter": 400,
    "QueryParameterForbidden": 403,
    "MethodNotAllowed": 405,
    # objects (§4)
    "ContentLengthRequired": 411,
    "MaxContentLengthExceeded": 413,
    "InvalidMaxContentLength": 400,
    "ContentMD5Mismatch": 400,
    "BadRequest": 400,
    "InvalidDurabilityLevel": 400,
    "OperationNotAllowedOnDirectory": 400,
    "NotEnoughSpace": 507,
    "ConcurrentRequest": 409,
    "InvalidUpdate": 400,
    "NotAcceptable": 406,
    "NotImplemented": 501,
    "RequestedRangeNotSatisfiable": 416,
    "PreconditionFailed": 412,
    "NotModified": 304,
    # snaplinks (§4.7)
    "LocationRequired": 400,
    "SourceObjectNotFound": 404,
    "LinkNotObject": 400,
    "InvalidLink": 400,
    "SnaplinksDisabledError": 403,
    # multipart uploads (§5)
    "MultipartUploadInvalidArgument": 409,
    "InvalidMultipartUploadState": 409,
    "InternalError": 500,
}


class MantaError(Exception):
    """An error reply; ``headers`` are extra response headers (e.g. Content-Range)."""

    def __init__(self, code: str, message: str, headers: dict[str, str] | None = None,
                 status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status if status is not None else STATUS[code]
        self.headers = headers or {}
