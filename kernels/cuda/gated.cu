// Gated activations over one fused projection [.., 2m] = a | b, the CUDA twin of
// kernels/src/gated.rs: SwiGLU silu(a) * b and GEGLU a * gelu(b) (exact erf GELU), in one
// pass instead of candle's narrow + activation + multiply (three kernels, two temporaries).
// One thread per output element, computed in f32.
#include "common.cuh"

template <typename T, bool SILU_FIRST>
__device__ void gated(const T* x, T* y, unsigned long long rows, unsigned int m) {
    unsigned long long n = rows * m;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n; i += (unsigned long long)gridDim.x * blockDim.x) {
        unsigned long long r = i / m, j = i % m;
        float a = to_f32<T>(x[r * 2 * m + j]), b = to_f32<T>(x[r * 2 * m + m + j]);
        float out = SILU_FIRST ? a / (1.0f + expf(-a)) * b : a * (0.5f * b * (1.0f + erff(b * 0.70710678118654752f)));
        y[i] = from_f32<T>(out);
    }
}

#define GATED(NAME, T, SILU) \
    extern "C" __global__ void NAME(const T* x, T* y, unsigned long long rows, unsigned int m) { gated<T, SILU>(x, y, rows, m); }

GATED(silu_mul_f32, float, true)
GATED(silu_mul_f16, __half, true)
GATED(silu_mul_bf16, __nv_bfloat16, true)
GATED(gelu_mul_f32, float, false)
GATED(gelu_mul_f16, __half, false)
GATED(gelu_mul_bf16, __nv_bfloat16, false)
