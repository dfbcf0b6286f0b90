// kernels/column_dots.cu: the DoRA backward's one reduction over two [M, N] tensors (chapter 12).
//
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
#include "hqq_layout.cuh"

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
