"""The stores' MD5 spellings, read as one: what tells a landed upload from a conflict."""

from __future__ import annotations

import base64
import hashlib

from storefs.cache.writeback import md5_digest


def test_hex_and_base64_md5s_read_alike_and_others_are_none() -> None:
    raw = hashlib.md5(b"bytes").digest()
    assert md5_digest(raw.hex()) == raw  # S3, Swift, mem
    assert md5_digest(base64.b64encode(raw).decode()) == raw  # GCS, Manta
    assert md5_digest(None) is None and md5_digest("") is None
    assert md5_digest("d41d8cd98f00b204e9800998ecf8427e-3") is None  # a multipart ETag
    assert md5_digest("not base64!") is None
    assert md5_digest(base64.b64encode(b"\0" * 4).decode()) is None  # a CRC32C, no MD5
