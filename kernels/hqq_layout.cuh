// hqq_layout.cuh: hqq's packed layouts, qdora_lab's value types and the PTX the kernels are built from.
//
// Packed layout (hqq's BitPack: the *grouped* code matrix [R, C] is packed along dim 0 in contiguous row
// chunks; n = packed rows = ceil(R / P); chunk k holds grouped rows k*n .. k*n + n - 1):
//
//   packing  word     P   codes of word (i, c)                            bit offset of chunk k
//   8bit_u8  uint8    1   row i                                           0
//   4bit_u8  uint8    2   rows i, n+i                                     4 - 4k
//   2bit_u8  uint8    4   rows i, n+i, 2n+i, 3n+i                         6 - 2k
//   1bit_u8  uint8    8   rows i + k*n, k = 0..7                          7 - k
//   3bit_32  int32   10   rows i + k*n, k = 0..9 (R zero-padded to 10n)    27 - 3k
//
//   4-bit byte:  bit 7 6 5 4 | 3 2 1 0        3-bit word: bit 31 30 | 29..27 | 26..24 | ... | 2..0
//                [ chunk 0   | chunk 1 ]                       0  0  | k = 0  | k = 1  | ... | k = 9
//
// The grouped matrix is W [N, K] reshaped row-major: axis=1 [N*K/g, g] (grouped row r = o*G + j is group j
// of W row o, G = K/g), axis=0 [g, N*K/g]. Grouped element (r, c) lives in word (r % n, c) at chunk r / n.
// For axis=1 with n % G == 0 ("aligned": 4/2/1-bit with N % P == 0, 3-bit with N % 10 == 0) packed row
// i = o*G + j holds group j of W rows o, o + N/P, o + 2N/P, ...: one 16-byte load feeds P rows with the
// same 16 activations. Otherwise chunk k of packed row i is group (k*n + i) % G of W row (k*n + i) / G.
//
// Values: w = (code - zero) * scale as PyTorch computes `(codes.to(out) - zero) * scale`: each op in fp32,
// rounded to the op's promoted dtype (opmath). With out, zero and scale all bf16 (or all fp16) we use the
// native packed instructions (fma.rn.{bf16x2,f16x2}): one rounding of the exact result, which equals fp32
// then round because fp32 has >= 2p+2 bits for p = 8 (bf16) and 11 (fp16) (double rounding is innocuous).
//
// No standard or CUDA headers: the sources compile unchanged under nvcc and NVRTC (CuPy's RawModule).
#pragma once

typedef unsigned char ql_u8;
typedef unsigned short ql_u16;
typedef unsigned int ql_u32;
typedef long long ql_i64;

struct ql_f16 { ql_u16 bits; };   // torch.float16
struct ql_bf16 { ql_u16 bits; };  // torch.bfloat16

struct alignas(16) ql_u32x4 { ql_u32 v[4]; };  // one 128-bit access
struct alignas(8) ql_u32x2 { ql_u32 v[2]; };   // one 64-bit access

// ---- packing traits ----
template <int NBITS> struct QlPack;
template <> struct QlPack<8> { static constexpr int P = 1; };
template <> struct QlPack<4> { static constexpr int P = 2; };
template <> struct QlPack<2> { static constexpr int P = 4; };
template <> struct QlPack<1> { static constexpr int P = 8; };
template <> struct QlPack<3> { static constexpr int P = 10; };

// Byte packings: codes of chunk k of four packed bytes, one code per byte (bits 0..NBITS-1 of each byte).
template <int NBITS>
__device__ __forceinline__ ql_u32 ql_byte_codes(ql_u32 w, int k) {
    constexpr ql_u32 M = (1u << NBITS) - 1u, MASK = M | (M << 8) | (M << 16) | (M << 24);
    return (w >> (8 - NBITS * (k + 1))) & MASK;
}

// ---- PTX wrappers (inline asm so the instruction is what we asked for, under nvcc and NVRTC) ----
// Weights: read once per call, so bypass L1 (L1 keeps the activations that every block re-reads).
__device__ __forceinline__ ql_u32x4 ql_ld_stream(const void* p) {
    ql_u32x4 r;
    asm("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
        : "=r"(r.v[0]), "=r"(r.v[1]), "=r"(r.v[2]), "=r"(r.v[3]) : "l"(p));
    return r;
}
// The same, predicated (no branch): zeros when `pred` is false.
__device__ __forceinline__ ql_u32x4 ql_ld_stream_if(const void* p, bool pred) {
    ql_u32x4 r = {{0u, 0u, 0u, 0u}};
    asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %5, 0;\n\t"
        "@q ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+r"(r.v[0]), "+r"(r.v[1]), "+r"(r.v[2]), "+r"(r.v[3]) : "l"(p), "r"(static_cast<int>(pred)));
    return r;
}
// Activations and vectors of meta: read-only, cached in L1.
__device__ __forceinline__ ql_u32x4 ql_ld128(const void* p) {
    ql_u32x4 r;
    asm("ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];" : "=r"(r.v[0]), "=r"(r.v[1]), "=r"(r.v[2]), "=r"(r.v[3]) : "l"(p));
    return r;
}
__device__ __forceinline__ ql_u32x4 ql_ld128_if(const void* p, bool pred) {
    ql_u32x4 r = {{0u, 0u, 0u, 0u}};
    asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %5, 0;\n\t@q ld.global.nc.v4.u32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+r"(r.v[0]), "+r"(r.v[1]), "+r"(r.v[2]), "+r"(r.v[3]) : "l"(p), "r"(static_cast<int>(pred)));
    return r;
}
__device__ __forceinline__ ql_u32x2 ql_ld64_if(const void* p, bool pred) {
    ql_u32x2 r = {{0u, 0u}};
    asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %3, 0;\n\t@q ld.global.nc.v2.u32 {%0, %1}, [%2];\n\t}"
        : "+r"(r.v[0]), "+r"(r.v[1]) : "l"(p), "r"(static_cast<int>(pred)));
    return r;
}
__device__ __forceinline__ ql_u32x2 ql_ld64(const void* p) {
    ql_u32x2 r;
    asm("ld.global.nc.v2.u32 {%0, %1}, [%2];" : "=r"(r.v[0]), "=r"(r.v[1]) : "l"(p));
    return r;
}
__device__ __forceinline__ void ql_st128(void* p, const ql_u32x4& v) {
    asm volatile("st.global.v4.u32 [%0], {%1, %2, %3, %4};" :: "l"(p), "r"(v.v[0]), "r"(v.v[1]), "r"(v.v[2]), "r"(v.v[3]) : "memory");
}
// The same, predicated (no branch): nothing when `pred` is false.
__device__ __forceinline__ void ql_st128_if(void* p, const ql_u32x4& v, bool pred) {
    asm volatile("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %5, 0;\n\t@q st.global.v4.u32 [%0], {%1, %2, %3, %4};\n\t}"
                 :: "l"(p), "r"(v.v[0]), "r"(v.v[1]), "r"(v.v[2]), "r"(v.v[3]), "r"(static_cast<int>(pred)) : "memory");
}
// v of lane ^ 1, the whole warp taking part (every lane must reach it)
__device__ __forceinline__ ql_u32 ql_shfl_xor1(ql_u32 v) {
    ql_u32 d;
    asm volatile("shfl.sync.bfly.b32 %0, %1, 1, 0x1f, 0xffffffff;" : "=r"(d) : "r"(v));
    return d;
}
__device__ __forceinline__ void ql_red_add(float* p, float v) {
    asm volatile("red.global.add.f32 [%0], %1;" :: "l"(p), "f"(v) : "memory");
}
template <ql_u32 SEL>
__device__ __forceinline__ ql_u32 ql_prmt(ql_u32 a, ql_u32 b) {
    ql_u32 d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "n"(SEL));
    return d;
}
// codes at bytes 0,1 (LO) or 2,3 (HI) of `u` as two 16-bit values MAGIC + code: the low byte of each half
// takes the code, the high byte the magic number's exponent byte (held in byte 0 of `magic_byte`)
__device__ __forceinline__ ql_u32 ql_pair_lo(ql_u32 u, ql_u32 magic_byte) { return ql_prmt<0x4140>(u, magic_byte); }
__device__ __forceinline__ ql_u32 ql_pair_hi(ql_u32 u, ql_u32 magic_byte) { return ql_prmt<0x4342>(u, magic_byte); }

// ---- value types: storage, widening to fp32, rounding from fp32 (round to nearest even, as PyTorch) ----
template <typename T> struct QT;

template <> struct QT<float> {
    typedef float storage;
    static constexpr bool HALF = false;
    static constexpr int MANT = 23;
    static __device__ __forceinline__ float load(float v) { return v; }
    static __device__ __forceinline__ float store(float f) { return f; }
};

template <> struct QT<ql_bf16> {
    typedef ql_u16 storage;
    static constexpr bool HALF = true;
    static constexpr int MANT = 7;                     // explicit mantissa bits
    static constexpr ql_u32 MAGIC_BYTE = 0x43u;        // bf16 0x4300 = 128: 128 + q is exact for q < 128
    static constexpr ql_u32 MAGIC2 = 0x43004300u;      // (128, 128)
    static constexpr ql_u32 ONE2 = 0x3F803F80u;        // (1, 1)
    static constexpr float MAGIC = 128.f;
    static __device__ __forceinline__ float load(ql_u16 h) { return __uint_as_float(static_cast<ql_u32>(h) << 16); }
    static __device__ __forceinline__ ql_u16 store(float f) {
        ql_u16 h;
        asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
        return h;
    }
    static __device__ __forceinline__ float lo(ql_u32 p) { return __uint_as_float(p << 16); }
    static __device__ __forceinline__ float hi(ql_u32 p) { return __uint_as_float(p & 0xFFFF0000u); }
    static __device__ __forceinline__ ql_u32 pack(float l, float h) {  // (l, h) -> low, high half
        ql_u32 d;
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(h), "f"(l));
        return d;
    }
    static __device__ __forceinline__ ql_u32 sub2(ql_u32 a, ql_u32 b) {  // a - b, one rounding: b * -1 + a
        ql_u32 d;
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(b), "r"(0xBF80BF80u), "r"(a));
        return d;
    }
    static __device__ __forceinline__ ql_u32 mul2(ql_u32 a, ql_u32 b) {  // a * b, one rounding: a * b + -0
        ql_u32 d;
        asm("fma.rn.bf16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
        return d;
    }
    static __device__ __forceinline__ void mma(float (&c)[4], const ql_u32 (&a)[4], ql_u32 b0, ql_u32 b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void mma0(float (&c)[4], const ql_u32 (&a)[4], ql_u32 b0, ql_u32 b1) {  // C = 0
        asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%10, %10, %10, %10};"
            : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.f));
    }
};

template <> struct QT<ql_f16> {
    typedef ql_u16 storage;
    static constexpr bool HALF = true;
    static constexpr int MANT = 10;
    static constexpr ql_u32 MAGIC_BYTE = 0x64u;        // fp16 0x6400 = 1024: 1024 + q is exact for q < 1024
    static constexpr ql_u32 MAGIC2 = 0x64006400u;
    static constexpr ql_u32 ONE2 = 0x3C003C00u;
    static constexpr float MAGIC = 1024.f;
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
    static __device__ __forceinline__ float lo(ql_u32 p) { return load(static_cast<ql_u16>(p & 0xFFFFu)); }
    static __device__ __forceinline__ float hi(ql_u32 p) { return load(static_cast<ql_u16>(p >> 16)); }
    static __device__ __forceinline__ ql_u32 pack(float l, float h) {
        ql_u32 d;
        asm("cvt.rn.f16x2.f32 %0, %1, %2;" : "=r"(d) : "f"(h), "f"(l));
        return d;
    }
    static __device__ __forceinline__ ql_u32 sub2(ql_u32 a, ql_u32 b) {
        ql_u32 d;
        asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(b), "r"(0xBC00BC00u), "r"(a));
        return d;
    }
    static __device__ __forceinline__ ql_u32 mul2(ql_u32 a, ql_u32 b) {
        ql_u32 d;
        asm("fma.rn.f16x2 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(0x80008000u));
        return d;
    }
    static __device__ __forceinline__ void mma(float (&c)[4], const ql_u32 (&a)[4], ql_u32 b0, ql_u32 b1) {
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
    static __device__ __forceinline__ void mma0(float (&c)[4], const ql_u32 (&a)[4], ql_u32 b0, ql_u32 b1) {  // C = 0
        asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%10, %10, %10, %10};"
            : "=f"(c[0]), "=f"(c[1]), "=f"(c[2]), "=f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "f"(0.f));
    }
};

// Scalar meta load (read-only path), widened to fp32.
__device__ __forceinline__ ql_u16 ql_ld16(const ql_u16* p) {
    ql_u16 h;
    asm("ld.global.nc.u16 %0, [%1];" : "=h"(h) : "l"(p));
    return h;
}
__device__ __forceinline__ float ql_ld32f(const float* p) {
    float f;
    asm("ld.global.nc.f32 %0, [%1];" : "=f"(f) : "l"(p));
    return f;
}
template <typename T> struct QlMeta {
    static __device__ __forceinline__ float load(const ql_u16* p) { return QT<T>::load(ql_ld16(p)); }
};
template <> struct QlMeta<float> {
    static __device__ __forceinline__ float load(const float* p) { return ql_ld32f(p); }
};
// element j of a run of meta values held in 128-bit registers, widened to fp32
template <typename T>
__device__ __forceinline__ float ql_meta_elem(const ql_u32x4* v, int j) {
    if constexpr (QT<T>::HALF) return QT<T>::load(static_cast<ql_u16>(v[j / 8].v[(j % 8) / 2] >> (16 * (j % 2))));
    else return __uint_as_float(v[j / 4].v[j % 4]);
}
template <typename A, typename B> struct QlSame { static constexpr bool value = false; };
template <typename A> struct QlSame<A, A> { static constexpr bool value = true; };

// PyTorch's type promotion for two float dtypes: equal -> itself, different -> float32.
template <typename A, typename B> struct QlPromote { typedef float type; };
template <typename A> struct QlPromote<A, A> { typedef A type; };

// ---- 3-bit words: two words' 16-bit windows side by side, so one shift+mask yields a code pair ----
// X = bits 0..15 of w0 | bits 0..15 of w1 << 16: chunks 5..9 at offsets 12, 9, 6, 3, 0 in each half
// Y = bits 15..30 of w0 | bits 15..30 of w1 << 16: chunks 0..4 at offsets 12, 9, 6, 3, 0 in each half
__device__ __forceinline__ ql_u32 ql_3bit_x(ql_u32 w0, ql_u32 w1) { return ql_prmt<0x5410>(w0, w1); }
__device__ __forceinline__ ql_u32 ql_3bit_y(ql_u32 w0, ql_u32 w1) { return ql_prmt<0x7610>(w0 >> 15, w1 << 1); }
// offset of chunk k in its window
__host__ __device__ constexpr int ql_3bit_off(int k) { return k < 5 ? 12 - 3 * k : 27 - 3 * k; }
// A value the compiler cannot fold: keeps a constant in a register, so (v & imm) | reg is one LOP3
__device__ __forceinline__ ql_u32 ql_opaque(ql_u32 v) {
    ql_u32 r;
    asm volatile("mov.b32 %0, %1;" : "=r"(r) : "r"(v));
    return r;
}
// (a & 0x00070007) | c in one instruction (LOP3 truth table 0xEA = (a & b) | c)
__device__ __forceinline__ ql_u32 ql_and7_or(ql_u32 a, ql_u32 c) {
    ql_u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(0x00070007), "r"(c));
    return d;
}
// code pair of chunk k (from the X or Y window) as MAGIC + code in each 16-bit half (k is a compile-time
// constant once the caller's loop over chunks is unrolled); magic2 should be `ql_opaque(MAGIC2)`
__device__ __forceinline__ ql_u32 ql_3bit_pair(ql_u32 xw, ql_u32 yw, int k, ql_u32 magic2) {
    return ql_and7_or((k < 5 ? yw : xw) >> ql_3bit_off(k), magic2);
}
