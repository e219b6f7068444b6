// Per-row confidence statistics of logits, the CUDA twin of kernels/src/confidence.rs:
// argmax (first on ties), the largest logit, sum_exp = Σ exp(l - max), p1, p2 (a tied
// maximum counted twice) and Σ p log p, in one pass over each row with an online softmax.
// One block per row; each thread scans a strided slice, then the block merges the states.
// Output: 6 doubles per row (argmax, max_logit, sum_exp, p1, p2, neg_entropy).
// The gumbel_* kernels also take the Gumbel-max token under counter-based Philox noise
// (the twin of kernels/src/counter_rng.rs) and write 8 doubles: the 6, the token, its logit.
#include <math_constants.h>
#include "common.cuh"

template <typename A> __device__ __forceinline__ A acc_exp(A x);
template <> __device__ __forceinline__ float acc_exp<float>(float x) { return expf(x); }
template <> __device__ __forceinline__ double acc_exp<double>(double x) { return exp(x); }

// Online softmax state relative to m, plus the top two logits.
template <typename A> struct State {
    A m, s, t;        // max, Σ exp(l - m), Σ exp(l - m)(l - m)
    float v1, v2;     // top-2 logits
    unsigned int arg; // index of v1 (first on ties)
};

// A thread sees its indices in increasing order, so a later equal logit never takes the
// argmax (it becomes v2: a tied maximum counts twice, as a descending sort has it).
template <typename A> __device__ __forceinline__ void push(State<A>& st, float l, unsigned int i) {
    if (l > st.v1) {
        st.v2 = st.v1;
        st.v1 = l;
        st.arg = i;
    } else if (l > st.v2) {
        st.v2 = l;
    }
    if (l == -CUDART_INF_F) return;
    A x = (A)l;
    if (x > st.m) {
        if (st.s > (A)0) {
            A d = st.m - x, scale = acc_exp<A>(d);
            st.t = (st.t + st.s * d) * scale;
            st.s = st.s * scale;
        }
        st.m = x;
    }
    A d = x - st.m, e = acc_exp<A>(d);
    st.s += e;
    st.t += e * d;
}

template <typename A> __device__ __forceinline__ State<A> merge(const State<A>& a, const State<A>& b) {
    State<A> r;
    // top-2: the larger v1 wins (the smaller index on ties); v2 is the best of the rest
    bool a_first = a.v1 > b.v1 || (a.v1 == b.v1 && a.arg <= b.arg);
    const State<A>& w = a_first ? a : b;
    const State<A>& o = a_first ? b : a;
    r.v1 = w.v1;
    r.arg = w.arg;
    r.v2 = fmaxf(w.v2, o.v1);
    // softmax sums
    if (a.s == (A)0) { r.m = b.m; r.s = b.s; r.t = b.t; return r; }
    if (b.s == (A)0) { r.m = a.m; r.s = a.s; r.t = a.t; return r; }
    r.m = a.m > b.m ? a.m : b.m;
    A da = a.m - r.m, db = b.m - r.m;
    A ea = acc_exp<A>(da), eb = acc_exp<A>(db);
    r.s = a.s * ea + b.s * eb;
    r.t = (a.t + a.s * da) * ea + (b.t + b.s * db) * eb;
    return r;
}

// Philox4x32-10, as kernels/src/counter_rng.rs.
__device__ __forceinline__ void philox4x32_10(unsigned int c[4], unsigned int k0, unsigned int k1) {
    for (int round = 0; round < 10; ++round) {
        if (round > 0) { k0 += 0x9E3779B9u; k1 += 0xBB67AE85u; }
        unsigned int hi0 = __umulhi(0xD2511F53u, c[0]), lo0 = 0xD2511F53u * c[0];
        unsigned int hi1 = __umulhi(0xCD9E8D57u, c[2]), lo1 = 0xCD9E8D57u * c[2];
        unsigned int n0 = hi1 ^ c[1] ^ k0, n2 = hi0 ^ c[3] ^ k1;
        c[0] = n0; c[1] = lo1; c[2] = n2; c[3] = lo0;
    }
}

// The uniform in (0, 1) for (row, index) under key: counter [index, row, 0, 0].
__device__ __forceinline__ double counter_uniform(unsigned long long key, unsigned int row, unsigned int index) {
    unsigned int c[4] = {index, row, 0u, 0u};
    philox4x32_10(c, (unsigned int)key, (unsigned int)(key >> 32));
    unsigned long long bits = ((unsigned long long)c[0] << 32) | c[1];
    return ((double)(bits >> 11) + 0.5) * (1.0 / 9007199254740992.0);
}

// The best Gumbel score so far (the first index on ties).
struct Pick {
    double score;
    unsigned int idx;
    float logit;
};

__device__ __forceinline__ Pick better(const Pick& a, const Pick& b) {
    if (b.score > a.score || (b.score == a.score && b.idx < a.idx)) return b;
    return a;
}

// One block per row; with GUMBEL, also the Gumbel-max token under Philox noise keyed by
// `key`, row `r` drawing as canvas row `row_ids[r]`.
template <typename T, typename A, bool GUMBEL>
__device__ void confidence_rows(const T* logits, const unsigned int* row_ids, double* out, unsigned int rows, unsigned int vocab,
                                unsigned long long key, double temperature) {
    extern __shared__ unsigned char smem[];
    State<A>* states = reinterpret_cast<State<A>*>(smem);
    Pick* picks = reinterpret_cast<Pick*>(smem + blockDim.x * sizeof(State<A>));
    unsigned int row = blockIdx.x;
    if (row >= rows) return;
    const T* x = logits + (size_t)row * vocab;
    State<A> st;
    st.m = -(A)CUDART_INF; st.s = (A)0; st.t = (A)0;
    st.v1 = -CUDART_INF_F; st.v2 = -CUDART_INF_F; st.arg = 0xffffffffu;
    Pick pk;
    pk.score = -CUDART_INF; pk.idx = 0xffffffffu; pk.logit = vocab > 0 ? to_f32<T>(x[0]) : CUDART_NAN_F;
    unsigned int rid = GUMBEL ? row_ids[row] : 0u;
    for (unsigned int i = threadIdx.x; i < vocab; i += blockDim.x) {
        float l = to_f32<T>(x[i]);
        push<A>(st, l, i);
        if (GUMBEL) {
            double u = counter_uniform(key, rid, i);
            double score = (double)l - temperature * log(-log(u));
            if (score > pk.score) { pk.score = score; pk.idx = i; pk.logit = l; }
        }
    }
    states[threadIdx.x] = st;
    if (GUMBEL) picks[threadIdx.x] = pk;
    __syncthreads();
    for (unsigned int stride = blockDim.x / 2; stride > 0; stride /= 2) {
        if (threadIdx.x < stride) {
            states[threadIdx.x] = merge<A>(states[threadIdx.x], states[threadIdx.x + stride]);
            if (GUMBEL) picks[threadIdx.x] = better(picks[threadIdx.x], picks[threadIdx.x + stride]);
        }
        __syncthreads();
    }
    if (threadIdx.x != 0) return;
    State<A> r = states[0];
    const unsigned int width = GUMBEL ? 8 : 6;
    double* o = out + (size_t)row * width;
    if (GUMBEL) {
        Pick p = picks[0];
        // nothing beat -inf (an all -inf row): token 0, as the CPU kernel
        o[6] = (double)(p.idx == 0xffffffffu ? 0u : p.idx);
        o[7] = (double)(p.idx == 0xffffffffu ? to_f32<T>(x[0]) : p.logit);
    }
    if (r.s == (A)0) {  // all -inf: NaN as torch's softmax
        o[0] = 0.0; o[1] = -CUDART_INF; o[2] = 0.0; o[3] = CUDART_NAN; o[4] = CUDART_NAN; o[5] = CUDART_NAN;
        return;
    }
    A p1 = (A)1 / r.s;
    A p2 = r.v2 == -CUDART_INF_F ? (A)0 : acc_exp<A>((A)r.v2 - r.m) / r.s;
    A ln_s = sizeof(A) == 4 ? (A)logf((float)r.s) : (A)log((double)r.s);
    o[0] = (double)(r.arg == 0xffffffffu ? 0u : r.arg);
    o[1] = (double)r.m;
    o[2] = (double)r.s;
    o[3] = (double)p1;
    o[4] = (double)p2;
    o[5] = (double)(r.t / r.s - ln_s);
}

#define CONFIDENCE(NAME, T, A) \
    extern "C" __global__ void NAME(const T* logits, double* out, unsigned int rows, unsigned int vocab) { \
        confidence_rows<T, A, false>(logits, nullptr, out, rows, vocab, 0ull, 0.0); \
    }
#define GUMBEL(NAME, T, A) \
    extern "C" __global__ void NAME(const T* logits, const unsigned int* row_ids, double* out, unsigned int rows, unsigned int vocab, \
                                    unsigned long long key, double temperature) { \
        confidence_rows<T, A, true>(logits, row_ids, out, rows, vocab, key, temperature); \
    }

CONFIDENCE(confidence_f32_acc32, float, float)
CONFIDENCE(confidence_f32_acc64, float, double)
CONFIDENCE(confidence_f16_acc32, __half, float)
CONFIDENCE(confidence_f16_acc64, __half, double)
CONFIDENCE(confidence_bf16_acc32, __nv_bfloat16, float)
CONFIDENCE(confidence_bf16_acc64, __nv_bfloat16, double)
GUMBEL(gumbel_f32_acc32, float, float)
GUMBEL(gumbel_f32_acc64, float, double)
GUMBEL(gumbel_f16_acc32, __half, float)
GUMBEL(gumbel_f16_acc64, __half, double)
GUMBEL(gumbel_bf16_acc32, __nv_bfloat16, float)
GUMBEL(gumbel_bf16_acc64, __nv_bfloat16, double)
