"""Directory listings of plain web servers, parsed into entries (no network here).

An HTTP tree has no listing API; servers answer a directory URL (one ending in ``/``) with
an index page of their own making.  Two kinds are understood:

``autoindex_format json`` (nginx)
    ``[{"name": "a.txt", "type": "file", "mtime": "<RFC 1123>", "size": 11},
    {"name": "sub", "type": "directory", "mtime": "..."}]``: exact sizes and whole-second
    mtimes, recognised by its ``Content-Type: application/json``.
HTML index pages (nginx's default format, Apache's mod_autoindex, Python's http.server...)
    every ``<a href>`` of the page that names an entry exactly one level below the
    directory: relative (``a.txt``, ``./a.txt``, ``sub/``), or absolute on the same host.
    Parent links (``../``, Apache's absolute "Parent Directory"), sort links
    (``?C=N;O=D``), fragments and links elsewhere are not entries.  A trailing ``/`` makes
    the entry a directory.  Sizes and times in the page's text are not read: their format
    differs from server to server and is often rounded (Apache's ``1.2K``), so the backend
    asks ``HEAD`` for them.

Names are percent-decoded as UTF-8; bytes that are not UTF-8 survive as surrogate escapes
(the backend decides what to do with such names).
"""

from __future__ import annotations

import email.utils
import json
import urllib.parse
from dataclasses import dataclass
from html.parser import HTMLParser


@dataclass(frozen=True)
class Entry:
    """One entry of an index page: a name without ``/``, and what the page says of it."""

    name: str
    is_dir: bool
    #: exact size in bytes, when the format gives one (JSON); None otherwise
    size: int | None = None
    #: modification time, seconds since the epoch, when the format gives one (JSON)
    mtime: float | None = None


def http_date(value: str | None) -> float | None:
    """An RFC 1123 date (``Wed, 02 Dec 2026 05:17:03 GMT``) as epoch seconds, or None."""
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def is_html(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media in ("text/html", "application/xhtml+xml")


def charset_of(content_type: str) -> str:
    """The ``charset=`` parameter of a Content-Type (UTF-8 when absent or unknown)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            charset = value.strip().strip('"').lower()
            try:
                "".encode(charset)
            except LookupError:
                return "utf-8"
            return charset
    return "utf-8"


def _valid_name(name: str) -> bool:
    return bool(name) and "/" not in name and name not in (".", "..") and "\0" not in name


def parse_json_index(body: bytes) -> list[Entry]:
    """Entries of an nginx JSON autoindex; ``[]`` when the body is not one."""
    try:
        # nginx writes names as the bytes on disk: keep non-UTF-8 ones as surrogates
        rows = json.loads(body.decode("utf-8", "surrogateescape"))
    except ValueError:
        return []
    if not isinstance(rows, list):
        return []
    out: list[Entry] = []
    for row in rows:
        if not isinstance(row, dict):
            continue
        name, kind = row.get("name"), row.get("type")
        # "other" is a device, FIFO or socket: nothing a client could read
        if not isinstance(name, str) or not _valid_name(name) or kind not in ("file",
                                                                                "directory"):
            continue
        size = row.get("size")
        out.append(Entry(name=name, is_dir=kind == "directory",
                         size=size if isinstance(size, int) and size >= 0 else None,
                         mtime=http_date(row.get("mtime") if isinstance(row.get("mtime"), str)
                                         else None)))
    return out


class _Links(HTMLParser):
    """Collects the ``href`` of every ``<a>`` (attribute values come back unescaped)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            for name, value in attrs:
                if name == "href" and value:
                    self.hrefs.append(value.strip())


def parse_html_index(body: bytes, content_type: str, page_url: str) -> list[Entry]:
    """Entries linked from the HTML index page at ``page_url`` (a URL ending in ``/``),
    in page order, each name once."""
    parser = _Links()
    parser.feed(body.decode(charset_of(content_type), "replace"))
    parser.close()
    page = urllib.parse.urlsplit(page_url)
    out: dict[str, Entry] = {}
    for href in parser.hrefs:
        entry = _entry_of(href, page)
        if entry is None:
            continue
        # a name linked twice (Apache links the icon too) is a directory if either says so
        if entry.name not in out or entry.is_dir:
            out[entry.name] = entry
    return list(out.values())


def _segments(path: str) -> list[str]:
    """The decoded segments of a URL path (so ``%7E`` and ``~`` compare equal, while a
    ``%2F`` inside a name stays inside its segment)."""
    return [urllib.parse.unquote(s, encoding="utf-8", errors="surrogateescape")
            for s in path.split("/")]


def _entry_of(href: str, page: urllib.parse.SplitResult) -> Entry | None:
    if "?" in href or "#" in href:
        return None  # sort links, anchors: not entries (names in hrefs are %-encoded)
    target = urllib.parse.urlsplit(urllib.parse.urljoin(page.geturl(), href))
    if (target.scheme, target.netloc.lower()) != (page.scheme, page.netloc.lower()):
        return None
    # the page's path ends in "/": its last segment is empty
    base = _segments(page.path)[:-1]
    segs = _segments(target.path)
    is_dir = len(segs) > 1 and segs[-1] == ""
    if is_dir:
        segs = segs[:-1]
    # exactly one level down: not the page itself, its parent or anything deeper
    if len(segs) != len(base) + 1 or segs[:-1] != base:
        return None
    name = segs[-1]
    return Entry(name=name, is_dir=is_dir) if _valid_name(name) else None
