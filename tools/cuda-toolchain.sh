#!/usr/bin/env bash
# A CUDA 13.0 toolchain for `cargo build --features cuda` on a machine with no system CUDA
# and no GPU: NVIDIA's PyPI wheels (nvcc, nvvm, crt, runtime, cccl) pinned to CUDA 13.0 in
# .venv-cuda/, plus link-time stub libraries (libcuda, libcublas, libcublasLt, libcurand,
# libnvrtc) generated from cudarc's own bindings, so the binary links without a driver.
# Every stub function returns CUDA_ERROR_STUB_LIBRARY: a binary linked against the stubs
# is the same as one linked against the real libraries, and on a machine with a GPU the
# driver's libcuda.so.1 and the toolkit's libraries are the ones loaded at run time.
#
# Usage (from the repository root):
#   eval "$(tools/cuda-toolchain.sh)"          # installs on first use, prints the exports
#   cargo build --release --features cuda
#   tools/cuda-toolchain.sh --check-ptx        # compiles every kernels/cuda/*.cu to PTX (CI)
#
# With a system CUDA 13.0 toolkit instead: export CUDA_HOME=/usr/local/cuda
# PATH=$CUDA_HOME/bin:$PATH CUDA_COMPUTE_CAP=90 and build; no stubs are needed when the
# driver is installed. Why 13.0: the lent GPU machines run driver 580 (CUDA 13.0), and
# PTX from a newer nvcc may be refused by it.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${STIPPLE_CUDA_VENV:-$PWD/.venv-cuda}
CAP=${CUDA_COMPUTE_CAP:-90}

install_wheels() {
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV" >&2
  # nvvm pinned too: nvcc would pull the newest otherwise
  "$VENV/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-nvvm==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-runtime==13.0.96 nvidia-cuda-cccl==13.0.85 >&2
}

cuda_home() {
  "$VENV/bin/python" -c 'import nvidia.cu13 as m; print(list(m.__path__)[0])'
}

# Stub libraries with the real SONAMEs, from the function list of cudarc's bindings.
make_stubs() {
  local out=$1 cudarc
  cargo fetch --quiet >&2
  cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* 2>/dev/null | sort | tail -1)
  [ -n "$cudarc" ] || { echo "cudarc's sources are not in the cargo registry (cargo fetch failed?)" >&2; exit 1; }
  mkdir -p "$out"
  stub() { # module soname file versioned
    local d; d=$(mktemp -d)
    grep -ohE "pub unsafe fn [A-Za-z0-9_]+\(" "$cudarc/src/$1/sys/mod.rs" | sed -E 's/pub unsafe fn (.*)\(/\1/' | sort -u \
      | awk '{print "int " $1 "(void) { return 34; }"}' > "$d/s.c"
    local vs=""
    if [ "$4" = 1 ]; then echo "$2 { global: *; };" > "$d/v.map"; vs="-Wl,--version-script=$d/v.map"; fi
    gcc -shared -fPIC -O1 -Wl,-soname,"$2" $vs -o "$out/$3" "$d/s.c"
    ln -sfn "$3" "$out/$2"
    rm -rf "$d"
  }
  stub driver libcuda.so.1 libcuda.so 0
  stub cublas libcublas.so.13 libcublas.so 1
  stub cublaslt libcublasLt.so.13 libcublasLt.so 1
  stub curand libcurand.so.10 libcurand.so 1
  stub nvrtc libnvrtc.so.13 libnvrtc.so 1
}

[ -x "$VENV/bin/python" ] && "$VENV/bin/python" -c 'import nvidia.cu13' 2>/dev/null || install_wheels
CU=$(cuda_home)
# the wheels ship no unversioned names
[ -e "$CU/lib/libcudart.so" ] || ln -sfn libcudart.so.13 "$CU/lib/libcudart.so"
STUBS=$VENV/stubs
[ -e "$STUBS/libcuda.so" ] || make_stubs "$STUBS"

if [ "${1:-}" = "--check-ptx" ]; then
  shopt -s nullglob
  n=0
  for cu in kernels/cuda/*.cu; do
    "$CU/bin/nvcc" -ptx -O3 -std=c++17 --expt-relaxed-constexpr -arch="sm_$CAP" -o /dev/null "$cu"
    echo "ok: $cu (sm_$CAP)"
    n=$((n + 1))
  done
  echo "$n kernel file(s) compiled to PTX with $("$CU/bin/nvcc" --version | tail -2 | head -1)"
  exit 0
fi

cat <<EOF
export CUDA_HOME=$CU
export PATH=$CU/bin:\$PATH
export CUDA_COMPUTE_CAP=$CAP
export CUDARC_CUDA_VERSION=13000
export LIBRARY_PATH=$CU/lib:$STUBS\${LIBRARY_PATH:+:\$LIBRARY_PATH}
# run time without a GPU (the binary starts and reports the missing device); on a GPU
# machine leave the stubs off LD_LIBRARY_PATH so the driver's libcuda.so.1 is loaded
export STIPPLE_CUDA_STUBS=$STUBS
EOF
