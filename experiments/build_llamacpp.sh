#!/usr/bin/env bash
# Build llama.cpp's llama-bench and llama-quantize for decode_vs_llamacpp.py, from the llama-cpp-python sdist
# on PyPI (it vendors llama.cpp's source) into runs/llamacpp/ (git ignores it: no llama.cpp code committed).
#
#   bash experiments/build_llamacpp.sh            # prints the folder holding the two programs
#
# Release build, native CPU flags (GGML_NATIVE: AVX-512 BF16 where the CPU has it), no OpenMP (one thread is
# what the comparison uses). Needs cmake, a C++ compiler and pip; LLAMA_CPP_PYTHON_VERSION picks the sdist.
set -euo pipefail
VERSION=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
DIR="$ROOT/runs/llamacpp"
PY=${PYTHON:-$ROOT/.venv/bin/python}
[[ -x "$PY" ]] || PY=python3
mkdir -p "$DIR"
SDIST="$DIR/llama_cpp_python-$VERSION.tar.gz"
if [[ ! -f "$SDIST" ]]; then
    "$PY" -m pip download --no-deps --no-binary :all: "llama-cpp-python==$VERSION" -d "$DIR" >&2
fi
SRC="$DIR/llama_cpp_python-$VERSION/vendor/llama.cpp"
[[ -d "$SRC" ]] || tar -xzf "$SDIST" -C "$DIR"
cmake -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DGGML_OPENMP=OFF \
      -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF >&2
cmake --build "$SRC/build" --target llama-bench llama-quantize -j "$(nproc)" >&2
echo "$SRC/build/bin"
