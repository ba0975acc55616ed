#!/usr/bin/env bash
# bench/baseline.sh [REF] [DIR]: build the services of git REF (default
# HEAD~1) into DIR/bin (default a fresh temporary folder) and print that
# bin folder, for bin/loadgen -baseline-bin. The tree comes from
# `git archive`, so no worktree is registered and the working copy is left
# alone. scripts/bench.sh calls it when BENCH_BASE=REF is set:
#   BENCH_BASE=HEAD~1 make bench
#   bin/loadgen -baseline-bin "$(bench/baseline.sh main)" -scenarios light
set -euo pipefail
ref=${1:-HEAD~1}
root=$(git -C "$(dirname "${BASH_SOURCE[0]}")" rev-parse --show-toplevel)
sha=$(git -C "$root" rev-parse --verify "$ref^{commit}")
dir=${2:-$(mktemp -d "${TMPDIR:-/tmp}/reviewpipe-base-${sha:0:12}.XXXX")}
mkdir -p "$dir"
git -C "$root" archive "$sha" | tar -x -C "$dir"
echo "building the baseline ${ref} (${sha:0:12}) in $dir" >&2
make -C "$dir" build >&2
echo "$dir/bin"
