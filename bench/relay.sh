#!/usr/bin/env bash
# bench/relay.sh: the relay's figures (issue 10 §6) in ONE run, each row against skopeo
# doing the same work in the same run, and prints them (--write-results appends a section
# to bench/RESULTS.md). Not a test: figures vary with the machine.
#
# The destinations are "remote": each distribution registry sits behind its own shaped
# link (bench/shaper.py, --rate-mib each way), as another region would, so the figures are
# what the links allow and not the receiving registries' CPU. ocirelay (the system under
# test) runs on core 1; the registries, the links and skopeo on core 0.
#
#   bench/relay.sh [--binary build/cli/ocirelay] [--rate-mib 40] [--fanout-mib 256]
#                  [--rss-gib 8] [--rss-rate-mib 100] [--rows 1,2,3,4] [--write-results]
#
# Rows: 1 fan-out of one image (4 layers) to 3 destinations vs to 1, and vs skopeo copy to
# each in turn; 2 a no-op resync of 1,000 tags (100 repositories) to 3 destinations vs
# skopeo sync; 3 cold replication of 500 small images sharing a base layer to 2
# destinations, images per hour vs skopeo sync; 4 peak RSS replicating a large image to 3.
# Needs: docker-registry, skopeo, curl, python3, /usr/bin/time (scripts/setup.sh test).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/.." && pwd)
bin="$repo_root/build/cli/ocirelay"
rate=40 fanout_mib=256 rss_gib=8 rss_rate=100 rows="1,2,3,4" write_results=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) bin=$2; shift 2 ;;
    --rate-mib) rate=$2; shift 2 ;;
    --fanout-mib) fanout_mib=$2; shift 2 ;;
    --rss-gib) rss_gib=$2; shift 2 ;;
    --rss-rate-mib) rss_rate=$2; shift 2 ;;
    --rows) rows=$2; shift 2 ;;
    --write-results) write_results=1; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for tool in docker-registry skopeo curl sha256sum python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not installed (run scripts/setup.sh test)" >&2; exit 2; }
done
[[ -x "$bin" ]] || { echo "bench: $bin not built" >&2; exit 2; }
# shellcheck source=bench/lib.sh
source "$here/lib.sh"
want() { [[ ",$rows," == *",$1,"* ]]; }

# A shaped link to 127.0.0.1:PORT on the client core; sets LINK_PORT.
start_link() {  # start_link NAME PORT RATE_MIB
  local f="$work/$1.port"
  $pin_client python3 "$here/shaper.py" --to "127.0.0.1:$2" --rate-mib "$3" --port-file "$f" > "$work/$1.log" 2>&1 &
  pids+=($!)
  local deadline=$((SECONDS + 10))
  until [[ -s "$f" ]]; do ((SECONDS < deadline)) || { echo "bench: shaper $1 did not start" >&2; exit 1; }; sleep 0.05; done
  LINK_PORT=$(cat "$f")
}
lines_of() { wc -l < "$work/$1/log"; }  # a registry's log lines so far (access log included)
requests_since() {  # requests_since NAME LINE: access-log requests after LINE
  tail -n +"$(($2 + 1))" "$work/$1/log" | grep -c '"[A-Z]* /v2/' || true
}
secs() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$(secs)" 'BEGIN{printf "%.2f", b - a}'; }

# Busy jiffies (user+nice+system+irq+softirq) of cpu0 and cpu1 from /proc/stat.
core_busy() { awk '/^cpu[01] /{print $2+$3+$4+$7+$8}' /proc/stat | paste -sd' '; }
# "core 0 N%, core 1 M%": how busy each core was between two core_busy samples over SECS.
core_share() {  # core_share "BEFORE" "AFTER" SECS
  local hz; hz=$(getconf CLK_TCK)
  awk -v b="$1" -v a="$2" -v s="$3" -v hz="$hz" 'BEGIN{split(b,x," "); split(a,y," ");
    printf "core 0 (registries, links) %.0f%%, core 1 (ocirelay) %.0f%%", (y[1]-x[1])/hz/s*100, (y[2]-x[2])/hz/s*100}'
}

# One ocirelay sync (pinned to the SUT core) of RULE_YAML, with a store of its own.
# Sets SYNC_SECS, SYNC_RSS_KIB and SYNC_CORES (how busy each core was meanwhile).
run_sync() {  # run_sync NAME RULE_YAML
  local dir="$work/oc-$1"; mkdir -p "$dir"
  {
    echo "store: {path: $dir/store}"
    echo "log: {level: warn}"
    echo "registries:"
    echo "  - {name: src, url: \"http://127.0.0.1:$up\"}"
    for i in 0 1 2; do
      echo "  - {name: d$i, url: \"http://127.0.0.1:${link[$i]}\", limits: {concurrency: 4}}"
    done
    printf '%s\n' "$2"
  } > "$dir/ocirelay.yaml"
  local t0 c0; t0=$(secs); c0=$(core_busy)
  $pin_sut /usr/bin/time -f '%M' -o "$dir/rss" "$bin" sync --config "$dir/ocirelay.yaml" > "$dir/out" 2> "$dir/err" || {
    echo "bench: ocirelay sync ($1) failed:" >&2; tail -n 5 "$dir/err" >&2; exit 1
  }
  SYNC_SECS=$(elapsed "$t0")
  SYNC_CORES=$(core_share "$c0" "$(core_busy)" "$SYNC_SECS")
  SYNC_RSS_KIB=$(tail -n 1 "$dir/rss")
}
skopeo_flags=(--src-tls-verify=false --dest-tls-verify=false -q)
sync_flags=(--src-tls-verify=false --dest-tls-verify=false)  # skopeo sync has no -q

echo "== setting up in $work (source and 3 destination registries, links of $rate MiB/s)"
up=$(free_port); start_registry src "$up" "" "$pin_client"
link=() dport=()
for i in 0 1 2; do
  dport[$i]=$(free_port); start_registry "d$i" "${dport[$i]}" "" "$pin_client"
  start_link "link$i" "${dport[$i]}" "$rate"; link[$i]=$LINK_PORT
done
results=()
row() { results+=("$1"); echo "$1"; }

if want 1; then
  echo "== row 1: fan-out of a ${fanout_mib} MiB image (4 layers)"
  layer_mib=$((fanout_mib / 4))
  fl=()
  for l in 0 1 2 3; do rand_file "$work/fan$l" "$layer_mib"; fl+=("$work/fan$l"); done
  push_image fan/app 1.0 "${fl[@]}"
  run_sync one "rules: [{name: fan, from: src, repositories: {list: [fan/app]}, to: [{registry: d0, repository: {prefix: one/}}]}]"
  one_secs=$SYNC_SECS
  before=$(lines_of src)
  run_sync three "rules: [{name: fan, from: src, repositories: {list: [fan/app]}, to: [{registry: d0, repository: {prefix: three/}}, {registry: d1, repository: {prefix: three/}}, {registry: d2, repository: {prefix: three/}}]}]"
  three_secs=$SYNC_SECS
  three_gets=$(tail -n +"$((before + 1))" "$work/src/log" | grep -c '"GET /v2/fan/app/blobs/' || true)
  t0=$(secs)
  for i in 0 1 2; do
    $pin_client skopeo copy "${skopeo_flags[@]}" "docker://127.0.0.1:$up/fan/app:1.0" "docker://127.0.0.1:${link[$i]}/sk/fan/app:1.0"
  done
  sk_secs=$(elapsed "$t0")
  row "| 1 | fan-out of ${fanout_mib} MiB (4 layers) to 3 destinations at ${rate} MiB/s each (s) | ${three_secs} (1 dest: ${one_secs}) | skopeo copy x3: ${sk_secs} | $(ratio "$three_secs" "$one_secs")x one dest, $(ratio "$three_secs" "$sk_secs")x skopeo; source blob GETs: ${three_gets} for 5 blobs | <= 1.25x, <= 0.5x, 1 per blob |"
fi

if want 2 || want 3; then
  # Small images: a shared 2 MiB base layer and a 4 KiB layer of their own.
  rand_file "$work/base" 2
fi

if want 2; then
  echo "== row 2: no-op resync of 1,000 tags (100 repositories x 10) to 3 destinations"
  for r in $(seq -w 0 99); do
    head -c 4096 /dev/urandom > "$work/own"
    push_image "svc$r" t0 "$work/base" "$work/own"
    m=$(curl -fsS -H 'Accept: application/vnd.oci.image.manifest.v1+json' "http://127.0.0.1:$up/v2/svc$r/manifests/t0")
    for t in 1 2 3 4 5 6 7 8 9; do
      curl -fsS -X PUT -H 'Content-Type: application/vnd.oci.image.manifest.v1+json' --data-binary "$m" \
        "http://127.0.0.1:$up/v2/svc$r/manifests/t$t" > /dev/null
    done
  done
  rule2="rules: [{name: fleet, from: src, repositories: {include: [\"svc*\"]}, to: [{registry: d0, repository: {prefix: oc/}}, {registry: d1, repository: {prefix: oc/}}, {registry: d2, repository: {prefix: oc/}}]}]"
  run_sync resync "$rule2"  # the first sync: everything goes
  for i in 0 1 2; do  # and skopeo's own first sync, to its own repositories
    for r in $(seq -w 0 99); do
      $pin_client skopeo sync "${sync_flags[@]}" --src docker --dest docker "127.0.0.1:$up/svc$r" "127.0.0.1:${link[$i]}/sk" > /dev/null
    done
  done
  s0=$(lines_of src); d0=$(lines_of d0); d1=$(lines_of d1); d2=$(lines_of d2)
  run_sync resync "$rule2"
  oc_secs=$SYNC_SECS
  oc_src=$(requests_since src "$s0")
  oc_heads=$(tail -n +"$((s0 + 1))" "$work/src/log" | grep -c '"HEAD /v2/' || true)
  oc_dst=$(( $(requests_since d0 "$d0") + $(requests_since d1 "$d1") + $(requests_since d2 "$d2") ))
  s0=$(lines_of src)
  t0=$(secs)
  for i in 0 1 2; do
    for r in $(seq -w 0 99); do
      $pin_client skopeo sync "${sync_flags[@]}" --src docker --dest docker "127.0.0.1:$up/svc$r" "127.0.0.1:${link[$i]}/sk" > /dev/null
    done
  done
  sk_secs=$(elapsed "$t0")
  sk_src=$(requests_since src "$s0")
  row "| 2 | no-op resync of 1,000 tags to 3 destinations (s) | ${oc_secs} (source: ${oc_src} requests, ${oc_heads} HEADs; destinations: ${oc_dst}) | skopeo sync: ${sk_secs} (source: ${sk_src} requests) | $(ratio "$sk_secs" "$oc_secs")x faster | source <= 1,000 HEADs, destinations 0, >= 10x |"
fi

if want 3; then
  echo "== row 3: cold replication of 500 small images (50 repositories x 10) to 2 destinations"
  for r in $(seq -w 0 49); do
    for t in $(seq 0 9); do
      head -c 4096 /dev/urandom > "$work/own"
      push_image "cold$r" "t$t" "$work/base" "$work/own"
    done
  done
  run_sync cold "rules: [{name: cold, from: src, repositories: {include: [\"cold*\"]}, to: [{registry: d0, repository: {prefix: oc3/}}, {registry: d1, repository: {prefix: oc3/}}]}]"
  oc_secs=$SYNC_SECS
  t0=$(secs)
  for i in 0 1; do
    for r in $(seq -w 0 49); do
      $pin_client skopeo sync "${sync_flags[@]}" --src docker --dest docker "127.0.0.1:$up/cold$r" "127.0.0.1:${link[$i]}/sk3" > /dev/null
    done
  done
  sk_secs=$(elapsed "$t0")
  oc_iph=$(awk -v s="$oc_secs" 'BEGIN{printf "%.0f", 500 / s * 3600}')
  sk_iph=$(awk -v s="$sk_secs" 'BEGIN{printf "%.0f", 500 / s * 3600}')
  echo "row 3: while ocirelay ran: $SYNC_CORES"
  row "| 3 | cold replication of 500 small images to 2 destinations (images/hour) | ${oc_iph} (${oc_secs} s; ${SYNC_CORES}) | skopeo sync: ${sk_iph} (${sk_secs} s) | $(ratio "$oc_iph" "$sk_iph")x skopeo | > 1,000/h; 100x |"
fi

if want 4; then
  echo "== row 4: peak RSS replicating a ${rss_gib} GiB image (4 layers) to 3 destinations at ${rss_rate} MiB/s each"
  big=()
  for l in 0 1 2 3; do rand_file "$work/big$l" $((rss_gib * 256)); big+=("$work/big$l"); done
  push_image big/model 1.0 "${big[@]}"
  rm -f "${big[@]}"  # the source registry holds them now: keep the disk for the copies
  for i in 0 1 2; do  # faster links for this row
    start_link "fastlink$i" "${dport[$i]}" "$rss_rate"; link[$i]=$LINK_PORT
  done
  run_sync big "rules: [{name: big, from: src, repositories: {list: [big/model]}, to: [{registry: d0}, {registry: d1}, {registry: d2}]}]"
  row "| 4 | peak RSS replicating ${rss_gib} GiB (4 layers) to 3 destinations (MiB) | $(awk -v k="$SYNC_RSS_KIB" 'BEGIN{printf "%.1f", k / 1024}') (${SYNC_SECS} s) | — | — | < 128 |"
fi

if ((write_results)); then
  {
    echo
    echo "## $(date -u +%Y-%m-%d) relay on $(nproc) cores, $(git -C "$repo_root" rev-parse --short HEAD), links of ${rate} MiB/s"
    echo
    echo "bench/relay.sh: ocirelay sync pinned to core 1; the registries, the shaped links and skopeo on core 0."
    echo
    echo "| # | measure | ocirelay | skopeo | ratio | target |"
    echo "|---|---|---|---|---|---|"
    printf '%s\n' "${results[@]}"
  } >> "$here/RESULTS.md"
  echo "appended to bench/RESULTS.md"
fi
