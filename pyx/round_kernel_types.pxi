# The types of compress_round's C kernels that other modules call, as the PyCapsules of
# ``compress_round.C_KERNELS`` hold them (included, not a module): by compress_round.pyx, which exports
# them, and compressed_steps.pyx, which calls them (compressed SGD's exchange in C writes and reads the
# compressors' payloads with these very functions). One float32 and one float64 specialisation each.
from libc.stdint cimport int64_t, uint8_t, uint64_t

# dither_pack(x, n, seed, levels, bucket, natural, p, norms, out, cap); dither_unpack(codes, ncodes,
# levels, bucket, natural, norms, out, n)
ctypedef void (*dither_pack32_t)(const float*, Py_ssize_t, uint64_t, int, Py_ssize_t, bint, double, float*,
                                 uint8_t*, int64_t) noexcept nogil
ctypedef void (*dither_pack64_t)(const double*, Py_ssize_t, uint64_t, int, Py_ssize_t, bint, double, double*,
                                 uint8_t*, int64_t) noexcept nogil
ctypedef void (*dither_unpack32_t)(const uint8_t*, Py_ssize_t, int, Py_ssize_t, bint, const float*, float*,
                                   Py_ssize_t) noexcept nogil
ctypedef void (*dither_unpack64_t)(const uint8_t*, Py_ssize_t, int, Py_ssize_t, bint, const double*, double*,
                                   Py_ssize_t) noexcept nogil
# sign_pack(x, n, out) -> ||x||_1 / n; sign_unpack(bits, scale, out, n)
ctypedef double (*sign_pack32_t)(const float*, Py_ssize_t, uint8_t*) noexcept nogil
ctypedef double (*sign_pack64_t)(const double*, Py_ssize_t, uint8_t*) noexcept nogil
ctypedef void (*sign_unpack32_t)(const uint8_t*, double, float*, Py_ssize_t) noexcept nogil
ctypedef void (*sign_unpack64_t)(const uint8_t*, double, double*, Py_ssize_t) noexcept nogil
# ternary_pack(x, n, seed, out, cap) -> ||x||_inf; ternary_unpack(codes, scale, out, n)
ctypedef float (*ternary_pack32_t)(const float*, Py_ssize_t, uint64_t, uint8_t*, int64_t) noexcept nogil
ctypedef double (*ternary_pack64_t)(const double*, Py_ssize_t, uint64_t, uint8_t*, int64_t) noexcept nogil
ctypedef void (*ternary_unpack32_t)(const uint8_t*, double, float*, Py_ssize_t) noexcept nogil
ctypedef void (*ternary_unpack64_t)(const uint8_t*, double, double*, Py_ssize_t) noexcept nogil
# natural_pack(x, n, seed, deterministic, out, cap, &largest, &subnormal); natural_unpack(codes, ncodes, out, n)
ctypedef void (*natural_pack32_t)(const float*, Py_ssize_t, uint64_t, bint, uint8_t*, int64_t, double*,
                                  bint*) noexcept nogil
ctypedef void (*natural_pack64_t)(const double*, Py_ssize_t, uint64_t, bint, uint8_t*, int64_t, double*,
                                  bint*) noexcept nogil
ctypedef void (*natural_unpack32_t)(const uint8_t*, Py_ssize_t, float*, Py_ssize_t) noexcept nogil
ctypedef void (*natural_unpack64_t)(const uint8_t*, Py_ssize_t, double*, Py_ssize_t) noexcept nogil
