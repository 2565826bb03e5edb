# The types of compress_round's ``sign_pack`` and ``sign_unpack`` specialisations, as the PyCapsules
# of ``compress_round.SIGN_KERNELS`` hold them (included, not a module): by compress_round.pyx, which
# exports them, and compressed_steps.pyx, which calls them (scaled sign's payload in C).
from libc.stdint cimport uint8_t

ctypedef double (*sign_pack32_t)(const float*, Py_ssize_t, uint8_t*) noexcept nogil
ctypedef double (*sign_pack64_t)(const double*, Py_ssize_t, uint8_t*) noexcept nogil
ctypedef void (*sign_unpack32_t)(const uint8_t*, double, float*, Py_ssize_t) noexcept nogil
ctypedef void (*sign_unpack64_t)(const uint8_t*, double, double*, Py_ssize_t) noexcept nogil
