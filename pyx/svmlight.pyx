"""Parse LIBSVM / svmlight text into CSR arrays, without the GIL.

Format (one sample per line)::

    <label> [qid:<int>] <index>:<value> <index>:<value> ... [# comment]

Feature indices are 1-based in the file and strictly increasing within a line; they
become 0-based columns. Blank lines and lines holding only a comment are skipped (they
produce no row). Spaces, tabs and a CR before the LF are whitespace. ``qid:`` tokens are
ignored. Labels and values must be finite decimal numbers.

Numbers are parsed to float64 with correct rounding (the Clinger fast path for short
decimals, ``strtod`` otherwise, for tokens of any length), so a value equals Python's
``float(token)``; float32
output is that float64 rounded to float32, as ``np.float32(float(token))``.

The parsing loop runs ``with nogil`` over a read-only byte buffer (bytes or an mmap) and
reads only the byte range it is given. On a broken line it stops and reports a failure
code, the 0-based line number within the range and the offending token; the Python
wrapper (``mpitrain.data.svmlight``) turns that into ``DataError("<path>:<line>: ...")``.
"""
import numpy as np

from cython cimport floating
from libc.math cimport isfinite
from libc.stdlib cimport free, malloc, strtod
from libc.string cimport memchr, memcpy

# Failure codes; the Python wrapper maps each to a message.
OK = 0
BAD_LABEL = 1
NONFINITE_LABEL = 2
MISSING_COLON = 3
BAD_INDEX = 4
NOT_INCREASING = 5
BAD_VALUE = 6
NONFINITE_VALUE = 7
INDEX_TOO_LARGE = 8

cdef enum:
    C_OK = 0
    C_BAD_LABEL = 1
    C_NONFINITE_LABEL = 2
    C_MISSING_COLON = 3
    C_BAD_INDEX = 4
    C_NOT_INCREASING = 5
    C_BAD_VALUE = 6
    C_NONFINITE_VALUE = 7
    C_INDEX_TOO_LARGE = 8

cdef enum:
    LF = 10
    CR = 13
    SPACE = 32
    TAB = 9
    HASH = 35
    COLON = 58
    PLUS = 43
    MINUS = 45
    DOT = 46
    ZERO = 48
    NINE = 57
    LOWER_E = 101
    UPPER_E = 69
    LOWER_X = 120
    UPPER_X = 88

cdef enum:
    NUMBER_BUFFER = 256       # number tokens shorter than this are copied on the stack for strtod
    MAX_INDEX = 2147483647    # largest 1-based index whose 0-based column fits in int32

cdef double[23] POWERS_OF_TEN = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
    1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
]


cdef struct Failure:
    int code                 # one of the codes above, C_OK when the range parsed
    Py_ssize_t line          # 0-based line number within the range
    Py_ssize_t token_start   # offending token [token_start, token_stop) in the buffer
    Py_ssize_t token_stop
    long long index          # the feature index involved (1-based), when there is one
    long long previous       # the previous index on the line (NOT_INCREASING)


cdef inline bint is_blank(unsigned char c) noexcept nogil:
    return c == SPACE or c == TAB or c == CR or c == 11 or c == 12


cdef inline bint ends_token(unsigned char c) noexcept nogil:
    return is_blank(c) or c == HASH


cdef bint parse_double(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                       double* out) noexcept nogil:
    """Parse buf[start:stop] as a decimal number; return False when it is not one.

    Fast path (Clinger 1990): at most 15 significant digits and a power of ten up to 22
    are exact doubles, so one multiplication or division rounds correctly. Anything
    else goes through strtod on a NUL-terminated copy: on the stack when shorter than
    NUMBER_BUFFER, else on the heap (a valid decimal may have any number of digits, e.g.
    "0." and 300 zeros and "1"). Hexadecimal is refused, as Python's float() refuses it.
    """
    cdef Py_ssize_t pos = start, digits = 0, exponent = 0, exp_value = 0
    cdef unsigned long long mantissa = 0
    cdef bint negative = False, exp_negative = False, seen_digit = False
    cdef unsigned char c
    cdef char[NUMBER_BUFFER] text
    cdef char* heap
    cdef bint parsed
    cdef Py_ssize_t length = stop - start
    if length <= 0:
        return False
    c = buf[pos]
    if c == PLUS or c == MINUS:
        negative = c == MINUS
        pos += 1
    while pos < stop and ZERO <= buf[pos] <= NINE:
        seen_digit = True
        if mantissa != 0 or buf[pos] != ZERO:
            digits += 1
            if digits <= 19:
                mantissa = mantissa * 10 + (buf[pos] - ZERO)
        pos += 1
    if pos < stop and buf[pos] == DOT:
        pos += 1
        while pos < stop and ZERO <= buf[pos] <= NINE:
            seen_digit = True
            if mantissa != 0 or buf[pos] != ZERO:
                digits += 1
                if digits <= 19:
                    mantissa = mantissa * 10 + (buf[pos] - ZERO)
            exponent -= 1
            pos += 1
    if seen_digit and pos < stop and (buf[pos] == LOWER_E or buf[pos] == UPPER_E):
        pos += 1
        if pos < stop and (buf[pos] == PLUS or buf[pos] == MINUS):
            exp_negative = buf[pos] == MINUS
            pos += 1
        if pos == stop or not (ZERO <= buf[pos] <= NINE):
            return False
        while pos < stop and ZERO <= buf[pos] <= NINE:
            if exp_value < 100000:
                exp_value = exp_value * 10 + (buf[pos] - ZERO)
            pos += 1
        exponent += -exp_value if exp_negative else exp_value
    if seen_digit and pos == stop and digits <= 15 and -22 <= exponent <= 22:
        if exponent >= 0:
            out[0] = <double>mantissa * POWERS_OF_TEN[exponent]
        else:
            out[0] = <double>mantissa / POWERS_OF_TEN[-exponent]
        if negative:
            out[0] = -out[0]
        return True
    # Slow path: long mantissas, large exponents, inf and nan.
    for pos in range(start, stop):
        if buf[pos] == LOWER_X or buf[pos] == UPPER_X:
            return False
    if length < NUMBER_BUFFER:
        return strtod_copy(buf + start, length, text, out)
    heap = <char*>malloc(length + 1)
    if heap == NULL:
        return False                    # no memory for one token's copy: reported as not a number
    parsed = strtod_copy(buf + start, length, heap, out)
    free(heap)
    return parsed


cdef inline bint strtod_copy(const unsigned char* token, Py_ssize_t length, char* text,
                             double* out) noexcept nogil:
    """strtod on ``token[:length]`` copied NUL-terminated into ``text`` (length + 1 bytes);
    False unless strtod consumed the whole token."""
    cdef char* end
    memcpy(text, token, length)
    text[length] = 0
    out[0] = strtod(text, &end)
    return end == text + length


cdef bint parse_index(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                      long long* out) noexcept nogil:
    """Parse buf[start:stop] as a 1-based feature index (digits only, 1..2**31-1)."""
    cdef long long value = 0
    cdef Py_ssize_t pos
    if stop <= start:
        return False
    for pos in range(start, stop):
        if not (ZERO <= buf[pos] <= NINE):
            return False
        value = value * 10 + (buf[pos] - ZERO)
        if value > MAX_INDEX:
            return False
    out[0] = value
    return value >= 1


cdef Py_ssize_t find_byte(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                          unsigned char byte) noexcept nogil:
    """Position of the first ``byte`` in buf[start:stop], or ``stop``."""
    cdef const void* hit
    if stop <= start:
        return stop
    hit = memchr(buf + start, byte, stop - start)
    if hit == NULL:
        return stop
    return <const unsigned char*>hit - buf


cdef void count_bounds(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                       Py_ssize_t* rows, Py_ssize_t* entries) noexcept nogil:
    """Upper bounds for the number of rows (lines) and stored entries (':' bytes)."""
    cdef Py_ssize_t pos, newlines = 0, colons = 0
    for pos in range(start, stop):
        newlines += buf[pos] == LF
        colons += buf[pos] == COLON
    rows[0] = newlines + 1
    entries[0] = colons


cdef int parse_range(const unsigned char* buf, Py_ssize_t start, Py_ssize_t stop,
                     long long n_features, double* labels, floating* values,
                     int* indices, long long* indptr, Py_ssize_t* n_rows,
                     long long* max_column, Failure* failure) noexcept nogil:
    """Parse the lines in buf[start:stop] into CSR arrays; return a failure code.

    ``labels`` needs room for one entry per line, ``values`` and ``indices`` for one
    entry per ':' byte, ``indptr`` for lines + 1. ``n_features`` > 0 bounds the indices.
    """
    cdef Py_ssize_t pos = start, eol, end, token, colon, line = 0, row = 0
    cdef long long nnz = 0, index, previous, widest = 0
    cdef double number
    indptr[0] = 0
    while pos < stop:
        eol = find_byte(buf, pos, stop, LF)
        end = find_byte(buf, pos, eol, HASH)        # a comment ends the line
        while pos < end and is_blank(buf[pos]):
            pos += 1
        if pos < end:
            token = pos
            while pos < end and not is_blank(buf[pos]):
                pos += 1
            if not parse_double(buf, token, pos, &number):
                failure[0] = Failure(C_BAD_LABEL, line, token, pos, 0, 0)
                return C_BAD_LABEL
            if not isfinite(number):
                failure[0] = Failure(C_NONFINITE_LABEL, line, token, pos, 0, 0)
                return C_NONFINITE_LABEL
            labels[row] = number
            previous = 0
            while True:
                while pos < end and is_blank(buf[pos]):
                    pos += 1
                if pos >= end:
                    break
                token = pos
                while pos < end and not is_blank(buf[pos]):
                    pos += 1
                if (pos - token > 4 and buf[token] == 113 and buf[token + 1] == 105
                        and buf[token + 2] == 100 and buf[token + 3] == COLON):
                    continue                        # qid:<n> is ignored
                colon = find_byte(buf, token, pos, COLON)
                if colon == pos:
                    failure[0] = Failure(C_MISSING_COLON, line, token, pos, 0, 0)
                    return C_MISSING_COLON
                if not parse_index(buf, token, colon, &index):
                    failure[0] = Failure(C_BAD_INDEX, line, token, colon, 0, 0)
                    return C_BAD_INDEX
                if index <= previous:
                    failure[0] = Failure(C_NOT_INCREASING, line, token, pos, index, previous)
                    return C_NOT_INCREASING
                if n_features > 0 and index > n_features:
                    failure[0] = Failure(C_INDEX_TOO_LARGE, line, token, pos, index, 0)
                    return C_INDEX_TOO_LARGE
                if not parse_double(buf, colon + 1, pos, &number):
                    failure[0] = Failure(C_BAD_VALUE, line, colon + 1, pos, index, 0)
                    return C_BAD_VALUE
                values[nnz] = <floating>number
                if not isfinite(values[nnz]):       # NaN, Inf, or beyond float32's range
                    failure[0] = Failure(C_NONFINITE_VALUE, line, colon + 1, pos, index, 0)
                    return C_NONFINITE_VALUE
                indices[nnz] = <int>(index - 1)
                nnz += 1
                previous = index
            if previous > widest:
                widest = previous
            row += 1
            indptr[row] = nnz
        pos = eol + 1
        line += 1
    n_rows[0] = row
    max_column[0] = widest
    return C_OK


def parse_svmlight(const unsigned char[::1] buffer, Py_ssize_t start, Py_ssize_t stop,
                   dtype=np.float64, long long n_features=0):
    """Parse the LIBSVM lines in ``buffer[start:stop]``.

    ``start`` must be the first byte of a line; the last line may lack its LF.
    ``n_features`` > 0 makes an index above it a failure.

    Returns ``(labels, values, indices, indptr, n_columns, failure)``: labels float64
    (n_rows,), values ``dtype`` (nnz,), indices int32 (nnz,) 0-based, indptr int64
    (n_rows + 1,), n_columns the largest 1-based index seen (0 when none), and failure
    None or a tuple ``(code, line_in_range, token_bytes, index, previous)``.
    """
    cdef Py_ssize_t rows_bound, entries_bound, n_rows = 0
    cdef long long max_column = 0
    cdef int code
    cdef Failure failure
    cdef const unsigned char* data = &buffer[0] if buffer.shape[0] > 0 else NULL
    if not (0 <= start <= stop <= buffer.shape[0]):
        raise ValueError(f"byte range [{start}, {stop}) is outside the buffer of {buffer.shape[0]} bytes")
    dtype = np.dtype(dtype)
    if dtype != np.float32 and dtype != np.float64:
        raise ValueError(f"dtype must be float32 or float64, got {dtype}")
    if data == NULL:
        rows_bound, entries_bound = 1, 0
    else:
        with nogil:
            count_bounds(data, start, stop, &rows_bound, &entries_bound)
    labels = np.empty(rows_bound, dtype=np.float64)
    values = np.empty(max(entries_bound, 1), dtype=dtype)
    indices = np.empty(max(entries_bound, 1), dtype=np.int32)
    indptr = np.empty(rows_bound + 1, dtype=np.int64)
    cdef double[::1] labels_view = labels
    cdef int[::1] indices_view = indices
    cdef long long[::1] indptr_view = indptr
    cdef float[::1] values32
    cdef double[::1] values64
    if data == NULL:
        indptr_view[0] = 0
        code = C_OK
    elif dtype == np.float32:
        values32 = values
        with nogil:
            code = parse_range[float](data, start, stop, n_features, &labels_view[0],
                                      &values32[0], &indices_view[0], &indptr_view[0],
                                      &n_rows, &max_column, &failure)
    else:
        values64 = values
        with nogil:
            code = parse_range[double](data, start, stop, n_features, &labels_view[0],
                                       &values64[0], &indices_view[0], &indptr_view[0],
                                       &n_rows, &max_column, &failure)
    if code != C_OK:
        token = bytes(buffer[failure.token_start:failure.token_stop])
        return None, None, None, None, 0, (code, failure.line, token, failure.index,
                                           failure.previous)
    nnz = int(indptr[n_rows])
    return (_trim(labels, n_rows), _trim(values, nnz), _trim(indices, nnz),
            _trim(indptr, n_rows + 1), int(max_column), None)


def _trim(array, n):
    """``array[:n]``, copied when that frees more than a tenth of the memory."""
    if n == array.shape[0]:
        return array
    if n < 0.9 * array.shape[0]:
        return array[:n].copy()
    return array[:n]


def count_newlines(const unsigned char[::1] buffer, Py_ssize_t start, Py_ssize_t stop):
    """Number of LF bytes in ``buffer[start:stop]`` (memchr loop, without the GIL)."""
    cdef Py_ssize_t count = 0, pos = start
    cdef const unsigned char* data
    if not (0 <= start <= stop <= buffer.shape[0]):
        raise ValueError(f"byte range [{start}, {stop}) is outside the buffer of {buffer.shape[0]} bytes")
    if stop == start:
        return 0
    data = &buffer[0]
    with nogil:
        while pos < stop:
            pos = find_byte(data, pos, stop, LF)
            if pos < stop:
                count += 1
                pos += 1
    return count


def line_start(const unsigned char[::1] buffer, Py_ssize_t position):
    """The first line start at or after byte ``position`` (0 and ``len`` included).

    A line starts at byte 0 and right after every LF. Splitting a buffer at
    ``line_start(buffer, k * n // count)`` gives ranges in which every line belongs to
    the range holding its first byte.
    """
    cdef Py_ssize_t n = buffer.shape[0], found
    if position <= 0:
        return 0
    if position >= n:
        return n
    with nogil:
        found = find_byte(&buffer[0], position - 1, n, LF)
    return min(found + 1, n)
