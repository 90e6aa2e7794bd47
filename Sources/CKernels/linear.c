// The product of exact mode's fully connected layers in lockstep (Sources/DAE/Model/Layers/
// Linear.swift): C = A . B (+ bias) where every element of C is one chain of fused multiply-adds
// over k in order,
//
//   s = 0;  for kk in 0 ..< k: s = fma(A[i, kk], B[kk, j], s);  C[i, j] = s (+ bias[j])
//
// whatever the shapes, the row or column a value sits in, and how many rows a call holds. That is
// what lets exact mode run all of a thread's micro-batches through a layer in one call and still
// give each row the bits of a call on its micro-batch alone (OpenBLAS promises nothing about how
// its result depends on the shape of the call), and it lets the weights be laid out once per step
// instead of once per micro-batch and product, as OpenBLAS's sgemm repacks them on every call.
//
// B is read in panels of 16 columns: B[kk, j] = b[(j / 16) * panel_stride + kk * ldb + j % 16].
// A row-major [k, n] matrix is that with ldb = its row length and panel_stride = 16; a matrix
// packed by dae_pack_transposed16 is that with ldb = 16 and panel_stride = 16 * k. A tile of 6
// rows by 16 columns keeps its 12 sums in registers over the whole of k; the panel (64 KB at
// k = 1000) stays in L2 while every row tile passes over it.

#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX2FMA __attribute__((target("avx2,fma")))

int dae_linear_avx2_built(void) { return 1; }

/// Lanes 0 ..< count set (count 0 ... 8).
AVX2FMA static inline __m256i lanes(int64_t count) {
    const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)count), index);
}

/// Rows r0 ..< r0 + R of C, columns j0 ..< j0 + width (width 1 ... 16) of the panel p (B's columns
/// j0 ... j0 + 15). Whole panels load 16 values; a partial one loads under a mask, so nothing past
/// B's row is read.
AVX2FMA __attribute__((always_inline))
static inline void tile(int R, int64_t k, const float *a, int64_t lda, int64_t acs, const float *p, int64_t ldb, int64_t width,
                        const float *bias, float *c, int64_t ldc) {
    __m256 s0[6], s1[6];
    for (int r = 0; r < R; r++) { s0[r] = _mm256_setzero_ps(); s1[r] = _mm256_setzero_ps(); }
    if (width == 16) {
        for (int64_t kk = 0; kk < k; kk++) {
            const __m256 b0 = _mm256_loadu_ps(p + kk * ldb), b1 = _mm256_loadu_ps(p + kk * ldb + 8);
            for (int r = 0; r < R; r++) {
                const __m256 x = _mm256_broadcast_ss(a + r * lda + kk * acs);
                s0[r] = _mm256_fmadd_ps(x, b0, s0[r]);
                s1[r] = _mm256_fmadd_ps(x, b1, s1[r]);
            }
        }
    } else {
        const __m256i m0 = lanes(width < 8 ? width : 8), m1 = lanes(width > 8 ? width - 8 : 0);
        for (int64_t kk = 0; kk < k; kk++) {
            const __m256 b0 = _mm256_maskload_ps(p + kk * ldb, m0), b1 = _mm256_maskload_ps(p + kk * ldb + 8, m1);
            for (int r = 0; r < R; r++) {
                const __m256 x = _mm256_broadcast_ss(a + r * lda + kk * acs);
                s0[r] = _mm256_fmadd_ps(x, b0, s0[r]);
                s1[r] = _mm256_fmadd_ps(x, b1, s1[r]);
            }
        }
    }
    const __m256i m0 = lanes(width < 8 ? width : 8), m1 = lanes(width > 8 ? width - 8 : 0);
    // whole panels store with plain moves: a masked store costs far more, which shows where k is
    // short (a weight gradient's micro-batch of rows)
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
}

AVX2FMA
void dae_linear_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
                     int64_t panel_stride, const float *bias, float *c, int64_t ldc) {
    for (int64_t j = 0; j < n; j += 16) {
        const float *p = b + (j / 16) * panel_stride;
        const float *bj = bias ? bias + j : NULL;
        const int64_t width = n - j < 16 ? n - j : 16;
        int64_t i = 0;
        for (; i + 6 <= m; i += 6) tile(6, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc);
        switch (m - i) {
        case 5: tile(5, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc); break;
        case 4: tile(4, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc); break;
        case 3: tile(3, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc); break;
        case 2: tile(2, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc); break;
        case 1: tile(1, k, a + i * lda, lda, acs, p, ldb, width, bj, c + i * ldc + j, ldc); break;
        default: break;
        }
    }
}

#else

int dae_linear_avx2_built(void) { return 0; }
void dae_linear_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int64_t acs, const float *b, int64_t ldb,
                     int64_t panel_stride, const float *bias, float *c, int64_t ldc) {
    (void)m; (void)n; (void)k; (void)a; (void)lda; (void)acs; (void)b; (void)ldb; (void)panel_stride; (void)bias; (void)c; (void)ldc;
}

#endif

// The packings. Both write whole panels of 16 columns, zero past the matrix's last column, so the
// kernel's loads stay inside them.

/// packed[p * 16 * rows + kk * 16 + jj] = b[kk * ldb + 16 p + jj] (b is [rows, cols]): B itself.
void dae_pack_panels16(const float *b, int64_t rows, int64_t cols, int64_t ldb, float *packed, int64_t first_panel,
                       int64_t end_panel) {
    for (int64_t p = first_panel; p < end_panel; p++) {
        float *out = packed + p * 16 * rows;
        const int64_t j0 = 16 * p, width = cols - j0 < 16 ? cols - j0 : 16;
        if (width == 16) {
            // 16 floats a row, a loop the compiler turns into vector moves (a memcpy call per 64
            // bytes cost more than the copy)
            for (int64_t kk = 0; kk < rows; kk++)
                for (int jj = 0; jj < 16; jj++) out[kk * 16 + jj] = b[kk * ldb + j0 + jj];
        } else {
            for (int64_t kk = 0; kk < rows; kk++)
                for (int jj = 0; jj < 16; jj++) out[kk * 16 + jj] = jj < width ? b[kk * ldb + j0 + jj] : 0;
        }
    }
}

/// packed[p * 16 * cols + kk * 16 + jj] = w[(16 p + jj) * ldw + kk] (w is [rows, cols]): B = w^T.
static void pack_transposed_scalar(const float *w, int64_t rows, int64_t cols, int64_t ldw, float *out, int64_t row0,
                                   int64_t kk0, int64_t kk1) {
    // out is the panel of rows row0 ..< row0 + 16; columns kk0 ..< kk1
    for (int64_t kk = kk0; kk < kk1; kk++)
        for (int64_t jj = 0; jj < 16; jj++) out[kk * 16 + jj] = row0 + jj < rows ? w[(row0 + jj) * ldw + kk] : 0;
}

#if defined(__x86_64__)
/// 8 x 8 blocks transposed in registers (AVX2: only shuffles and copies, so the values are the
/// scalar loop's).
AVX2FMA static void pack_transposed_avx2(const float *w, int64_t rows, int64_t cols, int64_t ldw, float *packed,
                                         int64_t first_panel, int64_t end_panel) {
    for (int64_t p = first_panel; p < end_panel; p++) {
        float *out = packed + p * 16 * cols;
        const int64_t row0 = 16 * p;
        if (row0 + 16 > rows) { pack_transposed_scalar(w, rows, cols, ldw, out, row0, 0, cols); continue; }
        int64_t kk = 0;
        for (; kk + 8 <= cols; kk += 8) {
            for (int half = 0; half < 2; half++) {
                const float *in = w + (row0 + 8 * half) * ldw + kk;
                __m256 r0 = _mm256_loadu_ps(in), r1 = _mm256_loadu_ps(in + ldw), r2 = _mm256_loadu_ps(in + 2 * ldw);
                __m256 r3 = _mm256_loadu_ps(in + 3 * ldw), r4 = _mm256_loadu_ps(in + 4 * ldw), r5 = _mm256_loadu_ps(in + 5 * ldw);
                __m256 r6 = _mm256_loadu_ps(in + 6 * ldw), r7 = _mm256_loadu_ps(in + 7 * ldw);
                __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
                __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
                __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
                __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
                __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xEE);
                __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xEE);
                __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xEE);
                __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xEE);
                float *o = out + kk * 16 + 8 * half;
                _mm256_storeu_ps(o + 0 * 16, _mm256_permute2f128_ps(u0, u4, 0x20));
                _mm256_storeu_ps(o + 1 * 16, _mm256_permute2f128_ps(u1, u5, 0x20));
                _mm256_storeu_ps(o + 2 * 16, _mm256_permute2f128_ps(u2, u6, 0x20));
                _mm256_storeu_ps(o + 3 * 16, _mm256_permute2f128_ps(u3, u7, 0x20));
                _mm256_storeu_ps(o + 4 * 16, _mm256_permute2f128_ps(u0, u4, 0x31));
                _mm256_storeu_ps(o + 5 * 16, _mm256_permute2f128_ps(u1, u5, 0x31));
                _mm256_storeu_ps(o + 6 * 16, _mm256_permute2f128_ps(u2, u6, 0x31));
                _mm256_storeu_ps(o + 7 * 16, _mm256_permute2f128_ps(u3, u7, 0x31));
            }
        }
        pack_transposed_scalar(w, rows, cols, ldw, out, row0, kk, cols);
    }
}
#endif

void dae_pack_transposed16(const float *w, int64_t rows, int64_t cols, int64_t ldw, float *packed,
                           int64_t first_panel, int64_t end_panel, int avx2) {
#if defined(__x86_64__)
    if (avx2) { pack_transposed_avx2(w, rows, cols, ldw, packed, first_panel, end_panel); return; }
#endif
    (void)avx2;
    for (int64_t p = first_panel; p < end_panel; p++)
        pack_transposed_scalar(w, rows, cols, ldw, packed + p * 16 * cols, 16 * p, 0, cols);
}
