// Quantiser kernels (natural compression / biased rounding, dithering, sign, ternary):
// the GPU twins of pyx/compress_round.pyx, bit for bit (same counter-based stream, same
// code layouts, same LSB-first packing). Encoders: one thread per group of 8 codes
// (exactly b bytes); decoders: one thread per element. n: elements; nbytes: packed bytes.
#include "mpt_common.cuh"

#define MPT_GRID_LOOP(i, count) \
    for (mpt_i64 i = (mpt_i64)blockIdx.x * blockDim.x + threadIdx.x; i < (count); \
         i += (mpt_i64)blockDim.x * gridDim.x)

template <typename T>
__device__ void natural_encode(const T *x, mpt_i64 n, mpt_u64 seed, int deterministic,
                               mpt_u8 *out, mpt_i64 nbytes) {
    const int b = 1 + mpt_traits<T>::E;
    MPT_GRID_LOOP(g, (n + 7) / 8) {
        mpt_pack_group(g, n, b, out, nbytes,
                       [&](mpt_i64 j) { return mpt_natural_code(x[j], seed, j, deterministic); });
    }
}

template <typename T>
__device__ void natural_decode(const mpt_u8 *buf, mpt_i64 nbytes, mpt_i64 n, T *out) {
    const int b = 1 + mpt_traits<T>::E;
    MPT_GRID_LOOP(i, n) { out[i] = mpt_natural_value<T>(mpt_unpack_code(buf, nbytes, i, b)); }
}

template <typename T>
__device__ void dither_encode(const T *x, mpt_i64 n, mpt_u64 seed, int levels, mpt_i64 bucket,
                              int natural, const T *norms, int b, mpt_u8 *out, mpt_i64 nbytes) {
    MPT_GRID_LOOP(g, (n + 7) / 8) {
        mpt_pack_group(g, n, b, out, nbytes, [&](mpt_i64 j) {
            return mpt_dither_code(x[j], seed, j, levels, natural, norms[j / bucket]);
        });
    }
}

template <typename T>
__device__ void dither_decode(const mpt_u8 *buf, mpt_i64 nbytes, int levels, mpt_i64 bucket,
                              int natural, const T *norms, int b, mpt_i64 n, T *out) {
    MPT_GRID_LOOP(i, n) {
        out[i] = mpt_dither_value<T>(mpt_unpack_code(buf, nbytes, i, b), levels, natural,
                                     norms[i / bucket]);
    }
}

template <typename T>
__device__ void sign_encode(const T *x, mpt_i64 n, mpt_u8 *out, mpt_i64 nbytes) {
    MPT_GRID_LOOP(g, (n + 7) / 8) {
        mpt_pack_group(g, n, 1, out, nbytes,
                       [&](mpt_i64 j) { return mpt_traits<T>::bits(x[j]) >> mpt_traits<T>::SB; });
    }
}

template <typename T>
__device__ void sign_decode(const mpt_u8 *buf, const T *scale, mpt_i64 n, T *out) {
    const mpt_u64 sb = mpt_traits<T>::bits(scale[0]);
    MPT_GRID_LOOP(i, n) {
        mpt_u64 bit = (buf[i >> 3] >> (i & 7)) & 1;
        out[i] = mpt_traits<T>::from(sb ^ (bit << mpt_traits<T>::SB));
    }
}

template <typename T>
__device__ void ternary_encode(const T *x, mpt_i64 n, mpt_u64 seed, const T *maximum,
                               mpt_u8 *out, mpt_i64 nbytes) {
    const T mx = maximum[0];
    const T inv = mx > (T)0 ? ((T)1) / mx : (T)0;
    MPT_GRID_LOOP(g, (n + 7) / 8) {  // |x_i| / mx where 1 / mx is not normal (mpt_common.cuh)
        mpt_pack_group(g, n, 2, out, nbytes,
                       [&](mpt_i64 j) { return mpt_ternary_code(x[j], seed, j, inv, mx); });
    }
}

template <typename T>
__device__ void ternary_decode(const mpt_u8 *buf, const T *scale, mpt_i64 n, T *out) {
    const T s = scale[0];
    MPT_GRID_LOOP(i, n) {
        int c = (buf[i >> 2] >> (2 * (i & 3))) & 3;
        out[i] = (c & 1) ? ((c & 2) ? -s : s) : (T)0;
    }
}

// extern "C" entry points, one per dtype (CuPy RawModule looks them up by name)
#define MPT_INSTANCES(T, SUFFIX) \
extern "C" __global__ void natural_encode_##SUFFIX(const T *x, mpt_i64 n, mpt_u64 seed, \
        int deterministic, mpt_u8 *out, mpt_i64 nbytes) { \
    natural_encode<T>(x, n, seed, deterministic, out, nbytes); } \
extern "C" __global__ void natural_decode_##SUFFIX(const mpt_u8 *buf, mpt_i64 nbytes, mpt_i64 n, \
        T *out) { natural_decode<T>(buf, nbytes, n, out); } \
extern "C" __global__ void dither_encode_##SUFFIX(const T *x, mpt_i64 n, mpt_u64 seed, int levels, \
        mpt_i64 bucket, int natural, const T *norms, int b, mpt_u8 *out, mpt_i64 nbytes) { \
    dither_encode<T>(x, n, seed, levels, bucket, natural, norms, b, out, nbytes); } \
extern "C" __global__ void dither_decode_##SUFFIX(const mpt_u8 *buf, mpt_i64 nbytes, int levels, \
        mpt_i64 bucket, int natural, const T *norms, int b, mpt_i64 n, T *out) { \
    dither_decode<T>(buf, nbytes, levels, bucket, natural, norms, b, n, out); } \
extern "C" __global__ void sign_encode_##SUFFIX(const T *x, mpt_i64 n, mpt_u8 *out, \
        mpt_i64 nbytes) { sign_encode<T>(x, n, out, nbytes); } \
extern "C" __global__ void sign_decode_##SUFFIX(const mpt_u8 *buf, const T *scale, mpt_i64 n, \
        T *out) { sign_decode<T>(buf, scale, n, out); } \
extern "C" __global__ void ternary_encode_##SUFFIX(const T *x, mpt_i64 n, mpt_u64 seed, \
        const T *maximum, mpt_u8 *out, mpt_i64 nbytes) { \
    ternary_encode<T>(x, n, seed, maximum, out, nbytes); } \
extern "C" __global__ void ternary_decode_##SUFFIX(const mpt_u8 *buf, const T *scale, mpt_i64 n, \
        T *out) { ternary_decode<T>(buf, scale, n, out); }

MPT_INSTANCES(float, f32)
MPT_INSTANCES(double, f64)
