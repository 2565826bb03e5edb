// The per-element rules of mpitrain/gpu/cuda (mpt_common.cuh) compiled for the host, so that
// a machine without a GPU checks them bit for bit against the Cython kernels. Each function
// is a CUDA kernel of compress_round.cu / compress_pack.cu / objectives.cu with its grid
// loop written as a plain loop; the code, value and packing rules are the shared header's.
#include "mpt_common.cuh"

template <typename T>
static void natural_encode(const T *x, mpt_i64 n, mpt_u64 seed, int det, mpt_u8 *out, mpt_i64 nbytes) {
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, 1 + mpt_traits<T>::E, out, nbytes,
                       [&](mpt_i64 j) { return mpt_natural_code(x[j], seed, j, det); });
}
template <typename T>
static void natural_decode(const mpt_u8 *buf, mpt_i64 nbytes, mpt_i64 n, T *out) {
    for (mpt_i64 i = 0; i < n; i++)
        out[i] = mpt_natural_value<T>(mpt_unpack_code(buf, nbytes, i, 1 + mpt_traits<T>::E));
}
template <typename T>
static void dither_encode(const T *x, mpt_i64 n, mpt_u64 seed, int levels, mpt_i64 bucket, int natural,
                          const T *norms, int b, mpt_u8 *out, mpt_i64 nbytes) {
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, b, out, nbytes, [&](mpt_i64 j) {
            return mpt_dither_code(x[j], seed, j, levels, natural, norms[j / bucket]); });
}
template <typename T>
static void dither_decode(const mpt_u8 *buf, mpt_i64 nbytes, int levels, mpt_i64 bucket, int natural,
                          const T *norms, int b, mpt_i64 n, T *out) {
    for (mpt_i64 i = 0; i < n; i++)
        out[i] = mpt_dither_value<T>(mpt_unpack_code(buf, nbytes, i, b), levels, natural, norms[i / bucket]);
}
template <typename T>
static void sign_encode(const T *x, mpt_i64 n, mpt_u8 *out, mpt_i64 nbytes) {
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, 1, out, nbytes,
                       [&](mpt_i64 j) { return mpt_traits<T>::bits(x[j]) >> mpt_traits<T>::SB; });
}
template <typename T>
static void ternary_encode(const T *x, mpt_i64 n, mpt_u64 seed, T mx, mpt_u8 *out, mpt_i64 nbytes) {
    const T inv = mx > (T)0 ? ((T)1) / mx : (T)0;
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, 2, out, nbytes, [&](mpt_i64 j) { return mpt_ternary_code(x[j], seed, j, inv); });
}

#define HOST_INSTANCES(T, S) \
extern "C" void natural_encode_##S(const T *x, mpt_i64 n, mpt_u64 seed, int det, mpt_u8 *out, mpt_i64 nb) \
    { natural_encode<T>(x, n, seed, det, out, nb); } \
extern "C" void natural_decode_##S(const mpt_u8 *buf, mpt_i64 nb, mpt_i64 n, T *out) \
    { natural_decode<T>(buf, nb, n, out); } \
extern "C" void dither_encode_##S(const T *x, mpt_i64 n, mpt_u64 seed, int levels, mpt_i64 bucket, \
    int natural, const T *norms, int b, mpt_u8 *out, mpt_i64 nb) \
    { dither_encode<T>(x, n, seed, levels, bucket, natural, norms, b, out, nb); } \
extern "C" void dither_decode_##S(const mpt_u8 *buf, mpt_i64 nb, int levels, mpt_i64 bucket, int natural, \
    const T *norms, int b, mpt_i64 n, T *out) \
    { dither_decode<T>(buf, nb, levels, bucket, natural, norms, b, n, out); } \
extern "C" void sign_encode_##S(const T *x, mpt_i64 n, mpt_u8 *out, mpt_i64 nb) \
    { sign_encode<T>(x, n, out, nb); } \
extern "C" void ternary_encode_##S(const T *x, mpt_i64 n, mpt_u64 seed, T mx, mpt_u8 *out, mpt_i64 nb) \
    { ternary_encode<T>(x, n, seed, mx, out, nb); }
HOST_INSTANCES(float, f32)
HOST_INSTANCES(double, f64)

extern "C" void pack_i64(const mpt_i64 *codes, mpt_i64 n, int b, mpt_u8 *out, mpt_i64 nb) {
    for (mpt_i64 g = 0; g < (n + 7) / 8; g++)
        mpt_pack_group(g, n, b, out, nb, [&](mpt_i64 j) { return (mpt_u64)codes[j]; });
}
extern "C" void unpack_i64(const mpt_u8 *buf, mpt_i64 nb, mpt_i64 n, int b, mpt_i64 *out) {
    for (mpt_i64 j = 0; j < n; j++) out[j] = (mpt_i64)mpt_unpack_code(buf, nb, j, b);
}
extern "C" void row_terms(int kind, const double *z, const double *y, mpt_i64 n, double *slope, double *loss) {
    for (mpt_i64 i = 0; i < n; i++) {
        slope[i] = mpt_row_slope(kind, z[i], y[i]);
        loss[i] = mpt_row_loss(kind, z[i], y[i]);
    }
}
