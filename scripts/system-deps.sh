#!/usr/bin/env bash
# Install the Debian packages named as arguments when any is missing.
# As root with apt-get (CI, a fresh machine, the image): installs them. Otherwise: prints the exact command
# and exits 1, so `make test` stops with the hint instead of running tests that cannot pass.
set -euo pipefail
[ $# -gt 0 ] || exit 0

if ! command -v dpkg-query >/dev/null 2>&1; then
  echo "system-deps: not a Debian-based system; install the equivalents of: $*" >&2
  echo "  (HarfBuzz with its subset library >= 4.1, Pango, DejaVu fonts, poppler's pdftoppm, Chromium, redis-server)" >&2
  exit 1
fi

missing=()
for pkg in "$@"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [ "$status" = "install ok installed" ] || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # redis-server's package starts a system service where an init system runs; the stack starts its own.
  exit 0
fi

echo "system-deps: missing Debian packages: ${missing[*]}" >&2
echo "  install them with: sudo apt-get install -y --no-install-recommends ${missing[*]}" >&2
exit 1
