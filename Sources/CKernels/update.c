// The passes over every parameter that follow a step's backward: Adam's update
// (Sources/DAE/Optimizer/Adam.swift states the formula) and the exact reduction's fixed-point
// conversions (Sources/DAE/Distributed/FixedPoint.swift explains them). They are limited by memory
// bandwidth and by how many values an instruction handles; written in Swift with SIMD types they
// ran at half the speed of this C (the stacked model's 5.6 million parameters: Adam 12.8 ms vs
// 5.8 ms with SSE2 and 4.0 ms with AVX2, one core; docs/benchmarks.md).
//
// Each function has a baseline version (SSE2 on x86-64, plain C elsewhere) and an AVX2 one, picked
// by the caller from the CPU's features. All of them do the same IEEE operations in the same order
// on every element: no fused multiply-add (the AVX2 functions are not compiled with FMA, and
// contraction is off), square root and division correctly rounded. So every version gives the
// same bits, and the choice changes speed only (Tests/DAETests check it).

#include "CKernels.h"
#include "fixed_point.h"
#include <math.h>
#include <string.h>

#pragma clang fp contract(off)

// ---------------------------------------------------------------------------------------------
// Adam, per element (torch.optim.Adam's order of operations), the gradient g the sum of ng
// buffers added in order (fast mode's worker gradients, summed here instead of in a pass of its own):
//   g = (((g_0 + g_1) + ...) + g_{ng-1}) * grad_scale    (clip_grad_norm_'s coefficient)
//   p = p * decay                                         (AdamW: 1 - lr * weight_decay)
//   m = m + (1 - beta1) * (g - m);  v = v * beta2 + (1 - beta2) * g * g
//   p = p + (-step_size * m) / (sqrt(v) / correction2 + eps)
// Multiplying by 1 changes no bit, so without clipping and weight decay these are Adam's bits.
// on elements begin ..< end of every buffer.

static inline void adam_one(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t i) {
    float gi = g[0][i];
    for (int32_t k = 1; k < ng; k++) gi = gi + g[k][i];
    gi = gi * s->grad_scale;
    float mi = m[i] + s->one_minus_beta1 * (gi - m[i]);
    float vi = v[i] * s->beta2 + s->one_minus_beta2 * gi * gi;
    float denom = sqrtf(vi) / s->correction2 + s->eps;
    m[i] = mi; v[i] = vi;
    p[i] = p[i] * s->decay + -s->step_size * mi / denom;
}

#if defined(__x86_64__)
#include <immintrin.h>

int dae_update_avx2_built(void) { return 1; }

void dae_adam(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end) {
    const __m128 b1 = _mm_set1_ps(s->one_minus_beta1), b2 = _mm_set1_ps(s->beta2), ob2 = _mm_set1_ps(s->one_minus_beta2);
    const __m128 c2 = _mm_set1_ps(s->correction2), eps = _mm_set1_ps(s->eps), step = _mm_set1_ps(-s->step_size);
    const __m128 scale = _mm_set1_ps(s->grad_scale), decay = _mm_set1_ps(s->decay);
    int64_t i = begin;
    for (; i + 4 <= end; i += 4) {
        __m128 gi = _mm_loadu_ps(g[0] + i), m0 = _mm_loadu_ps(m + i);
        for (int32_t k = 1; k < ng; k++) gi = _mm_add_ps(gi, _mm_loadu_ps(g[k] + i));
        gi = _mm_mul_ps(gi, scale);
        __m128 mi = _mm_add_ps(m0, _mm_mul_ps(b1, _mm_sub_ps(gi, m0)));
        __m128 vi = _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(v + i), b2), _mm_mul_ps(_mm_mul_ps(ob2, gi), gi));
        __m128 denom = _mm_add_ps(_mm_div_ps(_mm_sqrt_ps(vi), c2), eps);
        _mm_storeu_ps(m + i, mi); _mm_storeu_ps(v + i, vi);
        _mm_storeu_ps(p + i, _mm_add_ps(_mm_mul_ps(_mm_loadu_ps(p + i), decay), _mm_div_ps(_mm_mul_ps(step, mi), denom)));
    }
    for (; i < end; i++) adam_one(s, p, g, ng, m, v, i);
}

__attribute__((target("avx2")))
void dae_adam_avx2(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end) {
    const __m256 b1 = _mm256_set1_ps(s->one_minus_beta1), b2 = _mm256_set1_ps(s->beta2), ob2 = _mm256_set1_ps(s->one_minus_beta2);
    const __m256 c2 = _mm256_set1_ps(s->correction2), eps = _mm256_set1_ps(s->eps), step = _mm256_set1_ps(-s->step_size);
    const __m256 scale = _mm256_set1_ps(s->grad_scale), decay = _mm256_set1_ps(s->decay);
    int64_t i = begin;
    for (; i + 8 <= end; i += 8) {
        __m256 gi = _mm256_loadu_ps(g[0] + i), m0 = _mm256_loadu_ps(m + i);
        for (int32_t k = 1; k < ng; k++) gi = _mm256_add_ps(gi, _mm256_loadu_ps(g[k] + i));
        gi = _mm256_mul_ps(gi, scale);
        __m256 mi = _mm256_add_ps(m0, _mm256_mul_ps(b1, _mm256_sub_ps(gi, m0)));
        __m256 vi = _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(v + i), b2), _mm256_mul_ps(_mm256_mul_ps(ob2, gi), gi));
        __m256 denom = _mm256_add_ps(_mm256_div_ps(_mm256_sqrt_ps(vi), c2), eps);
        _mm256_storeu_ps(m + i, mi); _mm256_storeu_ps(v + i, vi);
        _mm256_storeu_ps(p + i, _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(p + i), decay), _mm256_div_ps(_mm256_mul_ps(step, mi), denom)));
    }
    for (; i < end; i++) adam_one(s, p, g, ng, m, v, i);
}

#else

int dae_update_avx2_built(void) { return 0; }

void dae_adam(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; i++) adam_one(s, p, g, ng, m, v, i);
}

void dae_adam_avx2(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end) {
    dae_adam(s, p, g, ng, m, v, begin, end);
}

#endif

// ---------------------------------------------------------------------------------------------
// Fixed point: acc[i] += round_half_even(values[i] * 2^40).
//
// A block is first scanned for its largest |value| (a NaN sticks). Below 2^11, |x * 2^40| < 2^51
// and t = x * 2^40 + 1.5 * 2^52 lands where doubles are 1 apart, so the FPU's default rounding
// rounds x * 2^40 half to even and t's bits are those of 1.5 * 2^52 plus the rounded value: integer
// arithmetic from there (before AVX-512 there is no Double -> Int64 conversion in SIMD). Larger or
// non-finite values take the scalar loop, which rounds the same way and checks the limit. The
// rounding itself is in fixed_point.h, shared with linear.c.

static inline float largest_scalar(const float *values, int64_t from, int64_t n, float largest) {
    for (int64_t i = from; i < n; i++) {
        float a = fabsf(values[i]);
        largest = (a > largest || a != a) ? a : largest;
    }
    return largest;
}

#if defined(__x86_64__)

// SSE2: 4 floats scanned, 2 doubles converted per instruction.
static int accumulate_block_sse2(const float *values, int64_t *acc, int64_t n, double limit) {
    const __m128 abs_mask = _mm_castsi128_ps(_mm_set1_epi32(0x7fffffff));
    __m128 big = _mm_setzero_ps();
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m128 a = _mm_and_ps(_mm_loadu_ps(values + i), abs_mask);
        __m128 take = _mm_or_ps(_mm_cmpgt_ps(a, big), _mm_cmpunord_ps(a, a));   // larger, or NaN
        big = _mm_or_ps(_mm_and_ps(take, a), _mm_andnot_ps(take, big));
    }
    float lanes[4]; _mm_storeu_ps(lanes, big);
    float largest = largest_scalar(lanes, 0, 4, 0);
    largest = largest_scalar(values, i, n, largest);
    if (!(largest < 0x1p11f && (double)largest <= limit)) return accumulate_careful(values, acc, n, limit);
    const __m128d scale = _mm_set1_pd(SCALE), magic = _mm_set1_pd(MAGIC);
    const __m128i bits = _mm_set1_epi64x(magic_bits());
    for (i = 0; i + 2 <= n; i += 2) {
        __m128d x = _mm_cvtps_pd(_mm_castsi128_ps(_mm_loadl_epi64((const __m128i *)(values + i))));
        __m128i t = _mm_sub_epi64(_mm_castpd_si128(_mm_add_pd(_mm_mul_pd(x, scale), magic)), bits);
        _mm_storeu_si128((__m128i *)(acc + i), _mm_add_epi64(_mm_loadu_si128((const __m128i *)(acc + i)), t));
    }
    for (; i < n; i++) {
        double t = (double)values[i] * SCALE + MAGIC; int64_t b; memcpy(&b, &t, 8);
        acc[i] = wrapping_add(acc[i], b - magic_bits());
    }
    return 1;
}

// AVX2: 8 floats scanned, 4 doubles converted per instruction.
__attribute__((target("avx2")))
static int accumulate_block_avx2(const float *values, int64_t *acc, int64_t n, double limit) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    __m256 big = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 a = _mm256_and_ps(_mm256_loadu_ps(values + i), abs_mask);
        __m256 take = _mm256_or_ps(_mm256_cmp_ps(a, big, _CMP_GT_OQ), _mm256_cmp_ps(a, a, _CMP_UNORD_Q));
        big = _mm256_blendv_ps(big, a, take);
    }
    float lanes[8]; _mm256_storeu_ps(lanes, big);
    float largest = largest_scalar(lanes, 0, 8, 0);
    largest = largest_scalar(values, i, n, largest);
    if (!(largest < 0x1p11f && (double)largest <= limit)) return accumulate_careful(values, acc, n, limit);
    for (i = 0; i + 4 <= n; i += 4) add4_magic_avx2(_mm_loadu_ps(values + i), acc + i);
    for (; i < n; i++) {
        double t = (double)values[i] * SCALE + MAGIC; int64_t b; memcpy(&b, &t, 8);
        acc[i] = wrapping_add(acc[i], b - magic_bits());
    }
    return 1;
}

#else

static int accumulate_block_sse2(const float *values, int64_t *acc, int64_t n, double limit) {
    float largest = largest_scalar(values, 0, n, 0);
    if (!(largest < 0x1p11f && (double)largest <= limit)) return accumulate_careful(values, acc, n, limit);
    for (int64_t i = 0; i < n; i++) {
        double t = (double)values[i] * SCALE + MAGIC; int64_t b; memcpy(&b, &t, 8);
        acc[i] = wrapping_add(acc[i], b - magic_bits());
    }
    return 1;
}

static int accumulate_block_avx2(const float *values, int64_t *acc, int64_t n, double limit) {
    return accumulate_block_sse2(values, acc, n, limit);
}

#endif

// In blocks of 2,048 values (8 KB, still in L1 after the scan): a large model's gradient is read
// from memory once, not once to check and once to convert.
int dae_fixed_point_accumulate(const float *values, int64_t *acc, int64_t n, double limit, int avx2) {
    int ok = 1;
    for (int64_t start = 0; start < n; start += 2048) {
        int64_t count = n - start < 2048 ? n - start : 2048;
        int block_ok = avx2 ? accumulate_block_avx2(values + start, acc + start, count, limit)
                            : accumulate_block_sse2(values + start, acc + start, count, limit);
        ok = ok && block_ok;
    }
    return ok;
}

// ---------------------------------------------------------------------------------------------
// Back from fixed point, draining the accumulator: out[i] = (float)((double)acc[i] * 2^-40),
// acc[i] = 0 (ready for the next round). Below 2^51 in magnitude, acc[i] plus the bits of
// 1.5 * 2^52 are the bits of the double 1.5 * 2^52 + acc[i], and subtracting 1.5 * 2^52 leaves
// (double)acc[i] exactly (before AVX-512 there is no Int64 -> Double conversion in SIMD); the
// scaling by 2^-40 is exact and the conversion to float rounds to nearest even, as the scalar
// code does. Larger values (sums of 2^11 or more) take the scalar conversion.

#define INVERSE_SCALE 0x1p-40

static inline void drain_one(int64_t *acc, float *out, int64_t i) {
    out[i] = (float)((double)acc[i] * INVERSE_SCALE);
    acc[i] = 0;
}

#if defined(__x86_64__)

__attribute__((target("avx2")))
static void drain_avx2(int64_t *acc, float *out, int64_t n) {
    const __m256i bits = _mm256_set1_epi64x(magic_bits());
    const __m256i high = _mm256_set1_epi64x((INT64_C(1) << 51) - 1), low = _mm256_set1_epi64x(-(INT64_C(1) << 51) + 1);
    const __m256d magic = _mm256_set1_pd(MAGIC), inverse = _mm256_set1_pd(INVERSE_SCALE);
    int64_t i = 0;
    for (; i + 4 <= n; i += 4) {
        __m256i x = _mm256_loadu_si256((const __m256i *)(acc + i));
        __m256i outside = _mm256_or_si256(_mm256_cmpgt_epi64(x, high), _mm256_cmpgt_epi64(low, x));
        if (!_mm256_testz_si256(outside, outside)) {
            for (int64_t k = i; k < i + 4; k++) drain_one(acc, out, k);
            continue;
        }
        __m256d d = _mm256_sub_pd(_mm256_castsi256_pd(_mm256_add_epi64(x, bits)), magic);
        _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(d, inverse)));
        _mm256_storeu_si256((__m256i *)(acc + i), _mm256_setzero_si256());
    }
    for (; i < n; i++) drain_one(acc, out, i);
}

#else

static void drain_avx2(int64_t *acc, float *out, int64_t n) {
    for (int64_t i = 0; i < n; i++) drain_one(acc, out, i);
}

#endif

void dae_fixed_point_drain(int64_t *acc, float *out, int64_t n, int avx2) {
    if (avx2) { drain_avx2(acc, out, n); return; }
    for (int64_t i = 0; i < n; i++) drain_one(acc, out, i);
}
