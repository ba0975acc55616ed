#!/usr/bin/env bash
# The one definition of the static checks: `make lint` runs it, and so does
# `make test` (scripts/test.sh) before any test. Over every module of the
# workspace:
#   1. gofmt;
#   2. go vet;
#   3. staticcheck, at the version pinned in tools/go.mod (checksums in
#      tools/go.sum), built from the Go module proxy into .cache/bin on first
#      use: nothing to install by hand;
#   4. tests/cmd/longfuncs: no non-test function over 80 lines in services/ or
#      pkg/ without a "stays whole:" reason in its doc comment.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$ROOT"

MODULES=$(go list -m -f '{{.Path}}/...')

say "lint: gofmt"
unformatted=$(gofmt -l pkg services tests bench schemas)
[[ -z $unformatted ]] || die "gofmt: these files need formatting: $unformatted"

say "lint: go vet"
# shellcheck disable=SC2086
go vet $MODULES

# tools/ is its own module, outside go.work, so that staticcheck's
# dependencies never enter the workspace's build list.
STATICCHECK=$CACHE_DIR/bin/staticcheck
(cd tools && GOWORK=off go build -buildvcs=false -o "$STATICCHECK" honnef.co/go/tools/cmd/staticcheck) \
  || die "building staticcheck from tools/go.mod failed (it needs the Go module proxy on first use)"
say "lint: staticcheck $("$STATICCHECK" -version | cut -d' ' -f2-)"
# shellcheck disable=SC2086
"$STATICCHECK" $MODULES

say "lint: functions over 80 lines without a reason (tests/cmd/longfuncs)"
go run ./tests/cmd/longfuncs services pkg
