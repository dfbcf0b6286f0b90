// dequantize.cu: hqq-layout packed codes -> dense weight W [N, K] in fp16/bf16/fp32, bit for bit what
// qdora_lab.quant.dequantize_packed returns; optionally each row o times row_scale[o] (fp32), rounded once
// more (the DoRA step folds m / ||W + sBA|| into this one pass).
//
// Layout read (hqq_layout.cuh): packed words [n, C] of the grouped matrix [R, C] (which *is* W flattened,
// both axes). One thread owns CPT consecutive columns of one packed row: 16 bytes of words (16 columns of a
// byte packing, or 8 int32 words = 8 columns of 3-bit, two 16-byte loads), and writes those columns of all
// P grouped rows k*n + i it holds:
//
//      packed row i, columns c0 .. c0+CPT-1     [ 16 bytes ]                         one 128-bit load (3-bit: two)
//         chunk k = 0 .. P-1  ->  W flat (k*n + i)*C + c0 ..   [ CPT values ]   CPT*sizeof(out)/16 128-bit stores
//
// zero/scale: axis=1 one value per grouped row (hqq shape [R, 1]), every chunk's loaded up front with the codes
// (and the row_scale factors), so each thread waits on memory once; axis=0 one per column ([1, C]), loaded as
// 128-bit vectors once per thread and reused by all P chunks.
//
// Grid/block: 1-D, 256 threads, one thread per (packed row, CPT columns); consecutive threads take
// consecutive columns, so loads and stores are coalesced, and where a chunk takes two or more 16-byte stores the
// lane pairs swap halves so that every store writes whole 32-byte sectors (ql_store_sectors). Needs C % CPT == 0
// and N*K < 2^31 (the plan falls back to PyTorch otherwise).
//
// Arithmetic: out, zero and scale all bf16 (or all fp16) and codes exact in that type: the native path,
// per code pair 1 PRMT (code | magic exponent byte), then three packed FMAs: - magic (exact), - zero,
// * scale (each rounded once, as PyTorch's fp32-then-round: see hqq_layout.cuh). Otherwise the generic
// path: the code as fp32 (magic-number trick), fp32 ops rounded to the promoted dtype after each op.
//
// Memory-traffic bound: bytes(W_q) + bytes(W) + bytes(meta). 4096 x 4096, 4-bit, g64 -> bf16:
// 8 MiB + 32 MiB + 1 MiB (bf16 meta) = 43 MB, 14.3 us at 3.0 TB/s; the instruction-issue bound (every path of the
// body, the row_scale one included, bench/results/sass_report.md) is under half of it.
#include "hqq_layout.cuh"

template <typename T> struct QlRound {  // fp32 -> T -> fp32
    static __device__ __forceinline__ float r(float f) { return QT<T>::load(QT<T>::store(f)); }
};
template <> struct QlRound<float> {
    static __device__ __forceinline__ float r(float f) { return f; }
};

// Store a thread's NS 16-byte pieces (one chunk's CPT values, contiguous at dst; `on`: the chunk is a real row) so
// that each 128-bit store instruction writes whole 32-byte sectors. With NS >= 2 a thread's pieces are half sectors,
// and a warp's store would touch 32 sectors for 512 bytes, twice the L2 write requests of whole sectors. Lanes t and
// t^1 hold adjacent columns of one row when the row has an even number of threads (`pair`, the same for the whole
// kernel), so they swap halves first and store k of the pair writes one whole sector, the even lane its first half:
//     even lane: its pieces 0, 2, .. (sectors 0 .. S-1), then the odd lane's pieces 0, 2, .. (sectors S .. 2S-1)
//     odd lane:  the even lane's pieces 1, 3, .. (second halves of 0 .. S-1), then its own pieces 1, 3, ..
// Unpaired, a lane stores as an even lane without a partner for its first pieces and as an odd lane for its second:
// its pieces in order. Every lane of the warp reaches the exchange (the kernel neither returns early nor breaks), so
// the shuffle names the whole warp. (Timed on an H100, 2026-11-27: 4-bit bf16 16.7 us against 24.9 with the pieces
// stored as made.)
template <int NS>
__device__ __forceinline__ void ql_store_sectors(void* dst, const ql_u32x4 (&h)[NS], bool pair, bool on) {
    unsigned char* d = static_cast<unsigned char*>(dst);
    if constexpr (NS >= 2) {
        constexpr int S = NS / 2;  // whole sectors per thread
        const ql_u32 lane = threadIdx.x & 31u;
        const bool odd = pair && (lane & 1u), even = pair && !(lane & 1u);
        ql_u32x4 recv[S];
#pragma unroll
        for (int s = 0; s < S; ++s) recv[s] = h[2 * s + 1];
        if (pair) {
#pragma unroll
            for (int s = 0; s < S; ++s)
#pragma unroll
                for (int e = 0; e < 4; ++e) recv[s].v[e] = ql_shfl_xor1((lane & 1u) ? h[2 * s].v[e] : h[2 * s + 1].v[e]);
        }
        const int off1 = odd ? 16 - 32 * S : 0, off2 = even ? 32 * S : 16;
#pragma unroll
        for (int s = 0; s < S; ++s) ql_st128_if(d + 32 * s + off1, odd ? recv[s] : h[2 * s], on);
#pragma unroll
        for (int s = 0; s < S; ++s) ql_st128_if(d + 32 * s + off2, even ? recv[s] : h[2 * s + 1], on);
        return;
    }
#pragma unroll
    for (int k = 0; k < NS; ++k) ql_st128_if(d + 16 * k, h[k], on);
}

// store CPT values (given as fp32, already rounded to OUT) to out[0 .. CPT) with 128-bit stores (see ql_store_sectors)
template <typename OUT, int CPT> struct QlStore;
template <int CPT> struct QlStore<float, CPT> {
    static __device__ __forceinline__ void run(float* out, const float (&v)[CPT], bool pair, bool on) {
        ql_u32x4 q[CPT / 4];
#pragma unroll
        for (int j = 0; j < CPT / 4; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) q[j].v[e] = __float_as_uint(v[4 * j + e]);
        ql_store_sectors<CPT / 4>(out, q, pair, on);
    }
};
template <typename OUT, int CPT> struct QlStore {
    static __device__ __forceinline__ void run(ql_u16* out, const float (&v)[CPT], bool pair, bool on) {
        ql_u32x4 q[CPT / 8];
#pragma unroll
        for (int j = 0; j < CPT / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) q[j].v[e] = QT<OUT>::pack(v[8 * j + 2 * e], v[8 * j + 2 * e + 1]);
        ql_store_sectors<CPT / 8>(out, q, pair, on);
    }
};

// the codes of chunk k of the thread's CPT columns, as pairs MAGIC + code (native path)
template <int NBITS, typename H, int CPT>
__device__ __forceinline__ void ql_code_pairs(const ql_u32 (&w)[NBITS == 3 ? 8 : 4], int k, ql_u32 (&p)[CPT / 2]) {
    if (NBITS == 3) {
#pragma unroll
        for (int m = 0; m < CPT / 2; ++m)
            p[m] = ql_3bit_pair(ql_3bit_x(w[2 * m], w[2 * m + 1]), ql_3bit_y(w[2 * m], w[2 * m + 1]), k, H::MAGIC2);
    } else {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            const ql_u32 u = ql_byte_codes<NBITS>(w[s], k);
            p[2 * s] = ql_pair_lo(u, H::MAGIC_BYTE);
            p[2 * s + 1] = ql_pair_hi(u, H::MAGIC_BYTE);
        }
    }
}

// the codes of chunk k as exact fp32 values (generic path): 0x4B000000 | code is 2^23 + code
template <int NBITS, int CPT>
__device__ __forceinline__ void ql_code_floats(const ql_u32 (&w)[NBITS == 3 ? 8 : 4], int k, float (&f)[CPT]) {
    if (NBITS == 3) {
#pragma unroll
        for (int j = 0; j < CPT; ++j)
            f[j] = __uint_as_float(((w[j] >> (27 - 3 * k)) & 7u) | 0x4B000000u) - 8388608.f;
    } else {
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            const ql_u32 u = ql_byte_codes<NBITS>(w[s], k);
            f[4 * s + 0] = __uint_as_float(ql_prmt<0x7440>(u, 0x4B000000u)) - 8388608.f;
            f[4 * s + 1] = __uint_as_float(ql_prmt<0x7441>(u, 0x4B000000u)) - 8388608.f;
            f[4 * s + 2] = __uint_as_float(ql_prmt<0x7442>(u, 0x4B000000u)) - 8388608.f;
            f[4 * s + 3] = __uint_as_float(ql_prmt<0x7443>(u, 0x4B000000u)) - 8388608.f;
        }
    }
}

template <int NBITS, int AXIS, typename OUT, typename META>
__global__ void __launch_bounds__(256, 2) ql_dequantize(
    const void* __restrict__ Wq,                           // packed words [n, C] (uint8, or int32 for 3 bits)
    const typename QT<META>::storage* __restrict__ scale,  // [R] (axis=1) or [C] (axis=0)
    const typename QT<META>::storage* __restrict__ zero,   // same shape as scale
    typename QT<OUT>::storage* __restrict__ out,           // W [N, K] row-major = grouped [R, C]
    const float* __restrict__ row_scale,                   // [N] or nullptr
    int n, int R, int C, int K, int G, int threads) {      // G = K / g (axis=1)
    constexpr int P = QlPack<NBITS>::P, CPT = NBITS == 3 ? 8 : 16, NW = NBITS == 3 ? 8 : 4;
    typedef typename QlPromote<OUT, META>::type SUB;       // dtype of codes - zero, and of the product
    // native packed path: everything in one half type, and the codes fit the magic number's mantissa
    constexpr bool NATIVE = QlSame<OUT, META>::value && QT<OUT>::HALF && NBITS <= QT<OUT>::MANT;
    // WARP (a chunk takes two or more 16-byte stores): no early return and no break, so that every lane reaches the
    // stores' shuffle (a lane past the end works on thread 0's columns and stores nothing, as does a padding row)
    constexpr bool WARP = CPT * sizeof(typename QT<OUT>::storage) >= 32;
    const int t_all = blockIdx.x * 256 + threadIdx.x;
    const bool live = t_all < threads;
    if (!WARP && !live) return;
    const int t = live ? t_all : 0;
    const int per_row = C / CPT, i = t / per_row, c0 = (t - i * per_row) * CPT;
    const bool pair = !(per_row & 1);  // threads t, t^1 write adjacent columns of one row (both live: threads is even)
    ql_u32 w[NW];
    {
        const ql_i64 off = static_cast<ql_i64>(i) * C + c0;
        if (NBITS == 3) {
            const ql_u32x4 a = ql_ld_stream(static_cast<const ql_u32*>(Wq) + off);
            const ql_u32x4 b = ql_ld_stream(static_cast<const ql_u32*>(Wq) + off + 4);
#pragma unroll
            for (int e = 0; e < 4; ++e) { w[e] = a.v[e]; w[4 + e] = b.v[e]; }
        } else {
            const ql_u32x4 a = ql_ld_stream(static_cast<const ql_u8*>(Wq) + off);
#pragma unroll
            for (int e = 0; e < 4; ++e) w[e] = a.v[e];
        }
    }
    // axis=0: this thread's CPT columns of zero and scale, loaded once (128-bit vectors)
    constexpr int MV = AXIS == 0 ? CPT * sizeof(typename QT<META>::storage) / 16 : 1;
    ql_u32x4 zv[MV], sv[MV];
    if (AXIS == 0) {
#pragma unroll
        for (int e = 0; e < MV; ++e) {
            zv[e] = ql_ld128(zero + c0 + e * (16 / sizeof(*zero)));
            sv[e] = ql_ld128(scale + c0 + e * (16 / sizeof(*scale)));
        }
    }
    // every chunk's row_scale factor and (axis=1) zero and scale, loaded with the codes, so a thread waits on memory
    // once, not P times (a load after the `break` below cannot be moved above it by the compiler; timed on an H100,
    // 2026-11-27: 3-bit bf16 16.7 us against 19.7 loading them chunk by chunk)
    constexpr int PZ = AXIS == 1 ? P : 1;
    float rs[P];
    ql_u32 zh[PZ], sh[PZ];  // native path: the 16-bit values
    float zf[PZ], sf[PZ];   // generic path: as fp32
    auto chunk_rs = [&](int k) {
        const int r = k * n + i;
        rs[k] = row_scale != nullptr && r < R ? row_scale[AXIS == 1 ? r / G : (r * C + c0) / K] : 1.f;
    };
    auto chunk_meta = [&](int k) {
        const int r = k * n + i;
        const bool ok = r < R;
        if constexpr (AXIS == 1) {
            if constexpr (NATIVE) {
                zh[k] = ok ? ql_ld16(reinterpret_cast<const ql_u16*>(zero) + r) : 0u;
                sh[k] = ok ? ql_ld16(reinterpret_cast<const ql_u16*>(scale) + r) : 0u;
            } else {
                zf[k] = ok ? QlMeta<META>::load(zero + r) : 0.f;
                sf[k] = ok ? QlMeta<META>::load(scale + r) : 0.f;
            }
        }
    };
#pragma unroll
    for (int k = 0; k < P; ++k) chunk_rs(k);
#pragma unroll
    for (int k = 0; k < P; ++k) chunk_meta(k);
#pragma unroll
    for (int k = 0; k < P; ++k) {
        const int r = k * n + i;
        const bool on = live && r < R;  // not a zero-padded row of the packing
        if (!WARP && !on) break;
        const int e0 = r * C + c0;  // flat index of the first value (N*K < 2^31)
        if constexpr (NATIVE) {
            typedef QT<OUT> H;
            ql_u32 p[CPT / 2];
            ql_code_pairs<NBITS, H, CPT>(w, k, p);
            ql_u32 z2 = 0, s2 = 0;
            if constexpr (AXIS == 1) { z2 = zh[k] | (zh[k] << 16); s2 = sh[k] | (sh[k] << 16); }
#pragma unroll
            for (int m = 0; m < CPT / 2; ++m) {
                if (AXIS == 0) { z2 = zv[m / 4].v[m % 4]; s2 = sv[m / 4].v[m % 4]; }
                const ql_u32 q = H::sub2(p[m], H::MAGIC2);  // exact: the code itself
                p[m] = H::mul2(H::sub2(q, z2), s2);         // (code - zero) * scale, rounded per op
            }
            if (row_scale != nullptr) {
#pragma unroll
                for (int m = 0; m < CPT / 2; ++m) p[m] = H::pack(QlRound<OUT>::r(__fmul_rn(H::lo(p[m]), rs[k])), QlRound<OUT>::r(__fmul_rn(H::hi(p[m]), rs[k])));
            }
            ql_u32x4 q[CPT / 8];
#pragma unroll
            for (int j = 0; j < CPT / 8; ++j) q[j] = ql_u32x4{{p[4 * j], p[4 * j + 1], p[4 * j + 2], p[4 * j + 3]}};
            ql_store_sectors<CPT / 8>(out + e0, q, pair, on);
        } else {
            float v[CPT], f[CPT];
            ql_code_floats<NBITS, CPT>(w, k, f);
            float z = 0.f, s = 0.f;
            if constexpr (AXIS == 1) { z = zf[k]; s = sf[k]; }
#pragma unroll
            for (int j = 0; j < CPT; ++j) {
                if (AXIS == 0) { z = ql_meta_elem<META>(zv, j); s = ql_meta_elem<META>(sv, j); }
                const float d = QlRound<SUB>::r(__fsub_rn(f[j], z));
                v[j] = QlRound<OUT>::r(QlRound<SUB>::r(__fmul_rn(d, s)));
            }
            if (row_scale != nullptr) {
#pragma unroll
                for (int j = 0; j < CPT; ++j) v[j] = QlRound<OUT>::r(__fmul_rn(v[j], rs[k]));
            }
            QlStore<OUT, CPT>::run(out + e0, v, pair, on);
        }
    }
}
