// hqq_cpu.cpp: CPU kernels for weights in hqq's packed layout (qdora_lab chapter 06).
//
// Built at first use by qdora_lab.cpu with the system C++ compiler (-O3 -march=native -fopenmp) and called
// through ctypes. Two products, both reading hqq's layout in place:
//   qd_dequantize: the dense weight, bit for bit what eager PyTorch computes (`dequantize_packed`), optionally
//                  times one factor per row;
//   qd_matmul:     y = x @ W.T for a few rows of x, float32 accumulation, meta applied per group.
// Layout (see chapters 01 and 03): the codes form a grouped matrix [R, C] (axis=1: one group per row, C = group size;
// axis=0: R = group size, one group per column). Packed row j of [n, C] words holds, in chunk k, grouped row
// k*n + j at bit offset (P-1-k)*bits. Flat element f of the grouped matrix is flat element f of W [N, K].
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <omp.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace {

enum DType { F32 = 0, F16 = 1, BF16 = 2 };

inline float bits_to_float(uint32_t u) { float f; std::memcpy(&f, &u, 4); return f; }
inline uint32_t float_to_bits(float f) { uint32_t u; std::memcpy(&u, &f, 4); return u; }

inline float bf16_to_float(uint16_t h) { return bits_to_float(uint32_t(h) << 16); }
inline uint16_t float_to_bf16(float f) {             // round to nearest even (finite inputs)
    uint32_t u = float_to_bits(f);
    return uint16_t((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
inline float f16_to_float(uint16_t h) {               // exact, subnormals included
    uint32_t u = uint32_t(h & 0x7fff) << 13, e = u & (0x7c00u << 13);
    u += (127 - 15) << 23;
    if (e == (0x7c00u << 13)) u += (128 - 16) << 23;                                          // inf / nan
    else if (e == 0) { u += 1 << 23; u = float_to_bits(bits_to_float(u) - bits_to_float(113u << 23)); } // zero / subnormal
    return bits_to_float(u | (uint32_t(h & 0x8000) << 16));
}
inline uint16_t float_to_f16(float f) {               // round to nearest even, overflow to inf
    uint32_t u = float_to_bits(f), sign = u & 0x80000000u, o;
    u ^= sign;
    if (u >= (127u + 16) << 23) o = u > (255u << 23) ? 0x7e00 : 0x7c00;
    else if (u < (113u << 23)) o = float_to_bits(bits_to_float(u) + 0.5f) - float_to_bits(0.5f);
    else { uint32_t odd = (u >> 13) & 1; u += ((15u - 127u) << 23) + 0xfff + odd; o = u >> 13; }
    return uint16_t(o | (sign >> 16));
}

template <int T> inline float round_to(float v) {     // v rounded to dtype T, as a float
    if constexpr (T == BF16) return bf16_to_float(float_to_bf16(v));
    else if constexpr (T == F16) return f16_to_float(float_to_f16(v));
    else return v;
}
template <int T> inline void store(void* out, int64_t i, float v) {
    if constexpr (T == BF16) static_cast<uint16_t*>(out)[i] = float_to_bf16(v);
    else if constexpr (T == F16) static_cast<uint16_t*>(out)[i] = float_to_f16(v);
    else static_cast<float*>(out)[i] = v;
}
template <int T> inline float load(const void* p, int64_t i) {
    if constexpr (T == BF16) return bf16_to_float(static_cast<const uint16_t*>(p)[i]);
    else if constexpr (T == F16) return f16_to_float(static_cast<const uint16_t*>(p)[i]);
    else return static_cast<const float*>(p)[i];
}
constexpr int promote(int a, int b) { return a == b ? a : F32; }   // PyTorch's promotion among f32/f16/bf16

struct Layout { int bits, P; int64_t n, R, C, N, K; int axis; };

// ---- dequantize -------------------------------------------------------------------------------------------
// w = round_DT(round_R2(round_R1(code - zero) * scale)); out = round_DT(w * row_factor)
template <typename W, int MT, int DT>
void dequantize(const Layout& L, const W* wq, const void* scale, const void* zero, const float* row_scale,
                void* out, int nthreads) {
    constexpr int R1 = promote(DT, MT), R2 = promote(R1, MT);
    const uint32_t mask = (1u << L.bits) - 1;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t j = 0; j < L.n; ++j) {                // packed row j: its P chunks are grouped rows k*n + j
        const W* w = wq + j * L.C;
        for (int64_t k = 0; k < L.P; ++k) {
            const int64_t rr = k * L.n + j;
            if (rr >= L.R) break;
            const int shift = int(L.P - 1 - k) * L.bits;
            const int64_t base = rr * L.C;
            if (L.axis == 1) {                       // one scale and zero for the row; the row of W is base / K
                const float s = load<MT>(scale, rr), z = load<MT>(zero, rr);
                const float f = row_scale ? row_scale[base / L.K] : 1.0f;
                for (int64_t c = 0; c < L.C; ++c) {
                    float v = float((uint32_t(w[c]) >> shift) & mask);
                    v = round_to<DT>(round_to<R2>(round_to<R1>(v - z) * s));
                    store<DT>(out, base + c, v * f);
                }
            } else {                                 // a scale and zero per column; W's row changes every K columns
                for (int64_t c0 = 0; c0 < L.C; c0 += L.K) {
                    const float f = row_scale ? row_scale[(base + c0) / L.K] : 1.0f;
                    for (int64_t c = c0; c < c0 + L.K; ++c) {
                        float v = float((uint32_t(w[c]) >> shift) & mask);
                        v = round_to<DT>(round_to<R2>(round_to<R1>(v - load<MT>(zero, c)) * load<MT>(scale, c)));
                        store<DT>(out, base + c, v * f);
                    }
                }
            }
        }
    }
}

// ---- y = x @ W.T for a few rows of x (float32) ----------------------------------------------------------------
// axis=1 (groups along K, G = K/g groups per row of W): each packed row of g words is read once and all P of its
// chunks are used while it is in registers. Chunk k is grouped row rr = k*n + j, group q = rr % G of W row rr / G:
// part[m, rr] = s[rr] * (sum_c code * x[m, q*g + c] - z[rr] * xsum[m, q]); then y[m, o] sums o's G parts.
#if defined(__AVX512F__)
template <typename W> inline __m512 codes16(const W* w, int shift, __m512i mask) {   // 16 codes -> floats
    __m512i v;
    if constexpr (sizeof(W) == 1) v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w)));
    else v = _mm512_loadu_si512(w);
    return _mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srl_epi32(v, _mm_cvtsi32_si128(shift)), mask));
}
#endif

constexpr int MAX_M = 8;   // most rows of x qd_matmul serves (qdora_lab.cpu.GEMV_MAX_M)

template <int MM, typename W>
inline void dot_chunks_m(const W* w, int64_t g, int shift, uint32_t mask, const float* x, int64_t ldx, float* out) {
    // out[m] = sum_c code(w[c]) * x[m*ldx + c] for c < g, m < MM (accumulators stay in registers)
#if defined(__AVX512F__)
    if (g % 16 == 0) {
        __m512 t[MM];
        for (int m = 0; m < MM; ++m) t[m] = _mm512_setzero_ps();
        const __m512i mk = _mm512_set1_epi32(int(mask));
        for (int64_t c = 0; c < g; c += 16) {
            const __m512 q = codes16(w + c, shift, mk);
            for (int m = 0; m < MM; ++m) t[m] = _mm512_fmadd_ps(q, _mm512_loadu_ps(x + m * ldx + c), t[m]);
        }
        for (int m = 0; m < MM; ++m) out[m] = _mm512_reduce_add_ps(t[m]);
        return;
    }
#endif
    for (int m = 0; m < MM; ++m) {
        float acc = 0;
        #pragma omp simd reduction(+:acc)
        for (int64_t c = 0; c < g; ++c) acc += float((uint32_t(w[c]) >> shift) & mask) * x[m * ldx + c];
        out[m] = acc;
    }
}

template <typename W>
inline void dot_chunks(const W* w, int64_t g, int shift, uint32_t mask, const float* x, int64_t ldx, int64_t M, float* out) {
    switch (M) {
        case 1: dot_chunks_m<1>(w, g, shift, mask, x, ldx, out); return;
        case 2: dot_chunks_m<2>(w, g, shift, mask, x, ldx, out); return;
        case 3: dot_chunks_m<3>(w, g, shift, mask, x, ldx, out); return;
        case 4: dot_chunks_m<4>(w, g, shift, mask, x, ldx, out); return;
        case 5: dot_chunks_m<5>(w, g, shift, mask, x, ldx, out); return;
        case 6: dot_chunks_m<6>(w, g, shift, mask, x, ldx, out); return;
        case 7: dot_chunks_m<7>(w, g, shift, mask, x, ldx, out); return;
        default: dot_chunks_m<8>(w, g, shift, mask, x, ldx, out); return;
    }
}

#if defined(__AVX512F__)
// M = 1, byte words (P = 8 / bits codes each), every chunk whole rows of W (n a multiple of G): the K words of
// packed rows r*G .. r*G+G-1 hold, in chunk k, all codes of W row k*rows + r. One pass over those words computes
// P rows of y; 16 lanes per row accumulate s_q * (sum code * x) over the groups, one horizontal sum per row.
template <int P, int MT>
void gemv_axis1_rows(const Layout& L, const uint8_t* wq, const void* scale, const void* zero, const float* x,
                     const float* xsum, float* y, int nthreads) {
    constexpr int bits = 8 / P;
    const int64_t g = L.C, G = L.K / g, rows = L.n / G;
    const __m512i mk = _mm512_set1_epi32((1 << bits) - 1);
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* w = wq + r * L.K;
        __m512 acc[P];
        float zt[P];
        for (int k = 0; k < P; ++k) { acc[k] = _mm512_setzero_ps(); zt[k] = 0; }
        for (int64_t q = 0; q < G; ++q) {
            __m512 t[P];
            for (int k = 0; k < P; ++k) t[k] = _mm512_setzero_ps();
            for (int64_t c = q * g; c < (q + 1) * g; c += 16) {
                const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c)));
                const __m512 xv = _mm512_loadu_ps(x + c);
                for (int k = 0; k < P; ++k)
                    t[k] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, (P - 1 - k) * bits), mk)), xv, t[k]);
            }
            for (int k = 0; k < P; ++k) {
                const int64_t rr = (k * rows + r) * G + q;
                if (rr >= L.R) break;
                const float sq = load<MT>(scale, rr);
                acc[k] = _mm512_fmadd_ps(_mm512_set1_ps(sq), t[k], acc[k]);
                zt[k] += sq * load<MT>(zero, rr) * xsum[q];
            }
        }
        for (int k = 0; k < P; ++k) {
            const int64_t o = k * rows + r;
            if (o < L.N) y[o] = _mm512_reduce_add_ps(acc[k]) - zt[k];
        }
    }
}

// The same layout for 2 <= M <= 8 rows of x: each group's scale multiplies the decoded codes once, and the scaled
// codes feed one accumulator per (chunk, row of x); blocks of MM rows of x keep P*MM <= 16 accumulators in registers,
// and every block reads the same K words of packed row r, which stay in L1 (W still comes from memory once).
template <int P, int MM, int MT>
inline void rows_block(const Layout& L, const uint8_t* w, int64_t r, int64_t rows, const void* scale, const void* zero,
                       const float* x, const float* xsum, float* y) {
    constexpr int bits = 8 / P;
    const int64_t g = L.C, G = L.K / g;
    const __m512i mk = _mm512_set1_epi32((1 << bits) - 1);
    __m512 acc[P][MM];
    float zt[P][MM];
    for (int k = 0; k < P; ++k) for (int m = 0; m < MM; ++m) { acc[k][m] = _mm512_setzero_ps(); zt[k][m] = 0; }
    for (int64_t q = 0; q < G; ++q) {
        __m512 sv[P];
        for (int k = 0; k < P; ++k) {
            const int64_t rr = (k * rows + r) * G + q;
            const float sq = rr < L.R ? load<MT>(scale, rr) : 0.0f, zq = rr < L.R ? load<MT>(zero, rr) : 0.0f;
            sv[k] = _mm512_set1_ps(sq);
            for (int m = 0; m < MM; ++m) zt[k][m] += sq * zq * xsum[m * G + q];
        }
        for (int64_t c = q * g; c < (q + 1) * g; c += 16) {
            const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w + c)));
            __m512 xv[MM];
            for (int m = 0; m < MM; ++m) xv[m] = _mm512_loadu_ps(x + m * L.K + c);
            for (int k = 0; k < P; ++k) {
                const __m512 code = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_and_si512(_mm512_srli_epi32(v, (P - 1 - k) * bits), mk)), sv[k]);
                for (int m = 0; m < MM; ++m) acc[k][m] = _mm512_fmadd_ps(code, xv[m], acc[k][m]);
            }
        }
    }
    for (int k = 0; k < P; ++k) {
        const int64_t o = k * rows + r;
        if (o < L.N) for (int m = 0; m < MM; ++m) y[m * L.N + o] = _mm512_reduce_add_ps(acc[k][m]) - zt[k][m];
    }
}

template <int P, int MT>
void gemm_axis1_rows(const Layout& L, const uint8_t* wq, const void* scale, const void* zero, const float* x, int64_t M,
                     const float* xsum, float* y, int nthreads) {
    const int64_t G = L.K / L.C, rows = L.n / G;
    constexpr bool four = P <= 4;                    // P * MM <= 16 accumulators
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t r = 0; r < rows; ++r) {
        const uint8_t* w = wq + r * L.K;
        int64_t m0 = 0;
        if constexpr (four)
            for (; M - m0 >= 4; m0 += 4) rows_block<P, 4, MT>(L, w, r, rows, scale, zero, x + m0 * L.K, xsum + m0 * G, y + m0 * L.N);
        for (; M - m0 >= 2; m0 += 2) rows_block<P, 2, MT>(L, w, r, rows, scale, zero, x + m0 * L.K, xsum + m0 * G, y + m0 * L.N);
        if (m0 < M) rows_block<P, 1, MT>(L, w, r, rows, scale, zero, x + m0 * L.K, xsum + m0 * G, y + m0 * L.N);
    }
}
#endif

template <typename W, int MT>
void matmul_axis1(const Layout& L, const W* wq, const void* scale, const void* zero, const float* x, int64_t M,
                  float* y, float* work, int nthreads) {
    const int64_t g = L.C, G = L.K / g;
    const uint32_t mask = (1u << L.bits) - 1;
    float* xsum = work;                              // [M, G]
    float* part = work + M * G;                      // [M, R]
    for (int64_t m = 0; m < M; ++m)
        for (int64_t q = 0; q < G; ++q) {
            float s = 0; for (int64_t c = 0; c < g; ++c) s += x[m * L.K + q * g + c]; xsum[m * G + q] = s;
        }
#if defined(__AVX512F__)
    if constexpr (sizeof(W) == 1) {
        const uint8_t* w8 = reinterpret_cast<const uint8_t*>(wq);
        if (g % 16 == 0 && L.n % G == 0) {              // whole rows per chunk: M = 1 decode loop, else row blocks
            auto rows = [&](auto p) {
                constexpr int P = decltype(p)::value;
                if (M == 1) gemv_axis1_rows<P, MT>(L, w8, scale, zero, x, xsum, y, nthreads);
                else gemm_axis1_rows<P, MT>(L, w8, scale, zero, x, M, xsum, y, nthreads);
            };
            switch (L.P) {
                case 1: rows(std::integral_constant<int, 1>{}); return;
                case 2: rows(std::integral_constant<int, 2>{}); return;
                case 4: rows(std::integral_constant<int, 4>{}); return;
                case 8: rows(std::integral_constant<int, 8>{}); return;
            }
        }
    }
#endif
    #pragma omp parallel num_threads(nthreads)
    {
        float d[MAX_M];
        int64_t knG[64];                                 // (k*n) % G: group of chunk k's first row (P <= 10)
        for (int64_t k = 0; k < L.P; ++k) knG[k] = (k * L.n) % G;
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        const int64_t j0 = L.n * t / nt, j1 = L.n * (t + 1) / nt;
        int64_t jG = j0 % G;                             // j % G, kept without a division per row
        for (int64_t j = j0; j < j1; ++j, jG = jG + 1 == G ? 0 : jG + 1)
            for (int64_t k = 0; k < L.P; ++k) {
                const int64_t rr = k * L.n + j;
                if (rr >= L.R) break;
                const int64_t q = knG[k] + jG >= G ? knG[k] + jG - G : knG[k] + jG;
                dot_chunks(wq + j * g, g, int(L.P - 1 - k) * L.bits, mask, x + q * g, L.K, M, d);
                const float s = load<MT>(scale, rr), z = load<MT>(zero, rr);
                for (int64_t m = 0; m < M; ++m) part[m * L.R + rr] = s * (d[m] - z * xsum[m * G + q]);
            }
        #pragma omp barrier
        #pragma omp for schedule(static)
        for (int64_t o = 0; o < L.N; ++o)
            for (int64_t m = 0; m < M; ++m) {
                const float* p = part + m * L.R + o * G;
                float acc = 0; for (int64_t q = 0; q < G; ++q) acc += p[q];
                y[m * L.N + o] = acc;
            }
    }
}

// axis=0 (groups along N, B = N/g rows of W per grouped row): W[r*B + b, i] is grouped (r, b*K + i), with its own
// scale and zero. y[m, r*B + b] = sum_i code * sx[m, b*K + i] - zsx[m, b], sx = scale * x, zsx = sum_i zero * sx.
template <typename W, int MT>
void matmul_axis0(const Layout& L, const W* wq, const void* scale, const void* zero, const float* x, int64_t M,
                  float* y, float* work, int nthreads) {
    const int64_t K = L.K, B = L.C / K;
    const uint32_t mask = (1u << L.bits) - 1;
    float* sx = work;                                // [M, C]
    float* zsx = work + M * L.C;                     // [M, B]
    #pragma omp parallel num_threads(nthreads)
    {
        #pragma omp for schedule(static)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t m = 0; m < M; ++m) {
                float acc = 0;
                for (int64_t i = 0; i < K; ++i) {
                    const float v = load<MT>(scale, b * K + i) * x[m * K + i];
                    sx[m * L.C + b * K + i] = v;
                    acc += load<MT>(zero, b * K + i) * v;
                }
                zsx[m * B + b] = acc;
            }
        #pragma omp for schedule(static) collapse(2)
        for (int64_t b = 0; b < B; ++b)
            for (int64_t j = 0; j < L.n; ++j) {
                const W* w = wq + j * L.C + b * K;
                for (int64_t k = 0; k < L.P; ++k) {
                    const int64_t r = k * L.n + j;
                    if (r >= L.R) break;
                    const int shift = int(L.P - 1 - k) * L.bits;
                    for (int64_t m = 0; m < M; ++m) {
                        const float* sxb = sx + m * L.C + b * K;
                        float acc = 0;
                        #pragma omp simd reduction(+:acc)
                        for (int64_t i = 0; i < K; ++i) acc += float((uint32_t(w[i]) >> shift) & mask) * sxb[i];
                        y[m * L.N + r * B + b] = acc - zsx[m * B + b];
                    }
                }
            }
    }
}

template <typename W, int MT>
int dispatch_dequantize(const Layout& L, const void* wq, const void* s, const void* z, const float* rs, void* out,
                        int dt, int nt) {
    const W* w = static_cast<const W*>(wq);
    switch (dt) {
        case F32: dequantize<W, MT, F32>(L, w, s, z, rs, out, nt); return 0;
        case F16: dequantize<W, MT, F16>(L, w, s, z, rs, out, nt); return 0;
        case BF16: dequantize<W, MT, BF16>(L, w, s, z, rs, out, nt); return 0;
    }
    return 2;
}

template <typename W, int MT>
int dispatch_matmul(const Layout& L, const void* wq, const void* s, const void* z, const float* x, int64_t M,
                    float* y, float* work, int nt) {
    const W* w = static_cast<const W*>(wq);
    if (L.axis == 1) matmul_axis1<W, MT>(L, w, s, z, x, M, y, work, nt);
    else matmul_axis0<W, MT>(L, w, s, z, x, M, y, work, nt);
    return 0;
}

// ---- column dot products (DoRA's magnitude gradient) ------------------------------------------------------------
// gy[o] = sum_m g[m, o] * y[m, o] and gs[o] = sum_m g[m, o] for float32 [M, N] rows (leading dimensions ldg, ldy),
// one pass, no [M, N] temporary, double accumulators (M can be tens of thousands of tokens), each column summed in
// row order. Threads own blocks of COLS columns; a block's 2 x COLS sums stay in registers while it walks all M rows,
// reading COLS contiguous floats of g and of y per row and prefetching the row PREFETCH rows ahead (the walk is
// strided, which the hardware prefetchers follow poorly). A last partial block keeps its sums in arrays.
constexpr int COLS = 32, PREFETCH = 16;

template <int W>   // W = COLS: a full block (sums in registers); W = 0: a partial block of w < COLS columns
void column_block(const float* g, const float* y, int64_t M, int64_t ldg, int64_t ldy, int64_t w, float* gy, float* gs) {
    constexpr int CAP = W ? W : COLS;
    const int64_t n = W ? W : w;
    double ay[CAP] = {}, ag[CAP] = {};
    for (int64_t m = 0; m < M; ++m) {
        const float* gr = g + m * ldg;
        const float* yr = y + m * ldy;
        if (m + PREFETCH < M)
            for (int64_t j = 0; j < n; j += 16) { __builtin_prefetch(gr + PREFETCH * ldg + j); __builtin_prefetch(yr + PREFETCH * ldy + j); }
        #pragma omp simd
        for (int64_t j = 0; j < n; ++j) { const double gv = gr[j]; ay[j] += gv * double(yr[j]); ag[j] += gv; }
    }
    for (int64_t j = 0; j < n; ++j) { gy[j] = float(ay[j]); if (gs) gs[j] = float(ag[j]); }
}

void column_dots(const float* g, const float* y, int64_t M, int64_t N, int64_t ldg, int64_t ldy, float* gy, float* gs,
                 int nthreads) {
    const int64_t full = N / COLS, nblocks = (N + COLS - 1) / COLS;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t b = 0; b < nblocks; ++b) {
        const int64_t o0 = b * COLS;
        float* s = gs ? gs + o0 : nullptr;
        if (b < full) column_block<COLS>(g + o0, y + o0, M, ldg, ldy, COLS, gy + o0, s);
        else column_block<0>(g + o0, y + o0, M, ldg, ldy, N - o0, gy + o0, s);
    }
}

// ---- mixed-bit layers (chapter 09): bit planes, a column permutation, fp16 meta per (row, group) ------------------
// Width block b holds layout columns J0 .. J0+cols-1; each of its planes (p bits, P = 8/p codes per byte) is the
// transposed codes of the block packed along their rows: byte [r % n, o] of plane [n = cols/P, N] carries, in chunk
// r / n, bits of the code of (row o, layout column J0 + r). Planes combine high first (code |= bits << shift).
// W[o, perm[j]] = round_DT(float32 (code - z) * s, or code * s - z), times an optional row factor rounded once more:
// the PyTorch reference's arithmetic. Threads own tiles of 64 rows; a tile reads 64 consecutive bytes of a plane per
// column (one cache line) and writes its 64 rows of W, which stay in L2.
struct MBPlane { const uint8_t* ptr; int bits, shift; };
struct MBBlock { int64_t J0, cols; int nplanes; MBPlane planes[2]; };

template <int DT>
void mixed_dequantize(const MBBlock* blocks, int nblocks, int64_t N, int64_t K, int64_t g, const int64_t* perm,
                      const uint16_t* scale, const uint16_t* zero, bool scaled_zero, const float* row_scale, void* out,
                      int nthreads) {
    constexpr int T = 64;
    const int64_t G = K / g, tiles = (N + T - 1) / T;
    #pragma omp parallel for num_threads(nthreads) schedule(static)
    for (int64_t t = 0; t < tiles; ++t) {
        const int64_t o0 = t * T, rows = (N - o0 < T) ? N - o0 : T;
        float sv[T], zv[T], fv[T];
        uint8_t code[T];
        for (int64_t i = 0; i < rows; ++i) fv[i] = row_scale ? row_scale[o0 + i] : 1.0f;
        for (int b = 0; b < nblocks; ++b) {
            const MBBlock& B = blocks[b];
            for (int64_t r = 0; r < B.cols; ++r) {
                const int64_t j = B.J0 + r, col = perm[j];
                if (r % g == 0) {                          // a new group: its scale and zero for the tile's rows
                    const int64_t q = j / g;
                    for (int64_t i = 0; i < rows; ++i) { sv[i] = f16_to_float(scale[(o0 + i) * G + q]); zv[i] = f16_to_float(zero[(o0 + i) * G + q]); }
                }
                for (int64_t i = 0; i < rows; ++i) code[i] = 0;
                for (int pl = 0; pl < B.nplanes; ++pl) {
                    const MBPlane& Pp = B.planes[pl];
                    const int P = 8 / Pp.bits;
                    const int64_t n = B.cols / P;
                    const int sh = (P - 1 - int(r / n)) * Pp.bits;
                    const uint8_t* src = Pp.ptr + (r % n) * N + o0;
                    const uint8_t mask = uint8_t((1u << Pp.bits) - 1);
                    for (int64_t i = 0; i < rows; ++i) code[i] |= uint8_t(((src[i] >> sh) & mask) << Pp.shift);
                }
                for (int64_t i = 0; i < rows; ++i) {
                    const float c = float(code[i]);
                    float v;
                    if (scaled_zero) { v = c * sv[i]; v = v - zv[i]; }
                    else { v = c - zv[i]; v = v * sv[i]; }
                    v = round_to<DT>(v);
                    store<DT>(out, (o0 + i) * K + col, v * fv[i]);
                }
            }
        }
    }
}

}  // namespace

extern "C" {

// Version of this file's ABI: qdora_lab.cpu checks it after loading.
int qd_abi_version() { return 3; }

// gy = column sums of g * y, gs = column sums of g (gs may be null); float32 [M, N] with row strides ldg, ldy.
void qd_column_dots(const float* g, const float* y, int64_t M, int64_t N, int64_t ldg, int64_t ldy, float* gy, float* gs,
                    int nthreads) {
    column_dots(g, y, M, N, ldg, ldy, gy, gs, nthreads);
}

// Both return 0 on success, 1 for an unknown word size, 2 for an unknown dtype code, 3 (qd_matmul) for M out of 1..MAX_M.
int qd_dequantize(const void* wq, int word_bytes, int bits, int P, int64_t n, int64_t R, int64_t C, int axis,
                  int64_t N, int64_t K, const void* scale, const void* zero, int meta_dtype, const float* row_scale,
                  void* out, int dtype, int nthreads) {
    const Layout L{bits, P, n, R, C, N, K, axis};
    if (word_bytes == 1) {
        if (meta_dtype == F32) return dispatch_dequantize<uint8_t, F32>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        if (meta_dtype == F16) return dispatch_dequantize<uint8_t, F16>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        if (meta_dtype == BF16) return dispatch_dequantize<uint8_t, BF16>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        return 2;
    }
    if (word_bytes == 4) {
        if (meta_dtype == F32) return dispatch_dequantize<int32_t, F32>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        if (meta_dtype == F16) return dispatch_dequantize<int32_t, F16>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        if (meta_dtype == BF16) return dispatch_dequantize<int32_t, BF16>(L, wq, scale, zero, row_scale, out, dtype, nthreads);
        return 2;
    }
    return 1;
}

// work: float32 scratch of qd_matmul_work(...) elements.
int64_t qd_matmul_work(int64_t R, int64_t C, int axis, int64_t K, int64_t M) {
    return axis == 1 ? M * (K / C + R) : M * (C + C / K);
}

int qd_matmul(const void* wq, int word_bytes, int bits, int P, int64_t n, int64_t R, int64_t C, int axis,
              int64_t N, int64_t K, const void* scale, const void* zero, int meta_dtype, const float* x, int64_t M,
              float* y, float* work, int nthreads) {
    const Layout L{bits, P, n, R, C, N, K, axis};
    if (M < 1 || M > MAX_M) return 3;
    if (word_bytes == 1) {
        if (meta_dtype == F32) return dispatch_matmul<uint8_t, F32>(L, wq, scale, zero, x, M, y, work, nthreads);
        if (meta_dtype == F16) return dispatch_matmul<uint8_t, F16>(L, wq, scale, zero, x, M, y, work, nthreads);
        if (meta_dtype == BF16) return dispatch_matmul<uint8_t, BF16>(L, wq, scale, zero, x, M, y, work, nthreads);
        return 2;
    }
    if (word_bytes == 4) {
        if (meta_dtype == F32) return dispatch_matmul<int32_t, F32>(L, wq, scale, zero, x, M, y, work, nthreads);
        if (meta_dtype == F16) return dispatch_matmul<int32_t, F16>(L, wq, scale, zero, x, M, y, work, nthreads);
        if (meta_dtype == BF16) return dispatch_matmul<int32_t, BF16>(L, wq, scale, zero, x, M, y, work, nthreads);
        return 2;
    }
    return 1;
}

// Mixed-bit dequantize: nblocks width blocks; block b has J0[b], cols[b], nplanes[b] planes, whose pointers, bit widths
// and code shifts are plane_ptr/plane_bits/plane_shift[2*b + i]. scale and zero: fp16 [N, K/g]. Returns 0, or 2 for an
// unknown dtype code.
int qd_mixed_dequantize(int nblocks, const int64_t* J0, const int64_t* cols, const int* nplanes, const void* const* plane_ptr,
                        const int* plane_bits, const int* plane_shift, int64_t N, int64_t K, int64_t g, const int64_t* perm,
                        const void* scale, const void* zero, int scaled_zero, const float* row_scale, void* out, int dtype,
                        int nthreads) {
    MBBlock blocks[8];
    if (nblocks > 8) return 1;
    for (int b = 0; b < nblocks; ++b) {
        blocks[b].J0 = J0[b]; blocks[b].cols = cols[b]; blocks[b].nplanes = nplanes[b];
        for (int i = 0; i < nplanes[b]; ++i)
            blocks[b].planes[i] = MBPlane{static_cast<const uint8_t*>(plane_ptr[2 * b + i]), plane_bits[2 * b + i], plane_shift[2 * b + i]};
    }
    const uint16_t* s = static_cast<const uint16_t*>(scale);
    const uint16_t* z = static_cast<const uint16_t*>(zero);
    switch (dtype) {
        case F32: mixed_dequantize<F32>(blocks, nblocks, N, K, g, perm, s, z, scaled_zero, row_scale, out, nthreads); return 0;
        case F16: mixed_dequantize<F16>(blocks, nblocks, N, K, g, perm, s, z, scaled_zero, row_scale, out, nthreads); return 0;
        case BF16: mixed_dequantize<BF16>(blocks, nblocks, N, K, g, perm, s, z, scaled_zero, row_scale, out, nthreads); return 0;
    }
    return 2;
}

}  // extern "C"
