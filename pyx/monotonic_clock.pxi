# The seconds of time.perf_counter read from C without the GIL (included by pyx/sgd_steps.pyx and
# pyx/compressed_steps.pyx: the time their blocks spend inside MPI, reported as the loop's
# communication seconds).

from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec


cdef inline double monotonic_seconds() noexcept nogil:
    """CLOCK_MONOTONIC in seconds (the clock of time.perf_counter on Linux)."""
    cdef timespec now
    clock_gettime(CLOCK_MONOTONIC, &now)
    return <double>now.tv_sec + 1e-9 * <double>now.tv_nsec
