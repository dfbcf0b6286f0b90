// dequantize.cu: hqq-layout packed codes -> dense weight, W = (code - zero) * scale, in fp16/bf16/fp32.
//
// Layout read (see hqq_layout.cuh): packed words Wq [n, C] (uint8, or int32 for 3 bits), word (i, c)
// holding grouped rows i + k*n, k = 0..P-1, at column c. Output: the grouped matrix [R, C] row-major,
// which *is* W [N, K] row-major (axis=1: C = g; axis=0: R = g), so the kernel never needs the axis.
//
//            packed row i:  [ w(i,c) w(i,c+1) w(i,c+2) w(i,c+3) ]      one thread, VEC = 4 words
//                                |  chunk k = 0 .. P-1
//            out row k*n+i: [ W    W        W        W        ]      P stores of VEC values each
//
// zero/scale are read through element strides (z_sr, z_sc) / (s_sr, s_sc) of their broadcast to [R, C]:
// [R, 1] (axis=1), [1, C] (axis=0), 0-dim (channel_wise=False) and any strided view all work.
//
// Grid/block: one thread per VEC consecutive packed words of one packed row; 1-D grid over n*C/VEC
// threads, 256 threads per block. Loads of words are coalesced along C (4 or 16 bytes per thread); each
// of the P stores is a coalesced run along C (VEC * sizeof(out) bytes per thread). VEC = 4 needs
// C % 4 == 0 (the launcher falls back to VEC = 1).
//
// Memory-traffic bound: bytes(Wq) + bytes(W) + bytes(zero, scale). 4096 x 4096, 4-bit, g64 -> bf16:
// 8 MiB + 32 MiB + 1 MiB = 41 MiB, about 14 us at 3.0 TB/s. The arithmetic (two fp32 ops and a few
// conversions per element) is far below the H100's issue rate, so the kernel is bound by DRAM.
#include "hqq_layout.cuh"

template <int NBITS, int VEC, typename Out, typename Z, typename S, typename SubT, typename MulT>
__global__ void __launch_bounds__(256) ql_dequantize(
    const typename QlPack<NBITS>::Word* __restrict__ Wq,  // packed codes [n, C]
    const typename QT<Z>::storage* __restrict__ zero,     // zero, strides (z_sr, z_sc) over [R, C]
    const typename QT<S>::storage* __restrict__ scale,    // scale, strides (s_sr, s_sc) over [R, C]
    typename QT<Out>::storage* __restrict__ out,          // dense [R, C] row-major
    ql_i64 n, ql_i64 C, ql_i64 R,
    ql_i64 z_sr, ql_i64 z_sc, ql_i64 s_sr, ql_i64 s_sc) {
    typedef typename QlPack<NBITS>::Word Word;
    typedef typename QT<Out>::storage OutS;
    constexpr int P = QlPack<NBITS>::P;
    const ql_i64 per_row = C / VEC;
    const ql_i64 t = static_cast<ql_i64>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (t >= n * per_row) return;
    const ql_i64 i = t / per_row, c = (t - i * per_row) * VEC;
    Word w[VEC];
    ql_load_words<Word, VEC>(Wq, i * C + c, w);
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const ql_i64 r = k * n + i;
        if (r >= R) break;  // zero-padded rows of the 3-bit layout
        ql_vec<OutS, VEC> o;
#pragma unroll
        for (int j = 0; j < VEC; ++j) {
            const float z = QT<Z>::load(zero[r * z_sr + (c + j) * z_sc]);
            const float s = QT<S>::load(scale[r * s_sr + (c + j) * s_sc]);
            o.v[j] = QT<Out>::store(ql_dequant<SubT, MulT>(ql_code<NBITS>(w[j], k), z, s));
        }
        *reinterpret_cast<ql_vec<OutS, VEC>*>(out + r * C + c) = o;
    }
}

// nvcc's compile check (CI) instantiates a representative set; NVRTC instantiates what the launcher names.
#ifndef __CUDACC_RTC__
#define QL_DEQ(NB, V, O, M)                                                                                \
    template __global__ void ql_dequantize<NB, V, O, M, M, M, M>(                                          \
        const QlPack<NB>::Word*, const QT<M>::storage*, const QT<M>::storage*, QT<O>::storage*, ql_i64,  \
        ql_i64, ql_i64, ql_i64, ql_i64, ql_i64, ql_i64);
#define QL_DEQ_BITS(V, O, M) QL_DEQ(8, V, O, M) QL_DEQ(4, V, O, M) QL_DEQ(3, V, O, M) QL_DEQ(2, V, O, M) QL_DEQ(1, V, O, M)
QL_DEQ_BITS(4, ql_bf16, float)
QL_DEQ_BITS(4, ql_f16, float)
QL_DEQ_BITS(4, float, float)
QL_DEQ_BITS(1, ql_bf16, float)
QL_DEQ_BITS(4, ql_f16, ql_f16)
QL_DEQ_BITS(4, ql_bf16, ql_bf16)
#endif
