"""``s3://BUCKET[/PREFIX]``: Amazon S3 and S3-compatible stores, through boto3.

One boto3 client serves every request; it is thread-safe, and each call runs in
``trio.to_thread.run_sync`` under one ``CapacityLimiter`` as large as the client's
connection pool, so no request waits for a connection while holding a thread.  Settings and
credentials are resolved by ``storefs.backends.s3_config``; errors are translated by the
table in ``storefs.backends.s3_errors``.  botocore's own retries are off (one attempt):
``storefs.backends.retrying`` retries ``TransientError`` for every backend alike.

How the interface maps onto S3
    keys            ``PREFIX + key`` in the bucket; ``dir/`` markers are zero-byte objects
                    (content type ``application/x-directory``, as s3fs writes them)
    head            HeadObject; user metadata from ``x-amz-meta-*`` (names lower-cased);
                    sent through ``storefs.backends.s3_head`` (the client's signer and
                    HTTP session without boto3's per-call overhead) once ``connect`` ran
    list_page       ListObjectsV2 with the delimiter: sizes, ETags and LastModified, but
                    no user metadata (``metadata_complete=False``)
    get_range       GetObject with ``Range`` and ``If-Match``
    put             PutObject with ``Content-MD5`` (the server refuses damaged bytes) and
                    the returned ETag compared with the MD5 (``-o check_etag``)
    begin_upload    CreateMultipartUpload; parts with UploadPart (+ ``Content-MD5``) or
                    UploadPartCopy (``copy_part``, guarded by ``CopySourceIfMatch``)
    copy / rename   CopyObject (``CopySourceIfMatch``); from ``copy_multipart_threshold``
                    (5 GiB, S3's limit for one copy) a multipart copy of UploadPartCopy parts,
                    all guarded by the source's ETag so that no part comes from another
                    version
    set_metadata    CopyObject of the object onto itself, ``MetadataDirective=REPLACE``
                    (the content type is carried over from a HeadObject first)
    delete_many     DeleteObjects, 1000 keys a request (``Content-MD5`` added: Swift's S3
                    layer requires it and recent botocore sends a CRC32 instead)
    conditions      ``If-None-Match: *`` / ``If-Match`` on PutObject and
                    CompleteMultipartUpload when ``conditional_writes`` is on (``auto``: on
                    for AWS endpoints only, since many S3-compatible servers answer 501 or
                    ignore the headers).  When off, a condition is checked with a HeadObject
                    just before the write: best effort, not atomic, and
                    ``capabilities.conditional_put`` says so.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any, TypeVar, cast

import boto3
import botocore.config
import botocore.session
import trio
from botocore import UNSIGNED
from botocore import exceptions as bx

from storefs.backends import s3_config
from storefs.backends.base import (
    Backend,
    Capabilities,
    ETag,
    ListPage,
    Metadata,
    ObjectMeta,
    Upload,
)
from storefs.backends.s3_errors import code_of, connect_error, translate
from storefs.backends.s3_head import FastHead
from storefs.errors import (
    AlreadyExists,
    AuthError,
    ConfigError,
    IntegrityError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TooLarge,
)
from storefs.parallel import fan_out
from storefs.source import Source

log = logging.getLogger(__name__)

T = TypeVar("T")

OPTIONS: dict[str, str] = s3_config.OPTIONS

MiB = 1024 * 1024
GiB = 1024 * MiB
TiB = 1024 * GiB
#: S3's limit on user metadata: UTF-8 bytes of the names and values, prefix not counted
MAX_METADATA = 2048
DIR_CONTENT_TYPE = "application/x-directory"


def _etag(raw: str) -> ETag:
    """ETags as the server quotes them (``"..."``): the form If-Match wants back."""
    raw = raw.strip()
    if raw.startswith('"') or raw.startswith("W/"):
        return ETag(raw)
    return ETag(f'"{raw}"')


def _plain_md5(etag: str) -> str | None:
    """The MD5 an ETag holds, for single-part objects without KMS or customer keys."""
    e = etag.strip('"').lower()
    if len(e) == 32 and all(c in "0123456789abcdef" for c in e):
        return e
    return None


def _mtime(value: Any) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return time.time()


def _md5(data: bytes) -> tuple[str, str]:
    """(hex, base64) MD5 of ``data``."""
    d = hashlib.md5(data)
    return d.hexdigest(), base64.b64encode(d.digest()).decode("ascii")


def _metadata_size(metadata: Metadata) -> int:
    return sum(len(k.encode()) + len(v.encode()) for k, v in metadata.items())


class S3Upload(Upload):
    """A multipart upload: parts are remembered by number with their ETags and sizes."""

    def __init__(self, backend: S3Backend, key: str, upload_id: str, part_size: int,
                 metadata: Metadata, content_type: str | None,
                 if_match: ETag | None, if_none_match: bool) -> None:
        self.backend = backend
        self.key = key
        self.upload_id = upload_id
        self.part_size = part_size
        self.metadata = dict(metadata)
        self.content_type = content_type
        self.if_match = if_match
        self.if_none_match = if_none_match
        #: number -> (etag, size)
        self.parts: dict[int, tuple[str, int]] = {}
        self.finished = False

    def _check_number(self, number: int) -> None:
        if not 1 <= number <= self.backend.capabilities.max_parts:
            raise ConfigError(f"{self.key}: part number {number} out of range 1..10000")

    async def write_part(self, number: int, data: bytes) -> None:
        self._check_number(number)
        b = self.backend
        md5_hex, md5_b64 = await trio.to_thread.run_sync(_md5, data, limiter=b.limiter)
        resp = await b.call(
            "upload_part", self.key, Bucket=b.bucket, Key=b.full(self.key),
            UploadId=self.upload_id, PartNumber=number, Body=data, ContentMD5=md5_b64,
            **b.payer,
        )
        etag = str(resp["ETag"])
        if b.check_md5 and _plain_md5(etag) not in (None, md5_hex):
            raise IntegrityError(f"{b.where(self.key)}: part {number}: ETag is not the MD5 "
                                 "of the bytes sent (set -o check_etag=false for this server)")
        self.parts[number] = (etag, len(data))
        b.count("bytes_written", len(data))

    async def copy_part(
        self, number: int, src: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> None:
        self._check_number(number)
        if end <= start:
            raise ConfigError(f"{self.key}: empty range [{start}, {end}) for part {number}")
        etag = await self.backend.upload_part_copy(
            self.key, self.upload_id, number, src, start, end, if_match
        )
        self.parts[number] = (etag, end - start)

    async def complete(self) -> ObjectMeta:
        b = self.backend
        numbers = sorted(self.parts)
        if not numbers or numbers != list(range(1, len(numbers) + 1)):
            raise ConfigError(f"{self.key}: upload is missing parts (have {numbers})")
        for n in numbers[:-1]:
            if self.parts[n][1] != self.part_size:
                raise ConfigError(f"{self.key}: part {n} is not {self.part_size} bytes")
        cond = await b.write_conditions(self.key, self.if_match, self.if_none_match)
        resp = await b.call(
            "complete_multipart_upload", self.key, Bucket=b.bucket, Key=b.full(self.key),
            UploadId=self.upload_id,
            MultipartUpload={"Parts": [{"PartNumber": n, "ETag": self.parts[n][0]}
                                       for n in numbers]},
            conditional=bool(cond), if_none_match=self.if_none_match, **cond, **b.payer,
        )
        self.finished = True
        return ObjectMeta(
            key=self.key, size=sum(size for _, size in self.parts.values()),
            etag=_etag(str(resp["ETag"])), mtime=time.time(),
            content_type=self.content_type, metadata=dict(self.metadata),
            storage_class=b.settings.storage_class,
        )

    async def abort(self) -> None:
        if self.finished:
            return
        b = self.backend
        # NoSuchUpload: aborted or completed already, which is what abort wants
        with contextlib.suppress(NotFound):
            await b.call("abort_multipart_upload", self.key, Bucket=b.bucket,
                         Key=b.full(self.key), UploadId=self.upload_id, **b.payer)
        self.finished = True


class S3Backend(Backend):
    """The S3 backend; build it with ``open_backend`` (no network) then ``connect``."""

    def __init__(self, settings: s3_config.S3Settings, credentials: s3_config.Credentials,
                 session: boto3.session.Session) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self.prefix = settings.prefix
        self.check_md5 = settings.check_etag and settings.sse != "aws:kms"
        self._credentials = credentials
        self._session = session
        self._client: Any = None
        self._client_lock = threading.Lock()
        #: HeadObject without boto3's overhead, once connect has learnt the bucket's URL
        self._fast_head: FastHead | None = None
        self.limiter = trio.CapacityLimiter(settings.connections)
        self.payer: dict[str, Any] = (
            {"RequestPayer": "requester"} if settings.requester_pays else {}
        )
        self._counts: dict[str, int] = {}
        #: the server refuses CopySourceIfMatch on multipart sources (see guarded_copy)
        self._copy_if_match_broken = False
        prefix_bytes = len(self.prefix.encode())
        self.capabilities = Capabilities(
            name="s3",
            real_directories=False,
            server_side_copy=True,
            cheap_rename=False,
            metadata_update=True,
            conditional_put=settings.conditional_writes,
            conditional_get=True,
            multipart_threshold=settings.multipart_threshold,
            min_part_size=5 * MiB,
            max_part_size=5 * GiB,
            max_parts=10_000,
            part_size=settings.part_size,
            sequential_parts=False,
            max_metadata_size=MAX_METADATA,
            part_copy=True,
            max_object_size=5 * TiB,
            # S3 keys are at most 1024 bytes, the mount's prefix included
            max_key_length=1024 - prefix_bytes,
            ordered_listing=True,
            list_page_size=settings.list_page_size,
            metadata_style="s3fs",
        )
        if settings.verify is False:
            # the user asked for it; say so once instead of a warning per request
            import urllib3

            warnings.filterwarnings("ignore", category=urllib3.exceptions.InsecureRequestWarning)
            log.warning("%s: TLS certificate verification is off (-o insecure)", self.describe())

    # -- plumbing -------------------------------------------------------------------------

    def describe(self) -> str:
        where = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        return f"{where} at {self.settings.endpoint_for_messages}"

    def where(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{self.prefix}{key}"

    def full(self, key: str) -> str:
        return self.prefix + key

    def count(self, what: str, n: int = 1) -> None:
        self._counts[what] = self._counts.get(what, 0) + n

    def statistics(self) -> dict[str, Any]:
        return {"requests": {k: v for k, v in self._counts.items() if not k.startswith("bytes")},
                "bytes_read": self._counts.get("bytes_read", 0),
                "bytes_written": self._counts.get("bytes_written", 0),
                "errors": self._counts.get("errors", 0)}

    def _make_client(self) -> Any:
        """The boto3 client (built once, in a worker thread: resolving credentials may
        reach the network, e.g. an instance role)."""
        with self._client_lock:
            if self._client is not None:
                return self._client
            s = self.settings
            cfg = botocore.config.Config(
                region_name=s.region,
                max_pool_connections=s.connections,
                connect_timeout=s.connect_timeout,
                read_timeout=s.read_timeout,
                # one attempt: storefs.backends.retrying retries, with the caller's deadline
                retries={"total_max_attempts": 1, "mode": "standard"},
                s3={"addressing_style": s.addressing_style} if s.addressing_style else {},
                # Content-MD5 is computed here; the CRC32s and aws-chunked bodies of recent
                # botocore are refused by many S3-compatible servers
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
                signature_version=UNSIGNED if s.anonymous else None,
                tcp_keepalive=True,
            )
            c = self._credentials
            client = self._session.client(
                "s3",
                endpoint_url=s.endpoint_url,
                use_ssl=s.use_ssl,
                verify=s.verify,
                aws_access_key_id=c.access_key,
                aws_secret_access_key=c.secret_key,
                aws_session_token=c.session_token,
                config=cfg,
            )
            # Swift's S3 layer (and the S3 API as first specified) require Content-MD5 on
            # DeleteObjects; botocore >= 1.36 sends a CRC32 instead
            client.meta.events.register("before-call.s3.DeleteObjects", _add_content_md5)
            self._client = client
            return client

    async def client(self) -> Any:
        if self._client is None:
            try:
                await trio.to_thread.run_sync(self._make_client, limiter=self.limiter)
            except (bx.BotoCoreError, ValueError) as exc:
                raise translate(exc, self.where()) from exc
        return self._client

    async def call(self, op: str, key: str | None, *, conditional: bool = False,
                   if_none_match: bool = False, **kwargs: Any) -> Any:
        """Run ``client.<op>(**kwargs)`` in a worker thread; errors translated.

        ``conditional`` marks a write sent with If-Match/If-None-Match, whose 412 means
        "exists" (``if_none_match``) or "changed", and whose 404 means "changed" too."""
        client = await self.client()
        fn: Callable[..., Any] = getattr(client, op)
        self.count(op)
        try:
            return await trio.to_thread.run_sync(lambda: fn(**kwargs), limiter=self.limiter)
        except Exception as exc:
            raise self._failed(exc, key, conditional, if_none_match) from exc

    def _failed(self, exc: Exception, key: str | None, conditional: bool = False,
                if_none_match: bool = False) -> StorefsError:
        """The storefs error for ``exc``, raised by a request on ``key`` (see ``call``)."""
        self.count("errors")
        where = self.where(key) if key is not None else self.where()
        err = translate(exc, where)
        code = code_of(exc)[0] if isinstance(exc, bx.ClientError) else ""
        if conditional and isinstance(err, PreconditionFailed):
            if if_none_match:
                return AlreadyExists(f"{where}: already exists")
            return PreconditionFailed(f"{where}: changed since it was read")
        if conditional and code in ("NoSuchKey", "404"):
            # If-Match on a key that is gone: it changed since it was read
            return PreconditionFailed(f"{where}: removed since it was read")
        if code == "NoSuchBucket":
            return NotFound(f"s3://{self.bucket}: no such bucket at "
                            f"{self.settings.endpoint_for_messages}")
        return err

    async def head_object(self, key: str, if_match: ETag | None = None) -> Mapping[str, Any]:
        """HeadObject of ``key`` (a boto3-shaped response), through ``FastHead`` once
        ``connect`` has learnt how, else through boto3."""
        fast = self._fast_head
        if fast is not None:
            headers = {"If-Match": str(if_match)} if if_match else {}
            if self.payer:
                headers["x-amz-request-payer"] = "requester"
            self.count("head_object")  # sent, whatever it answers
            try:
                r = await trio.to_thread.run_sync(fast.head, self.full(key), headers,
                                                  limiter=self.limiter)
            except Exception as exc:
                raise self._failed(exc, key) from exc
            if r is not None:
                return r
        params: dict[str, Any] = {"IfMatch": str(if_match)} if if_match else {}
        return cast(Mapping[str, Any], await self.call(
            "head_object", key, Bucket=self.bucket, Key=self.full(key), **params,
            **self.payer))

    async def write_conditions(self, key: str, if_match: ETag | None,
                               if_none_match: bool) -> dict[str, str]:
        """Request parameters for the conditions of a write, or, when the server has no
        conditional writes, the same conditions checked now with a HEAD (best effort)."""
        if if_match is None and not if_none_match:
            return {}
        if self.settings.conditional_writes:
            return {"IfNoneMatch": "*"} if if_none_match else {"IfMatch": str(if_match)}
        try:
            current: ObjectMeta | None = await self.head(key)
        except NotFound:
            current = None
        if if_none_match and current is not None:
            raise AlreadyExists(f"{self.where(key)}: already exists")
        if if_match is not None and (current is None or current.etag != _etag(if_match)):
            raise PreconditionFailed(f"{self.where(key)}: changed since it was read")
        return {}

    def _write_params(self, metadata: Metadata, content_type: str | None, key: str,
                      ) -> dict[str, Any]:
        size = _metadata_size(metadata)
        if size > MAX_METADATA:
            raise TooLarge(f"{self.where(key)}: user metadata is {size} bytes; "
                           f"S3 keeps at most {MAX_METADATA}")
        limit = self.settings.max_metadata_value
        if limit is not None:
            # Swift's S3 layer answers a longer value with 500 InternalError, which would be
            # retried in vain: refuse it here, with the reason
            for k, v in metadata.items():
                if len(v.encode()) > limit:
                    raise TooLarge(f"{self.where(key)}: metadata value {k!r} is "
                                   f"{len(v.encode())} bytes; this server keeps at most {limit}")
        bad = [k for k, v in metadata.items() if not (k + v).isascii()]
        if bad:
            raise ConfigError(f"{self.where(key)}: metadata {bad[0]!r} is not ASCII")
        p: dict[str, Any] = {"Metadata": dict(metadata)}
        if content_type:
            p["ContentType"] = content_type
        s = self.settings
        if s.storage_class:
            p["StorageClass"] = s.storage_class
        if s.sse:
            p["ServerSideEncryption"] = s.sse
        if s.sse_kms_key_id:
            p["SSEKMSKeyId"] = s.sse_kms_key_id
        return p | self.payer

    def _meta_from_head(self, key: str, r: Mapping[str, Any]) -> ObjectMeta:
        etag = _etag(str(r.get("ETag", "")))
        checksums: dict[str, str] = {}
        md5 = _plain_md5(etag)
        if md5 and r.get("ServerSideEncryption") != "aws:kms" \
                and not r.get("SSECustomerAlgorithm"):
            checksums["md5"] = md5
        return ObjectMeta(
            key=key,
            size=int(r.get("ContentLength", 0)),
            etag=etag,
            mtime=_mtime(r.get("LastModified")),
            is_dir=key.endswith("/"),
            content_type=r.get("ContentType"),
            metadata={str(k).lower(): str(v) for k, v in (r.get("Metadata") or {}).items()},
            checksums=checksums,
            storage_class=r.get("StorageClass") or "STANDARD",
        )

    # -- life cycle -------------------------------------------------------------------------

    async def connect(self) -> None:
        """One ListObjectsV2 of the prefix: proves the endpoint answers, TLS is trusted,
        the credentials are accepted and the bucket exists and may be listed."""
        endpoint = self.settings.endpoint_for_messages
        try:
            learner = FastHead.learn(await self.client())
            await self.call("list_objects_v2", None, Bucket=self.bucket, Prefix=self.prefix,
                            MaxKeys=1, **self.payer)
            self._fast_head = learner.result
        except NotFound as exc:
            raise NotFound(f"s3://{self.bucket}: no such bucket at {endpoint}") from exc
        except PermissionDenied as exc:
            who = "anonymous access" if self.settings.anonymous else "these credentials"
            raise AuthError(f"s3://{self.bucket}: access denied to {who} at {endpoint} "
                            f"({str(exc).rsplit('(', 1)[-1]}") from exc
        except PreconditionFailed as exc:
            # no condition was sent: a server that answers 412 here did not understand the
            # request (Swift's S3 layer does so for unsigned requests)
            hint = "; it may not allow anonymous access" if self.settings.anonymous else ""
            raise StorefsError(f"s3://{self.bucket} at {endpoint}: the server refused to list "
                               f"the bucket (HTTP 412){hint}") from exc
        except StorefsError as exc:
            err = connect_error(exc, endpoint)
            if err is exc:  # refused by the server: say which bucket and server
                err = type(exc)(f"s3://{self.bucket} at {endpoint}: "
                                f"{str(exc).split(': ', 1)[-1]}")
            raise err from exc
        log.info("connected to %s", self.describe())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        self._fast_head = None
        if client is not None:
            client.close()

    # -- reads ------------------------------------------------------------------------------

    async def head(self, key: str) -> ObjectMeta:
        return self._meta_from_head(key, await self.head_object(key))

    async def list_page(
        self, prefix: str, *, delimiter: str = "/", token: str | None = None, limit: int = 0
    ) -> ListPage:
        params: dict[str, Any] = {
            "Bucket": self.bucket,
            "Prefix": self.full(prefix),
            "MaxKeys": min(limit or self.capabilities.list_page_size, 1000),
        }
        if delimiter:
            params["Delimiter"] = delimiter
        if token:
            params["ContinuationToken"] = token
        r = await self.call("list_objects_v2", prefix, **params, **self.payer)
        cut = len(self.prefix)
        objects = [
            ObjectMeta(
                key=o["Key"][cut:],
                size=int(o.get("Size", 0)),
                etag=_etag(str(o.get("ETag", ""))),
                mtime=_mtime(o.get("LastModified")),
                is_dir=o["Key"].endswith("/"),
                storage_class=o.get("StorageClass"),
                # ListObjectsV2 carries no user metadata: a HEAD tells mode, owner, mtime
                metadata_complete=False,
            )
            for o in r.get("Contents", [])
        ]
        prefixes = [p["Prefix"][cut:] for p in r.get("CommonPrefixes", [])]
        more = r.get("IsTruncated") and r.get("NextContinuationToken")
        return ListPage(objects, prefixes, str(r["NextContinuationToken"]) if more else None)

    async def get_range(
        self, key: str, start: int, end: int, *, if_match: ETag | None = None
    ) -> bytes:
        if end <= start:
            return b""
        params: dict[str, Any] = {"Bucket": self.bucket, "Key": self.full(key),
                                  "Range": f"bytes={start}-{end - 1}"}
        if if_match is not None:
            params["IfMatch"] = str(if_match)
        client = await self.client()

        def get() -> bytes:
            r = client.get_object(**params, **self.payer)
            with contextlib.closing(r["Body"]) as body:
                data: bytes = body.read()
            return data

        self.count("get_object")
        try:
            data = await trio.to_thread.run_sync(get, limiter=self.limiter)
        except bx.ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status != 416 and exc.response.get("Error", {}).get("Code") != "InvalidRange":
                self.count("errors")
                raise translate(exc, self.where(key)) from exc
            # a range starting at or past the end: a short read of nothing, as a file gives;
            # the condition must still hold
            if if_match is not None:
                meta = await self.head(key)
                if meta.etag != _etag(if_match):
                    raise PreconditionFailed(f"{self.where(key)}: changed since it was read"
                                             ) from exc
            return b""
        except Exception as exc:
            self.count("errors")
            raise translate(exc, self.where(key)) from exc
        self.count("bytes_read", len(data))
        return data

    # -- writes -----------------------------------------------------------------------------

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
        params = self._write_params(metadata, content_type, key)
        md5_hex, md5_b64 = await trio.to_thread.run_sync(_md5, data, limiter=self.limiter)
        cond = await self.write_conditions(key, if_match, if_none_match)
        r = await self.call("put_object", key, Bucket=self.bucket, Key=self.full(key),
                            Body=data, ContentMD5=md5_b64, conditional=bool(cond),
                            if_none_match=if_none_match, **cond, **params)
        etag = _etag(str(r["ETag"]))
        if self.check_md5 and _plain_md5(etag) not in (None, md5_hex):
            raise IntegrityError(f"{self.where(key)}: the store's ETag is not the MD5 of the "
                                 "bytes sent (set -o check_etag=false for this server)")
        self.count("bytes_written", len(data))
        return ObjectMeta(
            key=key, size=len(data), etag=etag, mtime=time.time(), is_dir=key.endswith("/"),
            content_type=content_type, metadata=dict(metadata),
            checksums={"md5": md5_hex} if self.check_md5 else {},
            storage_class=self.settings.storage_class,
        )

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
        if not self.capabilities.min_part_size <= part_size <= self.capabilities.max_part_size:
            raise ConfigError(f"part size {part_size} is outside S3's 5 MiB..5 GiB")
        params = self._write_params(metadata, content_type, key)
        r = await self.call("create_multipart_upload", key, Bucket=self.bucket,
                            Key=self.full(key), **params)
        return S3Upload(self, key, str(r["UploadId"]), part_size, metadata, content_type,
                        if_match, if_none_match)

    async def upload_part_copy(self, key: str, upload_id: str, number: int, src: str,
                               start: int, end: int, if_match: ETag | None) -> str:
        """One UploadPartCopy of ``src[start:end)``; returns the part's ETag."""
        r = await self.guarded_copy(
            "upload_part_copy", key, src, if_match, Bucket=self.bucket, Key=self.full(key),
            UploadId=upload_id, PartNumber=number,
            CopySource={"Bucket": self.bucket, "Key": self.full(src)},
            CopySourceRange=f"bytes={start}-{end - 1}", **self.payer,
        )
        return str(r["CopyPartResult"]["ETag"])

    async def guarded_copy(self, op: str, key: str, src: str, if_match: ETag | None,
                           **kwargs: Any) -> Any:
        """``op`` (CopyObject or UploadPartCopy) with ``CopySourceIfMatch``.

        Swift's S3 layer (2.30) refuses CopySourceIfMatch on every multipart-uploaded
        source, changed or not.  A 412 is therefore checked with a HEAD: if the source still
        has the expected ETag, the copy is made without the header and the ETag checked
        again afterwards (an unchanged ETag before and after means the bytes copied are the
        ones expected).  After one such refusal, copies of multipart sources go straight to
        the checked path."""
        if if_match is None:
            return await self.call(op, key, **kwargs)
        multipart = "-" in if_match
        if not (multipart and self._copy_if_match_broken):
            try:
                return await self.call(op, key, CopySourceIfMatch=str(if_match), **kwargs)
            except PreconditionFailed:
                if (await self.head(src)).etag != _etag(if_match):
                    raise
                if multipart:
                    self._copy_if_match_broken = True
                log.info("%s: the server refused CopySourceIfMatch on an unchanged source; "
                         "checking the source's ETag by HEAD instead", self.where(src))
        elif (await self.head(src)).etag != _etag(if_match):
            raise PreconditionFailed(f"{self.where(src)}: changed since it was read")
        result = await self.call(op, key, **kwargs)
        if (await self.head(src)).etag != _etag(if_match):
            raise PreconditionFailed(f"{self.where(src)}: changed while it was copied")
        return result

    async def delete(self, key: str) -> None:
        # S3 answers 204 for a key that is not there: idempotent by nature
        await self.call("delete_object", key, Bucket=self.bucket, Key=self.full(key),
                        **self.payer)

    async def delete_many(self, keys: Iterable[str]) -> None:
        todo = list(dict.fromkeys(keys))
        for i in range(0, len(todo), 1000):
            batch = todo[i:i + 1000]
            r = await self.call(
                "delete_objects", batch[0], Bucket=self.bucket,
                Delete={"Objects": [{"Key": self.full(k)} for k in batch], "Quiet": True},
                **self.payer,
            )
            errors = [e for e in r.get("Errors", []) if e.get("Code") != "NoSuchKey"]
            if errors:
                e = errors[0]
                code = str(e.get("Code", "Unknown"))
                key = str(e.get("Key", ""))[len(self.prefix):]
                fake = bx.ClientError({"Error": {"Code": code}}, "DeleteObjects")
                raise translate(fake, self.where(key))

    async def copy(
        self,
        src: str,
        dst: str,
        *,
        metadata: Metadata | None = None,
        if_match: ETag | None = None,
    ) -> ObjectMeta:
        # the HEAD gives the size (CopyObject stops at 5 GiB) and, when the metadata is
        # replaced, the content type, which REPLACE would otherwise reset
        source = self._meta_from_head(src, await self.head_object(src, if_match))
        new_meta = dict(source.metadata if metadata is None else metadata)
        params = self._write_params(new_meta, source.content_type, dst)
        if source.size > 0 and source.size >= self.settings.copy_multipart_threshold:
            return await self._multipart_copy(src, dst, source, params)
        if metadata is not None:
            params["MetadataDirective"] = "REPLACE"
        else:
            # COPY keeps the source's metadata and content type as they are on the server
            params.pop("Metadata")
            params.pop("ContentType", None)
        out = await self.guarded_copy(
            "copy_object", src, src, if_match, Bucket=self.bucket, Key=self.full(dst),
            CopySource={"Bucket": self.bucket, "Key": self.full(src)}, **params,
        )
        result = out.get("CopyObjectResult", {})
        return ObjectMeta(
            key=dst, size=source.size, etag=_etag(str(result.get("ETag", ""))),
            mtime=_mtime(result.get("LastModified")), is_dir=dst.endswith("/"),
            content_type=source.content_type, metadata=new_meta,
            storage_class=self.settings.storage_class or source.storage_class,
        )

    async def copy_listed(self, listed: ObjectMeta, dst: str) -> None:
        if listed.size >= self.settings.copy_multipart_threshold:
            await self.copy(listed.key, dst)  # in parts, from what a HEAD says
            return
        # the listing gave the size; COPY keeps the source's metadata and content type
        params = self._write_params({}, None, dst)
        params.pop("Metadata")
        await self.call("copy_object", listed.key, Bucket=self.bucket, Key=self.full(dst),
                        CopySource={"Bucket": self.bucket, "Key": self.full(listed.key)},
                        **params)

    async def _multipart_copy(self, src: str, dst: str, source: ObjectMeta,
                              params: dict[str, Any]) -> ObjectMeta:
        """CopyObject's 5 GiB limit lifted: UploadPartCopy parts in parallel, every part
        guarded by the source's ETag so that a concurrent overwrite fails the copy instead
        of mixing versions."""
        part = self.settings.copy_part_size
        upload = S3Upload(self, dst, "", part, params["Metadata"], source.content_type,
                          None, False)
        r = await self.call("create_multipart_upload", dst, Bucket=self.bucket,
                            Key=self.full(dst), **params)
        upload.upload_id = str(r["UploadId"])
        try:
            async with fan_out() as nursery:
                for n, start in enumerate(range(0, max(source.size, 1), part), start=1):
                    end = min(start + part, source.size)
                    nursery.start_soon(
                        partial(upload.copy_part, n, src, start, end, if_match=source.etag)
                    )
            return await upload.complete()
        except BaseException:
            with trio.CancelScope(shield=True):
                await upload.abort()
            raise

    async def set_metadata(
        self, key: str, metadata: Metadata, *, if_match: ETag | None = None
    ) -> ObjectMeta:
        return await self.copy(key, key, metadata=metadata, if_match=if_match)


def _add_content_md5(params: dict[str, Any], **_: Any) -> None:
    body = params.get("body")
    if isinstance(body, bytes | bytearray):
        params["headers"]["Content-MD5"] = base64.b64encode(hashlib.md5(body).digest()).decode()


_LOADER: Any = None


def open_backend(source: Source, options: Mapping[str, str]) -> S3Backend:
    """Build the backend from the source, options, environment and files (no network)."""
    sessions: list[boto3.session.Session] = []

    def scoped_config(profile: str | None) -> dict[str, Any]:
        # the profile is known only once the settings are resolved (it may come from
        # -o, AWS_PROFILE or a file); the session is made for it here
        core = botocore.session.Session(profile=profile)
        # botocore parses its 100k-line S3 model anew for every session (0.1 s); the loader
        # and its cache are read-only once loaded, so one serves every backend
        global _LOADER
        if _LOADER is None:
            _LOADER = core.get_component("data_loader")
        else:
            core.register_component("data_loader", _LOADER)
        cfg: dict[str, Any] = core.get_scoped_config()
        sessions.append(boto3.session.Session(botocore_session=core))
        return cfg

    try:
        settings, creds = s3_config.resolve(source.bucket, source.prefix, options,
                                            profile_config=scoped_config)
    except bx.ProfileNotFound as exc:
        profile = exc.kwargs.get("profile", "?")
        raise ConfigError(f"AWS profile {profile!r} not found in the AWS config files"
                          ) from exc
    return S3Backend(settings, creds, sessions[-1])
