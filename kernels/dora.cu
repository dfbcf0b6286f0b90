// kernels/dora.cu: the DoRA step's own kernels (chapter 12): the per-row factors of the forward (`ql_dora_scale`),
// the magnitude gradient's reduction over two [M, N] tensors (`ql_column_dots`) and its last step (`ql_dora_mgrad`).
// Each replaces a handful of PyTorch launches on [out]- and [out, r]-sized tensors, or a pass over [M, N].
#include "hqq_layout.cuh"

template <typename T> __device__ __forceinline__ float ql_get(const T* p);   // one element, widened to fp32
template <> __device__ __forceinline__ float ql_get<float>(const float* p) { return *p; }
template <> __device__ __forceinline__ float ql_get<ql_bf16>(const ql_bf16* p) { return QT<ql_bf16>::load(p->bits); }
template <> __device__ __forceinline__ float ql_get<ql_f16>(const ql_f16* p) { return QT<ql_f16>::load(p->bits); }
template <typename T> __device__ __forceinline__ void ql_put(T* p, float f);   // one element, rounded to nearest even
template <> __device__ __forceinline__ void ql_put<float>(float* p, float f) { *p = f; }
template <> __device__ __forceinline__ void ql_put<ql_bf16>(ql_bf16* p, float f) { p->bits = QT<ql_bf16>::store(f); }
template <> __device__ __forceinline__ void ql_put<ql_f16>(ql_f16* p, float f) { p->bits = QT<ql_f16>::store(f); }

// ---- ql_dora_scale: one thread per output row o, from the norm's pieces to the factors the step uses ----
// NORM: n_o = sqrt(max(w_sq_o + sum_j B_oj T_oj, eps)) with T_o = 2 s (W A^T)_o + s^2 (B A A^T)_o (chapter 12's
// `row_norm`, in float32; W A^T read from AW = A W^T [r, out], the small-M matmul's output), else n_o is read. Then c_o = m_o / n_o, raised to `tiny` where |c_o| < tiny (`_device_scale`),
// and, rounded to T as PyTorch rounds its products: cx_o = c_o, scx_o = s cx_o, Bc_o = B_o cx_o. A A^T ([r, r], float32)
// sits in shared memory (r <= 64).
template <typename T, bool NORM>
__global__ void __launch_bounds__(256) ql_dora_scale(
    const T* __restrict__ AW, const T* __restrict__ B, const float* __restrict__ AAt, const float* __restrict__ w_sq,
    const T* __restrict__ m, float* __restrict__ n, float* __restrict__ c, T* __restrict__ cx, T* __restrict__ scx,
    T* __restrict__ Bc, int out, int r, float s, float eps, float tiny)
{
    extern __shared__ float aat[];
    if (NORM) {
        for (int i = threadIdx.x; i < r * r; i += blockDim.x) aat[i] = AAt[i];
        __syncthreads();
    }
    const int o = blockIdx.x * blockDim.x + threadIdx.x;
    if (o >= out) return;
    const T* Bo = B + static_cast<long long>(o) * r;
    float no;
    if (NORM) {
        float sq = w_sq[o];
        for (int j = 0; j < r; ++j) {
            float t = 0.f;
            for (int k = 0; k < r; ++k) t = fmaf(ql_get(Bo + k), aat[k * r + j], t);
            sq = fmaf(fmaf(2.f * s, ql_get(AW + static_cast<long long>(j) * out + o), s * s * t), ql_get(Bo + j), sq);
        }
        no = sqrtf(fmaxf(sq, eps));
        n[o] = no;
    } else {
        no = n[o];
    }
    float co = ql_get(m + o) / no;
    if (fabsf(co) < tiny) co = tiny;
    c[o] = co;
    ql_put(cx + o, co);
    const float cr = ql_get(cx + o);
    ql_put(scx + o, s * cr);
    T* Bco = Bc + static_cast<long long>(o) * r;
    for (int j = 0; j < r; ++j) ql_put(Bco + j, ql_get(Bo + j) * cr);
}

// ---- ql_dora_mgrad: one thread per column j, the magnitude gradient from ql_column_dots' partial sums ----
// gm_j = (sum of the S partial dots) / (c_j n_j), rounded to T; SUMS: gsum_j = sum of the S partial sums of g (float32).
template <typename T, bool SUMS>
__global__ void __launch_bounds__(256) ql_dora_mgrad(
    const float* __restrict__ part, const float* __restrict__ c, const float* __restrict__ n, T* __restrict__ gm,
    float* __restrict__ gsum, int S, int N)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= N) return;
    float d = 0.f, t = 0.f;
    for (int k = 0; k < S; ++k) {
        d += part[static_cast<long long>(k) * N + j];
        if (SUMS) t += part[static_cast<long long>(S + k) * N + j];
    }
    ql_put(gm + j, d / (c[j] * n[j]));
    if (SUMS) gsum[j] = t;
}

// ---- ql_column_dots: the magnitude gradient's reduction ----
// For every column j: sum_M g[i, j] * (y[i, j] - b[j]) and sum_M g[i, j], accumulated in float32, in one read of g and
// y and no temporary. This is what the magnitude (and bias) gradient needs from the saved output; PyTorch would form
// the product as a [M, N] tensor first and read it again.
//
// Layout: the block is CD_TX x CD_TY threads. Thread (tx, ty) of block (bx, by) owns the column pair
// j = 2 (bx CD_TX + tx), j + 1 (one 4-byte word of bf16/fp16, 8 bytes of fp32: a warp reads 128 or 256 contiguous
// bytes of a row), and the rows by CD_TY + ty + k S CD_TY for k = 0, 1, ... where S = gridDim.y. The CD_TY partial
// sums of a block meet in shared memory; row `by` of part[2 S, N] gets the block's dots, row S + by its sums of g.
// The caller sums part over its S row blocks (deterministic: no atomics). N, the row strides and the pointers must be
// even (2-element aligned): the launcher checks, and falls back to PyTorch otherwise.

constexpr int CD_TX = 64;   // threads across columns: 128 columns per block
constexpr int CD_TY = 4;    // threads down the rows

template <typename T> struct CDPair;   // two adjacent elements as floats, from one aligned load
template <> struct CDPair<float> {
    static __device__ __forceinline__ void get(const float* p, float& a, float& b) {
        const float2 v = *reinterpret_cast<const float2*>(p); a = v.x; b = v.y;
    }
};
template <> struct CDPair<ql_bf16> {
    static __device__ __forceinline__ void get(const ql_bf16* p, float& a, float& b) {
        const ql_u32 v = *reinterpret_cast<const ql_u32*>(p); a = QT<ql_bf16>::lo(v); b = QT<ql_bf16>::hi(v);
    }
};
template <> struct CDPair<ql_f16> {
    static __device__ __forceinline__ void get(const ql_f16* p, float& a, float& b) {
        const ql_u32 v = *reinterpret_cast<const ql_u32*>(p); a = QT<ql_f16>::lo(v); b = QT<ql_f16>::hi(v);
    }
};

template <typename T, bool BIAS>
__global__ void __launch_bounds__(CD_TX * CD_TY) ql_column_dots(
    const T* __restrict__ g,      // [M, N], row stride ldg
    const T* __restrict__ y,      // [M, N], row stride ldy
    const T* __restrict__ bias,   // [N] (read only when BIAS)
    float* __restrict__ part,     // [2 gridDim.y, N]: per row block, the dots, then the sums of g
    int M, int N, long long ldg, long long ldy)
{
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int j = 2 * (blockIdx.x * CD_TX + tx);
    const int S = gridDim.y, step = S * CD_TY;
    float d0 = 0.f, d1 = 0.f, s0 = 0.f, s1 = 0.f;
    if (j < N) {
        float b0 = 0.f, b1 = 0.f;
        if (BIAS) CDPair<T>::get(bias + j, b0, b1);
        const T* gp = g + j;
        const T* yp = y + j;
#pragma unroll 4
        for (int i = blockIdx.y * CD_TY + ty; i < M; i += step) {
            float g0, g1, y0, y1;
            CDPair<T>::get(gp + i * ldg, g0, g1);
            CDPair<T>::get(yp + i * ldy, y0, y1);
            d0 = fmaf(g0, y0 - b0, d0); d1 = fmaf(g1, y1 - b1, d1);
            s0 += g0; s1 += g1;
        }
    }
    __shared__ float sh[4][CD_TY][CD_TX];
    sh[0][ty][tx] = d0; sh[1][ty][tx] = d1; sh[2][ty][tx] = s0; sh[3][ty][tx] = s1;
    __syncthreads();
    if (ty == 0 && j < N) {
#pragma unroll
        for (int t = 1; t < CD_TY; ++t) { d0 += sh[0][t][tx]; d1 += sh[1][t][tx]; s0 += sh[2][t][tx]; s1 += sh[3][t][tx]; }
        float* pd = part + static_cast<long long>(blockIdx.y) * N + j;
        float* ps = part + static_cast<long long>(S + blockIdx.y) * N + j;
        pd[0] = d0; pd[1] = d1; ps[0] = s0; ps[1] = s1;
    }
}
