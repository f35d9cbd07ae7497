#!/usr/bin/env bash
# npm test's first steps: the build (protobuf code, tsc) and the lint (eslint, prettier) side by side, one core
# each — neither reads what the other writes (lint skips common/gen and dist). Fails, after both finished, if
# either failed; the lint's output is printed after the build's so the two do not interleave.
set -uo pipefail
cd "$(dirname "$0")/.."
lint_out=$(mktemp)
trap 'rm -f "$lint_out"' EXIT
npm run -s lint > "$lint_out" 2>&1 &
lint=$!
npm run build
build_rc=$?
wait "$lint"
lint_rc=$?
cat "$lint_out"
[ "$build_rc" -eq 0 ] || { echo "build failed ($build_rc)" >&2; exit "$build_rc"; }
[ "$lint_rc" -eq 0 ] || { echo "lint failed ($lint_rc): npm run lint" >&2; exit "$lint_rc"; }
