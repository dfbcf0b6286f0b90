// hqq_layout.cuh: the one place the CUDA sources learn hqq's packed layout and qdora_lab's value types.
//
// Packed layout (hqq's BitPack, packing along dim 0 of the *grouped* code matrix [R, C] in contiguous
// row chunks; n = packed rows = ceil(R / P); chunk k holds grouped rows k*n .. k*n + n - 1):
//
//   packing  word     P   codes of word (i, c)                          bit offset of chunk k
//   8bit_u8  uint8    1   row i                                         0
//   4bit_u8  uint8    2   rows i, n+i                                   4 - 4k
//   2bit_u8  uint8    4   rows i, n+i, 2n+i, 3n+i                       6 - 2k
//   1bit_u8  uint8    8   rows i + k*n, k = 0..7                        7 - k
//   3bit_32  int32   10   rows i + k*n, k = 0..9 (R zero-padded to 10n)  27 - 3k
//
//   4-bit byte:   bit 7 6 5 4 | 3 2 1 0          3-bit word: bit 31 30 | 29..27 | 26..24 | ... | 2..0
//                 [ chunk 0   | chunk 1 ]                        0  0  | k = 0  | k = 1  | ... | k = 9
//
// So grouped element (r, c) lives in word (r % n, c) at chunk r / n. The grouped matrix is the weight
// W [N, K] reshaped row-major (axis=1: [N*K/g, g]; axis=0: [g, N*K/g]), so flat element e = o*K + kk of W
// is grouped element (e / C, e % C).
//
// Values: dequantized w = (code - zero) * scale, rounded exactly as PyTorch rounds
// `(codes.to(out) - zero) * scale` (qdora_lab.quant.dequantize): each operand is cast to the op's
// promoted dtype, the op is computed in fp32 and rounded to that dtype (PyTorch's opmath rule). The
// element types are tag structs so the templates read like the torch dtypes they stand for.
//
// No standard or CUDA headers: the sources compile unchanged under nvcc and NVRTC (CuPy's RawModule).
#pragma once

typedef unsigned char ql_u8;
typedef unsigned short ql_u16;
typedef long long ql_i64;

struct ql_f16 { ql_u16 bits; };   // torch.float16
struct ql_bf16 { ql_u16 bits; };  // torch.bfloat16

// A naturally aligned vector of N elements, for 4/8/16-byte loads and stores.
template <typename E, int N> struct alignas(sizeof(E) * N) ql_vec { E v[N]; };

// ---- value types: storage, load to fp32, store from fp32 (round to nearest even) ----
template <typename T> struct QT;

template <> struct QT<float> {
    typedef float storage;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float f) { return f; }
    static __device__ __forceinline__ float round(float f) { return f; }
};

template <> struct QT<ql_f16> {
    typedef ql_u16 storage;
    static __device__ __forceinline__ float load(ql_u16 h) {
        float f;
        asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
        return f;
    }
    static __device__ __forceinline__ ql_u16 store(float f) {
        ql_u16 h;
        asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
    static __device__ __forceinline__ float round(float f) { return load(store(f)); }
};

template <> struct QT<ql_bf16> {
    typedef ql_u16 storage;
    static __device__ __forceinline__ float load(ql_u16 h) { return __uint_as_float(static_cast<unsigned>(h) << 16); }
    static __device__ __forceinline__ ql_u16 store(float f) {  // c10::BFloat16's round-to-nearest-even
        const unsigned u = __float_as_uint(f);
        if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<ql_u16>(0x7fc0u);  // NaN
        return static_cast<ql_u16>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
    }
    static __device__ __forceinline__ float round(float f) { return load(store(f)); }
};

// ---- packing traits and code extraction ----
template <int NBITS> struct QlPack;
template <> struct QlPack<8> { typedef ql_u8 Word; static constexpr int P = 1, TOTAL = 8; };
template <> struct QlPack<4> { typedef ql_u8 Word; static constexpr int P = 2, TOTAL = 8; };
template <> struct QlPack<2> { typedef ql_u8 Word; static constexpr int P = 4, TOTAL = 8; };
template <> struct QlPack<1> { typedef ql_u8 Word; static constexpr int P = 8, TOTAL = 8; };
template <> struct QlPack<3> { typedef int Word; static constexpr int P = 10, TOTAL = 30; };

// Code of chunk `k` in packed word `w`.
template <int NBITS, typename Word>
__device__ __forceinline__ unsigned ql_code(Word w, int k) {
    constexpr unsigned MASK = (1u << NBITS) - 1u;
    const unsigned u = NBITS == 3 ? static_cast<unsigned>(w) : static_cast<unsigned>(static_cast<ql_u8>(w));
    return (u >> (QlPack<NBITS>::TOTAL - NBITS * (k + 1))) & MASK;
}

// Load VEC consecutive packed words (VEC = 1 or 4; the index must be a multiple of VEC).
template <typename Word, int VEC>
__device__ __forceinline__ void ql_load_words(const Word* __restrict__ p, ql_i64 idx, Word (&w)[VEC]) {
    const ql_vec<Word, VEC> v = *reinterpret_cast<const ql_vec<Word, VEC>*>(p + idx);
#pragma unroll
    for (int j = 0; j < VEC; ++j) w[j] = v.v[j];
}

// (code - zero) * scale with PyTorch's rounding: SubT = promote(out, zero), MulT = promote(SubT, scale).
// z and s are the stored zero and scale, already widened to fp32 (exact).
template <typename SubT, typename MulT>
__device__ __forceinline__ float ql_dequant(unsigned code, float z, float s) {
    const float d = QT<SubT>::round(__fsub_rn(static_cast<float>(code), QT<SubT>::round(z)));
    return QT<MulT>::round(__fmul_rn(QT<MulT>::round(d), QT<MulT>::round(s)));
}
