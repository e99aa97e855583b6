#!/usr/bin/env bash
# scripts/vagrant-provision.sh: the Vagrantfile's provisioning step, run as root in the VM.
# The working tree was copied to /home/vagrant/storefs (rsync); this runs the README's test
# command there (scripts/test.sh: system packages, the venv with storefs installed editable
# from the tree, the test servers, the mount helper, then ruff, mypy and pytest).
set -euo pipefail
tree=${STOREFS_TREE:-/home/vagrant/storefs}
[[ -f $tree/scripts/test.sh ]] || { echo "vagrant-provision.sh: $tree has no scripts/test.sh (did the rsync run?)" >&2; exit 1; }
cd "$tree"
export DEBIAN_FRONTEND=noninteractive
# the box's package lists are as old as the box
apt-get update -q >/dev/null
bash scripts/test.sh
