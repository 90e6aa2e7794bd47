// The products of exact mode's fully connected layers in lockstep (Sources/DAE/Model/Layers/
// Linear.swift): C = A . B (+ bias) where every element of C is one chain of fused multiply-adds
// over k in order,
//
//   s = 0;  for kk in 0 ..< k: s = fma(A[i, kk], B[kk, j], s);  C[i, j] = s (+ bias[j])
//
// whatever the shapes, the row or column a value sits in, and how many rows or columns a call
// holds. That is what lets exact mode run all of a rank's micro-batches through a layer in one
// call, its threads each a part of the columns, and still give every row the bits of a call on
// its micro-batch alone: OpenBLAS promises nothing about how its result depends on the shape of
// the call, so exact mode calls it once per micro-batch where this kernel cannot run (no AVX2 and
// FMA), and OpenBLAS lays out (packs) the whole weight again on every call.
//
// The loop: for each panel of 16 columns of B, for each block of KC rows of it, copy the block
// into a 16 KB buffer (contiguous, zero past B's last column; it stays in L1), then run every
// row tile of C over it: a tile of 6 rows by 16 columns keeps its 12 sums in registers over the
// block, stores them into C and loads them back for the next block (a float stored and loaded is
// the same float, so the chain goes on exactly). B is read as B[kk, j] = b[kk * bks + j * bjs]:
// a row-major matrix (bjs = 1) or a transposed one (bks = 1) without a copy of its own.
//
// A weight gradient can go straight into exact mode's Int64 accumulator instead of C: each tile's
// sums rounded to fixed point and added while in registers, where a separate pass would read the
// gradient back from memory together with the accumulator (dae_fixed_point_accumulate's rounding
// and checks, the same bits).

#include "CKernels.h"
#include "fixed_point.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2FMA __attribute__((target("avx2,fma")))
enum { KC = 256 };   // rows of B per block: 16 KB of panel

int dae_linear_avx2_built(void) { return 1; }

/// Lanes 0 ..< count set (count 0 ... 8).
AVX2FMA static inline __m256i lanes(int64_t count) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), index);
}

/// panel[kk * 16 + jj] = B[k0 + kk, j0 + jj] for kk < kc, jj < width; 0 for jj >= width.
AVX2FMA static void copy_block(const float *b, int64_t bks, int64_t bjs, int64_t k0, int64_t kc, int64_t j0, int64_t width,
                               float *panel) {
    if (bjs == 1 && width == 16) {
        for (int64_t kk = 0; kk < kc; kk++) {
            const float *row = b + (k0 + kk) * bks + j0;
            _mm256_store_ps(panel + kk * 16, _mm256_loadu_ps(row));
            _mm256_store_ps(panel + kk * 16 + 8, _mm256_loadu_ps(row + 8));
        }
        return;
    }
    int64_t kk = 0;
    if (bks == 1 && width == 16) {
        // B^T is row-major: 8 x 8 blocks transposed in registers
        for (; kk + 8 <= kc; kk += 8) {
            for (int half = 0; half < 2; half++) {
                const float *in = b + (j0 + 8 * half) * bjs + k0 + kk;
                __m256 r0 = _mm256_loadu_ps(in), r1 = _mm256_loadu_ps(in + bjs), r2 = _mm256_loadu_ps(in + 2 * bjs);
                __m256 r3 = _mm256_loadu_ps(in + 3 * bjs), r4 = _mm256_loadu_ps(in + 4 * bjs), r5 = _mm256_loadu_ps(in + 5 * bjs);
                __m256 r6 = _mm256_loadu_ps(in + 6 * bjs), r7 = _mm256_loadu_ps(in + 7 * bjs);
                __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                float *o = panel + kk * 16 + 8 * half;
                _mm256_store_ps(o + 0 * 16, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_store_ps(o + 1 * 16, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_store_ps(o + 2 * 16, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_store_ps(o + 3 * 16, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_store_ps(o + 4 * 16, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_store_ps(o + 5 * 16, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_store_ps(o + 6 * 16, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_store_ps(o + 7 * 16, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
        }
    }
    for (; kk < kc; kk++)
        for (int64_t jj = 0; jj < 16; jj++) panel[kk * 16 + jj] = jj < width ? b[(k0 + kk) * bks + (j0 + jj) * bjs] : 0;
}

/// acc[j] += round_half_even(v[j] * 2^40) for j < width, as dae_fixed_point_accumulate does
/// (fixed_point.h, shared with update.c): 16 at a time by the magic number where all are below
/// 2^11 and within `limit`, else one at a time, leaving out (and returning 0 for) any beyond
/// `limit` or not finite.
AVX2FMA static inline int add_fixed_point(__m256 v0, __m256 v1, int64_t width, int64_t *acc, double limit) {
    const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
    const float bound = limit < 2048.0 ? (float)limit : 2048.0f;
    // |v| < 2^11 and (as a double) <= limit: below `bound`, or equal to it when limit is smaller
    // (a float equal to (float)limit may still exceed limit: then the careful loop decides)
    const __m256 b = _mm256_set1_ps(bound);
    __m256 ok0 = _mm256_cmp_ps(_mm256_and_ps(v0, abs_mask), b, _CMP_LT_OQ);
    __m256 ok1 = _mm256_cmp_ps(_mm256_and_ps(v1, abs_mask), b, _CMP_LT_OQ);
    if (width == 16 && _mm256_movemask_ps(_mm256_and_ps(ok0, ok1)) == 0xff) {
        add4_magic_avx2(_mm256_castps256_ps128(v0), acc);
        add4_magic_avx2(_mm256_extractf128_ps(v0, 1), acc + 4);
        add4_magic_avx2(_mm256_castps256_ps128(v1), acc + 8);
        add4_magic_avx2(_mm256_extractf128_ps(v1, 1), acc + 12);
        return 1;
    }
    float v[16];
    _mm256_storeu_ps(v, v0); _mm256_storeu_ps(v + 8, v1);
    return accumulate_careful(v, acc, width, limit);
}

/// R rows of C (row i of A at a + i * lda, its kk-th value kk * acs further) by the panel's
/// `width` columns, over kc rows of the block: the sums start at 0 (`first`) or at what C holds,
/// and end in C, plus the bias where given (the last block); or, with `acc` (the last block),
/// go into the Int64 accumulator acc (row stride ldacc) in fixed point instead, returning 0 if
/// some value was left out. Whole panels store with plain moves; a masked store costs far more,
/// which shows where k is short (a weight gradient's micro-batch of rows).
AVX2FMA __attribute__((always_inline))
static inline int tile(int R, int64_t kc, const float *a, int64_t lda, int64_t acs, const float *panel, int64_t width,
                       int first, const float *bias, float *c, int64_t ldc, int64_t *acc, int64_t ldacc, double limit) {
    __m256 s0[6], s1[6];
    const __m256i m0 = lanes(width < 8 ? width : 8), m1 = lanes(width > 8 ? width - 8 : 0);
    for (int r = 0; r < R; r++) {
        if (first) { s0[r] = _mm256_setzero_ps(); s1[r] = _mm256_setzero_ps(); }
        else if (width == 16) { s0[r] = _mm256_loadu_ps(c + r * ldc); s1[r] = _mm256_loadu_ps(c + r * ldc + 8); }
        else { s0[r] = _mm256_maskload_ps(c + r * ldc, m0); s1[r] = _mm256_maskload_ps(c + r * ldc + 8, m1); }
    }
    for (int64_t kk = 0; kk < kc; kk++) {
        const __m256 b0 = _mm256_load_ps(panel + kk * 16), b1 = _mm256_load_ps(panel + kk * 16 + 8);
        for (int r = 0; r < R; r++) {
            const __m256 x = _mm256_broadcast_ss(a + r * lda + kk * acs);
            s0[r] = _mm256_fmadd_ps(x, b0, s0[r]);
            s1[r] = _mm256_fmadd_ps(x, b1, s1[r]);
        }
    }
    if (acc) {
        int ok = 1;
        for (int r = 0; r < R; r++) ok &= add_fixed_point(s0[r], s1[r], width, acc + r * ldacc, limit);
        return ok;
    }
    __m256 bias0 = _mm256_setzero_ps(), bias1 = _mm256_setzero_ps();
    if (bias && width == 16) { bias0 = _mm256_loadu_ps(bias); bias1 = _mm256_loadu_ps(bias + 8); }
    else if (bias) { bias0 = _mm256_maskload_ps(bias, m0); bias1 = _mm256_maskload_ps(bias + 8, m1); }
    for (int r = 0; r < R; r++) {
        // the bias added after the sum, as sgemm's beta = 1 adds a C that holds it
        __m256 v0 = s0[r], v1 = s1[r];
        if (bias) { v0 = _mm256_add_ps(v0, bias0); v1 = _mm256_add_ps(v1, bias1); }
        if (width == 16) {
            _mm256_storeu_ps(c + r * ldc, v0);
            _mm256_storeu_ps(c + r * ldc + 8, v1);
        } else {
            _mm256_maskstore_ps(c + r * ldc, m0, v0);
            _mm256_maskstore_ps(c + r * ldc + 8, m1, v1);
        }
    }
    return 1;
}

AVX2FMA
int dae_linear_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int64_t acs, const float *b, int64_t bks,
                    int64_t bjs, const float *bias, float *c, int64_t ldc, int64_t *acc, int64_t ldacc, double limit) {
    float panel[KC * 16] __attribute__((aligned(64)));
    int ok = 1;
    if (k == 0) {   // empty sums: C is the bias (or 0); nothing to add to acc
        if (!acc)
            for (int64_t i = 0; i < m; i++)
                for (int64_t j = 0; j < n; j++) c[i * ldc + j] = bias ? 0.0f + bias[j] : 0.0f;
        return 1;
    }
    for (int64_t j = 0; j < n; j += 16) {
        const int64_t width = n - j < 16 ? n - j : 16;
        for (int64_t k0 = 0; k0 < k; k0 += KC) {
            const int64_t kc = k - k0 < KC ? k - k0 : KC;
            copy_block(b, bks, bjs, k0, kc, j, width, panel);
            const int last = k0 + kc == k, first = k0 == 0;
            const float *ak = a + k0 * acs, *bj = bias && last ? bias + j : NULL;
            int64_t *aj = acc && last ? acc + j : NULL;
#define TILE(R) ok &= tile(R, kc, ak + i * lda, lda, acs, panel, width, first, bj, c + i * ldc + j, ldc, aj ? aj + i * ldacc : NULL, ldacc, limit)
            int64_t i = 0;
            for (; i + 6 <= m; i += 6) TILE(6);
            switch (m - i) {
            case 5: TILE(5); break;
            case 4: TILE(4); break;
            case 3: TILE(3); break;
            case 2: TILE(2); break;
            case 1: TILE(1); break;
            default: break;
            }
#undef TILE
        }
    }
    return ok;
}

#else

int dae_linear_avx2_built(void) { return 0; }
int dae_linear_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int64_t acs, const float *b, int64_t bks,
                    int64_t bjs, const float *bias, float *c, int64_t ldc, int64_t *acc, int64_t ldacc, double limit) {
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)acs; (void)b; (void)bks; (void)bjs; (void)bias; (void)c; (void)ldc;
    (void)acc; (void)ldacc; (void)limit;
    return 0;
}

#endif
