#!/usr/bin/env bash
# Builds the libFuzzer targets (clang, ASan + UBSan; tests/fuzz/) in build-fuzz/ and runs
# each, one at a time, for a bounded time on a copy of its checked-in seed corpus
# (tests/fuzz/corpus/<target>/; the checked-in corpus never grows here).
#   scripts/fuzz.sh [target...]          all targets when none is named
# Environment: FUZZ_SECONDS (per target, default 15: eleven targets plus the build stay
# within ~6 minutes on 2 cores), FUZZ_BUILD_DIR (default build-fuzz),
# FUZZ_JOBS (build parallelism, default 2), CC/CXX (default clang/clang++).
# Exit status 1 when a target crashed, leaked, timed out or broke a property: its input is
# printed as hex and kept in the run's directory, which is then left in place.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
seconds="${FUZZ_SECONDS:-15}"
build_dir="${FUZZ_BUILD_DIR:-build-fuzz}"
jobs="${FUZZ_JOBS:-2}"

start=$(date +%s)
CC="${CC:-clang}" CXX="${CXX:-clang++}" cmake -G Ninja -S . -B "$build_dir" \
  -DOCIRELAY_FUZZ=ON -DOCIRELAY_BUILD_TESTS=OFF >/dev/null
cmake --build "$build_dir" -j "$jobs" --target fuzzers
built=$(date +%s)
echo "fuzz.sh: built the targets in $((built - start)) s"

if (($# > 0)); then
  targets=("$@")
else
  targets=()
  for f in tests/fuzz/fuzz_*.cc; do targets+=("$(basename "$f" .cc)"); done
fi

# Everything a run writes (grown corpus, artifacts, the store of fuzz_upstream_reply) lives
# here: tmpfs when there is one with room (a container's default /dev/shm is 64 MB).
shm=/dev/shm
if [[ ! -d $shm || ! -w $shm ]] || (($(df --output=avail -k "$shm" | tail -1) < 1048576)); then
  shm="${TMPDIR:-/tmp}"
fi
run_dir="$(mktemp -d "$shm/ocirelay-fuzz.XXXXXX")"
keep_run_dir=0
cleanup() { if ((keep_run_dir == 0)); then rm -rf "$run_dir"; fi; }
trap cleanup EXIT

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:allocator_may_return_null=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
summary=()
for t in "${targets[@]}"; do
  bin="$build_dir/tests/fuzz/$t"
  seeds="tests/fuzz/corpus/$t"
  [[ -x $bin ]] || { echo "fuzz.sh: no target $t" >&2; exit 2; }
  work="$run_dir/$t"
  mkdir -p "$work/corpus" "$work/artifacts" "$work/tmp"
  [[ -d $seeds ]] && cp -r "$seeds/." "$work/corpus/"
  dict=()
  case $t in
    fuzz_manifest|fuzz_token_response|fuzz_docker_config|fuzz_records|fuzz_upstream_reply|fuzz_webhook)
      dict=(-dict=tests/fuzz/json.dict) ;;
  esac
  echo "fuzz.sh: $t for ${seconds} s ($(ls "$work/corpus" | wc -l) seeds)"
  rc=0
  OCIRELAY_FUZZ_TMP="$work/tmp" "$bin" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/artifacts/" \
    "${dict[@]}" "$work/corpus" >"$work/log" 2>&1 || rc=$?
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$work/log" | tail -1 || true)
  summary+=("$t: ${runs:-?} runs, ${cov:-cov: ?}, exit $rc")
  if ((rc != 0)) || [[ -n "$(ls -A "$work/artifacts")" ]]; then
    failed+=("$t")
    keep_run_dir=1
    echo "fuzz.sh: $t FAILED (exit $rc); end of its log:" >&2
    tail -n 60 "$work/log" >&2
    for a in "$work/artifacts"/*; do
      [[ -e $a ]] || continue
      echo "fuzz.sh: input $a ($(stat -c %s "$a") bytes), hex:" >&2
      head -c 65536 "$a" | od -An -tx1 -v >&2
    done
  fi
done

echo "fuzz.sh: summary (${seconds} s per target, built in $((built - start)) s, total $(($(date +%s) - start)) s)"
for s in "${summary[@]}"; do echo "  $s"; done
if ((${#failed[@]} > 0)); then
  echo "fuzz.sh: FAILED: ${failed[*]}; inputs and logs kept in $run_dir" >&2
  exit 1
fi
