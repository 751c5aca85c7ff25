#!/usr/bin/env bash
# Runs every fuzz target of the project for a while each (default 30s), one after
# the other: go test -fuzz takes one target at a time. The checked-in corpora under
# testdata/fuzz/ run as plain tests in `make test`.
set -euo pipefail
cd "$(dirname "$0")/.."
time=${1:-30s}
grep -rl --include='*_test.go' '^func Fuzz' internal | while read -r file; do
  pkg=./$(dirname "$file")
  for target in $(grep -oE '^func Fuzz[A-Za-z0-9_]+' "$file" | sed 's/^func //'); do
    echo "== $pkg $target ($time)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$time" "$pkg"
  done
done
