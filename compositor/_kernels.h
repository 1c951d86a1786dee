/* yuv420p resampling row kernels for compositor/_fast.pyx: the SIMD inner loops.
 *
 * Header-only on purpose: every function is static and lives in _fast.c's translation unit, so
 * GCC still inlines the row entry points into the Cython loops and the target_clones (ifunc)
 * dispatch of the vertical pass works exactly as when this code sat inside the .pyx. The exact
 * integer semantics are those of compositor/_reference.py; _fast.pyx validates every argument
 * before any of this runs.
 */
#ifndef MULTISTREAM_KERNELS_H
#define MULTISTREAM_KERNELS_H

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
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__GLIBC__) \
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

#endif /* MULTISTREAM_KERNELS_H */
