"""Server behaviour the local servers do not show, through a mock transport: credentials
and extra headers stay on their origin across redirects, servers without HEAD or sizes,
errors and broken transfers, secrets never logged."""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable

import httpx
import pytest

from storefs.backends.http import HttpBackend, settings_from
from storefs.errors import (
    IntegrityError,
    NotFound,
    PermissionDenied,
    PreconditionFailed,
    StorefsError,
    TransientError,
)
from storefs.source import parse_source

Handler = Callable[[httpx.Request], httpx.Response]
SECRET = "pa55-w0rd"
TOKEN = "Bearer t0k3n-42"


def backend(handler: Handler, url: str = "https://a.test/dir/",
            options: dict[str, str] | None = None) -> tuple[HttpBackend, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    settings = settings_from(parse_source(url), options or {}, section={})
    return HttpBackend(settings, transport=httpx.MockTransport(record)), seen


def answer(status: int, body: bytes = b"", **headers: str) -> Handler:
    """A handler giving a new response each time (a response's body streams once)."""
    return lambda request: httpx.Response(status, headers=headers,
                                          stream=httpx.ByteStream(body))


FILE = {"content-length": "10", "etag": '"v1"', "last-modified": "Wed, 02 Dec 2026 05:17:03 GMT"}


async def test_credentials_and_headers_stay_on_their_origin() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/dir/moved":
            return httpx.Response(301, headers={"location": "/dir/here"})
        if request.url.path == "/dir/away":
            return httpx.Response(302, headers={"location": "https://mirror.test/f"})
        return httpx.Response(200, headers=FILE)

    b, seen = backend(handler, options={"username": "jill", "password": SECRET,
                                        "header": f"Authorization2: {TOKEN}|X-Team: blue"})
    await b.head("moved")
    await b.head("away")
    await b.aclose()
    own = [r for r in seen if r.url.host == "a.test"]
    other = [r for r in seen if r.url.host == "mirror.test"]
    assert [r.url.path for r in own] == ["/dir/moved", "/dir/here", "/dir/away"]
    for r in own:
        assert r.headers["authorization"].startswith("Basic ")
        assert r.headers["authorization2"] == TOKEN and r.headers["x-team"] == "blue"
    assert len(other) == 1
    assert not {"authorization", "authorization2", "x-team"} & set(other[0].headers)


async def test_a_server_without_head_or_sizes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "HEAD" and request.url.path == "/dir/nohead":
            return httpx.Response(405)
        if request.method == "HEAD":
            return httpx.Response(200, headers={"last-modified": FILE["last-modified"]})
        assert request.headers["range"] == "bytes=0-0"
        if request.url.path == "/dir/empty":
            return httpx.Response(416, headers={"content-range": "bytes */0"})
        return httpx.Response(206, stream=httpx.ByteStream(b"x"),
                              headers={"content-range": "bytes 0-0/1234"})

    b, _ = backend(handler)
    assert (await b.head("nohead")).size == 1234
    assert (await b.head("nolength")).size == 1234
    assert (await b.head("empty")).size == 0
    await b.aclose()


@pytest.mark.parametrize(("status", "cls", "err"), [
    (503, TransientError, errno.EIO),
    (429, TransientError, errno.EIO),
    (403, PermissionDenied, errno.EACCES),
    (410, NotFound, errno.ENOENT),
    (418, StorefsError, errno.EIO),
])
async def test_statuses_map_by_table(status: int, cls: type[StorefsError], err: int) -> None:
    b, _ = backend(answer(status))
    with pytest.raises(cls) as exc:
        await b.get_range("f", 0, 4)
    await b.aclose()
    assert type(exc.value) is cls and exc.value.errno == err
    assert str(exc.value).startswith(f"http: get https://a.test/dir/f: {status}")


async def test_broken_transfers_are_transient() -> None:
    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("connection reset by peer", request=request)

    b, _ = backend(reset)
    with pytest.raises(TransientError) as exc:
        await b.head("f")
    assert "\n" not in str(exc.value)
    await b.aclose()
    b, _ = backend(answer(206, b"abc", **{**FILE, "content-range": "bytes 0-9/10"}))
    with pytest.raises(TransientError, match="3 of 10 bytes arrived"):
        await b.get_range("f", 0, 10)
    await b.aclose()


async def test_odd_answers() -> None:
    b, _ = backend(answer(206, b"\x1f\x8b..", **{**FILE, "content-encoding": "gzip",
                                                 "content-range": "bytes 0-3/10"}))
    with pytest.raises(IntegrityError, match="compressed"):
        await b.get_range("f", 0, 4)
    await b.aclose()
    b, _ = backend(answer(302, location="/dir/f"))
    with pytest.raises(StorefsError, match="more than 8 redirects"):
        await b.head("f")
    await b.aclose()
    # a server that ignores If-Match and sends the new version anyway
    b, _ = backend(answer(206, b"0123", **{**FILE, "etag": '"v2"',
                                          "content-range": "bytes 0-3/10"}))
    with pytest.raises(PreconditionFailed, match='version "v2", not "v1"'):
        await b.get_range("f", 0, 4, if_match='"v1"')  # type: ignore[arg-type]
    await b.aclose()


async def test_secrets_are_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(401 if request.url.path == "/dir/" else 200, headers=FILE,
                              stream=httpx.ByteStream(b"0123456789"))

    b, _ = backend(handler, options={"username": "jill", "password": SECRET,
                                     "header": f"X-Token: {TOKEN}", "insecure": "true"})
    with pytest.raises(StorefsError) as exc:
        await b.connect()
    await b.head("f")
    await b.get_range("f", 0, 4)
    await b.aclose()
    text = caplog.text + str(exc.value) + b.describe() + repr(b.statistics())
    assert SECRET not in text and TOKEN not in text and "t0k3n" not in text
    assert "jill" in b.describe()
