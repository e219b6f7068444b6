// GroupNorm, optionally followed by SiLU, the CUDA twin of kernels/src/group_norm.rs.
// candle-nn's GroupNorm on CUDA is a chain of about ten kernels (mean, subtract, square,
// mean, sqrt, divide, scale, shift, then SiLU) that reads and writes the activation each
// time; here one block per (item, group) reads it three times (mean, variance, normalise)
// and writes it once. Statistics in f32, two-pass (as the CPU kernel).
#include "common.cuh"

#define GN_THREADS 1024

__device__ __forceinline__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
    unsigned int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < blockDim.x / 32 ? shared[lane] : 0.0f;
        for (int o = 16; o > 0; o /= 2) v += __shfl_down_sync(0xffffffffu, v, o);
        if (lane == 0) shared[0] = v;
    }
    __syncthreads();
    float total = shared[0];
    __syncthreads();
    return total;
}

// x, y: [items, channels, spatial]; gamma, beta: f32 [channels]; grid: items * groups blocks.
template <typename T>
__device__ void group_norm(const T* x, const float* gamma, const float* beta, T* y, unsigned int groups, unsigned int channels,
                           unsigned int spatial, float eps, int silu) {
    __shared__ float shared[32];
    unsigned int task = blockIdx.x, group = task % groups, per_channel_group = channels / groups;
    unsigned long long n = (unsigned long long)per_channel_group * spatial, base = (unsigned long long)task * n;
    const T* xg = x + base;
    T* yg = y + base;
    float s = 0.0f;
    for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) s += to_f32<T>(xg[i]);
    float mean = block_sum(s, shared) / (float)n;
    float q = 0.0f;
    for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) {
        float d = to_f32<T>(xg[i]) - mean;
        q += d * d;
    }
    float rstd = rsqrtf(block_sum(q, shared) / (float)n + eps);
    for (unsigned long long i = threadIdx.x; i < n; i += blockDim.x) {
        unsigned int ch = group * per_channel_group + (unsigned int)(i / spatial);
        float scale = rstd * gamma[ch];
        float v = to_f32<T>(xg[i]) * scale + (beta[ch] - mean * scale);
        if (silu) v = v / (1.0f + expf(-v));
        yg[i] = from_f32<T>(v);
    }
}

#define GROUP_NORM(NAME, T) \
    extern "C" __global__ void NAME(const T* x, const float* gamma, const float* beta, T* y, unsigned int groups, unsigned int channels, \
                                    unsigned int spatial, float eps, int silu) { \
        group_norm<T>(x, gamma, beta, y, groups, channels, spatial, eps, silu); \
    }

GROUP_NORM(group_norm_f32, float)
GROUP_NORM(group_norm_f16, __half)
GROUP_NORM(group_norm_bf16, __nv_bfloat16)
