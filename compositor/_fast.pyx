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
The hot loops have AVX2 variants compiled with ``__attribute__((target("avx2")))`` and picked at
run time from ``__builtin_cpu_supports`` (vertical pass: vpmaddubsw on pixel pairs; horizontal
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


cdef extern from *:
    """
    #include <stdint.h>
    #include <stddef.h>
    #include <string.h>
    #if defined(__SSE2__) || defined(_M_X64)
    #include <emmintrin.h>
    #define MS_SSE2 1
    #else
    #define MS_SSE2 0
    #endif

    /* Runtime dispatch without -march=native: GCC emits an AVX2 and a baseline clone of the
       vertical pass and picks one per CPU at load time (ifunc). Elsewhere: baseline only. */
    #if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \\
        && !defined(MS_NO_CLONES)
    #define MS_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define MS_CLONES
    #endif

    /* Vertical sums are kept biased by -32768 so they fit int16 and the horizontal pass can use
       pmaddwd; the bias comes back as + 32768 * 2^14 = 2^29 (weights sum to 2^14). */
    #define MS_ROUND ((1 << 29) + (1 << 21))
    #define MS_SHIFT 22

    static inline void ms_sweep(uint16_t *restrict d, const uint8_t *restrict s,
                                ptrdiff_t stride, ptrdiff_t n, const int32_t *restrict w,
                                int count, int init, int bias)
    {
        const uint8_t *s0 = s, *s1 = s + stride, *s2 = s + 2 * stride, *s3 = s + 3 * stride;
        const uint16_t w0 = (uint16_t)w[0];
        const uint16_t w1 = count > 1 ? (uint16_t)w[1] : 0;
        const uint16_t w2 = count > 2 ? (uint16_t)w[2] : 0;
        const uint16_t w3 = count > 3 ? (uint16_t)w[3] : 0;
        const uint16_t x = bias ? 0x8000 : 0;
        ptrdiff_t i;
        if (count == 1) {
            for (i = 0; i < n; i++)
                d[i] = (uint16_t)(((init ? 0 : d[i]) + w0 * s0[i]) ^ x);
        } else if (count == 2) {
            for (i = 0; i < n; i++)
                d[i] = (uint16_t)(((init ? 0 : d[i]) + w0 * s0[i] + w1 * s1[i]) ^ x);
        } else if (count == 3) {
            for (i = 0; i < n; i++)
                d[i] = (uint16_t)(((init ? 0 : d[i]) + w0 * s0[i] + w1 * s1[i] + w2 * s2[i]) ^ x);
        } else {
            for (i = 0; i < n; i++)
                d[i] = (uint16_t)(((init ? 0 : d[i]) + w0 * s0[i] + w1 * s1[i] + w2 * s2[i]
                                   + w3 * s3[i]) ^ x);
        }
    }

    /* inter[i] = (sum_t w[t] * src[t * stride + i]) - 32768, as int16, for i in [0, n). */
    MS_CLONES
    static void ms_vpass(int16_t *inter, const uint8_t *src, ptrdiff_t stride, ptrdiff_t n,
                         const int32_t *w, ptrdiff_t taps)
    {
        uint16_t *d = (uint16_t *)inter;
        ptrdiff_t t = 0;
        while (t < taps) {
            ptrdiff_t left = taps - t;
            int count = left >= 4 ? 4 : (int)left;
            int init = t == 0, bias = left <= 4;
            const uint8_t *s = src + t * stride;
            /* literal arguments so every combination is its own vectorised loop */
            if (init && bias) {
                if (count == 1) ms_sweep(d, s, stride, n, w + t, 1, 1, 1);
                else if (count == 2) ms_sweep(d, s, stride, n, w + t, 2, 1, 1);
                else if (count == 3) ms_sweep(d, s, stride, n, w + t, 3, 1, 1);
                else ms_sweep(d, s, stride, n, w + t, 4, 1, 1);
            } else if (init) {
                ms_sweep(d, s, stride, n, w + t, 4, 1, 0);
            } else if (bias) {
                if (count == 1) ms_sweep(d, s, stride, n, w + t, 1, 0, 1);
                else if (count == 2) ms_sweep(d, s, stride, n, w + t, 2, 0, 1);
                else if (count == 3) ms_sweep(d, s, stride, n, w + t, 3, 0, 1);
                else ms_sweep(d, s, stride, n, w + t, 4, 0, 1);
            } else {
                ms_sweep(d, s, stride, n, w + t, 4, 0, 0);
            }
            t += count;
        }
    }

    /* Taps per output rounded up to what one SIMD step consumes: 2, 4 or a multiple of 8. */
    static inline ptrdiff_t ms_lanes(ptrdiff_t taps)
    {
        return taps <= 2 ? 2 : taps <= 4 ? 4 : (taps + 7) / 8 * 8;
    }

    static inline uint8_t ms_hone(const int16_t *p, const int16_t *w, ptrdiff_t k)
    {
        int32_t acc = MS_ROUND;
        for (ptrdiff_t t = 0; t < k; t++)
            acc += (int32_t)w[t] * p[t];
        return (uint8_t)(acc >> MS_SHIFT);
    }

    #if MS_SSE2
    static inline __m128i ms_ld32(const int16_t *p)
    {
        int32_t v;
        memcpy(&v, p, 4);
        return _mm_cvtsi32_si128(v);
    }

    static inline __m128i ms_ld64(const int16_t *p)
    {
        return _mm_loadl_epi64((const __m128i *)p);
    }

    static inline __m128i ms_ldw(const int16_t *w)
    {
        return _mm_loadu_si128((const __m128i *)w);
    }

    /* 4 outputs (as int32 sums) for outputs j..j+3, k taps each. */
    static inline __m128i ms_quad(const int16_t *inter, const int32_t *off, const int16_t *w,
                                  ptrdiff_t k)
    {
        if (k == 2) {
            __m128i a = _mm_unpacklo_epi32(ms_ld32(inter + off[0]), ms_ld32(inter + off[1]));
            __m128i b = _mm_unpacklo_epi32(ms_ld32(inter + off[2]), ms_ld32(inter + off[3]));
            return _mm_madd_epi16(_mm_unpacklo_epi64(a, b), ms_ldw(w));
        }
        if (k == 4) {
            __m128i m0 = _mm_madd_epi16(
                _mm_unpacklo_epi64(ms_ld64(inter + off[0]), ms_ld64(inter + off[1])), ms_ldw(w));
            __m128i m1 = _mm_madd_epi16(
                _mm_unpacklo_epi64(ms_ld64(inter + off[2]), ms_ld64(inter + off[3])), ms_ldw(w + 8));
            __m128 f0 = _mm_castsi128_ps(m0), f1 = _mm_castsi128_ps(m1);
            return _mm_add_epi32(
                _mm_castps_si128(_mm_shuffle_ps(f0, f1, _MM_SHUFFLE(2, 0, 2, 0))),
                _mm_castps_si128(_mm_shuffle_ps(f0, f1, _MM_SHUFFLE(3, 1, 3, 1))));
        }
        __m128i m[4];
        for (int o = 0; o < 4; o++) {
            const int16_t *p = inter + off[o];
            const int16_t *ww = w + o * k;
            __m128i acc = _mm_madd_epi16(ms_ldw(p), ms_ldw(ww));
            for (ptrdiff_t g = 8; g < k; g += 8)
                acc = _mm_add_epi32(acc, _mm_madd_epi16(ms_ldw(p + g), ms_ldw(ww + g)));
            m[o] = acc;
        }
        __m128i ab = _mm_add_epi32(_mm_unpacklo_epi32(m[0], m[1]), _mm_unpackhi_epi32(m[0], m[1]));
        __m128i cd = _mm_add_epi32(_mm_unpacklo_epi32(m[2], m[3]), _mm_unpackhi_epi32(m[2], m[3]));
        return _mm_add_epi32(_mm_unpacklo_epi64(ab, cd), _mm_unpackhi_epi64(ab, cd));
    }

    static inline void ms_hpass_k(uint8_t *dst, const int16_t *inter, const int32_t *off,
                                  const int16_t *w, ptrdiff_t n, ptrdiff_t k)
    {
        const __m128i round = _mm_set1_epi32(MS_ROUND);
        ptrdiff_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m128i lo = _mm_srai_epi32(_mm_add_epi32(ms_quad(inter, off + j, w + j * k, k), round),
                                        MS_SHIFT);
            __m128i hi = _mm_srai_epi32(
                _mm_add_epi32(ms_quad(inter, off + j + 4, w + (j + 4) * k, k), round), MS_SHIFT);
            __m128i packed = _mm_packs_epi32(lo, hi);
            _mm_storel_epi64((__m128i *)(dst + j), _mm_packus_epi16(packed, packed));
        }
        for (; j < n; j++)
            dst[j] = ms_hone(inter + off[j], w + j * k, k);
    }
    #endif

    /* dst[j] = round(sum_t w[j*k + t] * (inter[off[j] + t] + 32768) / 2^22), j in [0, n).
       inter must stay readable k samples past the last window (the caller pads it). */
    static void ms_hpass(uint8_t *dst, const int16_t *inter, const int32_t *off,
                         const int16_t *w, ptrdiff_t n, ptrdiff_t k)
    {
    #if MS_SSE2
        if (k == 2) ms_hpass_k(dst, inter, off, w, n, 2);
        else if (k == 4) ms_hpass_k(dst, inter, off, w, n, 4);
        else if (k == 8) ms_hpass_k(dst, inter, off, w, n, 8);
        else ms_hpass_k(dst, inter, off, w, n, k);
    #else
        for (ptrdiff_t j = 0; j < n; j++)
            dst[j] = ms_hone(inter + off[j], w + j * k, k);
    #endif
    }

    /* ---- AVX2 paths, compiled for AVX2 only inside these functions and chosen at run time ---- */
    #if MS_SSE2 && defined(__GNUC__)
    #include <immintrin.h>
    #define MS_HAVE_AVX2_PATH 1
    #define MS_AVX2 __attribute__((target("avx2")))

    static int ms_cpu_avx2(void)
    {
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2");
    }

    /* Vertical pass with vpmaddubsw: bytes (w_t, w_t+1) times pixel pairs (s - 128) as signed
       bytes, summed in 16 bits. The -128 offset makes the sum exactly the biased value
       sum(w*s) - 32768, and it cannot saturate: every partial sum stays in [-32768, 32512]
       because the weights add up to 256. Requires every weight <= 255 (the caller checks). */
    /* One 32-pixel step of the byte-pair vertical pass: rows s[0..2*np) at column i, weights
       already broadcast as (w_t, w_t+1) byte pairs. */
    #define MS_VPAIRS 8
    MS_AVX2
    static inline void ms_vstep_avx2(int16_t *inter, const uint8_t *const *rows, ptrdiff_t i,
                                     const __m256i *pairs, ptrdiff_t np)
    {
        const __m256i flip = _mm256_set1_epi8((char)0x80);
        __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
        for (ptrdiff_t p = 0; p < np; p++) {
            __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)(rows[2 * p] + i)),
                                         flip);
            __m256i b = _mm256_xor_si256(
                _mm256_loadu_si256((const __m256i *)(rows[2 * p + 1] + i)), flip);
            acc_lo = _mm256_add_epi16(acc_lo,
                                      _mm256_maddubs_epi16(pairs[p], _mm256_unpacklo_epi8(a, b)));
            acc_hi = _mm256_add_epi16(acc_hi,
                                      _mm256_maddubs_epi16(pairs[p], _mm256_unpackhi_epi8(a, b)));
        }
        /* unpack works within 128-bit lanes: put pixels back in order */
        _mm256_storeu_si256((__m256i *)(inter + i),
                            _mm256_permute2x128_si256(acc_lo, acc_hi, 0x20));
        _mm256_storeu_si256((__m256i *)(inter + i + 16),
                            _mm256_permute2x128_si256(acc_lo, acc_hi, 0x31));
    }

    /* Vertical pass with vpmaddubsw: bytes (w_t, w_t+1) times pixel pairs (s - 128) as signed
       bytes, summed in 16 bits. The -128 offset makes the sum exactly the biased value
       sum(w*s) - 32768, and it cannot saturate: every partial sum stays in [-32768, 32512]
       because the weights add up to 256. Requires every weight <= 255 (the caller checks).
       The weight pairs and row pointers are set up once per row, and the common pair counts
       get their own fully unrolled loops. */
    MS_AVX2
    static void ms_vpass_avx2(int16_t *inter, const uint8_t *src, ptrdiff_t stride, ptrdiff_t n,
                              const int32_t *w, ptrdiff_t taps)
    {
        ptrdiff_t i = 0, t, np = (taps + 1) / 2;
        if (np <= MS_VPAIRS) {
            __m256i pairs[MS_VPAIRS];
            const uint8_t *rows[2 * MS_VPAIRS];
            for (t = 0; t < 2 * np; t++) {
                /* an odd last tap pairs with a repeat of its own row at weight 0 */
                rows[t] = src + (t < taps ? t : taps - 1) * stride;
            }
            for (ptrdiff_t p = 0; p < np; p++) {
                int w1 = 2 * p + 1 < taps ? w[2 * p + 1] : 0;
                pairs[p] = _mm256_set1_epi16((short)(w[2 * p] | (w1 << 8)));
            }
            if (np == 1)
                for (; i + 32 <= n; i += 32) ms_vstep_avx2(inter, rows, i, pairs, 1);
            else if (np == 2)
                for (; i + 32 <= n; i += 32) ms_vstep_avx2(inter, rows, i, pairs, 2);
            else if (np == 3)
                for (; i + 32 <= n; i += 32) ms_vstep_avx2(inter, rows, i, pairs, 3);
            else
                for (; i + 32 <= n; i += 32) ms_vstep_avx2(inter, rows, i, pairs, np);
        } else {
            const __m256i flip = _mm256_set1_epi8((char)0x80);
            for (; i + 32 <= n; i += 32) {
                __m256i acc_lo = _mm256_setzero_si256(), acc_hi = _mm256_setzero_si256();
                for (t = 0; t < taps; t += 2) {
                    const uint8_t *s0 = src + t * stride + i;
                    int has1 = t + 1 < taps;
                    const uint8_t *s1 = has1 ? s0 + stride : s0;
                    int w1 = has1 ? w[t + 1] : 0;
                    __m256i pair = _mm256_set1_epi16((short)(w[t] | (w1 << 8)));
                    __m256i a = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)s0), flip);
                    __m256i b = _mm256_xor_si256(_mm256_loadu_si256((const __m256i *)s1), flip);
                    acc_lo = _mm256_add_epi16(
                        acc_lo, _mm256_maddubs_epi16(pair, _mm256_unpacklo_epi8(a, b)));
                    acc_hi = _mm256_add_epi16(
                        acc_hi, _mm256_maddubs_epi16(pair, _mm256_unpackhi_epi8(a, b)));
                }
                _mm256_storeu_si256((__m256i *)(inter + i),
                                    _mm256_permute2x128_si256(acc_lo, acc_hi, 0x20));
                _mm256_storeu_si256((__m256i *)(inter + i + 16),
                                    _mm256_permute2x128_si256(acc_lo, acc_hi, 0x31));
            }
        }
        for (; i < n; i++) {
            int32_t acc = 0;
            for (t = 0; t < taps; t++)
                acc += w[t] * src[t * stride + i];
            inter[i] = (int16_t)(acc - 32768);
        }
    }

    MS_AVX2
    static inline __m128i ms_ld64_avx2(const int16_t *p)
    {
        return _mm_loadl_epi64((const __m128i *)p);
    }

    /* 8 outputs as int32 sums in order, k taps each (k == 4 or a multiple of 8). */
    MS_AVX2
    static inline __m256i ms_oct_avx2(const int16_t *inter, const int32_t *off, const int16_t *w,
                                      ptrdiff_t k)
    {
        if (k == 4) {
            __m256i x0 = _mm256_inserti128_si256(
                _mm256_castsi128_si256(
                    _mm_unpacklo_epi64(ms_ld64_avx2(inter + off[0]), ms_ld64_avx2(inter + off[1]))),
                _mm_unpacklo_epi64(ms_ld64_avx2(inter + off[2]), ms_ld64_avx2(inter + off[3])), 1);
            __m256i x1 = _mm256_inserti128_si256(
                _mm256_castsi128_si256(
                    _mm_unpacklo_epi64(ms_ld64_avx2(inter + off[4]), ms_ld64_avx2(inter + off[5]))),
                _mm_unpacklo_epi64(ms_ld64_avx2(inter + off[6]), ms_ld64_avx2(inter + off[7])), 1);
            __m256i m0 = _mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)w));
            __m256i m1 = _mm256_madd_epi16(x1, _mm256_loadu_si256((const __m256i *)(w + 16)));
            /* hadd: [a b e f | c d g h] */
            __m256i s = _mm256_hadd_epi32(m0, m1);
            return _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7));
        }
        __m256i m[4];
        for (int o = 0; o < 4; o++) {
            const int16_t *p0 = inter + off[2 * o], *p1 = inter + off[2 * o + 1];
            const int16_t *w0 = w + 2 * o * k, *w1 = w0 + k;
            __m256i acc = _mm256_setzero_si256();
            for (ptrdiff_t g = 0; g < k; g += 8) {
                __m256i x = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(p0 + g))),
                    _mm_loadu_si128((const __m128i *)(p1 + g)), 1);
                __m256i ww = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(w0 + g))),
                    _mm_loadu_si128((const __m128i *)(w1 + g)), 1);
                acc = _mm256_add_epi32(acc, _mm256_madd_epi16(x, ww));
            }
            m[o] = acc;
        }
        /* [a b | ...]: three hadds leave [a c e g | b d f h] */
        __m256i s = _mm256_hadd_epi32(_mm256_hadd_epi32(m[0], m[1]), _mm256_hadd_epi32(m[2], m[3]));
        return _mm256_permutevar8x32_epi32(s, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    }

    MS_AVX2
    static void ms_hpass_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                              const int16_t *w, ptrdiff_t n, ptrdiff_t k)
    {
        const __m256i round = _mm256_set1_epi32(MS_ROUND);
        ptrdiff_t j = 0;
        for (; j + 8 <= n; j += 8) {
            __m256i s = _mm256_srai_epi32(
                _mm256_add_epi32(k == 4 ? ms_oct_avx2(inter, off + j, w + j * 4, 4)
                                        : ms_oct_avx2(inter, off + j, w + j * k, k),
                                 round), MS_SHIFT);
            __m128i packed = _mm_packs_epi32(_mm256_castsi256_si128(s),
                                             _mm256_extracti128_si256(s, 1));
            _mm_storel_epi64((__m128i *)(dst + j), _mm_packus_epi16(packed, packed));
        }
        for (; j < n; j++)
            dst[j] = ms_hone(inter + off[j], w + j * k, k);
    }
    /* 4-tap horizontal pass without per-output loads: each 128-bit lane loads the 8 samples at
       an even output's offset and pshufb gathers both that output's and its right neighbour's
       taps (the caller checks each pair spans at most 8 samples), so 8 outputs cost 4 loads,
       2 shuffles and 2 pmaddwd. masks: 16 bytes per output pair. */
    MS_AVX2
    static void ms_hpass4_shuf_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                                    const int16_t *w, const uint8_t *masks, ptrdiff_t n)
    {
        const __m256i round = _mm256_set1_epi32(MS_ROUND);
        const __m256i order = _mm256_setr_epi32(0, 1, 4, 5, 2, 3, 6, 7);
        ptrdiff_t j = 0;
        /* 16 outputs per step: the two blocks' sums stay in hadd order, and one pack pair plus
           a 16-bit unpack of the two lanes puts all 16 bytes in order (no vpermd). */
        for (; j + 16 <= n; j += 16) {
            __m256i h[2];
            for (int b = 0; b < 2; b++) {
                ptrdiff_t q = j + 8 * b;
                __m256i x0 = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[q]))),
                    _mm_loadu_si128((const __m128i *)(inter + off[q + 2])), 1);
                __m256i x1 = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[q + 4]))),
                    _mm_loadu_si128((const __m128i *)(inter + off[q + 6])), 1);
                x0 = _mm256_shuffle_epi8(x0, _mm256_loadu_si256((const __m256i *)(masks + 8 * q)));
                x1 = _mm256_shuffle_epi8(x1,
                                         _mm256_loadu_si256((const __m256i *)(masks + 8 * q + 32)));
                __m256i m0 = _mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)(w + 4 * q)));
                __m256i m1 = _mm256_madd_epi16(x1,
                                               _mm256_loadu_si256((const __m256i *)(w + 4 * q + 16)));
                /* [q q+1 q+4 q+5 | q+2 q+3 q+6 q+7] */
                h[b] = _mm256_srai_epi32(_mm256_add_epi32(_mm256_hadd_epi32(m0, m1), round),
                                         MS_SHIFT);
            }
            /* bytes: lane 0 [0 1 4 5 8 9 12 13], lane 1 [2 3 6 7 10 11 14 15] */
            __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(h[0], h[1]),
                                                _mm256_setzero_si256());
            _mm_storeu_si128((__m128i *)(dst + j),
                             _mm_unpacklo_epi16(_mm256_castsi256_si128(bytes),
                                                _mm256_extracti128_si256(bytes, 1)));
        }
        for (; j + 8 <= n; j += 8) {
            __m256i x0 = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[j]))),
                _mm_loadu_si128((const __m128i *)(inter + off[j + 2])), 1);
            __m256i x1 = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[j + 4]))),
                _mm_loadu_si128((const __m128i *)(inter + off[j + 6])), 1);
            x0 = _mm256_shuffle_epi8(x0, _mm256_loadu_si256((const __m256i *)(masks + 8 * j)));
            x1 = _mm256_shuffle_epi8(x1, _mm256_loadu_si256((const __m256i *)(masks + 8 * j + 32)));
            __m256i m0 = _mm256_madd_epi16(x0, _mm256_loadu_si256((const __m256i *)(w + 4 * j)));
            __m256i m1 = _mm256_madd_epi16(x1, _mm256_loadu_si256((const __m256i *)(w + 4 * j + 16)));
            /* [j01 j23 j+1.. | j+2.. j+3..] x2 -> hadd -> [j j+1 j+4 j+5 | j+2 j+3 j+6 j+7] */
            __m256i s = _mm256_permutevar8x32_epi32(_mm256_hadd_epi32(m0, m1), order);
            s = _mm256_srai_epi32(_mm256_add_epi32(s, round), MS_SHIFT);
            __m128i packed = _mm_packs_epi32(_mm256_castsi256_si128(s),
                                             _mm256_extracti128_si256(s, 1));
            _mm_storel_epi64((__m128i *)(dst + j), _mm_packus_epi16(packed, packed));
        }
        for (; j < n; j++)
            dst[j] = ms_hone(inter + off[j], w + j * 4, 4);
    }
    /* Short windows (about 2x downscale or less): one 8-sample load per 4 outputs. Two pshufb
       split every output's taps into pairs (0,1) and (2,3) so two pmaddwd and one add give the
       four sums directly, with no horizontal reduction. masks and weights: 64 bytes per 8
       outputs ([pairs 0,1 for both lanes][pairs 2,3 for both lanes]). */
    MS_AVX2
    static void ms_hpass4_quad_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                                    const int16_t *w4, const uint8_t *masks, const int16_t *wq,
                                    ptrdiff_t n)
    {
        const __m256i round = _mm256_set1_epi32(MS_ROUND);
        ptrdiff_t j = 0;
        /* 16 outputs per step, one pack pair and one 32-bit unpack for both blocks */
        for (; j + 16 <= n; j += 16) {
            __m256i sums[2];
            for (int b = 0; b < 2; b++) {
                ptrdiff_t q = j + 8 * b;
                __m256i x = _mm256_inserti128_si256(
                    _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[q]))),
                    _mm_loadu_si128((const __m128i *)(inter + off[q + 4])), 1);
                const uint8_t *m = masks + 8 * q;
                const int16_t *ww = wq + 4 * q;
                __m256i p0 = _mm256_shuffle_epi8(x, _mm256_loadu_si256((const __m256i *)m));
                __m256i p1 = _mm256_shuffle_epi8(x, _mm256_loadu_si256((const __m256i *)(m + 32)));
                __m256i s = _mm256_add_epi32(
                    _mm256_madd_epi16(p0, _mm256_loadu_si256((const __m256i *)ww)),
                    _mm256_madd_epi16(p1, _mm256_loadu_si256((const __m256i *)(ww + 16))));
                sums[b] = _mm256_srai_epi32(_mm256_add_epi32(s, round), MS_SHIFT);
            }
            /* bytes: lane 0 [0-3 8-11], lane 1 [4-7 12-15] */
            __m256i bytes = _mm256_packus_epi16(_mm256_packs_epi32(sums[0], sums[1]),
                                                _mm256_setzero_si256());
            _mm_storeu_si128((__m128i *)(dst + j),
                             _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes),
                                                _mm256_extracti128_si256(bytes, 1)));
        }
        for (; j + 8 <= n; j += 8) {
            __m256i x = _mm256_inserti128_si256(
                _mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)(inter + off[j]))),
                _mm_loadu_si128((const __m128i *)(inter + off[j + 4])), 1);
            const uint8_t *m = masks + 8 * j;
            const int16_t *ww = wq + 4 * j;
            __m256i p0 = _mm256_shuffle_epi8(x, _mm256_loadu_si256((const __m256i *)m));
            __m256i p1 = _mm256_shuffle_epi8(x, _mm256_loadu_si256((const __m256i *)(m + 32)));
            __m256i s = _mm256_add_epi32(
                _mm256_madd_epi16(p0, _mm256_loadu_si256((const __m256i *)ww)),
                _mm256_madd_epi16(p1, _mm256_loadu_si256((const __m256i *)(ww + 16))));
            s = _mm256_srai_epi32(_mm256_add_epi32(s, round), MS_SHIFT);
            __m256i words = _mm256_packs_epi32(s, s);
            __m256i bytes = _mm256_packus_epi16(words, words);
            __m128i both = _mm_unpacklo_epi32(_mm256_castsi256_si128(bytes),
                                              _mm256_extracti128_si256(bytes, 1));
            _mm_storel_epi64((__m128i *)(dst + j), both);
        }
        for (; j < n; j++)
            dst[j] = ms_hone(inter + off[j], w4 + j * 4, 4);
    }
    #else
    #define MS_HAVE_AVX2_PATH 0
    static int ms_cpu_avx2(void) { return 0; }
    static void ms_vpass_avx2(int16_t *inter, const uint8_t *src, ptrdiff_t stride, ptrdiff_t n,
                              const int32_t *w, ptrdiff_t taps) { (void)inter; (void)src;
        (void)stride; (void)n; (void)w; (void)taps; }
    static void ms_hpass_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                              const int16_t *w, ptrdiff_t n, ptrdiff_t k) { (void)dst;
        (void)inter; (void)off; (void)w; (void)n; (void)k; }
    static void ms_hpass4_shuf_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                                    const int16_t *w, const uint8_t *masks, ptrdiff_t n)
    { (void)masks; ms_hpass(dst, inter, off, w, n, 4); }
    static void ms_hpass4_quad_avx2(uint8_t *dst, const int16_t *inter, const int32_t *off,
                                    const int16_t *w4, const uint8_t *masks, const int16_t *wq,
                                    ptrdiff_t n)
    { (void)masks; (void)wq; ms_hpass(dst, inter, off, w4, n, 4); }
    #endif

    /* Row entry points. use_avx2 comes from the module's CPU check (and an override). */
    static inline void ms_vrow(int16_t *inter, const uint8_t *src, ptrdiff_t stride, ptrdiff_t n,
                               const int32_t *w, ptrdiff_t taps, int use_avx2, int bytes_ok)
    {
        if (use_avx2 && bytes_ok)
            ms_vpass_avx2(inter, src, stride, n, w, taps);
        else
            ms_vpass(inter, src, stride, n, w, taps);
    }

    static inline void ms_hrow(uint8_t *dst, const int16_t *inter, const int32_t *off,
                               const int16_t *w, ptrdiff_t n, ptrdiff_t k, int use_avx2,
                               const uint8_t *masks, const int16_t *wq)
    {
        if (masks != NULL && wq != NULL)
            ms_hpass4_quad_avx2(dst, inter, off, w, masks, wq, n);
        else if (masks != NULL)
            ms_hpass4_shuf_avx2(dst, inter, off, w, masks, n);
        else if (use_avx2 && k >= 8)
            ms_hpass_avx2(dst, inter, off, w, n, k);
        else
            ms_hpass(dst, inter, off, w, n, k);
    }
    """
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
    """Validate one plane's rectangle, tap tables and masks against its sizes; build the tables."""
    if not 0 <= colour <= 255:
        raise ValueError(f"colour must be 0..255, got {colour}")
    cdef cnp.ndarray vo = _check_table(v_offsets, "v_offsets", 1, -1, -1)
    cdef cnp.ndarray ho = _check_table(h_offsets, "h_offsets", 1, -1, -1)
    cdef Py_ssize_t h = vo.shape[0], w = ho.shape[0]
    if h < 1 or w < 1:
        raise ValueError("the overlay rectangle must not be empty")
    cdef cnp.ndarray vw = _check_table(v_weights, "v_weights", 2, h, -1)
    cdef cnp.ndarray hw = _check_table(h_weights, "h_weights", 2, w, -1)
    cdef Py_ssize_t tv = vw.shape[1], th = hw.shape[1]
    if rx < 0 or ry < 0 or rx + w > W or ry + h > H:
        raise ValueError(f"rectangle {rx},{ry} {w}x{h} outside plane {W}x{H}")
    # Tap tables must keep every read inside the camera plane and every sum inside 16/32 bits.
    cdef int v_bytes_ok = _check_taps(
        <int32_t*>_data(vo), <int32_t*>_data(vw), h, tv, ch, VERTICAL_ONE, "vertical"
    ) < 256
    _check_taps(<int32_t*>_data(ho), <int32_t*>_data(hw), w, th, cw, HORIZONTAL_ONE, "horizontal")
    cdef cnp.ndarray am = None, bm = None, sp = None
    cdef const int32_t* spp = NULL
    cdef Py_ssize_t r
    cdef int masked = alpha is not None
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

    cdef _PlanePlan plan = _PlanePlan()
    plan.keep = (vo, ho, vw, hw, am, bm, sp)
    cdef PlaneState* s = &plan.st
    s.H, s.W, s.ch, s.cw, s.rx, s.ry, s.h, s.w, s.tv, s.th = H, W, ch, cw, rx, ry, h, w, tv, th
    s.vop = <const int32_t*>_data(vo)
    s.vwp = <const int32_t*>_data(vw)
    s.hop = <const int32_t*>_data(ho)
    s.hwp = <const int32_t*>_data(hw)
    s.masked = masked
    s.spp = spp
    s.colour = <uint32_t>colour
    s.use_avx2 = use_avx2
    s.v_bytes_ok = v_bytes_ok
    if masked:
        s.amp = _data(am)
        s.bmp = _data(bm)
        s.am_s = am.strides[0]
        s.bm_s = bm.strides[0]
    cdef const int32_t* hop = s.hop
    s.first_col = hop[0]
    s.last_col = hop[w - 1] + th
    # Scratch: one biased 16-bit intermediate row (padded so SIMD windows may over-read zeros),
    # the horizontal weights as int16 padded to the SIMD width, and one saved background row.
    cdef Py_ssize_t k = ms_lanes(th)
    s.k = k
    s.inter = <int16_t*>malloc((cw + k + 16) * sizeof(int16_t))
    s.hw16 = <int16_t*>malloc((w * k + 8) * sizeof(int16_t))
    s.under = <uint8_t*>malloc(w + 1)
    if s.inter == NULL or s.under == NULL or s.hw16 == NULL:
        raise MemoryError()
    memset(s.inter, 0, (cw + k + 16) * sizeof(int16_t))
    memset(s.hw16, 0, (w * k + 8) * sizeof(int16_t))
    cdef Py_ssize_t j, t
    for j in range(w):
        for t in range(th):
            s.hw16[j * k + t] = <int16_t>s.hwp[j * th + t]
    # AVX2 shuffle masks for 4-tap windows: output pairs (j, j+1) share one 8-sample load at
    # offsets[j]; pshufb lays out [j taps 0-3, j+1 taps 0-3] as int16. Only when every pair fits.
    cdef Py_ssize_t nfull = w - w % 8, rel, pos, lane, half
    cdef bint fits = use_avx2 and k == 4 and nfull > 0
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
        # 4 outputs per 128-bit lane from one 8-sample load at offsets[j - j % 4]; per block of
        # 8 outputs: masks [taps 0,1 of both lanes][taps 2,3 of both lanes], weights likewise.
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
    return plan


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
