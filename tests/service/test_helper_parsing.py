"""The helper's parsing, without mounting: mount(8)'s arguments, option strings, env files."""

from __future__ import annotations

import pwd

import pytest

from storefs.mount_helper import (
    HelperError,
    Invocation,
    parse_env_file,
    parse_invocation,
    plan_mount,
    split_mount_options,
    storefs_command,
    user_environment,
)


def test_mount_arguments_in_any_order() -> None:
    inv = parse_invocation(["-s", "-f", "s3://b/p", "/mnt/x", "-n", "-v", "-o", "ro,_netdev",
                            "-t", "fuse.storefs"])
    assert (inv.source, inv.mountpoint, inv.options) == ("s3://b/p", "/mnt/x", ["ro", "_netdev"])
    assert inv.sloppy and inv.fake and inv.verbose
    with pytest.raises(HelperError, match=r"usage: mount\.storefs SOURCE DIR"):
        parse_invocation(["only-one"])
    with pytest.raises(HelperError, match="namespace"):
        parse_invocation(["mem://x", "/mnt", "-N", "1234"])
    with pytest.raises(HelperError, match="'ext4' is not storefs"):
        parse_invocation(["mem://x", "/mnt", "-t", "ext4"])


def test_option_strings_keep_quoted_commas() -> None:
    assert split_mount_options('ro,role="a,b",uid=1') == ["ro", "role=a,b", "uid=1"]
    plan = plan_mount(Invocation("manta:/jill/stor", "/mnt", ["role=a,b", "uid=0"]))
    # the comma survives into storefs' own -o syntax
    assert storefs_command(plan, "python")[-2:] == ["-o", "role=a\\,b,uid=0"]


def test_what_is_dropped_passed_and_kept() -> None:
    inv = Invocation("manta:/jill/stor", "/mnt", [
        "rw", "nosuid", "nodev", "_netdev", "nofail", "user", "users", "x-systemd.automount",
        "comment=x", "defaults", "user=jill", "uid=root", "gid=root", "umask=022",
        "credfile=/etc/storefs/x.env", "setuid=root", "log_file=/var/log/x.log"])
    plan = plan_mount(inv)
    # manta's own user= is not mount(8)'s user
    assert plan.options == ["rw", "nosuid", "nodev", "user=jill", "uid=0", "gid=0", "umask=022"]
    assert plan.dropped == ["_netdev", "nofail", "user", "users", "x-systemd.automount",
                            "comment=x", "defaults"]
    assert plan.user is not None and plan.user.pw_uid == 0
    assert str(plan.credfile) == "/etc/storefs/x.env"
    assert storefs_command(plan, "python")[-2:] == ["--log-file", "/var/log/x.log"]


@pytest.mark.parametrize(("line", "value"), [
    ("A=plain", "plain"),
    ("export A=plain", "plain"),
    ("  A = spaced  ", "spaced"),
    ("A='single $quoted \"x\"'", 'single $quoted "x"'),
    ('A="double \\"escaped\\" \\$ \\\\"', 'double "escaped" $ \\'),
    ("A=with#hash;semicolon", "with#hash;semicolon"),
    ("A=", ""),
])
def test_env_file_values(line: str, value: str) -> None:
    assert parse_env_file(f"# comment\n; comment\n\n{line}\n", "f") == {"A": value}


@pytest.mark.parametrize("line", ["A=$B", 'A="${B}"', "A=`id`", "echo hi", "1A=x", "A='open",
                                  'A="closed" trailing'])
def test_env_file_refusals_name_the_line_only(line: str) -> None:
    with pytest.raises(HelperError, match=r"^f line 2: ") as exc:
        parse_env_file(f"OK=1\n{line}\n", "f")
    assert line not in str(exc.value)


def test_the_daemons_user_gets_its_own_identity_not_roots() -> None:
    nobody = pwd.getpwnam("nobody")
    env = user_environment({"HOME": "/root", "USER": "root", "XDG_RUNTIME_DIR": "/run/user/0",
                            "XDG_CONFIG_HOME": "/root/.config", "SSH_AUTH_SOCK": "/tmp/agent",
                            "PATH": "/usr/bin", "AWS_PROFILE": "x"}, nobody)
    assert env == {"HOME": nobody.pw_dir, "USER": "nobody", "LOGNAME": "nobody",
                   "PATH": "/usr/bin", "AWS_PROFILE": "x"}
