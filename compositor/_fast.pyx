# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: language_level=3
"""Compiled yuv420p kernels with the exact integer semantics of ``compositor._reference``.

Each ``def`` entry validates every shape, stride, dtype, tap table and rectangle with a
``ValueError`` first; only then does one ``with nogil`` block run the unchecked loops. Rows are
processed top to bottom in one streaming pass: rows outside the overlay are ``memcpy``'d from the
background; rows inside get the vertical pass (source rows -> one biased int16 row) and then the
horizontal pass straight into the output row; only the few masked pixels at the overlay edge
(rounded corners, border) are blended.

``PipPlan`` does that validation and builds every SIMD table (int16 weights, pshufb masks)
once per (layout, sizes), and its ``run``/``run_frames`` do all three planes in one ``nogil``
block: the per-frame Python cost of a composite is one call. ``pip_plane`` is the one-shot form.

Portability: the module is built for the baseline ISA (``-O3``, no ``-march``; SSE2 on x86-64).
The row loops live in C in ``_kernels.h`` (included into this module's translation unit, so
they still inline); their AVX2 variants are compiled with ``__attribute__((target("avx2")))`` and
picked at run time from ``__builtin_cpu_supports`` (vertical pass: vpmaddubsw on pixel pairs; horizontal
4-tap pass: pshufb gathers for output pairs). ``MULTISTREAM_SIMD=baseline`` (or ``simd=
"baseline"``) forces the portable path; both are tested bit-exact against the reference. Other
compilers and CPUs get the portable C/SSE2 code.
"""

from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset
from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer

cimport numpy as cnp
import os

import numpy as np

cnp.import_array()

NAME = "fast"
SIMD_CHOICES = ("auto", "baseline")

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


cdef extern from "_kernels.h":
    Py_ssize_t ms_lanes(Py_ssize_t taps) nogil
    void ms_vpass(int16_t* inter, const uint8_t* src, Py_ssize_t stride, Py_ssize_t n,
                  const int32_t* w, Py_ssize_t taps) nogil
    void ms_hpass(uint8_t* dst, const int16_t* inter, const int32_t* off, const int16_t* w,
                  Py_ssize_t n, Py_ssize_t k) nogil
    int ms_cpu_avx2()
    void ms_vrow(int16_t* inter, const uint8_t* src, Py_ssize_t stride, Py_ssize_t n,
                 const int32_t* w, Py_ssize_t taps, int use_avx2, int bytes_ok) nogil
    void ms_hrow(uint8_t* dst, const int16_t* inter, const int32_t* off, const int16_t* w,
                 Py_ssize_t n, Py_ssize_t k, int use_avx2, const uint8_t* masks,
                 const int16_t* wq) nogil


HAVE_AVX2 = bool(ms_cpu_avx2())
DEFAULT_SIMD = os.environ.get("MULTISTREAM_SIMD", "auto").strip().lower()
if DEFAULT_SIMD not in SIMD_CHOICES:
    raise ImportError(f"MULTISTREAM_SIMD must be one of {SIMD_CHOICES}, got {DEFAULT_SIMD!r}")
SIMD = "avx2" if HAVE_AVX2 and DEFAULT_SIMD == "auto" else "baseline"


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


cdef int32_t _check_taps(
    const int32_t* offsets, const int32_t* weights, Py_ssize_t n, Py_ssize_t taps,
    Py_ssize_t source, int32_t one, str name,
) except -1:
    """Every window inside the source, every weight >= 0 and every row summing to ``one``.

    Returns the largest weight (the byte-wide AVX2 vertical pass needs it below 256).
    """
    cdef Py_ssize_t j, t
    cdef int64_t total
    cdef int32_t largest = 0
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
            if weights[j * taps + t] > largest:
                largest = weights[j * taps + t]
        if total != one:
            raise ValueError(f"{name}: weights of {j} sum to {total}, expected {one}")
    return largest


cdef inline uint8_t* _data(cnp.ndarray a) noexcept:
    return <uint8_t*>cnp.PyArray_DATA(a)


cdef struct PlaneState:
    Py_ssize_t H, W, ch, cw, rx, ry, h, w, tv, th, k, first_col, last_col
    Py_ssize_t am_s, bm_s
    const int32_t* vop
    const int32_t* vwp
    const int32_t* hop
    const int32_t* hwp
    const int32_t* spp
    const uint8_t* amp
    const uint8_t* bmp
    int16_t* hw16
    uint8_t* shuf
    int16_t* wq
    int16_t* inter
    uint8_t* under
    uint32_t colour
    int masked, use_avx2, v_bytes_ok


cdef class _PlanePlan:
    """One plane's validated geometry and every table the row loops need, built once.

    Keeps the numpy tap tables and masks alive; owns the malloc'd scratch and SIMD tables.
    """

    cdef PlaneState st
    cdef object keep

    def __cinit__(self):
        memset(&self.st, 0, sizeof(PlaneState))

    def __dealloc__(self):
        free(self.st.hw16)
        free(self.st.shuf)
        free(self.st.wq)
        free(self.st.inter)
        free(self.st.under)


cdef _PlanePlan _build_plane(
    Py_ssize_t H, Py_ssize_t W, Py_ssize_t ch, Py_ssize_t cw, Py_ssize_t rx, Py_ssize_t ry,
    v_offsets, v_weights, h_offsets, h_weights, alpha, border, spans, int colour, int use_avx2,
):
    """Validate one plane's rectangle, tap tables and masks against its sizes; build the tables.

    Three steps, each its own function: check the geometry and tap tables, check the masks, then
    allocate the scratch rows and the SIMD tables the row loops read.
    """
    if not 0 <= colour <= 255:
        raise ValueError(f"colour must be 0..255, got {colour}")
    cdef _PlanePlan plan = _PlanePlan()
    cdef PlaneState* s = &plan.st
    s.H, s.W, s.ch, s.cw, s.rx, s.ry = H, W, ch, cw, rx, ry
    s.colour = <uint32_t>colour
    s.use_avx2 = use_avx2
    taps = _check_geometry(s, v_offsets, v_weights, h_offsets, h_weights)
    masks = _check_masks(s, alpha, border, spans)
    plan.keep = (taps, masks)  # the state points into these arrays
    _alloc_scratch(s)
    _build_shuffles(s)
    return plan


cdef tuple _check_geometry(PlaneState* s, v_offsets, v_weights, h_offsets, h_weights):
    """Tap tables and rectangle: every read inside the camera plane, every sum inside 16/32 bits.

    Fills the sizes, tap pointers and column range of ``s``; returns the (possibly copied)
    arrays, which must outlive the state.
    """
    cdef cnp.ndarray vo = _check_table(v_offsets, "v_offsets", 1, -1, -1)
    cdef cnp.ndarray ho = _check_table(h_offsets, "h_offsets", 1, -1, -1)
    cdef Py_ssize_t h = vo.shape[0], w = ho.shape[0]
    if h < 1 or w < 1:
        raise ValueError("the overlay rectangle must not be empty")
    cdef cnp.ndarray vw = _check_table(v_weights, "v_weights", 2, h, -1)
    cdef cnp.ndarray hw = _check_table(h_weights, "h_weights", 2, w, -1)
    cdef Py_ssize_t tv = vw.shape[1], th = hw.shape[1]
    if s.rx < 0 or s.ry < 0 or s.rx + w > s.W or s.ry + h > s.H:
        raise ValueError(f"rectangle {s.rx},{s.ry} {w}x{h} outside plane {s.W}x{s.H}")
    # The byte-wide AVX2 vertical pass needs every vertical weight below 256.
    s.v_bytes_ok = _check_taps(
        <int32_t*>_data(vo), <int32_t*>_data(vw), h, tv, s.ch, VERTICAL_ONE, "vertical"
    ) < 256
    _check_taps(<int32_t*>_data(ho), <int32_t*>_data(hw), w, th, s.cw, HORIZONTAL_ONE, "horizontal")
    s.h, s.w, s.tv, s.th = h, w, tv, th
    s.vop = <const int32_t*>_data(vo)
    s.vwp = <const int32_t*>_data(vw)
    s.hop = <const int32_t*>_data(ho)
    s.hwp = <const int32_t*>_data(hw)
    s.first_col = s.hop[0]
    s.last_col = s.hop[w - 1] + th
    return (vo, ho, vw, hw)


cdef tuple _check_masks(PlaneState* s, alpha, border, spans):
    """Alpha, border and spans all given (each ``h`` x ``w``, spans ordered) or none of them."""
    s.masked = alpha is not None
    if not s.masked:
        if border is not None or spans is not None:
            raise ValueError("border and spans need alpha")
        return ()
    cdef Py_ssize_t h = s.h, w = s.w, r
    cdef cnp.ndarray am = _check_plane(alpha, "alpha", False)
    if border is None or spans is None:
        raise ValueError("alpha needs border and spans too")
    cdef cnp.ndarray bm = _check_plane(border, "border", False)
    cdef cnp.ndarray sp = _check_table(spans, "spans", 2, h, 2)
    if am.shape[0] != h or am.shape[1] != w or bm.shape[0] != h or bm.shape[1] != w:
        raise ValueError(f"masks must be {h}x{w}")
    cdef const int32_t* spp = <const int32_t*>_data(sp)
    for r in range(h):
        if not 0 <= spp[2 * r] <= spp[2 * r + 1] <= w:
            raise ValueError(f"spans[{r}] must satisfy 0 <= l <= r <= {w}")
    s.spp = spp
    s.amp = _data(am)
    s.bmp = _data(bm)
    s.am_s = am.strides[0]
    s.bm_s = bm.strides[0]
    return (am, bm, sp)


cdef int _alloc_scratch(PlaneState* s) except -1:
    """One biased 16-bit intermediate row (padded so SIMD windows may over-read zeros), the
    horizontal weights as int16 padded to the SIMD width, and one saved background row."""
    cdef Py_ssize_t k = ms_lanes(s.th), j, t
    s.k = k
    s.inter = <int16_t*>malloc((s.cw + k + 16) * sizeof(int16_t))
    s.hw16 = <int16_t*>malloc((s.w * k + 8) * sizeof(int16_t))
    s.under = <uint8_t*>malloc(s.w + 1)
    if s.inter == NULL or s.under == NULL or s.hw16 == NULL:
        raise MemoryError()
    memset(s.inter, 0, (s.cw + k + 16) * sizeof(int16_t))
    memset(s.hw16, 0, (s.w * k + 8) * sizeof(int16_t))
    for j in range(s.w):
        for t in range(s.th):
            s.hw16[j * k + t] = <int16_t>s.hwp[j * s.th + t]
    return 0


cdef int _build_shuffles(PlaneState* s) except -1:
    """AVX2 pshufb masks for 4-tap horizontal windows, when every group of outputs fits a load.

    Quad form (about 2x downscale or less): 4 outputs per 128-bit lane from one 8-sample load at
    ``offsets[j - j % 4]``. Pair form: output pairs (j, j+1) share one 8-sample load at
    ``offsets[j]`` and pshufb lays out [j taps 0-3, j+1 taps 0-3] as int16. Neither: no tables,
    and the row loop takes the generic path.
    """
    cdef const int32_t* hop = s.hop
    cdef Py_ssize_t th = s.th, w = s.w, j, t, rel, pos, lane, half
    cdef Py_ssize_t nfull = w - w % 8
    cdef bint fits = s.use_avx2 and s.k == 4 and nfull > 0
    cdef bint quad = fits
    for j in range(0, nfull, 4):
        if hop[j + 3] + th - 1 - hop[j] > 7:
            quad = False
            break
    for j in range(0, nfull, 2):
        if hop[j + 1] + 4 - hop[j] > 8:
            fits = False
            break
    if quad:
        # Per block of 8 outputs: masks [taps 0,1 of both lanes][taps 2,3 of both lanes],
        # weights likewise.
        s.shuf = <uint8_t*>malloc(nfull * 8)
        s.wq = <int16_t*>malloc(nfull * 4 * sizeof(int16_t))
        if s.shuf == NULL or s.wq == NULL:
            raise MemoryError()
        memset(s.wq, 0, nfull * 4 * sizeof(int16_t))
        for j in range(nfull):
            lane = (j % 8) // 4
            for t in range(4):
                half = t // 2  # which shuffle/madd: taps (0,1) or (2,3)
                rel = hop[j] - hop[j - j % 4] + (t if t < th else 0)
                pos = (j - j % 8) * 8 + half * 32 + lane * 16 + ((j % 4) * 2 + t % 2) * 2
                s.shuf[pos] = <uint8_t>(2 * rel)
                s.shuf[pos + 1] = <uint8_t>(2 * rel + 1)
                s.wq[pos // 2] = s.hw16[j * 4 + t]
    elif fits:
        s.shuf = <uint8_t*>malloc(nfull * 8)
        if s.shuf == NULL:
            raise MemoryError()
        for j in range(nfull):
            for t in range(4):
                rel = hop[j] - hop[j - j % 2] + t  # sample index inside the pair's load
                pos = (j % 2) * 4 + t  # int16 slot in the lane
                s.shuf[(j - j % 2) * 8 + 2 * pos] = <uint8_t>(2 * rel)
                s.shuf[(j - j % 2) * 8 + 2 * pos + 1] = <uint8_t>(2 * rel + 1)
    return 0


cdef inline void _fill_rows(
    uint8_t* out_p, Py_ssize_t out_s, const uint8_t* bg_p, Py_ssize_t bg_s, int fill,
    Py_ssize_t y0, Py_ssize_t y1, Py_ssize_t W,
) noexcept nogil:
    """Rows [y0, y1) of out from the background or fill; one memcpy when both are unpadded.

    (Padded rows are copied one by one: bytes past ``W`` may belong to someone else's array.)
    """
    cdef Py_ssize_t y
    if y1 <= y0:
        return
    if bg_p != NULL:
        if bg_s == W and out_s == W:
            memcpy(out_p + y0 * W, bg_p + y0 * W, (y1 - y0) * W)
        else:
            for y in range(y0, y1):
                memcpy(out_p + y * out_s, bg_p + y * bg_s, W)
    elif fill >= 0:
        for y in range(y0, y1):
            memset(out_p + y * out_s, <uint8_t>fill, W)


cdef void _run_plane(
    const PlaneState* s, uint8_t* out_p, Py_ssize_t out_s, const uint8_t* bg_p,
    Py_ssize_t bg_s, int fill, const uint8_t* cam_p, Py_ssize_t cam_s,
) noexcept nogil:
    """The unchecked row loop for one validated plane (see ``pip_plane``)."""
    cdef Py_ssize_t H = s.H, W = s.W, rx = s.rx, ry = s.ry, h = s.h, w = s.w
    cdef Py_ssize_t y, r, left, right
    cdef uint8_t* row
    cdef const uint8_t* bg_row
    cdef const uint8_t* under_row
    cdef uint8_t fill_value = <uint8_t>(fill if fill > 0 else 0)
    if bg_p != NULL and bg_p == out_p and bg_s == out_s:
        bg_p = NULL  # in place: the background is already there
        fill = -1
    _fill_rows(out_p, out_s, bg_p, bg_s, fill, 0, ry, W)
    _fill_rows(out_p, out_s, bg_p, bg_s, fill, ry + h, H, W)
    for r in range(h):
        y = ry + r
        row = out_p + y * out_s
        bg_row = bg_p + y * bg_s if bg_p != NULL else NULL
        if bg_row != NULL:
            memcpy(row, bg_row, rx)
            memcpy(row + rx + w, bg_row + rx + w, W - rx - w)
        elif fill >= 0:
            memset(row, fill_value, rx)
            memset(row + rx + w, fill_value, W - rx - w)
        if s.masked:
            # What lies under the overlay, saved before the camera overwrites it.
            if bg_row != NULL:
                under_row = bg_row + rx
            elif fill >= 0:
                under_row = &fill_value
            else:
                memcpy(s.under, row + rx, w)
                under_row = s.under
        ms_vrow(
            s.inter + s.first_col, cam_p + s.vop[r] * cam_s + s.first_col, cam_s,
            s.last_col - s.first_col, s.vwp + r * s.tv, s.tv, s.use_avx2, s.v_bytes_ok,
        )
        ms_hrow(row + rx, s.inter, s.hop, s.hw16, w, s.k, s.use_avx2, s.shuf, s.wq)
        if s.masked:
            left = s.spp[2 * r]
            right = s.spp[2 * r + 1]
            if left == right:
                left = right = w
            blend_run(
                row + rx, under_row, 0 if under_row == &fill_value else 1,
                s.amp + r * s.am_s, s.bmp + r * s.bm_s, s.colour, 0, left,
            )
            blend_run(
                row + rx, under_row, 0 if under_row == &fill_value else 1,
                s.amp + r * s.am_s, s.bmp + r * s.bm_s, s.colour, right, w,
            )


cdef inline int _use_avx2(str simd) except -1:
    if simd not in SIMD_CHOICES:
        raise ValueError(f"simd must be one of {SIMD_CHOICES}, got {simd!r}")
    return simd == "auto" and HAVE_AVX2


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
    *,
    str simd=DEFAULT_SIMD,
):
    """See ``compositor._reference.pip_plane``: same arguments, bit-identical result.

    ``simd`` selects the code path: ``"auto"`` (AVX2 when the CPU has it) or ``"baseline"``
    (SSE2 / portable C only); the default comes from ``$MULTISTREAM_SIMD`` at import. For a
    stream of frames, ``PipPlan`` validates and builds the tables once instead of per call.
    """
    cdef int use_avx2 = _use_avx2(simd)
    cdef cnp.ndarray o = _check_plane(out, "out", True)
    cdef cnp.ndarray cam = _check_plane(camera, "camera", False)
    cdef cnp.ndarray bg = None
    if background is not None:
        bg = _check_plane(background, "background", False)
        if bg.shape[0] != o.shape[0] or bg.shape[1] != o.shape[1]:
            raise ValueError(f"background shape {background.shape} != out shape {out.shape}")
    if not -1 <= fill <= 255:
        raise ValueError(f"fill must be -1 (keep) or 0..255, got {fill}")
    cdef _PlanePlan plan = _build_plane(
        o.shape[0], o.shape[1], cam.shape[0], cam.shape[1], rx, ry,
        v_offsets, v_weights, h_offsets, h_weights, alpha, border, spans, colour, use_avx2,
    )
    cdef uint8_t* out_p = _data(o)
    cdef Py_ssize_t out_s = o.strides[0]
    cdef const uint8_t* cam_p = _data(cam)
    cdef Py_ssize_t cam_s = cam.strides[0]
    cdef const uint8_t* bg_p = NULL
    cdef Py_ssize_t bg_s = 0
    if bg is not None:
        bg_p = _data(bg)
        bg_s = bg.strides[0]
    with nogil:
        _run_plane(&plan.st, out_p, out_s, bg_p, bg_s, fill, cam_p, cam_s)


cdef cnp.ndarray _plan_plane(object array, str name, bint writable, Py_ssize_t h, Py_ssize_t w):
    cdef cnp.ndarray a = _check_plane(array, name, writable)
    if a.shape[0] != h or a.shape[1] != w:
        raise ValueError(f"{name} has shape {array.shape}, the plan expects ({h}, {w})")
    return a


cdef enum:
    MAX_PLANES = 4


cdef class PipPlan:
    """``pip_plane`` for up to four planes of fixed sizes, validated and tabled once.

    ``planes`` holds one tuple per plane: ``((out_h, out_w), (camera_h, camera_w), rx, ry,
    v_offsets, v_weights, h_offsets, h_weights, alpha, border, spans, colour)``, the same
    arguments as ``pip_plane``. ``run`` then checks only the arrays (dtype, shape against the
    plan, strides) and does every plane in one ``nogil`` block: the per-frame cost of a
    composite is one call, with no table rebuilt.
    """

    cdef list _plans
    cdef Py_ssize_t _n

    def __init__(self, planes, *, str simd=DEFAULT_SIMD):
        cdef int use_avx2 = _use_avx2(simd)
        self._plans = []
        for p in planes:
            if len(p) != 12:
                raise ValueError(f"each plane needs 12 items, got {len(p)}")
            (H, W), (ch, cw), rx, ry, vo, vw, ho, hw, alpha, border, spans, colour = p
            if H < 1 or W < 1 or ch < 1 or cw < 1:
                raise ValueError(f"plane sizes must be positive, got {(H, W)} and {(ch, cw)}")
            self._plans.append(
                _build_plane(H, W, ch, cw, rx, ry, vo, vw, ho, hw, alpha, border, spans,
                             colour, use_avx2)
            )
        self._n = len(self._plans)
        if not 1 <= self._n <= MAX_PLANES:
            raise ValueError(f"a plan holds 1..{MAX_PLANES} planes, got {self._n}")

    def run(self, out, background, fill, camera):
        """Resample ``camera[i]`` into ``out[i]`` over ``background[i]`` or ``fill[i]``.

        ``background`` and ``fill`` may be ``None`` (no background; ``fill=None`` means -1,
        keep ``out``). Same semantics as ``pip_plane`` per plane.
        """
        cdef Py_ssize_t n = self._n, i
        if len(out) != n or len(camera) != n:
            raise ValueError(f"the plan has {n} planes, got {len(out)} out / {len(camera)} camera")
        if background is not None and len(background) != n:
            raise ValueError(f"the plan has {n} planes, got {len(background)} background")
        if fill is not None and len(fill) != n:
            raise ValueError(f"the plan has {n} planes, got {len(fill)} fill values")
        cdef uint8_t* out_p[MAX_PLANES]
        cdef const uint8_t* cam_p[MAX_PLANES]
        cdef const uint8_t* bg_p[MAX_PLANES]
        cdef Py_ssize_t out_s[MAX_PLANES]
        cdef Py_ssize_t cam_s[MAX_PLANES]
        cdef Py_ssize_t bg_s[MAX_PLANES]
        cdef int fills[MAX_PLANES]
        cdef const PlaneState* st[MAX_PLANES]
        cdef _PlanePlan plan
        cdef cnp.ndarray a
        keep = []  # contiguous copies of strided inputs must outlive the loop
        for i in range(n):
            plan = <_PlanePlan>self._plans[i]
            st[i] = &plan.st
            a = _plan_plane(out[i], "out", True, plan.st.H, plan.st.W)
            out_p[i] = _data(a)
            out_s[i] = a.strides[0]
            a = _plan_plane(camera[i], "camera", False, plan.st.ch, plan.st.cw)
            keep.append(a)
            cam_p[i] = _data(a)
            cam_s[i] = a.strides[0]
            bg_p[i] = NULL
            bg_s[i] = 0
            if background is not None:
                a = _plan_plane(background[i], "background", False, plan.st.H, plan.st.W)
                keep.append(a)
                bg_p[i] = _data(a)
                bg_s[i] = a.strides[0]
            fills[i] = -1 if fill is None else fill[i]
            if not -1 <= fills[i] <= 255:
                raise ValueError(f"fill must be -1 (keep) or 0..255, got {fills[i]}")
        with nogil:
            for i in range(n):
                _run_plane(st[i], out_p[i], out_s[i], bg_p[i], bg_s[i], fills[i], cam_p[i],
                           cam_s[i])

    def run_frames(self, out, background, fill, camera):
        """``run`` on three-plane yuv420p ``av.VideoFrame``s instead of numpy plane views.

        Reads each plane's pointer and line size through the buffer protocol (no ndarray is
        built), after checking the format, every plane's size against the plan and that the
        buffer holds every row. The frames stay referenced by the caller for the whole call.
        """
        cdef Py_ssize_t n = self._n, i
        if n != 3:
            raise ValueError(f"run_frames needs a three-plane plan, this one has {n}")
        if fill is not None and len(fill) != n:
            raise ValueError(f"the plan has {n} planes, got {len(fill)} fill values")
        cdef uint8_t* out_p[3]
        cdef uint8_t* cam_p[3]
        cdef uint8_t* bg_p[3]
        cdef Py_ssize_t out_s[3]
        cdef Py_ssize_t cam_s[3]
        cdef Py_ssize_t bg_s[3]
        cdef int fills[3]
        cdef const PlaneState* st[3]
        cdef _PlanePlan plan
        for i in range(n):
            plan = <_PlanePlan>self._plans[i]
            st[i] = &plan.st
            fills[i] = -1 if fill is None else fill[i]
            if not -1 <= fills[i] <= 255:
                raise ValueError(f"fill must be -1 (keep) or 0..255, got {fills[i]}")
        _frame_pointers(out, "out", True, self._plans, False, out_p, out_s)
        _frame_pointers(camera, "camera", False, self._plans, True, cam_p, cam_s)
        if background is None:
            for i in range(n):
                bg_p[i] = NULL
                bg_s[i] = 0
        else:
            _frame_pointers(background, "background", False, self._plans, False, bg_p, bg_s)
        with nogil:
            for i in range(n):
                _run_plane(st[i], out_p[i], out_s[i], bg_p[i], bg_s[i], fills[i], cam_p[i],
                           cam_s[i])


cdef int _frame_pointers(
    object frame, str name, bint writable, list plans, bint camera, uint8_t** ptrs,
    Py_ssize_t* strides,
) except -1:
    """Plane pointers and line sizes of a yuv420p frame whose planes match ``plans``' sizes."""
    if frame.format.name != "yuv420p":
        raise ValueError(f"{name} must be a yuv420p frame, got {frame.format.name}")
    planes = frame.planes
    if len(planes) != 3:
        raise ValueError(f"{name} must have 3 planes, got {len(planes)}")
    cdef Py_buffer view
    cdef Py_ssize_t i, H, W, line
    cdef _PlanePlan plan
    for i in range(3):
        plan = <_PlanePlan>plans[i]
        H = plan.st.ch if camera else plan.st.H
        W = plan.st.cw if camera else plan.st.W
        p = planes[i]
        if p.width != W or p.height != H:
            raise ValueError(f"{name} plane {i} is {p.width}x{p.height}, the plan expects {W}x{H}")
        line = p.line_size
        if line < W:
            raise ValueError(f"{name} plane {i} line size {line} < width {W}")
        PyObject_GetBuffer(p, &view, PyBUF_WRITABLE if writable else PyBUF_SIMPLE)
        try:
            if view.len < (H - 1) * line + W:
                raise ValueError(f"{name} plane {i} buffer too small for {W}x{H}")
            ptrs[i] = <uint8_t*>view.buf
            strides[i] = line
        finally:
            PyBuffer_Release(&view)
    return 0


def corner_scores(plane, rects, Py_ssize_t step):
    """See ``compositor._reference.corner_scores``: sampled edge energy inside each rectangle."""
    cdef cnp.ndarray pl = _check_plane(plane, "plane", False)
    cdef cnp.ndarray rc_a = _check_table(rects, "rects", 2, -1, 4)
    if step < 1:
        raise ValueError(f"step must be positive, got {step}")
    cdef Py_ssize_t H = pl.shape[0], W = pl.shape[1], n = rc_a.shape[0]
    cdef const int32_t[:, ::1] rc = rc_a
    cdef Py_ssize_t i, x, y, x0, y0, x1, y1, row
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
            row = 0
            while y < y1:
                line = p + y * s
                x = x0 + row % step
                row += 1
                while x < x1:
                    c = line[x]
                    a = c - line[x + 1]
                    b = c - line[x + s]
                    total += (a if a >= 0 else -a) + (b if b >= 0 else -b)
                    x += step
                y += step
            sc[i] = total
    return scores
