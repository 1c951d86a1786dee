# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: language_level=3
"""Compiled yuv420p kernels with the exact integer semantics of ``compositor._reference``.

Each ``def`` entry validates every shape, stride, dtype, tap table and rectangle with a
``ValueError`` first; only then does one ``with nogil`` block run the unchecked loops. Rows are
processed top to bottom in one streaming pass: rows outside the overlay are ``memcpy``'d from the
background, rows inside get the vertical pass (16-bit lanes, vectorised by the compiler) followed by
the horizontal pass straight into the output row, and only the few masked pixels at the overlay
edge (rounded corners, border) are blended.
"""

from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cimport numpy as cnp
import numpy as np

cnp.import_array()

NAME = "fast"

cdef enum:
    TOTAL_BITS = 22
    VERTICAL_ONE = 1 << 8
    HORIZONTAL_ONE = 1 << 14


cdef inline uint8_t div255(uint32_t x) noexcept nogil:
    # round(x / 255) for x <= 255 * 255, exactly (Blinn's identity).
    x += 128
    return <uint8_t>((x + (x >> 8)) >> 8)


cdef inline uint8_t blend(uint32_t a, uint32_t b, uint32_t m) noexcept nogil:
    return div255(a * (255 - m) + b * m)


cdef inline void vertical_pass(
    uint16_t* inter,
    const uint8_t* src,
    Py_ssize_t src_stride,
    Py_ssize_t first_col,
    Py_ssize_t ncols,
    const int32_t* weights,
    Py_ssize_t taps,
) noexcept nogil:
    """inter[x] = sum_t weights[t] * src[t][x] for x in [first_col, first_col + ncols)."""
    cdef Py_ssize_t x, t
    cdef uint16_t w0, w1, w2, w3
    cdef const uint8_t* s0
    cdef const uint8_t* s1
    cdef const uint8_t* s2
    cdef const uint8_t* s3
    cdef uint16_t* d = inter + first_col
    src = src + first_col
    t = 0
    # First group initialises, later groups accumulate; up to four rows per sweep so every
    # sweep is one vectorisable loop with a handful of loads per store.
    while t < taps:
        s0 = src + t * src_stride
        w0 = <uint16_t>weights[t]
        if taps - t >= 4:
            s1 = s0 + src_stride
            s2 = s1 + src_stride
            s3 = s2 + src_stride
            w1 = <uint16_t>weights[t + 1]
            w2 = <uint16_t>weights[t + 2]
            w3 = <uint16_t>weights[t + 3]
            if t == 0:
                for x in range(ncols):
                    d[x] = <uint16_t>(w0 * s0[x] + w1 * s1[x] + w2 * s2[x] + w3 * s3[x])
            else:
                for x in range(ncols):
                    d[x] = <uint16_t>(d[x] + w0 * s0[x] + w1 * s1[x] + w2 * s2[x] + w3 * s3[x])
            t += 4
        elif taps - t == 3:
            s1 = s0 + src_stride
            s2 = s1 + src_stride
            w1 = <uint16_t>weights[t + 1]
            w2 = <uint16_t>weights[t + 2]
            if t == 0:
                for x in range(ncols):
                    d[x] = <uint16_t>(w0 * s0[x] + w1 * s1[x] + w2 * s2[x])
            else:
                for x in range(ncols):
                    d[x] = <uint16_t>(d[x] + w0 * s0[x] + w1 * s1[x] + w2 * s2[x])
            t += 3
        elif taps - t == 2:
            s1 = s0 + src_stride
            w1 = <uint16_t>weights[t + 1]
            if t == 0:
                for x in range(ncols):
                    d[x] = <uint16_t>(w0 * s0[x] + w1 * s1[x])
            else:
                for x in range(ncols):
                    d[x] = <uint16_t>(d[x] + w0 * s0[x] + w1 * s1[x])
            t += 2
        else:
            if t == 0:
                for x in range(ncols):
                    d[x] = <uint16_t>(w0 * s0[x])
            else:
                for x in range(ncols):
                    d[x] = <uint16_t>(d[x] + w0 * s0[x])
            t += 1


cdef inline void horizontal_pass(
    uint8_t* dst,
    const uint16_t* inter,
    const int32_t* offsets,
    const int32_t* weights,
    Py_ssize_t n,
    Py_ssize_t taps,
) noexcept nogil:
    """dst[j] = round(sum_t weights[j, t] * inter[offsets[j] + t] / 2**TOTAL_BITS).

    Called with a literal ``taps`` from ``horizontal_dispatch`` so the compiler unrolls it.
    """
    cdef Py_ssize_t j, t
    cdef uint32_t acc
    cdef const uint16_t* p
    cdef const int32_t* w
    for j in range(n):
        p = inter + offsets[j]
        w = weights + j * taps
        acc = 1 << (TOTAL_BITS - 1)
        for t in range(taps):
            acc += <uint32_t>w[t] * p[t]
        dst[j] = <uint8_t>(acc >> TOTAL_BITS)


cdef inline void horizontal_dispatch(
    uint8_t* dst,
    const uint16_t* inter,
    const int32_t* offsets,
    const int32_t* weights,
    Py_ssize_t n,
    Py_ssize_t taps,
) noexcept nogil:
    if taps == 1:
        horizontal_pass(dst, inter, offsets, weights, n, 1)
    elif taps == 2:
        horizontal_pass(dst, inter, offsets, weights, n, 2)
    elif taps == 3:
        horizontal_pass(dst, inter, offsets, weights, n, 3)
    elif taps == 4:
        horizontal_pass(dst, inter, offsets, weights, n, 4)
    elif taps == 5:
        horizontal_pass(dst, inter, offsets, weights, n, 5)
    elif taps == 6:
        horizontal_pass(dst, inter, offsets, weights, n, 6)
    else:
        horizontal_pass(dst, inter, offsets, weights, n, taps)


cdef inline void blend_run(
    uint8_t* dst,
    const uint8_t* under,
    Py_ssize_t under_step,
    const uint8_t* alpha,
    const uint8_t* border,
    uint32_t colour,
    Py_ssize_t start,
    Py_ssize_t stop,
) noexcept nogil:
    """dst[j] = blend(under[j], blend(dst[j], colour, border[j]), alpha[j]) for j in [start, stop).

    ``under_step`` is 1 for a background row and 0 for a single fill value.
    """
    cdef Py_ssize_t j
    cdef uint8_t x
    for j in range(start, stop):
        x = blend(dst[j], colour, border[j])
        dst[j] = blend(under[j * under_step], x, alpha[j])


cdef cnp.ndarray _check_plane(object array, str name, bint writable):
    """A non-empty 2-D uint8 array with unit column stride (a strided *input* is copied to one)."""
    if not isinstance(array, cnp.ndarray):
        raise ValueError(f"{name} must be a numpy array, got {type(array).__name__}")
    cdef cnp.ndarray a = <cnp.ndarray>array
    if cnp.PyArray_TYPE(a) != cnp.NPY_UINT8:
        raise ValueError(f"{name} must be uint8, got {a.dtype}")
    if cnp.PyArray_NDIM(a) != 2:
        raise ValueError(f"{name} must be 2-D, got {cnp.PyArray_NDIM(a)}-D")
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if a.strides[1] != 1 or a.strides[0] < a.shape[1]:
        if writable:
            raise ValueError(f"{name} rows must be contiguous, got strides {array.strides}")
        a = np.ascontiguousarray(a)
    if writable and not cnp.PyArray_ISWRITEABLE(a):
        raise ValueError(f"{name} must be writable")
    return a


cdef cnp.ndarray _check_table(object array, str name, int ndim, Py_ssize_t rows, Py_ssize_t cols):
    """A C-contiguous int32 array of the given shape (``rows``/``cols`` < 0: any)."""
    if (
        not isinstance(array, cnp.ndarray)
        or cnp.PyArray_TYPE(<cnp.ndarray>array) != cnp.NPY_INT32
        or cnp.PyArray_NDIM(<cnp.ndarray>array) != ndim
    ):
        raise ValueError(f"{name} must be a {ndim}-D int32 array")
    cdef cnp.ndarray a = <cnp.ndarray>array
    if not cnp.PyArray_IS_C_CONTIGUOUS(a):
        a = np.ascontiguousarray(a)
    if (rows >= 0 and a.shape[0] != rows) or (ndim == 2 and cols >= 0 and a.shape[1] != cols):
        raise ValueError(f"{name} has shape {array.shape}, expected ({rows}, {cols})")
    return a


cdef int _check_taps(
    const int32_t* offsets, const int32_t* weights, Py_ssize_t n, Py_ssize_t taps,
    Py_ssize_t source, int32_t one, str name,
) except -1:
    """Every window inside the source, every weight >= 0 and every row summing to ``one``."""
    cdef Py_ssize_t j, t
    cdef int64_t total
    if taps < 1 or taps > source:
        raise ValueError(f"{name}: {taps} taps for {source} source samples")
    for j in range(n):
        if offsets[j] < 0 or offsets[j] + taps > source:
            raise ValueError(f"{name}: tap window {j} reads outside the source plane")
        total = 0
        for t in range(taps):
            if weights[j * taps + t] < 0:
                raise ValueError(f"{name}: negative weight at {j}")
            total += weights[j * taps + t]
        if total != one:
            raise ValueError(f"{name}: weights of {j} sum to {total}, expected {one}")
    return 0


cdef inline uint8_t* _data(cnp.ndarray a) noexcept:
    return <uint8_t*>cnp.PyArray_DATA(a)


def pip_plane(
    out,
    background,
    int fill,
    camera,
    Py_ssize_t rx,
    Py_ssize_t ry,
    v_offsets,
    v_weights,
    h_offsets,
    h_weights,
    alpha,
    border,
    spans,
    int colour,
):
    """See ``compositor._reference.pip_plane``: same arguments, bit-identical result."""
    cdef cnp.ndarray o = _check_plane(out, "out", True)
    cdef cnp.ndarray cam = _check_plane(camera, "camera", False)
    cdef cnp.ndarray bg = None
    if background is not None:
        bg = _check_plane(background, "background", False)
        if bg.shape[0] != o.shape[0] or bg.shape[1] != o.shape[1]:
            raise ValueError(f"background shape {background.shape} != out shape {out.shape}")
    if not -1 <= fill <= 255:
        raise ValueError(f"fill must be -1 (keep) or 0..255, got {fill}")
    if not 0 <= colour <= 255:
        raise ValueError(f"colour must be 0..255, got {colour}")
    cdef cnp.ndarray vo = _check_table(v_offsets, "v_offsets", 1, -1, -1)
    cdef cnp.ndarray ho = _check_table(h_offsets, "h_offsets", 1, -1, -1)
    cdef Py_ssize_t H = o.shape[0], W = o.shape[1]
    cdef Py_ssize_t ch = cam.shape[0], cw = cam.shape[1]
    cdef Py_ssize_t h = vo.shape[0], w = ho.shape[0]
    if h < 1 or w < 1:
        raise ValueError("the overlay rectangle must not be empty")
    cdef cnp.ndarray vw = _check_table(v_weights, "v_weights", 2, h, -1)
    cdef cnp.ndarray hw = _check_table(h_weights, "h_weights", 2, w, -1)
    cdef Py_ssize_t tv = vw.shape[1], th = hw.shape[1]
    if rx < 0 or ry < 0 or rx + w > W or ry + h > H:
        raise ValueError(f"rectangle {rx},{ry} {w}x{h} outside plane {W}x{H}")
    # Tap tables must keep every read inside the camera plane and every sum inside 16/32 bits.
    _check_taps(<int32_t*>_data(vo), <int32_t*>_data(vw), h, tv, ch, VERTICAL_ONE, "vertical")
    _check_taps(<int32_t*>_data(ho), <int32_t*>_data(hw), w, th, cw, HORIZONTAL_ONE, "horizontal")
    cdef bint masked = alpha is not None
    cdef cnp.ndarray am = None, bm = None, sp = None
    cdef const int32_t* spp = NULL
    cdef Py_ssize_t r
    if masked:
        am = _check_plane(alpha, "alpha", False)
        if border is None or spans is None:
            raise ValueError("alpha needs border and spans too")
        bm = _check_plane(border, "border", False)
        sp = _check_table(spans, "spans", 2, h, 2)
        if am.shape[0] != h or am.shape[1] != w or bm.shape[0] != h or bm.shape[1] != w:
            raise ValueError(f"masks must be {h}x{w}")
        spp = <const int32_t*>_data(sp)
        for r in range(h):
            if not 0 <= spp[2 * r] <= spp[2 * r + 1] <= w:
                raise ValueError(f"spans[{r}] must satisfy 0 <= l <= r <= {w}")
    elif border is not None or spans is not None:
        raise ValueError("border and spans need alpha")

    cdef uint8_t* out_p = _data(o)
    cdef Py_ssize_t out_s = o.strides[0]
    cdef const uint8_t* cam_p = _data(cam)
    cdef Py_ssize_t cam_s = cam.strides[0]
    cdef const uint8_t* bg_p = NULL
    cdef Py_ssize_t bg_s = 0
    if bg is not None:
        bg_p = _data(bg)
        bg_s = bg.strides[0]
        if bg_p == out_p and bg_s == out_s:
            bg_p = NULL  # in place: the background is already there
            fill = -1
    cdef const int32_t* vop = <const int32_t*>_data(vo)
    cdef const int32_t* vwp = <const int32_t*>_data(vw)
    cdef const int32_t* hop = <const int32_t*>_data(ho)
    cdef const int32_t* hwp = <const int32_t*>_data(hw)
    cdef const uint8_t* amp = NULL
    cdef const uint8_t* bmp = NULL
    cdef Py_ssize_t am_s = 0, bm_s = 0
    if masked:
        amp = _data(am)
        bmp = _data(bm)
        am_s = am.strides[0]
        bm_s = bm.strides[0]
    cdef Py_ssize_t first_col = hop[0]
    cdef Py_ssize_t last_col = hop[w - 1] + th
    cdef uint16_t* inter = <uint16_t*>malloc(cw * sizeof(uint16_t))
    cdef uint8_t* under = <uint8_t*>malloc(w + 1)
    if inter == NULL or under == NULL:
        free(inter)
        free(under)
        raise MemoryError()
    cdef Py_ssize_t y, left, right
    cdef uint8_t* row
    cdef const uint8_t* bg_row
    cdef const uint8_t* under_row
    cdef uint8_t fill_value = <uint8_t>(fill if fill > 0 else 0)
    try:
        with nogil:
            for y in range(H):
                row = out_p + y * out_s
                bg_row = bg_p + y * bg_s if bg_p != NULL else NULL
                if y < ry or y >= ry + h:
                    if bg_row != NULL:
                        memcpy(row, bg_row, W)
                    elif fill >= 0:
                        memset(row, fill_value, W)
                    continue
                if bg_row != NULL:
                    memcpy(row, bg_row, rx)
                    memcpy(row + rx + w, bg_row + rx + w, W - rx - w)
                elif fill >= 0:
                    memset(row, fill_value, rx)
                    memset(row + rx + w, fill_value, W - rx - w)
                r = y - ry
                if masked:
                    # What lies under the overlay, saved before the camera overwrites it.
                    if bg_row != NULL:
                        under_row = bg_row + rx
                    elif fill >= 0:
                        under_row = &fill_value
                    else:
                        memcpy(under, row + rx, w)
                        under_row = under
                vertical_pass(
                    inter, cam_p + vop[r] * cam_s, cam_s, first_col, last_col - first_col,
                    vwp + r * tv, tv,
                )
                horizontal_dispatch(row + rx, inter, hop, hwp, w, th)
                if masked:
                    left = spp[2 * r]
                    right = spp[2 * r + 1]
                    if left == right:
                        left = right = w
                    blend_run(
                        row + rx, under_row, 0 if under_row == &fill_value else 1,
                        amp + r * am_s, bmp + r * bm_s, <uint32_t>colour, 0, left,
                    )
                    blend_run(
                        row + rx, under_row, 0 if under_row == &fill_value else 1,
                        amp + r * am_s, bmp + r * bm_s, <uint32_t>colour, right, w,
                    )
    finally:
        free(inter)
        free(under)


def corner_scores(plane, rects, Py_ssize_t step):
    """See ``compositor._reference.corner_scores``: sampled edge energy inside each rectangle."""
    cdef cnp.ndarray pl = _check_plane(plane, "plane", False)
    cdef cnp.ndarray rc_a = _check_table(rects, "rects", 2, -1, 4)
    if step < 1:
        raise ValueError(f"step must be positive, got {step}")
    cdef Py_ssize_t H = pl.shape[0], W = pl.shape[1], n = rc_a.shape[0]
    cdef const int32_t[:, ::1] rc = rc_a
    cdef Py_ssize_t i, x, y, x0, y0, x1, y1
    for i in range(n):
        if rc[i, 0] < 0 or rc[i, 1] < 0 or rc[i, 2] < 0 or rc[i, 3] < 0 or \
                rc[i, 0] + rc[i, 2] > W or rc[i, 1] + rc[i, 3] > H:
            raise ValueError(
                f"rectangle {rc[i, 0]},{rc[i, 1]} {rc[i, 2]}x{rc[i, 3]} outside plane {W}x{H}"
            )
    cdef const uint8_t* p = _data(pl)
    cdef Py_ssize_t s = pl.strides[0]
    scores = np.zeros(n, dtype=np.int64)
    cdef int64_t[::1] sc = scores
    cdef int64_t total
    cdef int c, a, b
    cdef const uint8_t* line
    with nogil:
        for i in range(n):
            x0, y0 = rc[i, 0], rc[i, 1]
            x1, y1 = x0 + rc[i, 2] - 1, y0 + rc[i, 3] - 1
            total = 0
            y = y0
            while y < y1:
                line = p + y * s
                x = x0
                while x < x1:
                    c = line[x]
                    a = c - line[x + 1]
                    b = c - line[x + s]
                    total += (a if a >= 0 else -a) + (b if b >= 0 else -b)
                    x += step
                y += step
            sc[i] = total
    return scores
