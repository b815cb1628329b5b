# bench/lib.sh: what the bench scripts share (sourced, not run): a work directory removed
# on exit with every process started, free ports, waiting for HTTP, CPU pinning and
# accounting, a distribution registry, pushing blobs and images into the registry on
# port $up, random files, medians and ratios.
# shellcheck shell=bash

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
# Pinning for row 3 (empty on a 1-core machine).
pin_sut="" pin_client=""
if (($(nproc) >= 2)); then pin_sut="taskset -c 1"; pin_client="taskset -c 0"; fi
pin() {  # pin CPU PID: moves every thread of PID to CPU (no-op without pinning)
  [[ -n "$pin_sut" ]] && taskset -a -p -c "$1" "$2" >/dev/null
  return 0
}
unpin() { [[ -n "$pin_sut" ]] && taskset -a -p -c "0-$(($(nproc) - 1))" "$1" >/dev/null; return 0; }
cpu_ticks() {  # cpu_ticks PID: user+system clock ticks of the process so far
  awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
cpu_pct() {  # cpu_pct PID TICKS_BEFORE SECONDS: the process's CPU use since, % of one core
  awk -v a="$2" -v b="$(cpu_ticks "$1")" -v s="$3" -v hz="$(getconf CLK_TCK)" \
    'BEGIN{ if (s > 0) printf "%.0f", (b - a) / hz / s * 100; else print "?" }'
}
start_registry() {  # start_registry NAME PORT [proxy-remote-url] [pin]
  local dir="$work/$1"; mkdir -p "$dir/data"
  {
    echo "version: 0.1"
    echo "log: {level: info, accesslog: {disabled: false}}"
    echo "storage: {filesystem: {rootdirectory: $dir/data}, delete: {enabled: true}}"
    echo "http: {addr: 127.0.0.1:$2}"
    [[ -n "${3:-}" ]] && echo "proxy: {remoteurl: $3}"
  } > "$dir/config.yml"
  ${4:-} docker-registry serve "$dir/config.yml" > "$dir/log" 2>&1 &
  pids+=($!)
  REGISTRY_PID=$!
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
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END{print v[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b>0) printf "%.2f", a/b; else print "n/a" }'; }
