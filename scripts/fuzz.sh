#!/usr/bin/env bash
# Runs every native Go fuzz target (func FuzzXxx(f *testing.F) in a
# _test.go file) for a short time each: scripts/fuzz.sh [FUZZTIME], default
# 10s. Go fuzzes one target of one package per run, hence the loop. New
# crashers land in the package's testdata/fuzz/ and become regression tests.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${1:-10s}

found=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]*)\(' "$file" | sed -E 's/^func (Fuzz[A-Za-z0-9_]*)\(/\1/'); do
    found=1
    echo "fuzz: ./$dir $target ($fuzztime)"
    go test -run '^$' -fuzz "^${target}\$" -fuzztime "$fuzztime" "./$dir"
  done
done < <(grep -rlE --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*\(' . | grep -v '/testdata/' | sed 's|^\./||' | sort)

((found)) || echo "fuzz: no fuzz targets yet"
