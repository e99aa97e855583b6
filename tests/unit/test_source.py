"""Mount sources as users type them."""

from __future__ import annotations

import pytest

from storefs.errors import ConfigError
from storefs.source import parse_source


def test_sources() -> None:
    s = parse_source("s3://bucket/a/b/")
    assert (s.scheme, s.bucket, s.path, s.prefix) == ("s3", "bucket", "a/b", "a/b/")
    m = parse_source("manta:/jill/stor/x")
    assert (m.bucket, m.path, m.host) == ("jill", "stor/x", "")
    m = parse_source("manta://us-east.manta.joyent.com/jill/public")
    assert (m.host, m.bucket, m.path) == ("us-east.manta.joyent.com", "jill", "public")
    f = parse_source("file:///srv/data")
    assert f.path == "srv/data" and f.backend_module == "file"
    assert parse_source("gs://b").backend_module == "gcs"
    sw = parse_source("swift:")
    assert sw.bucket == "" and sw.path == ""
    assert parse_source("swift://c/p").bucket == "c"
    h = parse_source("https://host:8443/a/b/")
    assert (h.host, h.path) == ("host:8443", "a/b")


@pytest.mark.parametrize("bad", ["", " s3://b", "s3:b", "nfs://x", "file://x/y", "mem://",
                                 "manta:/jill", "s3://b/../c", "gs://-bad!"])
def test_malformed(bad: str) -> None:
    with pytest.raises(ConfigError):
        parse_source(bad)
