# The types of compress_round's ``dither_pack`` and ``dither_unpack`` specialisations, as the
# PyCapsules of ``compress_round.DITHER_KERNELS`` hold them (included, not a module): by
# compress_round.pyx, which exports them, and compressed_steps.pyx, which calls them.
from libc.stdint cimport int64_t, uint8_t, uint64_t

ctypedef void (*dither_pack32_t)(const float*, Py_ssize_t, uint64_t, int, Py_ssize_t, bint, double, float*,
                                 uint8_t*, int64_t) noexcept nogil
ctypedef void (*dither_pack64_t)(const double*, Py_ssize_t, uint64_t, int, Py_ssize_t, bint, double, double*,
                                 uint8_t*, int64_t) noexcept nogil
ctypedef void (*dither_unpack32_t)(const uint8_t*, Py_ssize_t, int, Py_ssize_t, bint, const float*, float*,
                                   Py_ssize_t) noexcept nogil
ctypedef void (*dither_unpack64_t)(const uint8_t*, Py_ssize_t, int, Py_ssize_t, bint, const double*, double*,
                                   Py_ssize_t) noexcept nogil
