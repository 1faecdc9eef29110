#!/usr/bin/env bash
# Checks lcross's control vectors against llama.cpp itself (issue 26, point 4). Opt-in, not part of CI.
#
# 1. Builds llama-completion, llama-debug and llama-cvector-generator (CPU) from the llama.cpp tree vendored in the
#    llama-cpp-python sdist, into a cache folder: about 25 minutes on 2 cores the first time; a second run finds the
#    binaries and does not rebuild.
# 2. Runs scripts/check_llamacpp.py: writes a sentiment vector with lcross for the offline Gemma-3-270M GGUF, and
#    compares llama.cpp's last-token logits under `--control-vector-scaled FILE:SCALE --control-vector-layer-range L L`
#    with lcross.steer at blocks L-1, L and L+1 (KL and the cosine of the logit change), for one layer and for several;
#    exits 1 unless block L matches best and within the tolerance (see that file), and writes its tables to --out.
#
#   bash scripts/check_llamacpp.sh [--build-dir DIR] [--sdist FILE] [--out DIR] [--build-only] [-- check.py options]
#
#   --build-dir DIR  where llama.cpp is unpacked and built (default $LCROSS_CACHE/llamacpp/llama-cpp-python-VERSION,
#                    $LCROSS_CACHE defaulting to ~/.cache/lcross).
#   --sdist FILE     the llama-cpp-python sdist (default: fetched with `pip download --no-binary :all: --no-deps
#                    llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION` into the build folder's parent).
#   --out DIR        where the check writes its results (default results/llamacpp_check).
#   --build-only     build (or find) the binaries and stop.
#
# Environment: LLAMA_CPP_PYTHON_VERSION (default 0.3.36, which vendors ggml-org/llama.cpp@0c1e57098), JOBS (default 2),
# NICE (default 19: the build yields the cores to anything else running).
set -euo pipefail
cd "$(dirname "$0")/.."
version="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
cache="${LCROSS_CACHE:-$HOME/.cache/lcross}/llamacpp"
build_dir="$cache/llama-cpp-python-$version"
sdist=""
out="results/llamacpp_check"
build_only=0
while [[ $# -gt 0 ]]; do
  case "$1" in
    --build-dir) build_dir="$2"; shift 2 ;;
    --sdist) sdist="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --build-only) build_only=1; shift ;;
    --) shift; break ;;
    *) echo "error: unknown option $1 (see the comment at the top of $0)" >&2; exit 2 ;;
  esac
done
targets=(llama-completion llama-debug llama-cvector-generator)
bin="$build_dir/build/bin"

built() {
  local target
  for target in "${targets[@]}"; do [[ -x "$bin/$target" ]] || return 1; done
}

if built; then
  echo "llama.cpp binaries found in $bin (cached; delete $build_dir to rebuild)"
else
  for tool in cmake make c++ tar; do
    command -v "$tool" >/dev/null || { echo "error: building llama.cpp needs $tool on PATH" >&2; exit 1; }
  done
  mkdir -p "$build_dir"
  if [[ -z "$sdist" ]]; then
    sdist="$(dirname "$build_dir")/llama_cpp_python-$version.tar.gz"
    if [[ ! -f "$sdist" ]]; then
      echo "fetching the llama-cpp-python $version sdist (source only: nothing is installed)"
      .venv/bin/python -m pip download -q --no-binary :all: --no-deps "llama-cpp-python==$version" \
        -d "$(dirname "$sdist")"
    fi
  fi
  [[ -f "$sdist" ]] || { echo "error: no sdist at $sdist" >&2; exit 1; }
  if [[ ! -f "$build_dir/src/CMakeLists.txt" ]]; then
    rm -rf "$build_dir/src.partial"
    mkdir -p "$build_dir/src.partial"
    tar xzf "$sdist" -C "$build_dir/src.partial" --strip-components=3 "llama_cpp_python-$version/vendor/llama.cpp"
    tar xzf "$sdist" -C "$build_dir" --strip-components=1 "llama_cpp_python-$version/CHANGELOG.md"
    # Renamed into place only when whole: an interrupted unpack is redone, never built half.
    mv "$build_dir/src.partial" "$build_dir/src"
  fi
  # The sdist has no llama.cpp git history, so the binaries report commit "unknown"; the commit is the one
  # llama-cpp-python's CHANGELOG names for this version.
  commit="$(awk -v v="## [$version]" '$0 == v {found=1; next} found && /llama.cpp@/ {sub(/.*llama.cpp@/, ""); print; exit}' \
    "$build_dir/CHANGELOG.md")"
  echo "${commit:-unknown}" >"$build_dir/LLAMA_CPP_COMMIT"
  echo "building ${targets[*]} (llama.cpp ${commit:-unknown}, CPU) in $build_dir/build; about 25 minutes on 2 cores"
  # No CURL/OpenSSL (the check never downloads), no server/tests; static libraries so the binaries run anywhere.
  nice -n "${NICE:-19}" cmake -S "$build_dir/src" -B "$build_dir/build" -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
    -DGGML_NATIVE=ON >"$build_dir/cmake.log" 2>&1 || { tail -30 "$build_dir/cmake.log" >&2; exit 1; }
  nice -n "${NICE:-19}" cmake --build "$build_dir/build" -j "${JOBS:-2}" --target "${targets[@]}" \
    >"$build_dir/build.log" 2>&1 || { tail -30 "$build_dir/build.log" >&2; exit 1; }
  built || { echo "error: the build finished without ${targets[*]} in $bin" >&2; exit 1; }
fi
[[ "$build_only" == 1 ]] && exit 0

exec .venv/bin/python scripts/check_llamacpp.py --bin "$bin" --commit "$(cat "$build_dir/LLAMA_CPP_COMMIT")" \
  --version "$version" --out "$out" "$@"
