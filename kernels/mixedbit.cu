// mixedbit.cu: the mixed-bit layout of qdora_lab.mixedbit.MixedBitLinear on the GPU: dequantize (bit-exact,
// input channels put back in their original order) and y = x @ W^T for small M on the tensor cores.
//
// Layout read (chapter 09). The K layout columns are groups of g, widest first; layout column j holds input
// channel perm[j]. The n_b groups of width b form a block of R_b = n_b*g layout columns starting at column J_b;
// its codes are bit planes (8 | 6 = 4+2 | 5 = 4+1 | 4 | 3 = 2+1 | 2), each packed with hqq's BitPack along the
// *layout columns* (qdora_lab.bitpack.pack of the [R_b, N] transposed code block):
//
//   plane of P codes per byte: [R_b / P, N] uint8, N (output rows) contiguous; byte (i, o) holds layout columns
//   i, n + i, .., (P-1)n + i (n = R_b / P) of row o, chunk k at bit offset (P-1-k)*bits (chunk 0 in the high bits)
//
//   The *unit* plane is the one with the most codes per byte (the low plane: P_u = 4 for 6 and 2 bits, 8 for 5
//   and 3, 2 for 4, 1 for 8); n_u = R_b / P_u. Layout column l = c*n_u + i of the block is unit row i, chunk c;
//   its high bits (6, 5, 3 bits) sit in high-plane row (c % H)*n_u + i, chunk c / H, H = P_u / P_high.
//   code = high << bits_low | low.
//
//      unit row i, 16 output rows o0..o0+15:   [ byte o0 | byte o0+1 | ... | byte o0+15 ]   one 128-bit load
//      byte (3 bits, low plane, P = 8):        bit 7 6 5 4 3 2 1 0 = chunks 0 1 2 3 4 5 6 7  (8 layout columns)
//
// Values: W_layout[o, j] = (q - z) * s (hqq) or q * s - z (scaled_zero), in fp32 with one rounding per op as
// PyTorch computes it (MixedBitLinear._dequantize: float32, then cast), scale/zero fp16 [N, G].
//
// ql_mb_dequantize (W in the original channel order, for cuBLAS and DoRA): a block owns 16 output rows and walks
// the original columns in chunks of 256. The plan sorts each chunk's columns by layout column (so neighbouring
// threads mostly share a group and its scale/zero) and stores per position the addresses of the two plane rows
// that hold the column (absolute 64-bit, so one code path serves every width) and a packed descriptor:
//
//   phase 1, thread t = sorted position t (its table entries loaded during the previous chunk): two 128-bit
//            loads (high and low plane rows, 16 output rows each),
//            16 codes, fp32 arithmetic with scale/zero from shared memory ([group][16 rows], staged once per
//            block), 16 values to a column of the shared tile [256 columns][16 rows]
//   phase 2, thread (row pair, 8 columns): 8 32-bit shared loads, PRMT, two 128-bit stores (rows 2p, 2p+1)
//
// ql_mb_mm (small M, one launch per width present): y[t, o] = sum_groups s (sum q x - z sum x) with x already
// permuted by the plan (x_p = x[:, perm], each chunk's columns zero-padded to whole runs of 16) and the sums on the
// tensor cores (mma.m16n8k16, fp32 accumulation). A block owns 64 output rows (4 warps x 16) and a range of runs
// (16 unit rows each); per run, cp.async copies the unit run and its H high runs (64 bytes = 4 x 16 per plane
// row: whole sectors, L2 only) and the run's x (32 bytes per chunk and token) into shared memory, 4 stages deep,
// and each warp takes its 16 rows with ldmatrix.trans, which delivers exactly the mma's A layout:
//
//   lane (gid, tid) of ldmatrix.x2.trans: reg m = bytes (unit rows u, u+1) x (tile rows 2gid, 2gid+1),
//   u = 4tid + 2m: even bytes -> A row gid (tile row 2gid), odd bytes -> A row gid+8 (tile row 2gid+1),
//   kappas (2tid, 2tid+1) <-> unit rows 4tid, 4tid+1; (2tid+8, 2tid+9) <-> 4tid+2, 4tid+3, so B is one 64-bit
//   shared load of 4 consecutive activations (token gid, unit rows i0 + 4tid .. of chunk c)
//   A reg = ((low >> s) & m) | ((high >> s') & m') << bits_low | MAGIC: at most a shift and a LOP3 per plane
//   (the code is left at bit P of the half, A = MAGIC + 2^P q, where it still fits the mantissa; flush divides)
//
// Every chunk c of a run is its own k-step (16 layout columns c*n_u + i0 .. +15) with its own accumulators;
// sum x comes from a second mma with an all-ones A. When a chunk's columns reach the end of their group, the
// chunk's sums get that group's scale and zero (`flush`) and start again; a run that straddles a group boundary
// (at a multiple of 4 columns, g % 32 == 0) is split by masking B per lane. Runs in which no chunk's group ends
// form the inner loop (no flush code in it); the others take the general step. bf16 codes enter as 128 + q, which
// holds 7 bits: 8-bit codes go in as two nibbles, the high one against 16 x (exact), so the offset is 17 * 128.
// Partial sums of a split of the runs are added into a zeroed fp32 buffer (red.global.add.f32).
//
// Memory-traffic bounds (H100, 3.0 TB/s): mm reads the codes once (bits/8 bytes per weight) + meta; dequantize
// reads the codes and writes W: 4096 x 4096 at 3 bits to bf16 = 6.3 + 1.0 + 33.6 MB.
#include "hqq_layout.cuh"

typedef unsigned long long ql_u64;
struct alignas(16) ql_f32x4 { float v[4]; };
struct alignas(8) ql_f32x2 { float v[2]; };

__device__ __forceinline__ ql_u32 ql_smem_addr(const void* p) {
    ql_u32 a;
    asm("{ .reg .u64 t; cvta.to.shared.u64 t, %1; cvt.u32.u64 %0, t; }" : "=r"(a) : "l"(p));
    return a;
}
__device__ __forceinline__ void ql_cp_commit() { asm volatile("cp.async.commit_group;" ::: "memory"); }
template <int N> __device__ __forceinline__ void ql_cp_wait() { asm volatile("cp.async.wait_group %0;" :: "n"(N) : "memory"); }
// two 8x8 b16 matrices, transposed: lanes 0-7 give matrix 0's row addresses, lanes 8-15 matrix 1's
__device__ __forceinline__ void ql_ldsm_x2_t(ql_u32& r0, ql_u32& r1, ql_u32 addr) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];" : "=r"(r0), "=r"(r1) : "r"(addr));
}
// weights re-read by the same block later (the other chunks of a byte): keep them in L1
__device__ __forceinline__ ql_u32x4 ql_ld_keep_if(const void* p, bool pred) {
    ql_u32x4 r = {{0u, 0u, 0u, 0u}};
    asm("{\n\t.reg .pred q;\n\tsetp.ne.b32 q, %5, 0;\n\t"
        "@q ld.global.nc.L1::evict_last.v4.u32 {%0, %1, %2, %3}, [%4];\n\t}"
        : "+r"(r.v[0]), "+r"(r.v[1]), "+r"(r.v[2]), "+r"(r.v[3]) : "l"(p), "r"(static_cast<int>(pred)));
    return r;
}
// (a & MASK) | c in one LOP3
template <ql_u32 MASK>
__device__ __forceinline__ ql_u32 ql_and_or(ql_u32 a, ql_u32 c) {
    ql_u32 d;
    asm("lop3.b32 %0, %1, %2, %3, 0xEA;" : "=r"(d) : "r"(a), "n"(MASK), "r"(c));
    return d;
}
template <bool B> struct QlBool { static constexpr bool value = B; };
template <int S> __device__ __forceinline__ ql_u32 ql_shr(ql_u32 v) {  // v >> S, or v << -S
    if constexpr (S >= 0) return v >> S; else return v << (-S);
}

// ---- widths: the unit (low) plane and the high plane ----
template <int WB> struct QlMbWidth;
template <> struct QlMbWidth<8> { static constexpr int PU = 1, BL = 8, PH = 0, BH = 0; };
template <> struct QlMbWidth<6> { static constexpr int PU = 4, BL = 2, PH = 2, BH = 4; };
template <> struct QlMbWidth<5> { static constexpr int PU = 8, BL = 1, PH = 2, BH = 4; };
template <> struct QlMbWidth<4> { static constexpr int PU = 2, BL = 4, PH = 0, BH = 0; };
template <> struct QlMbWidth<3> { static constexpr int PU = 8, BL = 1, PH = 4, BH = 2; };
template <> struct QlMbWidth<2> { static constexpr int PU = 4, BL = 2, PH = 0, BH = 0; };

// =====================================================================================================
// dequantize
// =====================================================================================================
#define QL_MB_KC 256  // original columns per chunk = threads per block

template <typename OUT> struct QlMbTile {  // shared tile [256 columns][16 rows]: one column = 8 row pairs
    static constexpr int PAIR = QT<OUT>::HALF ? 4 : 8;     // bytes of a row pair
    static constexpr int STRIDE = 8 * PAIR + (QT<OUT>::HALF ? 4 : 8);  // padded: 36 / 72 bytes (no bank conflicts)
};

// descriptor bits (plan: _mb_tables): [0,4) shift of the high (or only) plane, [4,8) its bits, [8,12) shift of
// the low plane, [12,16) its bits (0: none), [16,24) column within the chunk
template <int R> struct QlMbByte {  // code byte R of a word as the exact fp32 2^23 + code
    static __device__ __forceinline__ float f(ql_u32 w) { return __uint_as_float(ql_prmt<0x7440 + R>(w, 0x4B000000u)); }
};
template <typename OUT, bool SCALED, bool RS>
__global__ void __launch_bounds__(QL_MB_KC) ql_mb_dequantize(
    const ql_u64* __restrict__ addr,                       // [chunks*256][2]: plane-row addresses (high, low)
    const ql_u32* __restrict__ info,                       // [chunks*256][2]: descriptor, global group
    const ql_u16* __restrict__ scale,                      // fp16 [N, G]
    const ql_u16* __restrict__ zero,                       // fp16 [N, G]
    typename QT<OUT>::storage* __restrict__ out,           // W [N, K], original channel order
    const float* __restrict__ row_scale,                   // [N] (RS only)
    int N, int K, int G, int chunks) {
    typedef QlMbTile<OUT> TL;
    extern __shared__ __align__(16) unsigned char ql_mb_smem[];
    float* meta_s = reinterpret_cast<float*>(ql_mb_smem);  // [G][8 slots][4]: (s, z) of rows 2m, 2m+1 at slot m ^ (gr & 7)
    unsigned char* tile = ql_mb_smem + G * 128;
    const int t = threadIdx.x, o0 = blockIdx.x * 16;
    const int c_lo = chunks * blockIdx.y / gridDim.y, c_hi = chunks * (blockIdx.y + 1) / gridDim.y;
    for (int q = t; q < 16 * G; q += QL_MB_KC) {  // this block's scale/zero, staged once as fp32
        const int r = q / G, gr = q - r * G;
        const ql_i64 mo = static_cast<ql_i64>(o0 + r) * G + gr;
        float* d = meta_s + gr * 32 + (((r >> 1) ^ (gr & 7)) << 2) + ((r & 1) << 1);
        d[0] = QT<ql_f16>::load(ql_ld16(scale + mo));
        d[1] = QT<ql_f16>::load(ql_ld16(zero + mo));
    }
    float rs[16];
#pragma unroll
    for (int r = 0; r < 16; ++r) rs[r] = RS ? ql_ld32f(row_scale + o0 + r) : 1.f;
    // each chunk's table entries (plane-row addresses, descriptor) are loaded one chunk ahead, during the previous
    // chunk's work, so a chunk waits on memory once (its weights) instead of twice (the table, then the weights it
    // points to). (Timed on an H100, 2026-11-27: 33.1 us against 33.7 loading them at the chunk's start, within noise.)
    ql_u32x4 a_next = {{0u, 0u, 0u, 0u}};
    ql_u32x2 d_next = {{0u, 0u}};
    if (c_lo < c_hi) {
        const ql_i64 e = static_cast<ql_i64>(c_lo) * QL_MB_KC + t;
        a_next = ql_ld128(addr + 2 * e); d_next = ql_ld64(info + 2 * e);
    }
    for (int ch = c_lo; ch < c_hi; ++ch) {
        __syncthreads();  // meta staged / the previous chunk's tile read
        {   // phase 1: sorted position t of chunk ch, 16 rows
            const ql_i64 e = static_cast<ql_i64>(ch) * QL_MB_KC + t;
            const ql_u32x4 a = a_next;
            const ql_u32x2 d = d_next;
            const ql_u32 sA = d.v[0] & 15u, bA = (d.v[0] >> 4) & 15u, sB = (d.v[0] >> 8) & 15u, bB = (d.v[0] >> 12) & 15u;
            const int kl = (d.v[0] >> 16) & 255u, gr = d.v[1];
            const ql_u8* pA = reinterpret_cast<const ql_u8*>((static_cast<ql_u64>(a.v[1]) << 32) | a.v[0]) + o0;
            const ql_u8* pB = reinterpret_cast<const ql_u8*>((static_cast<ql_u64>(a.v[3]) << 32) | a.v[2]) + o0;
            const ql_u32x4 wA = ql_ld_keep_if(pA, true), wB = ql_ld_keep_if(pB, bB != 0u);
            if (ch + 1 < c_hi) { a_next = ql_ld128(addr + 2 * (e + QL_MB_KC)); d_next = ql_ld64(info + 2 * (e + QL_MB_KC)); }
            const ql_u32 mA = ((1u << bA) - 1u) * 0x01010101u, mB = ((1u << bB) - 1u) * 0x01010101u;
            ql_u32 code[4];  // the codes of rows 4w .. 4w+3, one per byte
#pragma unroll
            for (int w = 0; w < 4; ++w) code[w] = (((wA.v[w] >> sA) & mA) << bB) | ((wB.v[w] >> sB) & mB);
            const float* ms = meta_s + gr * 32;
            unsigned char* col = tile + kl * TL::STRIDE;
#pragma unroll
            for (int m = 0; m < 8; ++m) {  // row pair (2m, 2m+1): one 128-bit shared load of (s, z, s, z)
                const ql_f32x4 sz = *reinterpret_cast<const ql_f32x4*>(ms + ((m ^ (gr & 7)) << 2));
                float v[2];
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = 2 * m + h;
                    const ql_u32 cw = code[r >> 2];
                    const float c23 = (r & 3) == 0 ? QlMbByte<0>::f(cw) : (r & 3) == 1 ? QlMbByte<1>::f(cw)
                                    : (r & 3) == 2 ? QlMbByte<2>::f(cw) : QlMbByte<3>::f(cw);
                    const float q = c23 - 8388608.f;  // exact
                    const float s = sz.v[2 * h], z = sz.v[2 * h + 1];
                    float w = SCALED ? __fsub_rn(__fmul_rn(q, s), z) : __fmul_rn(__fsub_rn(q, z), s);
                    if (RS) w = __fmul_rn(QT<OUT>::load(QT<OUT>::store(w)), rs[r]);  // (W.to(dtype) * rs).to(dtype)
                    v[h] = w;
                }
                if constexpr (QT<OUT>::HALF) *reinterpret_cast<ql_u32*>(col + 4 * m) = QT<OUT>::pack(v[0], v[1]);
                else *reinterpret_cast<ql_f32x2*>(col + 8 * m) = ql_f32x2{{v[0], v[1]}};
            }
        }
        __syncthreads();
        {   // phase 2: rows 2p, 2p+1, columns 8cb .. 8cb+7 of the chunk
            const int p = t & 7, cb = t >> 3, k0 = ch * QL_MB_KC + 8 * cb;
            if (k0 < K) {
                typename QT<OUT>::storage* o = out + static_cast<ql_i64>(o0 + 2 * p) * K + k0;
                if constexpr (QT<OUT>::HALF) {
                    ql_u32 pr[8];
#pragma unroll
                    for (int e = 0; e < 8; ++e) pr[e] = *reinterpret_cast<const ql_u32*>(tile + (8 * cb + e) * TL::STRIDE + 4 * p);
                    ql_u32x4 lo, hi;
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        lo.v[e] = ql_prmt<0x5410>(pr[2 * e], pr[2 * e + 1]);
                        hi.v[e] = ql_prmt<0x7632>(pr[2 * e], pr[2 * e + 1]);
                    }
                    ql_st128(o, lo);
                    ql_st128(o + K, hi);
                } else {
                    ql_f32x2 pr[8];
#pragma unroll
                    for (int e = 0; e < 8; ++e) pr[e] = *reinterpret_cast<const ql_f32x2*>(tile + (8 * cb + e) * TL::STRIDE + 8 * p);
#pragma unroll
                    for (int hh = 0; hh < 2; ++hh) {
                        ql_st128(o + 4 * hh, ql_u32x4{{__float_as_uint(pr[4 * hh].v[0]), __float_as_uint(pr[4 * hh + 1].v[0]),
                                                        __float_as_uint(pr[4 * hh + 2].v[0]), __float_as_uint(pr[4 * hh + 3].v[0])}});
                        ql_st128(o + K + 4 * hh, ql_u32x4{{__float_as_uint(pr[4 * hh].v[1]), __float_as_uint(pr[4 * hh + 1].v[1]),
                                                            __float_as_uint(pr[4 * hh + 2].v[1]), __float_as_uint(pr[4 * hh + 3].v[1])}});
                    }
                }
            }
        }
    }
}

// =====================================================================================================
// small-M matmul
// =====================================================================================================
#define QL_MB_STAGES 4
#define QL_MB_SLOT 80  // bytes per unit row in shared memory: 64 + 16 (ldmatrix without bank conflicts)

// shared slot of unit row u (0..15) of a run: matrix (u >> 1) & 1, position 2(u >> 2) + (u & 1)
__host__ __device__ constexpr int ql_mb_slot(int u) { return 8 * ((u >> 1) & 1) + 2 * (u >> 2) + (u & 1); }

// Where chunk C's code sits in the A operand: bit P of each 16-bit half (A = MAGIC + 2^P code), chosen so that
// the low plane's field needs no shift when the code still fits the mantissa (MANT bits), else P = 0.
template <int WB, int MANT, int C> struct QlMbPos {
    typedef QlMbWidth<WB> W;
    static constexpr int H = W::PH ? W::PU / W::PH : 0;
    static constexpr int PL = C < W::PU ? (W::PU - 1 - C) * W::BL : 0;               // low field in its byte
    static constexpr int PHI = H && C < W::PU ? (W::PH - 1 - C / (H ? H : 1)) * W::BH : 0;  // high field in its byte
    static constexpr int P = PL + WB <= MANT ? PL : 0;
};

// A registers of chunk C (a compile-time constant): A[2m + od] from ldmatrix register m of the unit run (L: even
// bytes, Lo: odd bytes, i.e. L >> 8) and of high run C % H (Hr / Ho); even bytes are tile row 2gid, odd bytes
// tile row 2gid + 1. SPLIT8 (8 bits, bf16): A = low nibbles, A2 = high nibbles.
template <int WB, typename T, bool SPLIT8, int C, int HH>
__device__ __forceinline__ void ql_mb_chunk_a(const ql_u32 (&L)[2][2], const ql_u32 (&Hr)[HH][2][2], ql_u32 magic2,
                                              ql_u32 (&A)[4], ql_u32 (&A2)[4]) {
    typedef QlMbWidth<WB> W;
    typedef QlMbPos<WB, QT<T>::MANT, C> PS;
    if constexpr (C >= W::PU) return;  // no such chunk (never called: c < PU)
    else
#pragma unroll
    for (int m = 0; m < 2; ++m)
#pragma unroll
        for (int od = 0; od < 2; ++od) {
            const ql_u32 l = L[m][od];
            if constexpr (SPLIT8) {
                A[2 * m + od] = ql_and_or<0x000F000Fu>(l, magic2);
                A2[2 * m + od] = ql_and_or<0x000F000Fu>(l >> 4, magic2);
            } else {
                constexpr ql_u32 ML = (((1u << W::BL) - 1u) << PS::P) * 0x00010001u;
                if constexpr (PS::H == 0) A[2 * m + od] = ql_and_or<ML>(ql_shr<PS::PL - PS::P>(l), magic2);
                else {
                    constexpr ql_u32 MH = (((1u << W::BH) - 1u) << (W::BL + PS::P)) * 0x00010001u;
                    const ql_u32 th = ql_and_or<MH>(ql_shr<PS::PHI - W::BL - PS::P>(Hr[C % (PS::H ? PS::H : 1)][m][od]), magic2);
                    A[2 * m + od] = ql_and_or<ML>(ql_shr<PS::PL - PS::P>(l), th);
                }
            }
        }
}
template <int WB, typename T, bool SPLIT8, int HH>
__device__ __forceinline__ void ql_mb_a(int c, const ql_u32 (&L)[2][2], const ql_u32 (&Hr)[HH][2][2], ql_u32 magic2,
                                        ql_u32 (&A)[4], ql_u32 (&A2)[4]) {  // c is a constant once unrolled
    switch (c) {
        case 0: ql_mb_chunk_a<WB, T, SPLIT8, 0>(L, Hr, magic2, A, A2); break;
        case 1: ql_mb_chunk_a<WB, T, SPLIT8, 1>(L, Hr, magic2, A, A2); break;
        case 2: ql_mb_chunk_a<WB, T, SPLIT8, 2>(L, Hr, magic2, A, A2); break;
        case 3: ql_mb_chunk_a<WB, T, SPLIT8, 3>(L, Hr, magic2, A, A2); break;
        case 4: ql_mb_chunk_a<WB, T, SPLIT8, 4>(L, Hr, magic2, A, A2); break;
        case 5: ql_mb_chunk_a<WB, T, SPLIT8, 5>(L, Hr, magic2, A, A2); break;
        case 6: ql_mb_chunk_a<WB, T, SPLIT8, 6>(L, Hr, magic2, A, A2); break;
        default: ql_mb_chunk_a<WB, T, SPLIT8, 7>(L, Hr, magic2, A, A2); break;
    }
}
template <int WB, typename T>
__device__ __forceinline__ float ql_mb_pow(int c) {  // 2^-P of chunk c (c constant once unrolled)
    constexpr int MT = QT<T>::MANT;
    switch (c) {
        case 0: return 1.f / (1 << QlMbPos<WB, MT, 0>::P);
        case 1: return 1.f / (1 << QlMbPos<WB, MT, 1>::P);
        case 2: return 1.f / (1 << QlMbPos<WB, MT, 2>::P);
        case 3: return 1.f / (1 << QlMbPos<WB, MT, 3>::P);
        case 4: return 1.f / (1 << QlMbPos<WB, MT, 4>::P);
        case 5: return 1.f / (1 << QlMbPos<WB, MT, 5>::P);
        case 6: return 1.f / (1 << QlMbPos<WB, MT, 6>::P);
        default: return 1.f / (1 << QlMbPos<WB, MT, 7>::P);
    }
}

// The state of one thread of ql_mb_mm and its steps. (A struct with member templates rather than generic lambdas:
// NVRTC compiles no generic lambda in device code.) Every array is indexed with constants once the chunk loops
// are unrolled and the members inlined, so it all stays in registers.
template <int WB, typename T> struct QlMbMM {
    typedef QT<T> TT;
    typedef QlMbWidth<WB> W;
    static constexpr int PU = W::PU, H = W::PH ? W::PU / W::PH : 0, RUNS = 1 + H, HH = H > 0 ? H : 1;
    static constexpr bool SPLIT8 = WB == 8 && !QlSame<T, ql_f16>::value;  // bf16: 8-bit codes as two nibbles
    static constexpr float MOFF = TT::MAGIC * (SPLIT8 ? 17.f : 1.f);
    // a stage: RUNS planes x 16 unit rows x 80 bytes (64 output rows), then x: PU chunks x 8 tokens x 16 columns
    static constexpr int XOFF = RUNS * 16 * QL_MB_SLOT, STAGE = XOFF + PU * 256;
    static constexpr int WCOPIES = RUNS * 64, XCOPIES = PU * 16, CW = (WCOPIES + 127) / 128;  // 16-byte copies per run

    int M, N, G, g, n_u, r_hi, scaled, tid;
    ql_u32 sbase, lrow, xrow, magic2;
    const unsigned char* wsrc[CW];
    ql_u32 wdst[CW];
    int wlim[CW];  // unit rows of the width minus this slot's row (0: nothing to copy): run r copies when 16 r < wlim
    const unsigned char* xsrc;
    ql_u32 xdst;
    bool xlive, xok, rows_ok;
    const ql_u16 *sp, *zp;
    float acc[PU][4], accx[PU][4], yacc[4];
    int gr[PU], iend[PU];  // chunk c: its current group (within the width's block) and the unit row where it ends

    __device__ __forceinline__ void issue(int r, int st) {  // run r into stage st; every slot advances by one run
        const ql_u32 sb = sbase + st * STAGE;
#pragma unroll
        for (int i = 0; i < CW; ++i) {
            if (WCOPIES % 128 == 0 || static_cast<int>(threadIdx.x) + 128 * i < WCOPIES)
                asm volatile("{\n\t.reg .pred z;\n\tsetp.ge.s32 z, %2, %3;\n\t"
                             "cp.async.cg.shared.global [%0], [%1], 16, z;\n\t}"     // z: zeros, no global read
                             :: "r"(sb + wdst[i]), "l"(wsrc[i]), "r"(16 * r), "r"(wlim[i]) : "memory");
            wsrc[i] += 16 * static_cast<ql_i64>(N);
        }
        if (xlive) asm volatile("{\n\t.reg .pred z;\n\tsetp.eq.u32 z, %2, 0;\n\t"
                                "cp.async.ca.shared.global [%0], [%1], 16, z;\n\t}"       // z: a token >= M, zeros
                                :: "r"(sb + xdst), "l"(xsrc), "r"(static_cast<ql_u32>(xok)) : "memory");
        xsrc += 32;
    }
    // chunk c's sums get its group's scale and zero: y += s 2^-P (acc - MOFF sum x) - z' sum x, z' = s z (hqq) or z
    __device__ __forceinline__ void flush(int c) {
        const float pw = ql_mb_pow<WB, T>(c);
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const float s = rows_ok ? QT<ql_f16>::load(ql_ld16(sp + h * G + gr[c])) : 0.f;
            const float z = rows_ok ? QT<ql_f16>::load(ql_ld16(zp + h * G + gr[c])) : 0.f;
            const float zz = scaled ? z : s * z, sp2 = s * pw;
#pragma unroll
            for (int e = 0; e < 2; ++e) {
                const int v = 2 * h + e;
                const float ax = accx[c][v];
                yacc[v] = fmaf(-zz, ax, fmaf(sp2, fmaf(-MOFF, ax, acc[c][v]), yacc[v]));
                acc[c][v] = accx[c][v] = 0.f;
            }
        }
    }
    __device__ __forceinline__ void mma(int c, const ql_u32 (&A)[4], const ql_u32 (&A2)[4], ql_u32 b0, ql_u32 b1, ql_u32 k) {
        const ql_u32 ones[4] = {TT::ONE2, TT::ONE2, TT::ONE2, TT::ONE2};
        TT::mma(acc[c], A, b0 & k, b1 & k);
        if constexpr (SPLIT8) TT::mma(acc[c], A2, TT::mul2(b0 & k, 0x41804180u), TT::mul2(b1 & k, 0x41804180u));  // 16 x
        TT::mma(accx[c], ones, b0 & k, b1 & k);
    }
    // run r from stage sr; CUT = false: no chunk's group ends in this run (the inner loop), true: the others
    template <bool CUT>
    __device__ __forceinline__ void run(int r, int sr) {
        ql_cp_wait<QL_MB_STAGES - 2>();
        __syncthreads();  // run r landed for every thread; every warp is done with the stage refilled next
        if (r + QL_MB_STAGES - 1 < r_hi) issue(r + QL_MB_STAGES - 1, sr == 0 ? QL_MB_STAGES - 1 : sr - 1);
        ql_cp_commit();
        const int i0 = 16 * r;
        const ql_u32 st = sbase + sr * STAGE;
        ql_u32 L[2][2], Hr[HH][2][2];
        ql_ldsm_x2_t(L[0][0], L[1][0], st + lrow);
        L[0][1] = L[0][0] >> 8; L[1][1] = L[1][0] >> 8;
#pragma unroll
        for (int h = 0; h < H; ++h) {
            ql_ldsm_x2_t(Hr[h][0][0], Hr[h][1][0], st + lrow + (1 + h) * 16 * QL_MB_SLOT);
            Hr[h][0][1] = Hr[h][0][0] >> 8; Hr[h][1][1] = Hr[h][1][0] >> 8;
        }
#pragma unroll
        for (int c = 0; c < PU; ++c) {
            ql_u32 A[4], A2[4], b0, b1;
            ql_mb_a<WB, T, SPLIT8, HH>(c, L, Hr, magic2, A, A2);
            asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];" : "=r"(b0), "=r"(b1) : "r"(st + xrow + c * 256));
            if (!CUT || !(iend[c] < n_u && iend[c] <= i0 + 16)) mma(c, A, A2, b0, b1, 0xFFFFFFFFu);
            else {  // chunk c's group ends in this run, at unit row iend[c] (a multiple of 4): split by lanes
                const int e = iend[c];
                const ql_u32 keep = i0 + 4 * tid < e ? 0xFFFFFFFFu : 0u;
                mma(c, A, A2, b0, b1, keep);
                flush(c);
                ++gr[c]; iend[c] = min(n_u, e + g);
                if (e < i0 + 16) mma(c, A, A2, b0, b1, ~keep);
            }
        }
    }
};

template <int WB, typename T>
__global__ void __launch_bounds__(128, 1) ql_mb_mm(
    const typename QT<T>::storage* __restrict__ x,         // x_p [M, Kx], M <= 8: x in the runs' order (see below)
    const ql_u8* __restrict__ lo,                          // unit plane [n_u, N]
    const ql_u8* __restrict__ hi,                          // high plane [H*n_u, N] (unused for 8, 4, 2 bits)
    const ql_u16* __restrict__ scale,                      // fp16 [N, G]
    const ql_u16* __restrict__ zero,                       // fp16 [N, G]
    float* __restrict__ y32,                               // [M, N] fp32, zeroed
    int M, int N, int Kx, int G, int g, int J0, int Jx, int n_u, int nruns, int scaled) {
    // J0: the width's first layout column; Jx: its first column in x_p, where chunk c's unit rows i are columns
    // Jx + 16 nruns c + i, zeros from n_u to 16 nruns (the plan builds x_p so: 16-byte aligned, no partial runs)
    typedef QlMbMM<WB, T> S;
    __shared__ __align__(16) unsigned char stage_s[QL_MB_STAGES * S::STAGE];
    S s;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, tid = lane & 3;
    const int ob = blockIdx.x * 64, o0 = ob + 16 * warp;
    const int r_lo = nruns * blockIdx.y / gridDim.y, r_hi = nruns * (blockIdx.y + 1) / gridDim.y;
    s.M = M; s.N = N; s.G = G; s.g = g; s.n_u = n_u; s.r_hi = r_hi; s.scaled = scaled; s.tid = tid;
    s.sbase = ql_smem_addr(stage_s);
    s.lrow = (8 * ((lane >> 3) & 1) + (lane & 7)) * QL_MB_SLOT + 16 * warp;  // ldmatrix: the shared row this lane addresses
    s.xrow = S::XOFF + gid * 32 + tid * 8;                                   // B: token gid, columns 4tid .. 4tid+3
    s.magic2 = ql_opaque(QT<T>::MAGIC2);
    // This thread's copies, the same slots in every run: CW of codes (plane q, unit row u, 16 output rows pc of
    // the block's 64; cp.async.cg: L2 only) and at most one of x (chunk c, token t, columns 8pc..; cp.async.ca:
    // every row block reads x). src: the source of the next run.
#pragma unroll
    for (int i = 0; i < S::CW; ++i) {
        const int idx = threadIdx.x + 128 * i;
        const int q = idx >> 6, u = (idx >> 2) & 15, pc = idx & 3;
        const bool ok = idx < S::WCOPIES && ob + 16 * pc < N;
        s.wsrc[i] = reinterpret_cast<const unsigned char*>(q == 0 ? lo : hi)
                    + (ok ? (static_cast<ql_i64>(q == 0 ? 0 : (q - 1) * n_u) + u + 16 * r_lo) * N + ob + 16 * pc : 0);
        s.wdst[i] = idx < S::WCOPIES ? (q * 16 + ql_mb_slot(u)) * QL_MB_SLOT + 16 * pc : 0;
        s.wlim[i] = ok ? n_u - u : 0;
    }
    s.xlive = threadIdx.x < S::XCOPIES;
    {
        const int xc = threadIdx.x >> 4, xt = (threadIdx.x >> 1) & 7, xpc = threadIdx.x & 1;
        s.xok = s.xlive && xt < M;
        s.xsrc = reinterpret_cast<const unsigned char*>(x + (s.xok ? static_cast<ql_i64>(xt) * Kx + Jx + 16 * (xc * nruns + r_lo) + 8 * xpc : 0));
        s.xdst = S::XOFF + (s.xlive ? xc * 256 + xt * 32 + 16 * xpc : 0);
    }
#pragma unroll
    for (int c = 0; c < S::PU; ++c) {
        s.gr[c] = (c * n_u + 16 * r_lo) / g;
        s.iend[c] = min(n_u, (s.gr[c] + 1) * g - c * n_u);
#pragma unroll
        for (int v = 0; v < 4; ++v) s.acc[c][v] = s.accx[c][v] = 0.f;
    }
#pragma unroll
    for (int v = 0; v < 4; ++v) s.yacc[v] = 0.f;
    const int ra = o0 + 2 * gid;  // this lane's output rows ra, ra + 1 and tokens 2tid, 2tid + 1
    s.rows_ok = ra < N;
    s.sp = scale + static_cast<ql_i64>(s.rows_ok ? ra : 0) * G + J0 / g;  // + gr[c]; row ra + 1: + G
    s.zp = zero + static_cast<ql_i64>(s.rows_ok ? ra : 0) * G + J0 / g;
#pragma unroll
    for (int st = 0; st < QL_MB_STAGES - 1; ++st) {  // prologue: STAGES - 1 runs in flight
        if (r_lo + st < r_hi) s.issue(r_lo + st, st);
        ql_cp_commit();
    }
    int sr = 0;  // the stage of run r
    for (int r = r_lo; r < r_hi;) {
        int cut = r_hi;  // the next run in which some chunk's group ends
#pragma unroll
        for (int c = 0; c < S::PU; ++c) if (s.iend[c] < n_u) cut = min(cut, (s.iend[c] - 1) >> 4);
        for (; r < cut; ++r) { s.template run<false>(r, sr); sr = sr == QL_MB_STAGES - 1 ? 0 : sr + 1; }
        if (r < r_hi) { s.template run<true>(r, sr); sr = sr == QL_MB_STAGES - 1 ? 0 : sr + 1; ++r; }
    }
    ql_cp_wait<0>();
#pragma unroll
    for (int c = 0; c < S::PU; ++c) s.flush(c);
#pragma unroll
    for (int v = 0; v < 4; ++v) {
        const int o = ra + (v >> 1), t = 2 * tid + (v & 1);
        if (o < N && t < M) ql_red_add(y32 + static_cast<ql_i64>(t) * N + o, s.yacc[v]);
    }
}
