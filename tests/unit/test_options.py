"""-o parsing: sizes, escapes, defaults, and refusals with a hint."""

from __future__ import annotations

import pytest

from storefs.errors import ConfigError
from storefs.options import GiB, MiB, parse_options, parse_size, split_options


@pytest.mark.parametrize(("text", "value"), [
    ("4096", 4096), ("512k", 512 * 1024), ("8M", 8 * MiB), ("2GiB", 2 * GiB),
    ("1.5G", int(1.5 * GiB)), (" 3 mb ", 3 * MiB),
])
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


def test_split_keeps_escaped_commas() -> None:
    assert split_options(r"a=1,b,,c=x\,y") == ["a=1", "b", "c=x,y"]


def test_defaults_kernel_flags_and_backend_options() -> None:
    opts = parse_options(["ro", "allow_other", "attr_timeout=2.5", "endpoint=http://h:1",
                          "noatime", "cache_size=1G"], {"endpoint": "where"}, "s3")
    assert opts.read_only
    assert "allow_other" in opts.kernel and "noatime" in opts.kernel
    assert "default_permissions" in opts.kernel  # other users get in: modes are enforced
    assert opts.number("attr_timeout") == 2.5
    assert opts.integer("cache_size") == GiB
    assert opts.integer("chunk_size") == MiB  # default
    # the cache lifetimes docs/CONFIGURATION.md states (a listing outlives a long ls -l)
    assert (opts.number("dir_timeout"), opts.number("entry_timeout"),
            opts.number("negative_timeout")) == (60.0, 5.0, 1.0)
    assert opts.get("sync_close") is True  # close waits for the store unless asked not to
    assert parse_options(["sync_close=false"], {}, "mem").get("sync_close") is False
    assert opts.backend == {"endpoint": "http://h:1"}


def test_unknown_option_names_the_nearest() -> None:
    with pytest.raises(ConfigError, match="did you mean dir_timeout"):
        parse_options(["dir_timout=3"], {}, "mem")
    with pytest.raises(ConfigError, match=r"unknown option 'zzz' for mem: mounts$"):
        parse_options(["zzz"], {}, "mem")


def test_values_are_checked() -> None:
    for bad in ("umask=9", "uid=-1", "read_parallel=0", "stream_uploads=maybe"):
        with pytest.raises(ConfigError):
            parse_options([bad], {}, "mem")
    assert parse_options(["stream_uploads"], {}, "mem").get("stream_uploads") is True
    assert parse_options(["umask=022"], {}, "mem").get("umask") == 0o022
