#!/usr/bin/env bash
# Installs Debian's Chromium for the browser tests when no Chromium is on
# PATH (and CHROMIUM_PATH is unset). Needs root, or sudo without a password;
# otherwise it says what to run. Idempotent and quiet when Chromium is there.
set -euo pipefail

if [[ -n ${CHROMIUM_PATH:-} && -x ${CHROMIUM_PATH} ]]; then exit 0; fi
for b in chromium chromium-browser google-chrome; do
  if command -v "$b" >/dev/null 2>&1; then exit 0; fi
done

SUDO=()
if [[ $(id -u) != 0 ]]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
  else
    echo "error: the browser tests need Chromium: run 'sudo apt-get install -y chromium' (or set CHROMIUM_PATH)" >&2
    exit 1
  fi
fi
command -v apt-get >/dev/null 2>&1 || { echo "error: no apt-get here: install Chromium and set CHROMIUM_PATH" >&2; exit 1; }

printf '\033[1m==> %s\033[0m\n' "installing Chromium from Debian's packages (browser tests)" >&2
export DEBIAN_FRONTEND=noninteractive
"${SUDO[@]}" apt-get update -qq >&2
"${SUDO[@]}" apt-get install -y -qq chromium >&2
command -v chromium >/dev/null 2>&1 || { echo "error: chromium did not install" >&2; exit 1; }
