#!/usr/bin/env bash
# scripts/quickstart.sh [STORE_DIR] [MOUNTPOINT]
#
# Sets storefs up (scripts/setup.sh) and mounts the embedded default, a local store
# (file://), so you can see storefs working: by default the store is
# ~/storefs-demo/store and the mount ~/storefs-demo/mnt.  Unmount with
#   .venv/bin/storefs umount ~/storefs-demo/mnt
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
bash scripts/setup.sh
store=${1:-$HOME/storefs-demo/store}
mnt=${2:-$HOME/storefs-demo/mnt}
mkdir -p "$store" "$mnt"
if [[ -z $(ls -A "$store") ]]; then
  printf 'Hello from storefs.\nThis file lives in %s.\n' "$store" > "$store/README.txt"
  mkdir -p "$store/photos" && printf 'not really a photo\n' > "$store/photos/cat.jpg"
fi
if mountpoint -q "$mnt"; then
  echo "quickstart: $mnt is already mounted"
else
  .venv/bin/storefs mount "file://$store" "$mnt"
fi
echo "quickstart: file://$store is mounted on $mnt:"
ls -la "$mnt"
echo
echo "Try: cp -a /etc/hosts $mnt/ && ls -l $mnt && .venv/bin/storefs status"
echo "Unmount: .venv/bin/storefs umount $mnt"
