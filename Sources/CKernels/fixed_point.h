// The fixed-point rounding that every exact-mode addition shares (update.c's accumulation,
// linear.c's weight gradients): acc += round_half_even(x * 2^40), by the 1.5 * 2^52 magic number
// where |x| < 2^11, else one value at a time by nearbyint with the limit checked. One definition,
// so that the two give the same bits. Internal to CKernels (not in include/).
#ifndef DAE_FIXED_POINT_H
#define DAE_FIXED_POINT_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#define SCALE 1099511627776.0            /* 2^40 */
#define MAGIC 6755399441055744.0         /* 1.5 * 2^52 */

static inline int64_t magic_bits(void) { double d = MAGIC; int64_t b; memcpy(&b, &d, 8); return b; }

// a + b as two's complement, as the SIMD adds do (and Swift's &+): C leaves signed overflow
// undefined. The limits keep sums below 2^62, so it never wraps in practice.
static inline int64_t wrapping_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }

/// acc[i] += round_half_even(values[i] * 2^40) for every |values[i]| <= limit; the others (and
/// NaN) left out, and then 0 returned.
static inline int accumulate_careful(const float *values, int64_t *acc, int64_t n, double limit) {
    int ok = 1;
    for (int64_t i = 0; i < n; i++) {
        double x = (double)values[i];
        if (!(fabs(x) <= limit)) { ok = 0; continue; }          // also NaN
        acc[i] = wrapping_add(acc[i], (int64_t)nearbyint(x * SCALE));   // default rounding: half to even
    }
    return ok;
}

#if defined(__x86_64__)
#include <immintrin.h>

/// acc[0..<4] += round_half_even(v * 2^40) for four values below 2^11 in magnitude (AVX2).
__attribute__((target("avx2"))) static inline void add4_magic_avx2(__m128 v, int64_t *acc) {
    const __m256d scale = _mm256_set1_pd(SCALE), magic = _mm256_set1_pd(MAGIC);
    const __m256i bits = _mm256_set1_epi64x(magic_bits());
    __m256i t = _mm256_sub_epi64(_mm256_castpd_si256(_mm256_add_pd(_mm256_mul_pd(_mm256_cvtps_pd(v), scale), magic)), bits);
    _mm256_storeu_si256((__m256i *)acc, _mm256_add_epi64(_mm256_loadu_si256((const __m256i *)acc), t));
}
#endif

#endif
