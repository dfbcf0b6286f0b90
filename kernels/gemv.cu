// gemv.cu: fused dequantize + GEMV / small-M GEMM on hqq-layout packed weights, y = x @ W^T.
//
// x [M, K] (fp16/bf16/fp32, M <= MT <= 16), W [N, K] stored as packed codes of the grouped matrix [R, C]
// (see hqq_layout.cuh), y [M, N] in x's dtype, fp32 accumulation. Each weight value is rebuilt exactly
// as qdora_lab.quant.dequantize(W_q, meta, x.dtype) rebuilds it, so the only difference from
// `x @ dequantize(...).T` is the order of the fp32 sums.
//
// Two mappings of W's flat index e = o*K + kk onto the grouped matrix (the launcher picks one):
//   SPLIT = 1, K % C == 0 (axis=1; G = K / C grouped rows per W row):
//       r = o*G + kk / C,  c = kk % C            W row o = grouped rows o*G .. o*G + G - 1
//   SPLIT = 0, C % K == 0 (axis=0; NG = C / K W rows per grouped row):
//       r = o / NG,        c = (o % NG)*K + kk   W row o = a run of K words in one packed row
// and grouped (r, c) is word (r % n, c), chunk r / n.
//
// Block -> rows: each W row is owned by exactly one block; a block owns the (up to P) rows that read the
// same packed words, one per chunk k, so the other chunks of a word are L1 hits, not DRAM reads:
//   SPLIT = 0: block b = (i, j), i = b / NG, j = b % NG; chunk k owns row (k*n + i)*NG + j if k*n + i < R.
//   SPLIT = 1: block b owns the window of packed rows [b*G, b*G + G); chunk k owns the row q whose first
//              grouped row q*G has packed row s = q*G - k*n in the window (q = ceil((k*n + b*G) / G),
//              s < n, q < N). When n % G == 0 (4/2/1-bit with N % P == 0) every chunk reads exactly the
//              window; for 3 bits (R padded to 10n) rows may run into the next window or chunk.
//
//        packed rows  b*G ..  b*G+G-1            chunk 0 -> row q0, chunk 1 -> row q1, ...
//        [ w w w w ... w ]  x  x[m, :]   --->    y[m, q_k] = sum_kk x[m, kk] * W[q_k, kk]
//
// Threads: 128 per block (4 warps); for one row, thread t handles kk = 4t + 512u (4 consecutive words:
// one 4-byte or 16-byte load), keeps MT fp32 partial sums, then a warp-shuffle + shared-memory reduction
// in a fixed order (deterministic: no atomics).
//
// Memory-traffic bound: bytes(Wq) + bytes(zero, scale) + bytes(x) + bytes(y); for 4096 x 4096, 4-bit,
// g64, M = 1: 8 MiB + 1 MiB (fp16 meta) + 16 KiB, about 3.1 us at 3.0 TB/s. Needs C % 4 == 0 (SPLIT 1)
// or K % 4 == 0 (SPLIT 0); the launcher checks.
#include "hqq_layout.cuh"

#define QL_GEMV_THREADS 128

template <int NBITS, int SPLIT, int MT, typename T, typename Z, typename S, typename SubT, typename MulT>
__global__ void __launch_bounds__(QL_GEMV_THREADS) ql_gemv(
    const typename QT<T>::storage* __restrict__ x,        // [M, K] row-major
    const typename QlPack<NBITS>::Word* __restrict__ Wq,  // packed codes [n, C]
    const typename QT<Z>::storage* __restrict__ zero,     // zero, strides (z_sr, z_sc) over [R, C]
    const typename QT<S>::storage* __restrict__ scale,    // scale, strides (s_sr, s_sc) over [R, C]
    typename QT<T>::storage* __restrict__ y,              // [M, N] row-major
    int M, ql_i64 N, ql_i64 K, ql_i64 n, ql_i64 C, ql_i64 R,
    ql_i64 z_sr, ql_i64 z_sc, ql_i64 s_sr, ql_i64 s_sc) {
    typedef typename QlPack<NBITS>::Word Word;
    typedef typename QT<T>::storage TS;
    constexpr int P = QlPack<NBITS>::P, VEC = 4, NWARPS = QL_GEMV_THREADS / 32;
    __shared__ float red[NWARPS][MT];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const ql_i64 b = blockIdx.x;

    for (int k = 0; k < P; ++k) {
        // ---- which W row this block computes for chunk k (block-uniform) ----
        ql_i64 q;
        if (SPLIT == 0) {
            const ql_i64 NG = C / K, i = b / NG, r = k * n + i;
            if (r >= R) break;
            q = r * NG + (b - i * NG);
        } else {
            const ql_i64 G = K / C, first = k * n + b * G;
            q = (first + G - 1) / G;
            if (q * G - k * n >= n || q >= N) continue;
        }
        // ---- partial dot products of x[m, :] with W[q, :] ----
        float acc[MT];
#pragma unroll
        for (int m = 0; m < MT; ++m) acc[m] = 0.f;
        // grouped row and column of W[q, 0]; along the row only the grouped row (SPLIT 1) or the column
        // (SPLIT 0) moves, so the 64-bit divisions are hoisted out of the loop
        const ql_i64 r0 = SPLIT == 0 ? q / (C / K) : q * (K / C);
        const ql_i64 c0 = SPLIT == 0 ? (q - r0 * (C / K)) * K : 0;
        const ql_i64 i0 = r0 % n;
        const int chunk0 = static_cast<int>(r0 / n);
        const unsigned Cu = static_cast<unsigned>(C);  // SPLIT 1: C = g <= K < 2^31
        for (unsigned kk = VEC * tid; kk < static_cast<unsigned>(K); kk += VEC * QL_GEMV_THREADS) {
            ql_i64 r = r0, c = c0 + kk, i = i0;
            int chunk = chunk0;
            if (SPLIT == 1) {
                const unsigned gi = kk / Cu;
                r += gi; c = kk - gi * Cu; i += gi;
                while (i >= n) { i -= n; ++chunk; }  // the row's grouped rows ran into the next chunk
            }
            Word w[VEC];
            ql_load_words<Word, VEC>(Wq, i * C + c, w);
            float wf[VEC];
#pragma unroll
            for (int j = 0; j < VEC; ++j) {
                const float z = QT<Z>::load(zero[r * z_sr + (c + j) * z_sc]);
                const float s = QT<S>::load(scale[r * s_sr + (c + j) * s_sc]);
                wf[j] = QT<T>::round(ql_dequant<SubT, MulT>(ql_code<NBITS>(w[j], chunk), z, s));
            }
#pragma unroll
            for (int m = 0; m < MT; ++m) {
                if (m < M) {
                    const ql_vec<TS, VEC> xv = *reinterpret_cast<const ql_vec<TS, VEC>*>(x + m * K + kk);
#pragma unroll
                    for (int j = 0; j < VEC; ++j) acc[m] = fmaf(QT<T>::load(xv.v[j]), wf[j], acc[m]);
                }
            }
        }
        // ---- block reduction in a fixed order ----
#pragma unroll
        for (int m = 0; m < MT; ++m) {
#pragma unroll
            for (int off = 16; off > 0; off >>= 1) acc[m] += __shfl_down_sync(0xffffffffu, acc[m], off);
        }
        if (lane == 0) {
#pragma unroll
            for (int m = 0; m < MT; ++m) red[warp][m] = acc[m];
        }
        __syncthreads();
        if (tid < MT && tid < M) {
            float sum = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < NWARPS; ++w2) sum += red[w2][tid];
            y[tid * N + q] = QT<T>::store(sum);
        }
        __syncthreads();  // red is reused by the next chunk
    }
}

// nvcc's compile check (CI) instantiates the 4/3/2-bit kernels for bf16 and fp16 activations with fp32
// meta and with meta in the activation dtype; NVRTC instantiates what the launcher names.
#ifndef __CUDACC_RTC__
#define QL_GEMV(NB, SP, MT, T, M)                                                                           \
    template __global__ void ql_gemv<NB, SP, MT, T, M, M, float, float>(                                    \
        const QT<T>::storage*, const QlPack<NB>::Word*, const QT<M>::storage*, const QT<M>::storage*,     \
        QT<T>::storage*, int, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64);
#define QL_GEMV_HALF(NB, SP, MT, T)                                                                         \
    template __global__ void ql_gemv<NB, SP, MT, T, T, T, T, T>(                                            \
        const QT<T>::storage*, const QlPack<NB>::Word*, const QT<T>::storage*, const QT<T>::storage*,     \
        QT<T>::storage*, int, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64);
#define QL_GEMV_SPLITS(NB, MT, T) QL_GEMV(NB, 0, MT, T, float) QL_GEMV(NB, 1, MT, T, float) \
                                  QL_GEMV_HALF(NB, 0, MT, T) QL_GEMV_HALF(NB, 1, MT, T)
QL_GEMV_SPLITS(4, 1, ql_bf16)
QL_GEMV_SPLITS(3, 1, ql_bf16)
QL_GEMV_SPLITS(2, 1, ql_bf16)
QL_GEMV_SPLITS(4, 16, ql_f16)
QL_GEMV_SPLITS(3, 16, ql_f16)
QL_GEMV_SPLITS(2, 16, ql_f16)
#endif
