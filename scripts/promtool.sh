#!/usr/bin/env bash
# Prometheus's promtool, for tests/ops: `promtool check rules`, `check config`
# and the rule unit tests (deploy/prometheus/alerts_test.yml). Taken from
# Debian's prometheus package without installing it: `apt-get download` the
# .deb and unpack it into .cache/prometheus (no service, no root needed).
# Idempotent; prints promtool's path.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DEST=$ROOT/.cache/prometheus
PROMTOOL=$DEST/usr/bin/promtool
if [[ ! -x $PROMTOOL ]]; then
  command -v apt-get >/dev/null 2>&1 || die "no apt-get here: install Prometheus's promtool and set PROMTOOL"
  say "fetching promtool from Debian's prometheus package into $DEST"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && apt-get download prometheus >/dev/null 2>&1) \
    || (cd "$tmp" && apt-get update -qq >/dev/null 2>&1 && apt-get download prometheus >/dev/null 2>&1) \
    || die "apt-get download prometheus failed: check the Debian mirror, or install promtool and set PROMTOOL"
  mkdir -p "$DEST"
  dpkg-deb -x "$tmp"/prometheus_*.deb "$DEST"
  [[ -x $PROMTOOL ]] || die "the prometheus package has no usr/bin/promtool"
fi
echo "$PROMTOOL"
