"""The S3 error table: every S3 failure a user can meet becomes the right errno, with a
one-line message that names the object and the cause and never echoes the server's text
(Swift's S3 layer echoes the string to sign, AWS the canonical request)."""

from __future__ import annotations

import errno

import pytest
from botocore import exceptions as bx

from storefs.backends.s3_errors import ERROR_CODES, STATUS_FALLBACK, translate
from storefs.errors import StorefsError, TransientError


def client_error(code: str, status: int, message: str = "") -> bx.ClientError:
    return bx.ClientError(
        {"Error": {"Code": code, "Message": message, "StringToSign": "AWS4-HMAC-SHA256 ..."},
         "ResponseMetadata": {"HTTPStatusCode": status}},
        "GetObject",
    )


@pytest.mark.parametrize(("code", "status", "expected_errno", "retried"), [
    ("NoSuchKey", 404, errno.ENOENT, False),
    ("404", 404, errno.ENOENT, False),  # HEAD: no body, no code
    ("NoSuchBucket", 404, errno.ENOENT, False),
    ("AccessDenied", 403, errno.EACCES, False),
    ("InvalidAccessKeyId", 403, errno.EACCES, False),
    ("SignatureDoesNotMatch", 403, errno.EACCES, False),
    ("PreconditionFailed", 412, errno.ESTALE, False),
    ("EntityTooLarge", 400, errno.EFBIG, False),
    ("KeyTooLongError", 400, errno.ENAMETOOLONG, False),
    ("BucketNotEmpty", 409, errno.ENOTEMPTY, False),
    ("NotImplemented", 501, errno.EOPNOTSUPP, False),
    ("SlowDown", 503, errno.EIO, True),
    ("InternalError", 500, errno.EIO, True),
    ("RequestTimeout", 400, errno.EIO, True),
    ("BadDigest", 400, errno.EIO, True),
    ("SomethingNew", 502, errno.EIO, True),  # unknown 5xx: worth retrying
    ("SomethingNew", 400, errno.EIO, False),
])
def test_codes_map_to_errnos(code: str, status: int, expected_errno: int,
                             retried: bool) -> None:
    err = translate(client_error(code, status, "The request signature we calculated..."),
                    "s3://b/key")
    assert err.errno == expected_errno
    assert isinstance(err, TransientError) == retried
    text = str(err)
    assert text.startswith("s3://b/key: ") and "\n" not in text
    assert "signature we calculated" not in text and "AWS4-HMAC" not in text
    assert code in text


def test_network_failures_are_transient_with_a_short_reason() -> None:
    refused = bx.EndpointConnectionError(endpoint_url="http://h:1/b?X-Amz-Signature=abc",
                                         error=ConnectionRefusedError(111, "refused"))
    err = translate(refused, "s3://b/k")
    assert isinstance(err, TransientError)
    assert str(err) == "s3://b/k: connection refused"  # no URL: it may carry a signature
    timeout = bx.ReadTimeoutError(endpoint_url="http://h:1/b")
    assert str(translate(timeout, "s3://b/k")) == "s3://b/k: timed out waiting for the server"


def test_every_table_entry_is_a_storefs_error_with_words() -> None:
    for code, (cls, what) in {**ERROR_CODES, **{str(k): v for k, v in
                                               STATUS_FALLBACK.items()}}.items():
        assert issubclass(cls, StorefsError), code
        assert what and "\n" not in what and what == what.strip(), code
