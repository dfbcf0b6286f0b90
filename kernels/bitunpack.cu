// bitunpack.cu: unpack hqq-layout packed codes into one code per element.
//
// Layout read (hqq's BitPack, packing along dim 0 in contiguous row chunks; R = rows of the
// unpacked code matrix, C = columns, P = codes per byte):
//   8-bit  uint8 [R,   C]   out[r]          = in[r]
//   4-bit  uint8 [R/2, C]   out[k*R/2 + i]  = (in[i] >> (4 - 4k)) & 0xF      k = 0..1
//   2-bit  uint8 [R/4, C]   out[k*R/4 + i]  = (in[i] >> (6 - 2k)) & 0x3      k = 0..3
//   1-bit  uint8 [R/8, C]   out[k*R/8 + i]  = (in[i] >> (7 - k))  & 0x1      k = 0..7
//   3-bit  int32 [ceil(R/10), C]   out[k*S + i] = (in[i] >> (27 - 3k)) & 0x7, k = 0..9, S = rows of in
//          (rows are zero-padded to a multiple of 10 before packing)
//   byte:  7 6 5 4 3 2 1 0          4-bit: [ code k=0 | code k=1 ]
//
// Grid/block: one thread per packed word; a 1-D grid over (packed rows x C), block of 256 threads.
// Reads are coalesced along C; each thread writes P codes, one per output row chunk (also coalesced
// along C). Memory-traffic bound: bytes(in) + bytes(out); the kernel does no arithmetic to speak of.
#include "hqq_layout.cuh"  // no standard headers: compiles under nvcc and NVRTC alike

template <int NBITS>
__device__ __forceinline__ void unpack_word(const typename QlPack<NBITS>::Word w, ql_u8* out, ql_i64 i, ql_i64 chunk) {
#pragma unroll
    for (int k = 0; k < QlPack<NBITS>::P; ++k) out[k * chunk + i] = static_cast<ql_u8>(ql_code<NBITS>(w, k));
}

// One extern "C" entry per packing, so CuPy's RawModule finds each by a plain name.
#define QL_UNPACK_ENTRY(NAME, NBITS, WORD)                                                        \
    extern "C" __global__ void NAME(const WORD* __restrict__ in, ql_u8* __restrict__ out,         \
                                    ql_i64 n_words) {                                             \
        const ql_i64 i = static_cast<ql_i64>(blockIdx.x) * blockDim.x + threadIdx.x;              \
        if (i < n_words) unpack_word<NBITS>(in[i], out, i, n_words);                              \
    }

QL_UNPACK_ENTRY(bitunpack_8bit_u8, 8, ql_u8)
QL_UNPACK_ENTRY(bitunpack_4bit_u8, 4, ql_u8)
QL_UNPACK_ENTRY(bitunpack_2bit_u8, 2, ql_u8)
QL_UNPACK_ENTRY(bitunpack_1bit_u8, 1, ql_u8)
QL_UNPACK_ENTRY(bitunpack_3bit_32, 3, int)
