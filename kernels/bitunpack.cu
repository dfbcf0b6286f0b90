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
#include <cstdint>

template <int NBITS, typename Word, typename Out>
__device__ __forceinline__ void unpack_word(const Word w, Out* out, long long i, long long chunk) {
    constexpr int TOTAL = sizeof(Word) == 4 ? 30 : 8;     // used bits per word (3-bit: 10 codes in 30 bits)
    constexpr int PER = TOTAL / NBITS;                    // codes per word
    constexpr unsigned MASK = (1u << NBITS) - 1u;
#pragma unroll
    for (int k = 0; k < PER; ++k) {
        const int shift = TOTAL - NBITS * (k + 1);
        out[k * chunk + i] = static_cast<Out>((static_cast<unsigned>(w) >> shift) & MASK);
    }
}

// One extern "C" entry per packing, so CuPy's RawModule finds each by a plain name.
#define QL_UNPACK_ENTRY(NAME, NBITS, WORD)                                                        \
    extern "C" __global__ void NAME(const WORD* __restrict__ in, uint8_t* __restrict__ out,       \
                                    long long n_words) {                                          \
        const long long i = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;        \
        if (i < n_words) unpack_word<NBITS, WORD, uint8_t>(in[i], out, i, n_words);               \
    }

QL_UNPACK_ENTRY(bitunpack_8bit_u8, 8, uint8_t)
QL_UNPACK_ENTRY(bitunpack_4bit_u8, 4, uint8_t)
QL_UNPACK_ENTRY(bitunpack_2bit_u8, 2, uint8_t)
QL_UNPACK_ENTRY(bitunpack_1bit_u8, 1, uint8_t)
QL_UNPACK_ENTRY(bitunpack_3bit_32, 3, int32_t)
