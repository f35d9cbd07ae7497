#!/usr/bin/env bash
# npm test's first steps: the protobuf code first (buf), then the type check/compile (tsc) and the lint (eslint,
# prettier) side by side, one core each. The lint is type-checked, so it reads the generated code in common/gen:
# it must not start before `npm run gen` has written it (started together, eslint could resolve an import of
# common/gen before buf wrote the file and report the generated types as unresolvable). Neither tsc nor the lint
# reads what the other writes (lint skips dist). Fails, after both finished, if either failed; the lint's output is
# printed after the build's so the two do not interleave.
set -uo pipefail
cd "$(dirname "$0")/.."
npm run -s gen || { rc=$?; echo "gen failed ($rc): npm run gen" >&2; exit "$rc"; }
lint_out=$(mktemp)
trap 'rm -f "$lint_out"' EXIT
npm run -s lint > "$lint_out" 2>&1 &
lint=$!
npx tsc -p tsconfig.json
build_rc=$?
wait "$lint"
lint_rc=$?
cat "$lint_out"
[ "$build_rc" -eq 0 ] || { echo "build failed ($build_rc): tsc -p tsconfig.json" >&2; exit "$build_rc"; }
[ "$lint_rc" -eq 0 ] || { echo "lint failed ($lint_rc): npm run lint" >&2; exit "$lint_rc"; }
