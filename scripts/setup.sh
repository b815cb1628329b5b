#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) and either serves or tests ocirelay.
#   ./scripts/setup.sh serve [ocirelay serve flags...]   build, then run the mirror
#   ./scripts/setup.sh test                              build everything, run all tests and
#                                                        the fuzzers (scripts/fuzz.sh)
set -euo pipefail

mode="${1:-}"
case "$mode" in
  serve|test) shift ;;
  *)
    echo "usage: $0 serve [ocirelay serve flags...] | $0 test" >&2
    exit 2
    ;;
esac

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

build_packages=(cmake ninja-build g++ pkg-config libboost1.81-dev libssl-dev
  libcurl4-openssl-dev liblmdb-dev libzstd-dev libspdlog-dev nlohmann-json3-dev
  libyaml-cpp-dev libcli11-dev libpsl-dev publicsuffix libcrypt-dev libgtest-dev libgmock-dev
  libre2-dev tzdata ca-certificates)
# The integration tests drive real registries and clients; under CI=true a test whose tool
# is missing fails (tests/support/requirements.h). containerd brings ctr; podman and docker.io
# (its dockerd, started by the tests on a socket of their own) log in and push; apache2-utils
# htpasswd, bsdutils `script` (a pseudo-terminal for the warm progress bars); nginx-light
# wrk and time are for bench/; prometheus brings promtool, which checks conf/alerts.yml.
# The fuzz targets need clang and its runtimes (libclang-rt-14-dev holds libFuzzer and the
# sanitizers for clang 14).
test_packages=(docker-registry skopeo containerd apache2-utils bsdutils curl openssl
  podman docker.io nginx-light wrk time clang libclang-rt-14-dev prometheus)

packages=("${build_packages[@]}")
if [[ "$mode" == test ]]; then
  packages+=("${test_packages[@]}")
fi

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if ((${#missing[@]} > 0)); then
  if [[ $EUID -ne 0 ]]; then
    echo "setup.sh: missing packages (${missing[*]}); run as root to install them" >&2
    exit 1
  fi
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update
  apt-get install -y --no-install-recommends "${packages[@]}"
fi

cmake -G Ninja -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo
if [[ "$mode" == serve ]]; then
  cmake --build build --target ocirelay
  # The default config keeps its store in /var/lib/ocirelay; --store elsewhere overrides.
  mkdir -p /var/lib/ocirelay 2>/dev/null || true
  exec build/cli/ocirelay serve "$@"
fi

cmake --build build
ctest --test-dir build --output-on-failure
# Every fuzz target for a bounded time on its seed corpus (scripts/fuzz.sh).
exec scripts/fuzz.sh
