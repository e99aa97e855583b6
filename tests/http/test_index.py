"""Index pages of the servers storefs reads: nginx JSON and HTML, Apache, Python's
http.server; pages with no entries are empty directories."""

from __future__ import annotations

import calendar

from storefs.backends.http import nginx_etag, same_version, synthetic_etag
from storefs.backends.http_index import (
    Entry,
    charset_of,
    http_date,
    is_html,
    is_json,
    parse_html_index,
    parse_json_index,
)

PAGE = "http://example.org/pub/data/"

NGINX_JSON = b"""[
{ "name":"sub", "type":"directory", "mtime":"Wed, 02 Dec 2026 05:17:03 GMT" },
{ "name":"a.txt", "type":"file", "mtime":"Wed, 02 Dec 2026 05:17:03 GMT", "size":11 },
{ "name":"q\\"uo\\\\te.txt", "type":"file", "mtime":"Wed, 02 Dec 2026 05:17:08 GMT", "size":0 },
{ "name":"fifo", "type":"other", "mtime":"Wed, 02 Dec 2026 05:17:08 GMT" },
{ "name":"\xe9latin1", "type":"file", "mtime":"Wed, 02 Dec 2026 05:17:08 GMT", "size":1 }
]"""

NGINX_HTML = b"""<html>
<head><title>Index of /pub/data/</title></head>
<body>
<h1>Index of /pub/data/</h1><hr><pre><a href="../">../</a>
<a href="dir/">dir/</a>                                               02-Dec-2026 05:17       -
<a href="we%20ird%26name/">we ird&amp;name/</a>                       02-Dec-2026 05:17       -
<a href="a%3Fb%23c.txt">a?b#c.txt</a>                                 02-Dec-2026 05:17       0
<a href="pct%2520x.txt">pct%20x.txt</a>                               02-Dec-2026 05:17       0
<a href="q%22uo%5Cte.txt">q&quot;uo\\te.txt</a>                         02-Dec-2026 05:17       0
</pre><hr></body>
</html>"""

APACHE_HTML = b"""<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 3.2 Final//EN">
<html>
 <head><title>Index of /pub/data</title></head>
 <body>
<h1>Index of /pub/data</h1>
  <table>
   <tr><th valign="top"><img src="/icons/blank.gif" alt="[ICO]"></th>
   <th><a href="?C=N;O=D">Name</a></th><th><a href="?C=M;O=A">Last modified</a></th>
   <th><a href="?C=S;O=A">Size</a></th></tr>
<tr><td><img src="/icons/back.gif" alt="[PARENTDIR]"></td>
    <td><a href="/pub/">Parent Directory</a></td><td>&nbsp;</td><td>-</td></tr>
<tr><td><a href="docs/"><img src="/icons/folder.gif" alt="[DIR]"></a></td>
    <td><a href="docs/">docs/</a></td><td>2024-01-02 10:00</td><td>-</td></tr>
<tr><td><img src="/icons/text.gif" alt="[TXT]"></td>
    <td><a href="notes%20v2.txt">notes v2.txt</a></td><td>2024-01-02 10:00</td><td>1.2K</td></tr>
<tr><td><img src="/icons/unknown.gif" alt="[   ]"></td>
    <td><a href="R%26D.tar.gz">R&amp;D.tar.gz</a></td><td>2024-01-02 10:00</td><td>3.4M</td></tr>
</table>
<address>Apache/2.4.57 (Debian) Server at example.org Port 80</address>
</body></html>"""

PYTHON_HTML = """<!DOCTYPE HTML>
<html lang="en">
<head>
<meta charset="utf-8">
<title>Directory listing for /pub/data/</title>
</head>
<body>
<h1>Directory listing for /pub/data/</h1>
<hr>
<ul>
<li><a href="a.txt">a.txt</a></li>
<li><a href="link">link@</a></li>
<li><a href="sub/">sub/</a></li>
<li><a href="%C3%BCn%C3%AF.txt">ünï.txt</a></li>
</ul>
<hr>
</body>
</html>""".encode()


def test_nginx_json_index() -> None:
    entries = parse_json_index(NGINX_JSON)
    mtime = calendar.timegm((2026, 12, 2, 5, 17, 3))
    assert entries[:2] == [Entry("sub", True, None, mtime), Entry("a.txt", False, 11, mtime)]
    assert entries[2].name == 'q"uo\\te.txt'
    # devices and FIFOs are left out; a name that is not UTF-8 keeps its byte
    assert [e.name for e in entries[3:]] == ["\udce9latin1"]


def test_json_that_is_no_index_is_empty() -> None:
    assert parse_json_index(b'{"error": "nope"}') == []
    assert parse_json_index(b"not json") == []
    assert parse_json_index(b'[1, {"name": "../x", "type": "file"}, {"type": "file"}]') == []


def test_nginx_html_index() -> None:
    entries = parse_html_index(NGINX_HTML, "text/html", PAGE)
    assert entries == [Entry("dir", True), Entry("we ird&name", True),
                       Entry("a?b#c.txt", False), Entry("pct%20x.txt", False),
                       Entry('q"uo\\te.txt', False)]


def test_apache_index_skips_sort_and_parent_links() -> None:
    entries = parse_html_index(APACHE_HTML, "text/html;charset=ISO-8859-1", PAGE)
    assert entries == [Entry("docs", True), Entry("notes v2.txt", False),
                       Entry("R&D.tar.gz", False)]


def test_python_http_server_index() -> None:
    entries = parse_html_index(PYTHON_HTML, "text/html; charset=utf-8", PAGE)
    assert entries == [Entry("a.txt", False), Entry("link", False), Entry("sub", True),
                       Entry("ünï.txt", False)]


def test_only_links_one_level_down_on_the_same_host_are_entries() -> None:
    page = b"""<a href="./same.txt">x</a> <a href="/pub/data/absolute.txt">x</a>
    <a href="http://EXAMPLE.org/pub/data/full/">x</a> <a href="deeper/file.txt">x</a>
    <a href="https://example.org/pub/data/other-scheme">x</a>
    <a href="http://elsewhere.org/pub/data/x">x</a> <a href="#top">x</a>
    <a href="page?x=1">x</a> <a href="../up.txt">x</a> <a href="/pub/data/">x</a>
    <a href="mailto:me@example.org">x</a> <a>no href</a> <a href="%2e%2e/">dots</a>
    <a href="/pub/data/%7Euser/">tilde</a>"""
    entries = parse_html_index(page, "text/html", PAGE)
    assert entries == [Entry("same.txt", False), Entry("absolute.txt", False),
                       Entry("full", True), Entry("~user", True)]


def test_a_page_without_entries_is_an_empty_directory() -> None:
    assert parse_html_index(b"<html><body><p>Welcome!</p></body></html>", "text/html",
                            PAGE) == []
    assert parse_html_index(b"\xff\xfe garbage <a href=", "text/html", PAGE) == []


def test_content_types_and_dates() -> None:
    assert is_json("application/json") and is_json("application/vnd.x+json; charset=utf-8")
    assert is_html("text/html; charset=utf-8") and not is_html("text/plain")
    assert charset_of("text/html; charset=\"ISO-8859-1\"") == "iso-8859-1"
    assert charset_of("text/html; charset=nonsense") == "utf-8"
    assert http_date("Wed, 02 Dec 2026 05:17:03 GMT") == calendar.timegm((2026, 12, 2, 5, 17,
                                                                            3))
    assert http_date("yesterday") is None and http_date(None) is None


def test_versions() -> None:
    # nginx's ETag is mtime and size in hex; ours for servers without ETags says the same
    assert nginx_etag(0x6B0FA9CF, 11) == '"6b0fa9cf-b"'
    assert synthetic_etag(0x6B0FA9CF, 11) == "t6b0fa9cf-b"
    assert synthetic_etag(None, 11) == "sb"
    assert same_version("t6b0fa9cf-b", None, 0x6B0FA9CF, 11)
    assert not same_version("t6b0fa9cf-b", None, 0x6B0FA9D0, 11)
    assert not same_version("t6b0fa9cf-b", '"x"', 0x6B0FA9CF, 12)
    assert same_version("sb", None, None, 11) and not same_version("sb", None, None, 12)
    assert same_version('"abc"', '"abc"', None, None)
    assert not same_version('"abc"', '"abd"', 5, 5)
    # a listing's nginx-shaped guess that was wrong about the format, same file
    assert same_version('"6b0fa9cf-b"', '"other-format"', 0x6B0FA9CF, 11)
    assert not same_version('"6b0fa9cf-b"', '"other-format"', 0x6B0FA9CF, 12)
    # an answer without an ETag says nothing against a server's ETag
    assert same_version('"abc"', None, 5, 5)
