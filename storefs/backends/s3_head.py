"""HeadObject without boto3's per-call machinery: the request ``ls -l`` makes per entry.

A listing of S3 carries no user metadata, so the attributes of each entry cost one
HeadObject.  Through boto3 that request spends about 1.2 ms of CPU in botocore's event
hooks, endpoint rules, parameter validation and response parser, against 0.4 ms for the
HTTP exchange itself (measured on Swift's S3 layer); with the server on the same two
cores, that CPU is taken from the server.  ``FastHead`` sends the same request through the
same client's own signer and HTTP session (so credentials and their refresh, anonymous
access, proxies, TLS settings, timeouts and the connection pool are the client's) and shapes
the reply like ``head_object``'s, so everything after it is unchanged.

What it needs from botocore is learnt from the client's first ListObjectsV2 (``connect``):
the bucket's URL as the endpoint rules resolved it (path or virtual-host style, the
region's host) and the signing context.  A reply it does not handle as boto3 would (a
redirect to another region, an unexpected status) is answered ``None``: the caller asks
boto3 instead, which then also sees the error the way its tests expect.
"""

from __future__ import annotations

import email.utils
import http.client
import logging
import urllib.parse
from collections.abc import Mapping
from typing import Any

from botocore import exceptions as bx
from botocore.awsrequest import AWSRequest
from botocore.hooks import first_non_none_response

log = logging.getLogger(__name__)

META_PREFIX = "x-amz-meta-"
#: reply header -> HeadObject response field, for the fields storefs reads
FIELDS = {
    "etag": "ETag",
    "content-type": "ContentType",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-customer-algorithm": "SSECustomerAlgorithm",
    "x-amz-storage-class": "StorageClass",
    "x-amz-version-id": "VersionId",
}
#: statuses that become the same ``ClientError`` boto3 raises for a HEAD (no body, so the
#: code is the status); anything else goes to boto3 itself
ERRORS = frozenset({403, 404, 412, 500, 502, 503, 504})


class FastHead:
    """HeadObject of one bucket through a boto3 client's signer and HTTP session."""

    def __init__(self, client: Any, bucket_url: str, signing: Mapping[str, Any]) -> None:
        self._signer = client._request_signer
        self._http = client._endpoint.http_session
        self._events = client.meta.events
        self._base = bucket_url
        self._signing = dict(signing)

    @classmethod
    def learn(cls, client: Any, operation: str = "ListObjectsV2") -> _Learner:
        """A hook to register before ``operation`` runs once; ``learner.result`` is then the
        ``FastHead`` (None if botocore's internals are not what this module expects)."""
        return _Learner(cls, client, operation)

    def url(self, full_key: str) -> str:
        # botocore's own quoting of the {Key+} label: '/' and '~' kept
        return f"{self._base}/{urllib.parse.quote(full_key, safe='/~')}"

    def head(self, full_key: str, headers: Mapping[str, str]) -> dict[str, Any] | None:
        """The ``head_object`` response for ``full_key``, ``ClientError`` as boto3 raises
        it, or None when boto3 should be asked instead.  Blocking (a worker thread's)."""
        req = AWSRequest(method="HEAD", url=self.url(full_key), headers=dict(headers))
        req.context = {"signing": dict(self._signing)} if self._signing else {}
        self._signer.sign("HeadObject", req)
        prepared = req.prepare()
        # the client's before-send hooks see (and may answer) this request as they would
        # boto3's own
        resp = first_non_none_response(
            self._events.emit("before-send.s3.HeadObject", request=prepared))
        if resp is None:
            resp = self._http.send(prepared)
        resp.content  # noqa: B018 (reading the empty body hands the connection back)
        status = resp.status_code
        if status == 200:
            return _response(resp.headers)
        if status in ERRORS:
            raise bx.ClientError(
                {"Error": {"Code": str(status), "Message": http.client.responses.get(status,
                                                                                     "")},
                 "ResponseMetadata": {"HTTPStatusCode": status,
                                      "HTTPHeaders": dict(resp.headers.items())}},
                "HeadObject")
        log.debug("s3: HEAD %s answered %d: asking boto3", full_key, status)
        return None


def _response(headers: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"Metadata": {}}
    for name, value in headers.items():
        low = name.lower()
        if low.startswith(META_PREFIX):
            out["Metadata"][low[len(META_PREFIX):]] = value
        elif low in FIELDS:
            out[FIELDS[low]] = value
        elif low == "content-length":
            out["ContentLength"] = int(value)
        elif low == "last-modified":
            out["LastModified"] = email.utils.parsedate_to_datetime(value)
    return out


class _Learner:
    """Registered on ``before-sign`` of one operation: keeps the bucket URL and signing
    context of the first request it sees, then unregisters itself."""

    def __init__(self, cls: type[FastHead], client: Any, operation: str) -> None:
        self._cls = cls
        self._client = client
        self._event = f"before-sign.s3.{operation}"
        self.result: FastHead | None = None
        client.meta.events.register(self._event, self)

    def __call__(self, request: Any, **_: Any) -> None:
        self._client.meta.events.unregister(self._event, self)
        try:
            parts = urllib.parse.urlsplit(request.url)
            base = f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
            self.result = self._cls(self._client, base, request.context.get("signing") or {})
        except (AttributeError, ValueError) as exc:  # another botocore: boto3 it is
            log.debug("s3: HEAD through boto3 only (%s)", exc)
