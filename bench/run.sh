#!/usr/bin/env bash
# bench/run.sh: measures ocirelay in ONE run on this machine against nginx serving the same
# bytes with sendfile (the physical limit) and the distribution registry in proxy mode, and
# prints ratios. Not a test: figures vary with the machine; bench/RESULTS.md records them.
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
for tool in docker-registry nginx wrk skopeo curl sha256sum; do
  command -v "$tool" >/dev/null || { echo "bench: $tool not installed (run scripts/setup.sh test)" >&2; exit 2; }
done
[[ -x "$bin" ]] || { echo "bench: $bin not built" >&2; exit 2; }

work=$(mktemp -d /tmp/ocirelay-bench.XXXXXX)
chmod 755 "$work"  # nginx workers run unprivileged and must read the static copy
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

used_ports=" "
free_port() {  # a port nobody listens on, chosen at run time
  local p
  while :; do
    p=$((20000 + RANDOM % 40000))
    [[ "$used_ports" == *" $p "* ]] && continue
    ss -ltnH "sport = :$p" | grep -q . || { used_ports+="$p "; echo "$p"; return; }
  done
}
wait_http() {  # wait_http URL: poll until it answers, 30 s at most
  local deadline=$((SECONDS + 30))
  until curl -fso /dev/null "$1"; do
    ((SECONDS < deadline)) || {
      echo "bench: $1 did not come up; last log lines:" >&2
      tail -n 5 "$work"/*/log >&2 2>/dev/null || true
      exit 1
    }
    sleep 0.1
  done
}
start_registry() {  # start_registry NAME PORT [proxy-remote-url]
  local dir="$work/$1"; mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: info, accesslog: {disabled: false}}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$2}"
    [[ -n "${3:-}" ]] && echo "proxy: {remoteurl: $3}"
  } > "$dir/config.yml"
  docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$2/v2/"
}
start_ocirelay() {  # start_ocirelay NAME PORT UPSTREAM_PORT
  local dir="$work/$1"; mkdir -p "$dir/store"
  cat > "$dir/ocirelay.yaml" <<YAML
listen: 127.0.0.1:$2
store: {path: $dir/store}
upstreams:
  - {name: bench.local, url: "http://127.0.0.1:$3", default: true, tag_ttl: 1h}
log: {level: warn, format: text}
YAML
  "$bin" serve --config "$dir/ocirelay.yaml" > "$dir/log" 2>&1 &
  pids+=($!)
  OCIRELAY_PID=$!
  wait_http "http://127.0.0.1:$2/v2/"
}

sha() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }
push_blob() {  # push_blob REPO FILE: monolithic upload to the upstream, prints the digest
  local d loc sep
  d=$(sha "$2")
  loc=$(curl -fsS -D - -o /dev/null -X POST "http://127.0.0.1:$up/v2/$1/blobs/uploads/" |
        tr -d '\r' | awk 'tolower($1)=="location:"{print $2}')
  [[ "$loc" == http* ]] || loc="http://127.0.0.1:$up$loc"
  sep='?'; [[ "$loc" == *\?* ]] && sep='&'
  curl -fsS -X PUT -H 'Content-Type: application/octet-stream' -T "$2" "$loc${sep}digest=$d" >/dev/null
  echo "$d"
}
push_image() {  # push_image REPO TAG LAYER_FILE...: config + layers + OCI manifest
  local repo=$1 tag=$2; shift 2
  local cfg="$work/cfg-$repo-$tag.json"; cfg=${cfg//\//_}; cfg="$work/$(basename "$cfg")"
  printf '{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"bench":"%s"}' "$RANDOM$RANDOM" > "$cfg"
  local cd; cd=$(push_blob "$repo" "$cfg")
  local layers="" l d
  for l in "$@"; do
    d=$(push_blob "$repo" "$l")
    layers+="${layers:+,}{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"$d\",\"size\":$(stat -c %s "$l")}"
  done
  local m="$work/manifest-${repo//\//_}-$tag.json"
  printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s},"layers":[%s]}' \
    "$cd" "$(stat -c %s "$cfg")" "$layers" > "$m"
  curl -fsS -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" \
    --data-binary @"$m" "http://127.0.0.1:$up/v2/$repo/manifests/$tag" >/dev/null
}
rand_file() { head -c "$(($2 * 1024 * 1024))" /dev/urandom > "$1"; }

wrk_rps() {  # wrk_rps CONNS URL -> requests/s
  wrk -t2 -c"$1" -d"${duration}s" -H "Accept: application/vnd.oci.image.manifest.v1+json" "$2" |
    awk '/Requests\/sec/{print $2}'
}
wrk_mbps() {  # wrk_mbps CONNS URL -> MiB/s transferred
  wrk -t2 -c"$1" -d"${duration}s" --timeout 60s "$2" | awk '/Transfer\/sec/{
      v=$2; u=v; sub(/[0-9.]+/,"",u); sub(/[A-Za-z]+/,"",v);
      f=(u=="GB")?1024:(u=="MB")?1:(u=="KB")?1/1024:1/1048576; printf "%.1f\n", v*f }'
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
count_blob_gets() {  # count_blob_gets LOG DIGEST: upstream GETs of that blob in the access log
  grep -c "\"GET /v2/[^ ]*/blobs/$2 " "$1" || true
}

echo "== setting up (upstream registry, data) in $work"
up=$(free_port); start_registry upstream "$up"
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
wait_http "http://127.0.0.1:$ngx/v2/bench/app/manifests/v1"

echo "== 1. cached manifest GET by tag, 32 connections, ${duration}s each"
curl -fso /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$mirror/v2/bench/app/manifests/v1"
curl -fso /dev/null -H "Accept: application/vnd.oci.image.manifest.v1+json" "http://127.0.0.1:$dproxy/v2/bench/app/manifests/v1"
m_ngx=$(wrk_rps 32 "http://127.0.0.1:$ngx/v2/bench/app/manifests/v1")
m_oci=$(wrk_rps 32 "http://127.0.0.1:$mirror/v2/bench/app/manifests/v1")
m_dp=$(wrk_rps 32 "http://127.0.0.1:$dproxy/v2/bench/app/manifests/v1")
echo "   nginx $m_ngx req/s | ocirelay $m_oci req/s | distribution proxy $m_dp req/s"

echo "== 2. cached 256 MiB blob, 4 connections"
curl -fso /dev/null "http://127.0.0.1:$mirror/v2/bench/big/blobs/$big_digest"
curl -fso /dev/null "http://127.0.0.1:$dproxy/v2/bench/big/blobs/$big_digest"
b_ngx=$(wrk_mbps 4 "http://127.0.0.1:$ngx/v2/bench/big/blobs/$big_digest")
b_oci=$(wrk_mbps 4 "http://127.0.0.1:$mirror/v2/bench/big/blobs/$big_digest")
b_dp=$(wrk_mbps 4 "http://127.0.0.1:$dproxy/v2/bench/big/blobs/$big_digest")
echo "   nginx $b_ngx MiB/s | ocirelay $b_oci MiB/s | distribution proxy $b_dp MiB/s"

echo "== 3. cold pull of a 3-layer image (skopeo): through the mirror vs straight from upstream"
pull_secs() {  # pull_secs PORT REPO
  local t0 t1; rm -rf "$work/pull"; t0=$(date +%s.%N)
  skopeo copy --quiet --src-tls-verify=false "docker://127.0.0.1:$1/$2:v1" "dir:$work/pull" >/dev/null
  t1=$(date +%s.%N); awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.3f", b-a}'
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
directs="" mirrors=""
for r in $(seq "$cold_runs"); do
  # Alternate which goes first: the second reader finds the upstream's page cache warm.
  if ((r % 2)); then
    directs+=" $(pull_secs "$up" "bench/cold$r")"; mirrors+=" $(pull_secs "$mirror" "bench/cold$r")"
  else
    mirrors+=" $(pull_secs "$mirror" "bench/cold$r")"; directs+=" $(pull_secs "$up" "bench/cold$r")"
  fi
done
c_direct=$(echo "$directs" | median)
c_mirror=$(echo "$mirrors" | median)
echo "   direct:${directs} s | via ocirelay (cold):${mirrors} s | medians ${c_direct} / ${c_mirror}"

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

r1=$(ratio "$m_oci" "$m_ngx"); r1d=$(ratio "$m_oci" "$m_dp")
r2=$(ratio "$b_oci" "$b_ngx")
r3=$(ratio "$c_mirror" "$c_direct")
summary=$(cat <<TXT
| # | measure | ocirelay | nginx | distribution proxy | ratio | target |
|---|---|---|---|---|---|---|
| 1 | cached manifest GET by tag, 32 conns (req/s) | $m_oci | $m_ngx | $m_dp | ${r1}x nginx, ${r1d}x distribution | >= 0.5x nginx |
| 2 | cached 256 MiB blob, 4 conns (MiB/s) | $b_oci | $b_ngx | $b_dp | ${r2}x nginx | >= 0.9x nginx |
| 3 | cold 3-layer pull via mirror vs direct (s, skopeo, median of $cold_runs) | $c_mirror | — | direct $c_direct | ${r3}x direct | <= 1.1x |
| 4 | 20 concurrent cold GETs of one blob: upstream GETs | $h_oci ($h_ok_oci/20 ok) | — | $h_dp ($h_ok_dp/20 ok) | — | = 1 |
| 5 | peak RSS streaming a cold ${big_mib} MiB blob (MiB) | $rss_mib | — | — | — | < 64 |
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
