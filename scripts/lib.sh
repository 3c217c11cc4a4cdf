# Shared by the scripts: the repo root, package installation, configuring and
# building. Sourced, never run.
ONCE_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# ccache: let clones in other folders share cached objects.
export CCACHE_BASEDIR="$ONCE_ROOT"
export CCACHE_NOHASHDIR=1

# Debian packages the build, the tests and the benchmarks need.
ONCE_PACKAGES=(
  build-essential cmake ccache pkg-config git curl
  libboost1.81-dev libboost-json1.81-dev libabsl-dev libsqlite3-dev
  googletest libgmock-dev libgtest-dev libbenchmark-dev
  libspdlog-dev libxxhash-dev
  python3 sqlite3 spin fio
)

# Installs whichever of ONCE_PACKAGES are missing; silent when none is.
once_install_packages() {
  local missing=()
  for p in "${ONCE_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "installing: ${missing[*]}"
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# once_build DIR BUILD_TYPE [cmake args...]: configures (once) and builds
# everything, or only the targets named in ONCE_TARGETS (space-separated).
once_build() {
  local dir=$1 type=$2
  shift 2
  if [ ! -f "$dir/CMakeCache.txt" ]; then
    cmake -S "$ONCE_ROOT" -B "$dir" -DCMAKE_BUILD_TYPE="$type" "$@" >/dev/null
  fi
  local targets=()
  for t in ${ONCE_TARGETS:-}; do targets+=(--target "$t"); done
  cmake --build "$dir" -j "$(nproc)" "${targets[@]}"
}
