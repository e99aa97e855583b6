"""The Vagrantfile: valid for Vagrant, and its provisioning runs the README's test command."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.service.conftest import REPO, run

VAGRANTFILE = REPO / "Vagrantfile"


def provision_scripts() -> list[str]:
    return re.findall(r'\bpath:\s*"([^"]+)"', VAGRANTFILE.read_text())


def test_vagrantfile_is_ruby_and_names_a_provisioning_script_that_exists() -> None:
    if shutil.which("ruby") is None:
        pytest.fail("ruby not found: run scripts/install-mount-helper.sh --test")
    proc = run("ruby", "-c", str(VAGRANTFILE))
    assert proc.returncode == 0 and proc.stdout.strip() == "Syntax OK", proc.stderr
    scripts = provision_scripts()
    assert scripts, "the Vagrantfile names no provisioning script"
    for script in scripts:
        path = REPO / script
        assert path.is_file(), f"{script} does not exist"
        assert run("bash", "-n", str(path)).returncode == 0
        # the test suite, through the README's command
        assert "bash scripts/test.sh" in path.read_text()
    assert "sudo bash scripts/test.sh" in (REPO / "README.md").read_text()
    assert 'config.vm.box = "debian/bookworm64"' in VAGRANTFILE.read_text()


def test_vagrant_validate(tmp_path: Path) -> None:
    if shutil.which("vagrant") is None:
        pytest.skip("vagrant is not installed (scripts/install-mount-helper.sh --test "
                    "installs Debian's); the Vagrantfile was checked as Ruby above")
    # a copy, so that vagrant's .vagrant/ state lands in tmp_path, not in the tree
    shutil.copy(VAGRANTFILE, tmp_path / "Vagrantfile")
    for script in provision_scripts():
        (tmp_path / script).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / script, tmp_path / script)
    proc = run("vagrant", "validate", "--ignore-provider",
               env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                    "VAGRANT_HOME": str(tmp_path / "vagrant.d"), "VAGRANT_CWD": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Vagrantfile validated successfully." in proc.stdout
