#!/usr/bin/env bash
# The full `cuda` release build, run on demand (it takes ~20 minutes on 2 cores, most of
# it candle's own kernels, so CI compiles only stipple's kernels to PTX): sets up the
# toolchain (tools/cuda-toolchain.sh), builds `stipple` with `--features cuda`, and checks
# that the binary starts and, on a machine without a GPU, refuses `--device cuda:0` with
# one clear error instead of a panic. The binary is left in target/release/stipple.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(tools/cuda-toolchain.sh)"
cargo build --release --features cuda "$@"
BIN=target/release/stipple
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  "$BIN" --version
  echo "a GPU is present: run the device checks on it"
  exit 0
fi
# no GPU: the binary is linked against the driver's libraries (libcuda.so.1, cuBLAS,
# cuRAND); the link stubs stand in for them so that it starts
export LD_LIBRARY_PATH="$STIPPLE_CUDA_STUBS:$CUDA_HOME/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
"$BIN" --version
out=$("$BIN" --device cuda:0 text "hi" 2>&1) && status=0 || status=$?
echo "$out"
if [ "$status" -ne 2 ] || ! grep -q -- "--device cuda:0:" <<<"$out" || grep -q panicked <<<"$out"; then
  echo "expected one clear error (exit status 2) for --device cuda:0 without a GPU, got status $status" >&2
  exit 1
fi
echo "ok: built with CUDA; without a GPU, --device cuda:0 gives a clear error"
