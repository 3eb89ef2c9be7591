#!/usr/bin/env bash
# Install the Debian packages the tests need, only when they are missing: Chromium for the browser tests
# (driven by Playwright's Python package; no browser download) and PostgreSQL for the study tests.
# Fonts only make the browser tests' screenshots readable: they are installed when possible, never required.
set -euo pipefail
need=()
[ -x /usr/bin/chromium ] || need+=(chromium)
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  need+=(postgresql)
fi
fonts=()
[ -d /usr/share/fonts/truetype/dejavu ] || fonts+=(fonts-dejavu-core)
# the page icons (emoji) in the sidebar, which otherwise render as empty boxes
[ -f /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf ] || fonts+=(fonts-noto-color-emoji)
[ ${#need[@]} -gt 0 ] || [ ${#fonts[@]} -gt 0 ] || exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
install() { DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null; }
$SUDO apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
  echo "Installing Debian packages: ${need[*]}"
  install "${need[@]}"
fi
if [ ${#fonts[@]} -gt 0 ]; then
  echo "Installing fonts for screenshots: ${fonts[*]}"
  install "${fonts[@]}" || echo "warning: could not install ${fonts[*]}; screenshots may show empty boxes" >&2
fi
