#!/usr/bin/env bash
# shellcheck disable=SC2317  # the have_* checks are called indirectly, through need()
# Installs the Debian packages the tests and the demo need, or says exactly what to install.
# Usage: scripts/system-deps.sh test|demo|web|deb|service
#   test: mosquitto, openssl and systemd-analyze for the host suite; chromium for the display
#         page's browser tests (tests/browser); for the hardware tier (scripts/vm-test) qemu, a
#         Debian kernel with its modules (uinput, dummy_hcd, USB gadget functions), a static
#         busybox (virtme-ng's initramfs), kmod and udev inside the VM, and libusb for pyusb.
#   web:  npm, which installs the display page's MQTT.js (web/package-lock.json).
#   deb:  what `make deb` builds and checks the package with: dpkg-dev, debhelper, dh-virtualenv,
#         help2man, Debian's python3.11 with venv and headers (evdev is compiled), a C compiler,
#         lintian. `test` includes these: the host suite builds and inspects the package.
#   service: the package tools and what the service tier (scripts/vm-service) boots it with:
#         mmdebstrap, mke2fs, qemu and a Debian kernel. `test` includes these too.
set -euo pipefail
purpose=${1:-test}

have_cmd() { command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ]; }
# A kernel in /boot whose modules include the USB gadget controllers (dummy_hcd).
have_kernel() {
  local k
  for k in /boot/vmlinuz-*; do
    [ -d "/lib/modules/${k#/boot/vmlinuz-}/kernel/drivers/usb/gadget/udc" ] && return 0
  done
  return 1
}
# virtme-ng refuses a dynamically linked busybox.
have_static_busybox() {
  local b
  b=$(command -v busybox 2>/dev/null) || return 1
  ! ldd "$b" >/dev/null 2>&1
}
have_lib() { grep -q "$1" <<<"$(ldconfig -p 2>/dev/null)"; }  # no pipe: SIGPIPE + pipefail
have_pkg() { [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]; }

deb_deps() {
  local pkg
  for pkg in dpkg-dev debhelper dh-virtualenv help2man python3.11-dev python3.11-venv gcc \
    lintian; do
    need "$pkg" have_pkg "$pkg"
  done
}

service_deps() {
  deb_deps
  need mmdebstrap have_cmd mmdebstrap
  need e2fsprogs have_cmd mke2fs
  need qemu-system-x86 have_cmd qemu-system-x86_64
  need linux-image-amd64 have_kernel
}

missing=()
need() {
  local pkg=$1
  shift
  "$@" || missing+=("$pkg")
}
if [ "$purpose" = demo ]; then
  need python3 have_cmd python3
elif [ "$purpose" = web ]; then
  need npm have_cmd npm
elif [ "$purpose" = deb ]; then
  deb_deps
elif [ "$purpose" = service ]; then
  service_deps
else
  service_deps
  need npm have_cmd npm
  # The display page's tests drive Debian's headless Chromium (playwright never downloads one).
  need chromium have_cmd chromium
  need mosquitto have_cmd mosquitto
  # The broker security tests make a throwaway CA with docs/security/lane-pki.sh.
  need openssl have_cmd openssl
  need systemd have_cmd systemd-analyze
  need busybox-static have_static_busybox
  need kmod have_cmd modprobe
  need udev have_cmd udevadm
  need libusb-1.0-0 have_lib libusb-1.0.so.0
  # The keymap tests check our layout tables against libxkbcommon (pip xkbcommon builds on it).
  need libxkbcommon-dev test -f /usr/include/xkbcommon/xkbcommon.h
  need xkb-data test -d /usr/share/X11/xkb/symbols
  need libx11-data test -d /usr/share/X11/locale
fi
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
echo "install them with: sudo apt-get install --no-install-recommends ${missing[*]}" \
  "  (or run 'make test' as root)" >&2
exit 1
