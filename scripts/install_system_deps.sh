#!/usr/bin/env bash
# Install the Debian packages the tests need, only when they are missing: Chromium for the browser tests
# (driven by Playwright's Python package; no browser download) and PostgreSQL for the study tests.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
# fonts so screenshots show text
[ -d /usr/share/fonts/truetype/dejavu ] || need+=(fonts-dejavu-core)
# and the page icons (emoji) in the sidebar, which otherwise render as empty boxes
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || need+=(fonts-noto-color-emoji)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "Installing Debian packages: ${need[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
