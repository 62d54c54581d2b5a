#!/usr/bin/env bash
# Installs the Debian packages the tests and the demo need, or says exactly what to install.
# Usage: scripts/system-deps.sh test|demo
set -euo pipefail
purpose=${1:-test}
declare -A need=([mosquitto]=mosquitto [systemd-analyze]=systemd)
if [ "$purpose" = demo ]; then need=([python3]=python3); fi
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || missing+=("${need[$cmd]}")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The mosquitto package starts a system broker on 1883; tests start their own on free ports.
  exit 0
fi
echo "missing system packages: ${missing[*]}" >&2
echo "install them with: sudo apt-get install ${missing[*]}   (or run 'make test' as root)" >&2
exit 1
