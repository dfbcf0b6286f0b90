// mm.cu: y = x @ W^T on hqq-layout packed weights (axis=1), small M, on the tensor cores:
// mma.sync m16n8k16 with the weight codes turned into bf16/fp16 in registers, fp32 accumulation, and the
// zero and scale applied once per (row, group) -- per 64-column unit when g > 64 -- not per weight:
//
//     y[t, o] = sum_j s[o,j] * ( sum_c q[o,j,c] x[t, j*g+c]  -  z[o,j] * sum_c x[t, j*g+c] )
//
// The code q enters the tensor core as MAGIC + q (bf16 128 + q, fp16 1024 + q: a PRMT writes the code
// into the mantissa, no conversion instruction), so the accumulator holds sum (MAGIC + q) x and the
// epilogue subtracts (z + MAGIC) * sum x; sum x comes from a second mma with an all-ones A. Weights are
// the mma's A (rows = W rows), activations its B (columns = tokens): M <= 8 uses one n8 tile (the "GEMV"),
// M <= 16 two, M <= 32 four; larger M runs more token tiles in gridDim.y.
//
// A k-step's 16 reduction indices kappa map onto 16 physical columns: lane (gid, tid) owns kappa 2tid,
// 2tid+1 (columns cb, cb+1) and 2tid+8, 2tid+9 (columns cb+2, cb+3) of its 4-column block cb, in A and B
// alike, so B is two consecutive activation pairs as they sit in memory, and A is two PRMTs of a word.
//
// ql_mm_aligned (4-bit, 2-bit; N % P == 0, g % 64 == 0): packed row i = b*G + j holds group j of W rows
// b + k*N/P, k = 0..P-1 (slot b). A block owns 8*RW slots, i.e. 8*RW*P whole W rows, so no other block writes
// them. mma tile c pairs chunks 2c and 2c+1: rows gid = chunk 2c of slot gid, rows gid+8 = chunk 2c+1:
//
//     lane (gid, tid): one 128-bit load = 16 bytes of packed row (b0+gid)*G + j, columns 16tid .. 16tid+15
//     byte = [ chunk 0 | chunk 1 ] (4-bit), [ c0 | c1 | c2 | c3 ] (2-bit): every code of the word is used
//     word s (4 columns) = k-step s: chunk 2c -> A rows gid, chunk 2c+1 -> A rows gid+8
//
//   grid (ceil(N/P / (8 RW)), token tiles, KS); RW row groups of 8 slots (1, or 2 with four token tiles), each
//   taken by 8/RW warps splitting the units (group j, 64-column block) between them; units' weights are loaded U at
//   a time (U 128-bit loads in flight per lane) before any is used, each unit's activations and scale/zero where it
//   is used (hoisting or prefetching those was timed slower on an H100: see the kernel); each
//   unit's sums get its group's scale and zero at once (per 64 columns: exact, the algebra is linear). A row group's
//   warps' sums are added in shared memory in a fixed order. KS > 1 (few rows: split-K over blocks) adds them
//   with fp32 atomics into a zeroed fp32 buffer instead (ATOMIC).
//
// ql_mm_3bit (any N, g = 64): packed row i holds 10 chunks, chunk k being group (k*n + i) % G of W row
// (k*n + i) / G: when n % G != 0 (N % 10 != 0, e.g. 4096) the chunks of one word belong to different
// groups. Rows a + G*b (a fixed, b = slot) share every chunk's group, so an mma tile is 16 slots
// (rows gid: slot b0+gid, rows gid+8: slot b0+8+gid) and one chunk; each chunk is its own mma with its
// own activations. A warp walks groups a; per chunk it keeps the row sums until the chunk's group index
// wraps (its rows move on by one), then adds them into a zeroed fp32 buffer (red.global.add.f32).
//     lane: 8 128-bit loads per group (2 rows x 4 k-steps, 4 int32 words = 4 columns each), all 10
//     chunks used; two words' low and high 16-bit windows are interleaved by PRMT so one shift + one LOP3
//     gives an A register (two columns of one chunk).
//   Each chunk needs its own activations and scale/zero, which ptxas loads a few mma before their use (and half of
//   a group's weights after its first mma). Prefetching them into L1 ahead of each segment (the block's activations,
//   every chunk's scale/zero of the segment's first group, the weights of its first two groups) was tried and timed
//   slower on an H100 (2026-11-27: 4096x4096 M=1 22.1 vs 17.4 us, in one process). Nsight Compute's reading: at 212
//   registers one block of 8 warps fits an SM (12.5 % occupancy), and those warps wait on loads half the time.
//
// Memory-traffic bound: bytes(W_q) + bytes(meta) + bytes(x) + bytes(y): 4096 x 4096, 4-bit g64, bf16 meta,
// M = 1: 8.4 MB + 1.0 MB, 3.1 us at 3.0 TB/s. Instruction issue (bench/results/sass_report.md) is below it.
#include "hqq_layout.cuh"

#define QL_MM_WARPS 8
#define QL_MM3_WARPS 4

template <int NBITS, typename T, int MT, typename META, bool ATOMIC, int RW>
__global__ void __launch_bounds__(QL_MM_WARPS * 32, 1) ql_mm_aligned(
    const typename QT<T>::storage* __restrict__ x,         // [M, K] row-major
    const ql_u8* __restrict__ Wq,                          // packed codes [nb*G, g]
    const typename QT<META>::storage* __restrict__ scale,  // [N*G] (hqq's [N*K/g, 1])
    const typename QT<META>::storage* __restrict__ zero,   // [N*G]
    typename QT<T>::storage* __restrict__ y,               // [M, N] (ATOMIC: unused)
    float* __restrict__ y32,                               // [M, N] fp32, zeroed (ATOMIC only)
    int M, int N, int K, int g, int G, int nb,             // nb = N / P slots
    int units, int lcb) {                                  // units = G << lcb, lcb = log2(g / 64)
    typedef QT<T> H;
    constexpr int P = QlPack<NBITS>::P, NT = P / 2, U = MT >= 4 ? 2 : 4;
    // Each unit's activations and scale/zero are loaded after its branch, where it is used. Tried and timed slower on
    // an H100 (2026-11-27, in one process, twice): loading them for all U units with the weights (registers; 4096x4096
    // 4-bit M=1 8.2 vs 7.9 us, 2-bit 7.8 vs 6.9, 11008x4096 18.6 vs 16.0), and prefetching them into L1 plus the next
    // batch's weights into L2 ahead of the branches (no registers; M=1 8.6, M=16 11.0 vs 9.7, M=64 31.9 vs 28.5).
    // RW row groups of 8 slots per block, each split over KW = 8 / RW warps by units: with RW = 2 the two warps that
    // take the same units read the same activations, the second from L1, so the blocks read half as much x from L2
    constexpr int KW = QL_MM_WARPS / RW;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, tid = lane & 3;
    const int wr = RW == 1 ? 0 : warp / KW, wk = warp - wr * KW;  // (RW = 1: the warp index alone, as before)
    const int b = (blockIdx.x * RW + wr) * 8 + gid;  // this lane's slot
    const bool row_ok = b < nb;
    const int tok0 = blockIdx.y * (8 * MT);
    const int zlo = units * blockIdx.z / gridDim.z, zhi = units * (blockIdx.z + 1) / gridDim.z;  // units < 2^16
    const int lo = zlo + (zhi - zlo) * wk / KW, hi = zlo + (zhi - zlo) * (wk + 1) / KW;
    // unit q = (group q >> lcb, 64-column block q & (2^lcb - 1)) starts at column (q >> lcb)*g + (q & ..)*64 = 64q
    const ql_u8* wp = Wq + static_cast<ql_i64>(row_ok ? b : 0) * G * g + 16 * tid;
    const typename QT<T>::storage* xp[MT];
    bool tok_ok[MT];
#pragma unroll
    for (int tt = 0; tt < MT; ++tt) {
        const int t = tok0 + tt * 8 + gid;
        tok_ok[tt] = t < M;
        xp[tt] = x + static_cast<ql_i64>(tok_ok[tt] ? t : 0) * K + 16 * tid;
    }
    // scale/zero of (W row of chunk 2c+h, group 0): grouped row ((2c+h)*nb + b)*G; + a for group a
    const typename QT<META>::storage *sp[NT][2], *zp[NT][2];
#pragma unroll
    for (int c = 0; c < NT; ++c)
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int r0 = ((2 * c + h) * nb + (row_ok ? b : 0)) * G;
            sp[c][h] = scale + r0; zp[c][h] = zero + r0;
        }
    const ql_u32 ones[4] = {H::ONE2, H::ONE2, H::ONE2, H::ONE2};
    float tot[NT][MT][4];
#pragma unroll
    for (int c = 0; c < NT; ++c)
#pragma unroll
        for (int tt = 0; tt < MT; ++tt)
#pragma unroll
            for (int v = 0; v < 4; ++v) tot[c][tt][v] = 0.f;
    for (int q0 = lo; q0 < hi; q0 += U) {
        ql_u32x4 wv[U];  // U units' weights in flight before any is used
#pragma unroll
        for (int u = 0; u < U; ++u) wv[u] = ql_ld_stream_if(wp + 64 * (q0 + u), row_ok && q0 + u < hi);
#pragma unroll
        for (int u = 0; u < U; ++u) {
            const int q = q0 + u;
            if (q >= hi) break;
            ql_u32x4 xv[MT][2];  // token gid of each tile: activations of columns 16tid .. 16tid+15 of the unit
#pragma unroll
            for (int tt = 0; tt < MT; ++tt) {
                xv[tt][0] = ql_ld128_if(xp[tt] + 64 * q, tok_ok[tt]);
                xv[tt][1] = ql_ld128_if(xp[tt] + 64 * q + 8, tok_ok[tt]);
            }
            float acc[NT][MT][4], accx[MT][4];  // this unit's sums (the first k-step starts them from 0)
#pragma unroll
            for (int s = 0; s < 4; ++s) {
                const ql_u32 w = wv[u].v[s];
#pragma unroll
                for (int c = 0; c < NT; ++c) {
                    const ql_u32 u0 = ql_byte_codes<NBITS>(w, 2 * c), u1 = ql_byte_codes<NBITS>(w, 2 * c + 1);
                    const ql_u32 A[4] = {ql_pair_lo(u0, H::MAGIC_BYTE), ql_pair_lo(u1, H::MAGIC_BYTE),
                                         ql_pair_hi(u0, H::MAGIC_BYTE), ql_pair_hi(u1, H::MAGIC_BYTE)};
#pragma unroll
                    for (int tt = 0; tt < MT; ++tt) {
                        const ql_u32 b0 = xv[tt][s >> 1].v[(s & 1) * 2], b1 = xv[tt][s >> 1].v[(s & 1) * 2 + 1];
                        if (s == 0) H::mma0(acc[c][tt], A, b0, b1); else H::mma(acc[c][tt], A, b0, b1);
                    }
                }
#pragma unroll
                for (int tt = 0; tt < MT; ++tt) {
                    const ql_u32 b0 = xv[tt][s >> 1].v[(s & 1) * 2], b1 = xv[tt][s >> 1].v[(s & 1) * 2 + 1];
                    if (s == 0) H::mma0(accx[tt], ones, b0, b1); else H::mma(accx[tt], ones, b0, b1);
                }
            }
            // scale and zero of the unit's group (a unit is a whole group at g = 64, half of one at g = 128:
            // the algebra is linear, so applying it per 64 columns is exact)
#pragma unroll
            for (int c = 0; c < NT; ++c)
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const float sc = row_ok ? QlMeta<META>::load(sp[c][h] + (q >> lcb)) : 0.f;
                    const float zz = QlMeta<META>::load(zp[c][h] + (q >> lcb)) + H::MAGIC;
#pragma unroll
                    for (int tt = 0; tt < MT; ++tt)
#pragma unroll
                        for (int e = 0; e < 2; ++e)
                            tot[c][tt][2 * h + e] = fmaf(sc, fmaf(-zz, accx[tt][e], acc[c][tt][2 * h + e]), tot[c][tt][2 * h + e]);
                }
        }
    }
    // each row group's warps' sums, added in a fixed order (deterministic)
    __shared__ float red[QL_MM_WARPS][MT * 4][32];
#pragma unroll
    for (int c = 0; c < NT; ++c) {
#pragma unroll
        for (int tt = 0; tt < MT; ++tt)
#pragma unroll
            for (int v = 0; v < 4; ++v) red[warp][tt * 4 + v][lane] = tot[c][tt][v];
        __syncthreads();
#pragma unroll
        for (int idx = 0; idx < MT * 4; ++idx) {
            if (idx % KW != wk) continue;
            float sum = 0.f;
#pragma unroll
            for (int w2 = 0; w2 < KW; ++w2) sum += red[wr * KW + w2][idx][lane];
            const int tt = idx / 4, v = idx % 4, o = (2 * c + (v >> 1)) * nb + b, t = tok0 + tt * 8 + 2 * tid + (v & 1);
            if (row_ok && t < M) {
                if (ATOMIC) ql_red_add(y32 + static_cast<ql_i64>(t) * N + o, sum);
                else y[static_cast<ql_i64>(t) * N + o] = H::store(sum);
            }
        }
        __syncthreads();
    }
}

template <typename T, int MT, typename META>
__global__ void __launch_bounds__(QL_MM3_WARPS * 32) ql_mm_3bit(
    const typename QT<T>::storage* __restrict__ x,         // [M, K] row-major
    const ql_u32* __restrict__ Wq,                         // packed codes [n, 64] (int32)
    const typename QT<META>::storage* __restrict__ scale,  // [R] (hqq's [N*K/64, 1])
    const typename QT<META>::storage* __restrict__ zero,   // [R]
    float* __restrict__ y32,                               // [M, N] fp32, zeroed
    int M, int N, int K, int G, int n, int R) {            // G = K / 64, n = ceil(R / 10)
    typedef QT<T> H;
    constexpr int GK = 4;  // k-steps per group of 64
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, gid = lane >> 2, tid = lane & 3;
    const int bs[2] = {static_cast<int>(blockIdx.x) * 16 + gid, static_cast<int>(blockIdx.x) * 16 + 8 + gid};
    const int tok0 = blockIdx.y * (8 * MT);
    const int zlo = G * blockIdx.z / gridDim.z, zhi = G * (blockIdx.z + 1) / gridDim.z;
    const int lo = zlo + (zhi - zlo) * warp / QL_MM3_WARPS, hi = zlo + (zhi - zlo) * (warp + 1) / QL_MM3_WARPS;
    if (lo >= hi) return;  // no barrier in this kernel
    const ql_u32 ones[4] = {H::ONE2, H::ONE2, H::ONE2, H::ONE2};
    int j[10], ob[10];  // chunk k at group a: activations of group j[k], W rows ob[k] + slot
#pragma unroll
    for (int k = 0; k < 10; ++k) { const int t = k * n + lo; ob[k] = t / G; j[k] = t - ob[k] * G; }
    float tot[10][MT][4];
#pragma unroll
    for (int k = 0; k < 10; ++k)
#pragma unroll
        for (int tt = 0; tt < MT; ++tt)
#pragma unroll
            for (int v = 0; v < 4; ++v) tot[k][tt][v] = 0.f;
    auto flush = [&](int k) {  // add chunk k's row sums into y32 (k is a constant after unrolling)
#pragma unroll
        for (int tt = 0; tt < MT; ++tt)
#pragma unroll
            for (int v = 0; v < 4; ++v) {
                const int o = ob[k] + bs[v >> 1], t = tok0 + tt * 8 + 2 * tid + (v & 1);
                if (o < N && t < M) ql_red_add(y32 + static_cast<ql_i64>(t) * N + o, tot[k][tt][v]);
                tot[k][tt][v] = 0.f;
            }
    };
    const ql_u32* wp[2];  // the lane's two packed rows a + G*slot, at group 0: + 64a per group
    const typename QT<T>::storage* xp[MT];
    bool tok_ok[MT];
#pragma unroll
    for (int h = 0; h < 2; ++h) wp[h] = Wq + static_cast<ql_i64>(G) * bs[h] * 64 + 4 * tid;
#pragma unroll
    for (int tt = 0; tt < MT; ++tt) {
        const int t = tok0 + tt * 8 + gid;
        tok_ok[tt] = t < M;
        xp[tt] = x + static_cast<ql_i64>(tok_ok[tt] ? t : 0) * K + 4 * tid;
    }
    const ql_u32 magic2 = ql_opaque(H::MAGIC2);
    for (int a = lo; a < hi;) {
        // a segment: groups [a, e) in which no chunk's group index wraps, so the inner loop never flushes
        int e = hi;
#pragma unroll
        for (int k = 0; k < 10; ++k) e = min(e, a + G - j[k]);
        for (; a < e; ++a) {
            int ii[2];
            bool ok[2];
            ql_u32x4 wv[2][GK];  // 8 loads in flight: rows h, k-steps s, 4 words (columns 16s+4tid ..) each
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                ii[h] = a + G * bs[h];
                ok[h] = ii[h] < n;
#pragma unroll
                for (int s = 0; s < GK; ++s) wv[h][s] = ql_ld_stream_if(wp[h] + 64 * a + 16 * s, ok[h]);
            }
            ql_u32 X[2][GK][2], Y[2][GK][2];  // 16-bit windows of word pairs (0,1) and (2,3)
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int s = 0; s < GK; ++s)
#pragma unroll
                    for (int p = 0; p < 2; ++p) {
                        X[h][s][p] = ql_3bit_x(wv[h][s].v[2 * p], wv[h][s].v[2 * p + 1]);
                        Y[h][s][p] = ql_3bit_y(wv[h][s].v[2 * p], wv[h][s].v[2 * p + 1]);
                    }
#pragma unroll
            for (int k = 0; k < 10; ++k) {
                float acc[MT][4], accx[MT][4];
#pragma unroll
                for (int s = 0; s < GK; ++s) {
                    const ql_u32 A[4] = {ql_3bit_pair(X[0][s][0], Y[0][s][0], k, magic2), ql_3bit_pair(X[1][s][0], Y[1][s][0], k, magic2),
                                         ql_3bit_pair(X[0][s][1], Y[0][s][1], k, magic2), ql_3bit_pair(X[1][s][1], Y[1][s][1], k, magic2)};
#pragma unroll
                    for (int tt = 0; tt < MT; ++tt) {
                        const ql_u32x2 bx = ql_ld64_if(xp[tt] + j[k] * 64 + 16 * s, tok_ok[tt]);
                        if (s == 0) { H::mma0(acc[tt], A, bx.v[0], bx.v[1]); H::mma0(accx[tt], ones, bx.v[0], bx.v[1]); }
                        else { H::mma(acc[tt], A, bx.v[0], bx.v[1]); H::mma(accx[tt], ones, bx.v[0], bx.v[1]); }
                    }
                }
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int r = k * n + ii[h];
                    const bool okr = ok[h] && r < R;
                    const float sc = okr ? QlMeta<META>::load(scale + r) : 0.f;
                    const float zz = okr ? QlMeta<META>::load(zero + r) + H::MAGIC : 0.f;
#pragma unroll
                    for (int tt = 0; tt < MT; ++tt)
#pragma unroll
                        for (int e2 = 0; e2 < 2; ++e2)
                            tot[k][tt][2 * h + e2] = fmaf(sc, fmaf(-zz, accx[tt][e2], acc[tt][2 * h + e2]), tot[k][tt][2 * h + e2]);
                }
                ++j[k];
            }
        }
#pragma unroll
        for (int k = 0; k < 10; ++k)  // chunks whose group wrapped: their rows move on by one
            if (j[k] == G) { flush(k); j[k] = 0; ++ob[k]; }
    }
#pragma unroll
    for (int k = 0; k < 10; ++k) flush(k);
}
