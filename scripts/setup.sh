#!/usr/bin/env bash
# scripts/setup.sh [--test]
#
# Sets everything up on a fresh Debian/Ubuntu machine, idempotently:
#   * system packages storefs needs (fuse3, libfuse3-dev, pkg-config, a C compiler and the
#     Python headers to build pyfuse3, python3-venv), installed with apt when missing
#     (as root, or through sudo);
#   * a virtualenv in .venv (Python >= 3.11: $PYTHON, else python3) with storefs and every
#     backend's SDK, editable, so `.venv/bin/storefs` is the command;
#   * with --test, also what the test suite needs: the test extras (pytest, moto, the GCS
#     emulator...), the tools the mounted tests drive (rsync, git, sqlite3, attr, vim,
#     ruby, systemd-analyze...) and the local test servers (OpenStack Swift, Keystone,
#     memcached, nginx, ssh-agent), via scripts/install-test-servers.sh.
# Exits non-zero with a one-line reason when a step fails.
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
TEST=0
for arg in "$@"; do
  case "$arg" in
    --test) TEST=1 ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (usage: $0 [--test])" >&2; exit 2 ;;
  esac
done

die() { echo "setup.sh: ERROR: $*" >&2; exit 1; }
say() { echo "setup.sh: $*"; }

SUDO=""
if [[ $(id -u) != 0 ]]; then
  command -v sudo >/dev/null && SUDO="sudo" || SUDO=""
fi
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q '^install ok installed$'; }
apt_updated=0
apt_install() {
  local missing=()
  for p in "$@"; do installed "$p" || missing+=("$p"); done
  ((${#missing[@]} == 0)) && return 0
  command -v apt-get >/dev/null || die "apt-get not found: install ${missing[*]} by hand"
  if [[ $(id -u) != 0 && -z $SUDO ]]; then
    die "need root (or sudo) to install ${missing[*]}"
  fi
  say "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  if ((apt_updated == 0)); then
    $SUDO apt-get update -q >/dev/null || die "apt-get update failed (no access to the mirror?)"
    apt_updated=1
  fi
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || die "apt-get install ${missing[*]} failed"
}

PKGS=(fuse3 libfuse3-dev pkg-config gcc python3-dev python3-venv ca-certificates)
((TEST)) && PKGS+=(rsync git sqlite3 attr vim-tiny ruby strace procps util-linux openssl curl fio)
apt_install "${PKGS[@]}"

# the interpreter: $PYTHON, else python3 (>= 3.11)
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "$PY not found"
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || die "$PY is $("$PY" -V 2>&1); storefs needs Python >= 3.11 (set PYTHON=...)"

if [[ ! -x .venv/bin/python ]]; then
  say "creating .venv with $("$PY" -V 2>&1)"
  "$PY" -m venv .venv || die "python -m venv failed (install python3-venv)"
fi
extras="all"
((TEST)) && extras="all,test"
stamp=".venv/.storefs-installed-$extras"
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  say "installing storefs[$extras] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null || die "pip upgrade failed"
  .venv/bin/python -m pip install -q -e ".[$extras]" || die "pip install -e .[$extras] failed"
  touch "$stamp"
fi
.venv/bin/storefs --version >/dev/null || die "storefs does not run from .venv"

if ((TEST)); then
  [[ $(id -u) == 0 ]] || die "the test set-up installs test servers and mounts as root"
  bash scripts/install-test-servers.sh --keystone
  if [[ -f scripts/install-mount-helper.sh ]]; then
    bash scripts/install-mount-helper.sh --test
  fi
fi
say "ready: $(.venv/bin/storefs --version)"
