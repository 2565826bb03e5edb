// Bit packing of b-bit codes (0 < b <= 32), LSB first: the GPU twin of pyx/compress_pack.pyx.
#include "mpt_common.cuh"

#define MPT_GRID_LOOP(i, count) \
    for (mpt_i64 i = (mpt_i64)blockIdx.x * blockDim.x + threadIdx.x; i < (count); \
         i += (mpt_i64)blockDim.x * gridDim.x)

template <typename C>
__device__ void pack(const C *codes, mpt_i64 n, int b, mpt_u8 *out, mpt_i64 nbytes) {
    MPT_GRID_LOOP(g, (n + 7) / 8) {
        mpt_pack_group(g, n, b, out, nbytes, [&](mpt_i64 j) { return (mpt_u64)codes[j]; });
    }
}

extern "C" __global__ void pack_i64(const mpt_i64 *codes, mpt_i64 n, int b, mpt_u8 *out,
                                    mpt_i64 nbytes) { pack<mpt_i64>(codes, n, b, out, nbytes); }
extern "C" __global__ void pack_u64(const mpt_u64 *codes, mpt_i64 n, int b, mpt_u8 *out,
                                    mpt_i64 nbytes) { pack<mpt_u64>(codes, n, b, out, nbytes); }
extern "C" __global__ void pack_u32(const mpt_u32 *codes, mpt_i64 n, int b, mpt_u8 *out,
                                    mpt_i64 nbytes) { pack<mpt_u32>(codes, n, b, out, nbytes); }
extern "C" __global__ void pack_u8(const mpt_u8 *codes, mpt_i64 n, int b, mpt_u8 *out,
                                   mpt_i64 nbytes) { pack<mpt_u8>(codes, n, b, out, nbytes); }

extern "C" __global__ void unpack_i64(const mpt_u8 *buf, mpt_i64 nbytes, mpt_i64 n, int b,
                                      mpt_i64 *out) {
    MPT_GRID_LOOP(j, n) { out[j] = (mpt_i64)mpt_unpack_code(buf, nbytes, j, b); }
}
