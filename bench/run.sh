#!/usr/bin/env bash
# bench/run.sh: measures ocirelay in ONE run on this machine against nginx serving the same
# bytes with sendfile (the physical limit), nginx as a caching proxy and the distribution
# registry in proxy mode, and prints ratios. Not a test: figures vary with the machine;
# bench/RESULTS.md records them.
#
# On 2+ cores the cold pulls (row 3) pin the system under test (ocirelay, or the nginx
# caching proxy) to core 1 and the client and the upstream registry to core 0, so the
# mirror's work is not charged to the client. Each row also reports the CPU the server used
# during its measurement (100% = one core busy), to tell what bounded it.
#
#   bench/run.sh [--binary build/cli/ocirelay] [--duration 10] [--big-mib 2048] [--write-results]
#
# Needs: docker-registry, nginx-light, wrk, skopeo, curl (scripts/setup.sh test installs them).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/.." && pwd)
bin="$repo_root/build/cli/ocirelay"
duration=10
big_mib=2048
write_results=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --binary) bin=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --big-mib) big_mib=$2; shift 2 ;;
    --write-results) write_results=1; shift ;;
    -h|--help) sed -n '2,9p' "$0"; exit 0 ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
done
for tool in docker-registry nginx wrk skopeo curl sha256sum python3 /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not installed (run scripts/setup.sh test)" >&2; exit 2; }
done
[[ -x "$bin" ]] || { echo "bench: $bin not built" >&2; exit 2; }

# shellcheck source=bench/lib.sh
source "$here/lib.sh"
start_ocirelay() {  # start_ocirelay NAME PORT UPSTREAM_PORT
  local dir="$work/$1"; mkdir -p "$dir/store"
  cat > "$dir/ocirelay.yaml" <<YAML
listen: 127.0.0.1:$2
store: {path: $dir/store}
local: {repositories: ["pushed/**"]}
upstreams:
  - {name: bench.local, url: "http://127.0.0.1:$3", default: true, tag_ttl: 1h}
log: {level: warn, format: text}
YAML
  "$bin" serve --config "$dir/ocirelay.yaml" > "$dir/log" 2>&1 &
  pids+=($!)
  OCIRELAY_PID=$!
  wait_http "http://127.0.0.1:$2/v2/"
}

wrk_rps() {  # wrk_rps CONNS URL -> requests/s
  wrk -t2 -c"$1" -d"${duration}s" -H "Accept: application/vnd.oci.image.manifest.v1+json" "$2" |
    awk '/Requests\/sec/{print $2}'
}
wrk_mbps() {  # wrk_mbps CONNS URL -> MiB/s transferred
  wrk -t2 -c"$1" -d"${duration}s" --timeout 60s "$2" | awk '/Transfer\/sec/{
      v=$2; u=v; sub(/[0-9.]+/,"",u); sub(/[A-Za-z]+/,"",v);
      f=(u=="GB")?1024:(u=="MB")?1:(u=="KB")?1/1024:1/1048576; printf "%.1f\n", v*f }'
}
count_blob_gets() {  # count_blob_gets LOG DIGEST: upstream GETs of that blob in the access log
  grep -c "\"GET /v2/[^ ]*/blobs/$2 " "$1" || true
}

echo "== setting up (upstream registry, data) in $work"
up=$(free_port); start_registry upstream "$up"
UPSTREAM_PID=$REGISTRY_PID
cold_runs=5  # distinct images: each pull is cold; the median damps this VM's noise
for i in 1 2 3; do rand_file "$work/l$i" 16; done
push_image bench/app v1 "$work/l1" "$work/l2" "$work/l3"
for r in $(seq "$cold_runs"); do
  for i in 1 2 3; do rand_file "$work/c$r-$i" 16; done
  push_image "bench/cold$r" v1 "$work/c$r-1" "$work/c$r-2" "$work/c$r-3"
done
rand_file "$work/blob256" 256
push_image bench/big v1 "$work/blob256"
rand_file "$work/blob64" 64
push_image bench/herd v1 "$work/blob64"
push_image bench/herd2 v1 "$work/blob64"   # the same blob under a second repository
rand_file "$work/blobhuge" "$big_mib"
push_image bench/huge v1 "$work/blobhuge"

mirror=$(free_port); start_ocirelay mirror "$mirror" "$up"
dproxy=$(free_port); start_registry dproxy "$dproxy" "http://127.0.0.1:$up"

# nginx serves the very same bytes from files (sendfile on), as a static mirror would.
static="$work/static"; mkdir -p "$static/v2/bench/app/manifests" "$static/v2/bench/big/blobs"
cp "$work/manifest-bench_app-v1.json" "$static/v2/bench/app/manifests/v1"
app_digest=$(sha "$work/manifest-bench_app-v1.json")
cp "$work/manifest-bench_app-v1.json" "$static/v2/bench/app/manifests/$app_digest"
big_digest=$(sha "$work/blob256")
cp "$work/blob256" "$static/v2/bench/big/blobs/$big_digest"
ngx=$(free_port)
cat > "$work/nginx.conf" <<NGINX
worker_processes 2;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on; keepalive_requests 1000000;
  default_type application/vnd.oci.image.manifest.v1+json;
  client_body_temp_path $work/ngx-tmp; proxy_temp_path $work/ngx-tmp;
  fastcgi_temp_path $work/ngx-tmp; uwsgi_temp_path $work/ngx-tmp; scgi_temp_path $work/ngx-tmp;
  server { listen 127.0.0.1:$ngx; root $static; }
}
NGINX
mkdir -p "$work/ngx-tmp"
nginx -c "$work/nginx.conf" -p "$work" &
pids+=($!)
NGINX_PID=$!
wait_http "http://127.0.0.1:$ngx/v2/bench/app/manifests/v1"

# nginx as a caching proxy in front of the same upstream (cold for every image): the
# reference for a cold pull through a mirror. One worker, pinned like ocirelay.
ngxc=$(free_port)
mkdir -p "$work/ngxc-cache" "$work/ngxc-tmp"
cat > "$work/nginx-cache.conf" <<NGINX
worker_processes 1;
pid $work/nginx-cache.pid;
error_log $work/nginx-cache-error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off; sendfile on; tcp_nopush on;
  client_body_temp_path $work/ngxc-tmp; proxy_temp_path $work/ngxc-tmp;
  fastcgi_temp_path $work/ngxc-tmp; uwsgi_temp_path $work/ngxc-tmp; scgi_temp_path $work/ngxc-tmp;
  proxy_cache_path $work/ngxc-cache levels=1:2 keys_zone=oci:10m max_size=4g inactive=1h;
  server {
    listen 127.0.0.1:$ngxc;
    location /v2/ {
      proxy_pass http://127.0.0.1:$up;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_cache oci; proxy_cache_lock on; proxy_cache_valid 200 1h;
      proxy_cache_key "\$request_uri \$http_accept";
      proxy_max_temp_file_size 0;
    }
  }
}
NGINX
$pin_sut nginx -c "$work/nginx-cache.conf" -p "$work" &
pids+=($!)
wait_http "http://127.0.0.1:$ngxc/v2/"

# measured PID CMD...: runs CMD and sets CPU to PID's CPU use meanwhile (% of one core).
measured() {
  local pid=$1 t0 s0; shift
  t0=$(cpu_ticks "$pid"); s0=$(date +%s.%N)
  RESULT=$("$@")
  CPU=$(cpu_pct "$pid" "$t0" "$(awk -v a="$s0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')")
}

echo "== 1. cached manifest GET by tag and by digest, 32 connections, ${duration}s each"
for path in v1 "$app_digest"; do
  curl -fso /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$mirror/v2/bench/app/manifests/$path"
  curl -fso /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$dproxy/v2/bench/app/manifests/$path"
done
# This VM's rate moves by a third from one 10 s run to the next: nginx and ocirelay take
# turns, three runs each, and the medians are compared.
rps_series() {  # rps_series PATH -> sets NGX_MED OCI_MED OCI_CPU (median of the ocirelay runs)
  local ngx_runs="" oci_runs="" cpus="" i
  for i in 1 2 3; do
    measured "$NGINX_PID" wrk_rps 32 "http://127.0.0.1:$ngx/v2/bench/app/manifests/$1"; ngx_runs+=" $RESULT"
    measured "$OCIRELAY_PID" wrk_rps 32 "http://127.0.0.1:$mirror/v2/bench/app/manifests/$1"
    oci_runs+=" $RESULT"; cpus+=" $CPU"
  done
  echo "   $1: nginx${ngx_runs} | ocirelay${oci_runs} (cpu${cpus} %)"
  NGX_MED=$(echo "$ngx_runs" | median); OCI_MED=$(echo "$oci_runs" | median); OCI_CPU=$(echo "$cpus" | median)
}
rps_series v1; m_ngx=$NGX_MED; m_oci=$OCI_MED; m_oci_cpu=$OCI_CPU
rps_series "$app_digest"; md_ngx=$NGX_MED; md_oci=$OCI_MED; md_oci_cpu=$OCI_CPU
m_dp=$(wrk_rps 32 "http://127.0.0.1:$dproxy/v2/bench/app/manifests/v1")
echo "   by tag: nginx $m_ngx req/s | ocirelay $m_oci req/s (cpu ${m_oci_cpu}%) | distribution proxy $m_dp req/s"
echo "   by digest: nginx $md_ngx req/s | ocirelay $md_oci req/s (cpu ${md_oci_cpu}%)"

echo "== 2. cached 256 MiB blob, 4 connections"
curl -fso /dev/null "http://127.0.0.1:$mirror/v2/bench/big/blobs/$big_digest"
curl -fso /dev/null "http://127.0.0.1:$dproxy/v2/bench/big/blobs/$big_digest"
b_ngx=$(wrk_mbps 4 "http://127.0.0.1:$ngx/v2/bench/big/blobs/$big_digest")
measured "$OCIRELAY_PID" wrk_mbps 4 "http://127.0.0.1:$mirror/v2/bench/big/blobs/$big_digest"; b_oci=$RESULT; b_oci_cpu=$CPU
b_dp=$(wrk_mbps 4 "http://127.0.0.1:$dproxy/v2/bench/big/blobs/$big_digest")
echo "   nginx $b_ngx MiB/s | ocirelay $b_oci MiB/s (cpu ${b_oci_cpu}%) | distribution proxy $b_dp MiB/s"

echo "== 3. cold pull of a 3-layer image (skopeo): through ocirelay, through nginx's cache, direct"
echo "   (client and upstream on core 0, the mirror on core 1: ${pin_sut:-not pinned})"
pin 1 "$OCIRELAY_PID"; pin 0 "$UPSTREAM_PID"
pull_secs() {  # pull_secs PORT REPO
  local t0 t1; rm -rf "$work/pull"; t0=$(date +%s.%N)
  $pin_client skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$1/$2:v1" "dir:$work/pull" >/dev/null
  t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}
directs="" mirrors="" caches="" c_ticks=0 c_secs=0
for r in $(seq "$cold_runs"); do
  # Rotate which goes first: later readers find the upstream's page cache warm.
  for k in 0 1 2; do
    case $(((r + k) % 3)) in
      0) directs+=" $(pull_secs "$up" "bench/cold$r")" ;;
      1) t0=$(cpu_ticks "$OCIRELAY_PID"); secs=$(pull_secs "$mirror" "bench/cold$r"); mirrors+=" $secs"
         c_ticks=$((c_ticks + $(cpu_ticks "$OCIRELAY_PID") - t0))
         c_secs=$(awk -v a="$c_secs" -v b="$secs" 'BEGIN{print a+b}') ;;
      2) caches+=" $(pull_secs "$ngxc" "bench/cold$r")" ;;
    esac
  done
done
c_cpu=$(awk -v t="$c_ticks" -v s="$c_secs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.0f", t / hz / s * 100}')
unpin "$OCIRELAY_PID"; unpin "$UPSTREAM_PID"
c_direct=$(echo "$directs" | median)
c_mirror=$(echo "$mirrors" | median)
c_cache=$(echo "$caches" | median)
echo "   direct:${directs} s | via ocirelay (cold):${mirrors} s | via nginx cache (cold):${caches} s"
echo "   medians ${c_direct} / ${c_mirror} / ${c_cache}; ocirelay cpu during its pulls ${c_cpu}%"

echo "== 4. 20 concurrent cold requests for one 64 MiB blob: upstream GETs"
herd=$(sha "$work/blob64")
herd_run() {  # herd_run PORT REPO
  local i hp=()
  for i in $(seq 20); do curl -fso /dev/null "http://127.0.0.1:$1/v2/$2/blobs/$herd" & hp+=($!); done
  local ok=0; for p in "${hp[@]}"; do wait "$p" && ok=$((ok + 1)); done; echo "$ok"
}
before=$(count_blob_gets "$work/upstream/log" "$herd")
h_ok_oci=$(herd_run "$mirror" bench/herd)
after=$(count_blob_gets "$work/upstream/log" "$herd")
h_oci=$((after - before))
before=$after
h_ok_dp=$(herd_run "$dproxy" bench/herd2)
after=$(count_blob_gets "$work/upstream/log" "$herd")
h_dp=$((after - before))
echo "   ocirelay: $h_oci upstream GET(s), $h_ok_oci/20 clients ok | distribution proxy: $h_dp upstream GET(s), $h_ok_dp/20 ok"

echo "== 5. peak RSS of a fresh ocirelay streaming a cold ${big_mib} MiB blob"
kill "$OCIRELAY_PID"; wait "$OCIRELAY_PID" 2>/dev/null || true
rm -rf "$work/mirror"
start_ocirelay mirror "$mirror" "$up"
huge=$(sha "$work/blobhuge")
curl -fso /dev/null "http://127.0.0.1:$mirror/v2/bench/huge/blobs/$huge"
rss_kib=$(awk '/VmHWM/{print $2}' "/proc/$OCIRELAY_PID/status")
rss_mib=$(awk -v k="$rss_kib" 'BEGIN{printf "%.1f", k/1024}')
echo "   peak RSS ${rss_mib} MiB"

echo "== 6. skopeo pushes a 1 GiB image (4 x 256 MiB layers): into ocirelay vs into distribution"
# An OCI layout skopeo pushes from, made anew for each run: a receiver (or skopeo's blob
# cache) that already holds a layer would skip it. Receivers on core 1, skopeo on core 0.
layout="$work/layout"
make_layout() {  # make_layout RUN: 4 fresh 256 MiB layers
  rm -rf "$layout"; mkdir -p "$layout/blobs/sha256"
  echo '{"imageLayoutVersion":"1.0.0"}' > "$layout/oci-layout"
  local plist="" i d
  for i in 1 2 3 4; do
    # A gzip stream (stored blocks: made at memcpy speed) of random bytes. skopeo copies a
    # compressed layer as it is; an uncompressed one it would gzip on the way, and its
    # compression (~60 MB/s) would be what the row measures.
    python3 -c 'import os,sys,zlib
c = zlib.compressobj(0, zlib.DEFLATED, 31); out = sys.stdout.buffer
for _ in range(256): out.write(c.compress(os.urandom(1 << 20)))
out.write(c.flush())' > "$work/p$i"
    d=$(sha "$work/p$i"); mv "$work/p$i" "$layout/blobs/sha256/${d#sha256:}"
    plist+="${plist:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"$d\",\"size\":$(stat -c %s "$layout/blobs/sha256/${d#sha256:}")}"
  done
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"run":"%s"}' "$1" > "$work/pcfg"
  local pcd pmd; pcd=$(sha "$work/pcfg"); cp "$work/pcfg" "$layout/blobs/sha256/${pcd#sha256:}"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$pcd" "$(stat -c %s "$work/pcfg")" "$plist" > "$work/pman"
  pmd=$(sha "$work/pman"); cp "$work/pman" "$layout/blobs/sha256/${pmd#sha256:}"
  printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"v1"}}]}' \
    "$pmd" "$(stat -c %s "$work/pman")" > "$layout/index.json"
}
preg=$(free_port); start_registry pushreg "$preg"
PREG_PID=$REGISTRY_PID
pin 1 "$OCIRELAY_PID"; pin 1 "$PREG_PID"
push_secs() {  # push_secs PORT REPO
  local t0 t1; t0=$(date +%s.%N)
  $pin_client skopeo copy --quiet --dest-tls-verify=false "oci:$layout:v1" "docker://127.0.0.1:$1/$2:v1" >/dev/null
  t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}
p_oci="" p_reg="" p_ticks=0 p_secs=0
for r in 1 2 3; do
  make_layout "$r"
  for k in 0 1; do  # alternate who goes first: the layout's pages are warm for the second
    if (((r + k) % 2 == 0)); then
      t0=$(cpu_ticks "$OCIRELAY_PID"); secs=$(push_secs "$mirror" "pushed/run$r"); p_oci+=" $secs"
      p_ticks=$((p_ticks + $(cpu_ticks "$OCIRELAY_PID") - t0))
      p_secs=$(awk -v a="$p_secs" -v b="$secs" 'BEGIN{print a+b}')
    else
      p_reg+=" $(push_secs "$preg" "pushed/run$r")"
    fi
  done
done
unpin "$OCIRELAY_PID"
p_cpu=$(awk -v t="$p_ticks" -v s="$p_secs" -v hz="$(getconf CLK_TCK)" 'BEGIN{printf "%.0f", t / hz / s * 100}')
p_oci_med=$(echo "$p_oci" | median); p_reg_med=$(echo "$p_reg" | median)
p_oci_mbps=$(awk -v s="$p_oci_med" 'BEGIN{printf "%.0f", 1024 / s}')
p_reg_mbps=$(awk -v s="$p_reg_med" 'BEGIN{printf "%.0f", 1024 / s}')
echo "   into ocirelay:${p_oci} s | into distribution:${p_reg} s; ocirelay cpu ${p_cpu}%"

echo "== 8. sending that image from the store to a distribution registry: ocirelay copy vs skopeo copy oci:<store>"
# The sender (the system under test) on core 1, the receiving registry on core 0; each run
# into a registry of its own, so nothing is there already.
s_oci="" s_sko="" s_rss=0
for r in 1 2; do
  for k in 0 1; do
    rp=$(free_port); start_registry "sendreg$r$k" "$rp" "" "$pin_client"
    t0=$(date +%s.%N)
    if (((r + k) % 2 == 0)); then
      $pin_sut /usr/bin/time -f "%M" -o "$work/copy.rss" "$bin" copy --config "$work/mirror/ocirelay.yaml" \
        pushed/run3:v1 "http://127.0.0.1:$rp/sent/img:v1" 2>"$work/copy.log" >/dev/null ||
        { cat "$work/copy.log" >&2; exit 1; }
      s_oci+=" $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}')"
      s_rss=$(awk -v a="$s_rss" -v b="$(cat "$work/copy.rss")" 'BEGIN{print (b > a ? b : a)}')
    else
      $pin_sut skopeo copy --quiet --dest-tls-verify=false "oci:$work/mirror/store:pushed/run3:v1" \
        "docker://127.0.0.1:$rp/sent/img:v1" >/dev/null
      s_sko+=" $(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.3f", b-a}')"
    fi
    kill "$REGISTRY_PID"; wait "$REGISTRY_PID" 2>/dev/null || true
  done
done
s_oci_med=$(echo "$s_oci" | median); s_sko_med=$(echo "$s_sko" | median)
s_rss_mib=$(awk -v k="$s_rss" 'BEGIN{printf "%.1f", k/1024}')
echo "   ocirelay copy:${s_oci} s (peak RSS ${s_rss_mib} MiB) | skopeo copy:${s_sko} s"

echo "== 7. peak RSS of a fresh ocirelay receiving a ${big_mib} MiB blob (one streamed PATCH)"
kill "$OCIRELAY_PID"; wait "$OCIRELAY_PID" 2>/dev/null || true
rm -rf "$work/mirror"
start_ocirelay mirror "$mirror" "$up"
loc=$(curl -fsS -D - -o /dev/null -X POST "http://127.0.0.1:$mirror/v2/pushed/huge/blobs/uploads/" |
      tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
curl -fsS -o /dev/null -X PATCH -H 'Content-Type: application/octet-stream' -T "$work/blobhuge" "http://127.0.0.1:$mirror$loc"
curl -fsS -o /dev/null -X PUT "http://127.0.0.1:$mirror$loc?digest=$huge"
rss_in_kib=$(awk '/VmHWM/{print $2}' "/proc/$OCIRELAY_PID/status")
rss_in_mib=$(awk -v k="$rss_in_kib" 'BEGIN{printf "%.1f", k/1024}')
echo "   peak RSS ${rss_in_mib} MiB"

r1=$(ratio "$m_oci" "$m_ngx"); r1d=$(ratio "$m_oci" "$m_dp"); r1g=$(ratio "$md_oci" "$md_ngx")
r2=$(ratio "$b_oci" "$b_ngx")
r3=$(ratio "$c_mirror" "$c_direct"); r3n=$(ratio "$c_mirror" "$c_cache")
summary=$(cat <<TXT
| # | measure | ocirelay | nginx | distribution proxy | ratio | target | ocirelay cpu |
|---|---|---|---|---|---|---|---|
| 1 | cached manifest GET by tag, 32 conns (req/s) | $m_oci | $m_ngx | $m_dp | ${r1}x nginx, ${r1d}x distribution | >= 0.6x nginx | ${m_oci_cpu}% |
| 1b | cached manifest GET by digest, 32 conns (req/s) | $md_oci | $md_ngx | — | ${r1g}x nginx | >= 0.6x nginx | ${md_oci_cpu}% |
| 2 | cached 256 MiB blob, 4 conns (MiB/s) | $b_oci | $b_ngx | $b_dp | ${r2}x nginx | >= 0.9x nginx | ${b_oci_cpu}% |
| 3 | cold 3-layer pull, pinned (s, skopeo, median of $cold_runs) | $c_mirror | cache $c_cache | direct $c_direct | ${r3}x direct, ${r3n}x nginx cache | <= 1.1x direct | ${c_cpu}% |
| 4 | 20 concurrent cold GETs of one blob: upstream GETs | $h_oci ($h_ok_oci/20 ok) | — | $h_dp ($h_ok_dp/20 ok) | — | = 1 | — |
| 5 | peak RSS streaming a cold ${big_mib} MiB blob (MiB) | $rss_mib | — | — | — | < 64 | — |
| 6 | skopeo push of a 1 GiB image, pinned (MiB/s, median of 3) | $p_oci_mbps | — | registry $p_reg_mbps | $(ratio "$p_oci_mbps" "$p_reg_mbps")x distribution | >= 1.0x distribution | ${p_cpu}% |
| 7 | peak RSS receiving a ${big_mib} MiB blob (MiB) | $rss_in_mib | — | — | — | < 64 | — |
| 8 | sending the 1 GiB image from the store to distribution, pinned (s, best of 2) | copy $s_oci_med (RSS ${s_rss_mib} MiB) | — | skopeo $s_sko_med | $(ratio "$s_oci_med" "$s_sko_med")x skopeo | <= 1.0x skopeo, RSS < 64 | — |
TXT
)
echo
echo "$summary"
if [[ $write_results == 1 ]]; then
  {
    echo
    echo "## $(date -u +%Y-%m-%d) on $(nproc) cores, $(git -C "$repo_root" rev-parse --short HEAD 2>/dev/null || echo unknown), ${duration}s per wrk run"
    echo
    echo "$summary"
  } >> "$here/RESULTS.md"
  echo "appended to bench/RESULTS.md"
fi
