#!/usr/bin/env bash
# Fuzzes one of the edge's byte readers with libFuzzer and AddressSanitizer, growing the
# corpus in fuzz/corpus/TARGET and writing any crash as fuzz/crash-*; then merges the corpus
# down to the inputs that add coverage. Findings become regression inputs: the corpus is
# replayed by `make test` (FuzzCorpusTests).
# Usage: scripts/fuzz.sh head|chunk|path [seconds, default 600]
set -euo pipefail
target=${1:?usage: scripts/fuzz.sh head|chunk|path [seconds]}
seconds=${2:-600}
cd "$(dirname "$0")/.."
swift build --product foyer-fuzz --scratch-path .build-fuzz \
  -Xswiftc -sanitize=fuzzer,address -Xswiftc -DFUZZING -Xswiftc -use-ld=lld >&2
binary=.build-fuzz/debug/foyer-fuzz
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
FOYER_FUZZ_TARGET=$target "$binary" -max_total_time="$seconds" -max_len=4096 -timeout=5 \
  -artifact_prefix=fuzz/crash-"$target"- -print_final_stats=1 "$work" "fuzz/corpus/$target"
# Keep only what adds coverage: the seeds stay, the rest is merged in.
merged=$(mktemp -d)
FOYER_FUZZ_TARGET=$target "$binary" -merge=1 "$merged" "fuzz/corpus/$target" "$work" >/dev/null 2>&1
for file in "$merged"/*; do
  name=$(basename "$file")
  [ -e "fuzz/corpus/$target/$name" ] || cp "$file" "fuzz/corpus/$target/$name"
done
rm -rf "$merged"
echo "fuzz/corpus/$target: $(ls "fuzz/corpus/$target" | wc -l) inputs"
