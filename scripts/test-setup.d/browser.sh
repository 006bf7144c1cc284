#!/usr/bin/env bash
# Test setup: headless Chromium for the browser tests (tests/browser).
# Installs Debian's chromium and chromium-driver when /usr/bin/chromium is missing, and a
# Japanese font (fonts-ipafont-gothic) when no font covers Japanese: the login page is
# Japanese and the screenshot test checks that its text renders as glyphs, not boxes.
# Idempotent and quiet; exits non-zero only if the installation fails.
set -euo pipefail
packages=()
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
  packages+=(chromium chromium-driver)
fi
if ! command -v fc-list >/dev/null 2>&1 || [ -z "$(fc-list :lang=ja family 2>/dev/null)" ]; then
  packages+=(fonts-ipafont-gothic)
fi
if [ ${#packages[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO="sudo -n"
  else
    echo "browser.sh: cannot install ${packages[*]}: need root or sudo" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! { $SUDO apt-get update -qq && \
       $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}"; } >"$log" 2>&1; then
  echo "browser.sh: installing ${packages[*]} failed:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
