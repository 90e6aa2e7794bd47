// The tile transforms of Winograd F(2x2, 3x3) (Sources/DAE/Model/Layers/Winograd.swift explains
// the algorithm and the layouts) in AVX-512: 8 tiles, i.e. 16 image columns, per vector.
//
// Each function computes exactly the same sums in the same order as its Swift counterpart
// (Winograd.transformInput, transformOutputGradient, transformOutput), so both give the same bits
// and the choice between them, made by the CPU's features, changes speed only (a test checks it).
// Where the Swift code pads with zero rows and columns these load zeros (masked loads), so that
// even the signs of zero results agree.
//
// Arrays are [channels, n, h, w] images and [16][channels][T] tile values, T = n * h/2 * w/2.

#include "CKernels.h"

#if defined(__x86_64__)
#include <immintrin.h>

#define AVX512 __attribute__((target("avx512f,avx512dq,avx512vl,avx512bw")))

int dae_winograd_avx512_built(void) { return 1; }

// lanes [0, count) set
AVX512 static inline __mmask16 first(int64_t count) { return (__mmask16)((1u << count) - 1u); }

// Columns 2tx-1 ... 2tx+14 of a w-wide row for the 8 tiles from tx (zero outside the row).
AVX512 static inline __m512 columns(const float *row, int64_t w, int64_t tx) {
    int64_t first_column = 2 * tx - 1;
    __mmask16 mask = 0xffff;
    if (first_column < 0) mask &= (__mmask16)0xfffe;                  // column -1 is padding
    int64_t past = first_column + 16 - w;                              // lanes at or past column w
    if (past > 0) mask &= (__mmask16)(0xffffu >> past);
    return _mm512_maskz_loadu_ps(mask, row + first_column);
}

// (evens | odds) of a 16-lane vector, as two 8-lane halves.
AVX512 static inline __m512 deinterleave(__m512 v) {
    const __m512i index = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 1, 3, 5, 7, 9, 11, 13, 15);
    return _mm512_permutexvar_ps(index, v);
}

AVX512 void dae_winograd_input_avx512(const float *x, int64_t channels, int64_t n, int64_t h, int64_t w, float *v) {
    const int64_t th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles;
    const __m512 zero = _mm512_setzero_ps();
    for (int64_t c = 0; c < channels; c++) {
        for (int64_t b = 0; b < n; b++) {
            const float *plane = x + (c * n + b) * h * w;
            for (int64_t ty = 0; ty < th; ty++) {
                const float *r1 = plane + 2 * ty * w, *r2 = r1 + w;
                const int64_t t0 = (b * th + ty) * tw;
                for (int64_t tx = 0; tx < tw; tx += 8) {
                    // rows 2ty-1 ... 2ty+2 at columns 2tx-1 ... 2tx+14 (a) and 2tx+1 ... 2tx+16 (b)
                    __m512 a1 = columns(r1, w, tx), a2 = columns(r2, w, tx);
                    __m512 b1 = columns(r1, w, tx + 1), b2 = columns(r2, w, tx + 1);
                    __m512 a0 = ty > 0 ? columns(r1 - w, w, tx) : zero, b0 = ty > 0 ? columns(r1 - w, w, tx + 1) : zero;
                    __m512 a3 = ty < th - 1 ? columns(r2 + w, w, tx) : zero, b3 = ty < th - 1 ? columns(r2 + w, w, tx + 1) : zero;
                    // B^T along y: s0 = r0 - r2, s1 = r1 + r2, s2 = r2 - r1, s3 = r1 - r3
                    __m512 sa[4] = {_mm512_sub_ps(a0, a2), _mm512_add_ps(a1, a2), _mm512_sub_ps(a2, a1), _mm512_sub_ps(a1, a3)};
                    __m512 sb[4] = {_mm512_sub_ps(b0, b2), _mm512_add_ps(b1, b2), _mm512_sub_ps(b2, b1), _mm512_sub_ps(b1, b3)};
                    int64_t count = tw - tx < 8 ? tw - tx : 8;
                    __mmask8 mask = (__mmask8)first(count);
                    for (int row = 0; row < 4; row++) {
                        // B along x: e0 o0 e1 o1 = columns 2tx-1, 2tx, 2tx+1, 2tx+2 of each tile
                        __m512 pa = deinterleave(sa[row]), pb = deinterleave(sb[row]);
                        __m256 e0 = _mm512_castps512_ps256(pa), o0 = _mm512_extractf32x8_ps(pa, 1);
                        __m256 e1 = _mm512_castps512_ps256(pb), o1 = _mm512_extractf32x8_ps(pb, 1);
                        float *out = v + (4 * row) * stride + c * tiles + t0 + tx;
                        _mm256_mask_storeu_ps(out, mask, _mm256_sub_ps(e0, e1));
                        _mm256_mask_storeu_ps(out + stride, mask, _mm256_add_ps(o0, e1));
                        _mm256_mask_storeu_ps(out + 2 * stride, mask, _mm256_sub_ps(e1, o0));
                        _mm256_mask_storeu_ps(out + 3 * stride, mask, _mm256_sub_ps(o0, o1));
                    }
                }
            }
        }
    }
}

AVX512 void dae_winograd_output_gradient_avx512(const float *dy, int64_t channels, int64_t n, int64_t h, int64_t w, float *q) {
    const int64_t th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles;
    for (int64_t k = 0; k < channels; k++) {
        for (int64_t b = 0; b < n; b++) {
            const float *plane = dy + (k * n + b) * h * w;
            for (int64_t ty = 0; ty < th; ty++) {
                const float *top = plane + 2 * ty * w, *bottom = top + w;
                float *out = q + k * tiles + (b * th + ty) * tw;
                for (int64_t tx = 0; tx < tw; tx += 8) {
                    int64_t count = tw - tx < 8 ? tw - tx : 8;
                    __mmask16 both = first(2 * count);
                    __m512 t = deinterleave(_mm512_maskz_loadu_ps(both, top + 2 * tx));
                    __m512 u = deinterleave(_mm512_maskz_loadu_ps(both, bottom + 2 * tx));
                    // dY = [[a, b], [c, d]] for 8 tiles
                    __m256 a = _mm512_castps512_ps256(t), bb = _mm512_extractf32x8_ps(t, 1);
                    __m256 c = _mm512_castps512_ps256(u), d = _mm512_extractf32x8_ps(u, 1);
                    const __m256 zero = _mm256_setzero_ps();
                    // A dY: rows (a, b), (a+c, b+d), (a-c, b-d), (0-c, 0-d); each row (p, r) times
                    // A^T: (p, p+r, p-r, 0-r) (0 - x, not -x, in both versions: the sign of a zero)
                    __m256 ps[4] = {a, _mm256_add_ps(a, c), _mm256_sub_ps(a, c), _mm256_sub_ps(zero, c)};
                    __m256 rs[4] = {bb, _mm256_add_ps(bb, d), _mm256_sub_ps(bb, d), _mm256_sub_ps(zero, d)};
                    __mmask8 mask = (__mmask8)first(count);
                    for (int row = 0; row < 4; row++) {
                        float *o = out + 4 * row * stride + tx;
                        _mm256_mask_storeu_ps(o, mask, ps[row]);
                        _mm256_mask_storeu_ps(o + stride, mask, _mm256_add_ps(ps[row], rs[row]));
                        _mm256_mask_storeu_ps(o + 2 * stride, mask, _mm256_sub_ps(ps[row], rs[row]));
                        _mm256_mask_storeu_ps(o + 3 * stride, mask, _mm256_sub_ps(zero, rs[row]));
                    }
                }
            }
        }
    }
}

AVX512 void dae_winograd_output_avx512(const float *m, int64_t channels, int64_t n, int64_t h, int64_t w,
                                       const float *bias, float *y) {
    const int64_t th = h / 2, tw = w / 2, tiles = n * th * tw, stride = channels * tiles;
    const __m512i interleaving = _mm512_setr_epi32(0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15);
    for (int64_t k = 0; k < channels; k++) {
        const __m256 offset = _mm256_set1_ps(bias ? bias[k] : 0.0f);
        for (int64_t b = 0; b < n; b++) {
            float *plane = y + (k * n + b) * h * w;
            for (int64_t ty = 0; ty < th; ty++) {
                const float *src = m + k * tiles + (b * th + ty) * tw;
                float *top = plane + 2 * ty * w, *bottom = top + w;
                for (int64_t tx = 0; tx < tw; tx += 8) {
                    int64_t count = tw - tx < 8 ? tw - tx : 8;
                    __mmask8 mask = (__mmask8)first(count);
                    __m256 at[16];
                    for (int xi = 0; xi < 16; xi++) at[xi] = _mm256_maskz_loadu_ps(mask, src + xi * stride + tx);
                    // A^T along the rows: (m0j + m1j + m2j, m1j - m2j - m3j), then along the columns
                    __m256 u0 = _mm256_add_ps(_mm256_add_ps(at[0], at[4]), at[8]), u1 = _mm256_add_ps(_mm256_add_ps(at[1], at[5]), at[9]);
                    __m256 u2 = _mm256_add_ps(_mm256_add_ps(at[2], at[6]), at[10]), u3 = _mm256_add_ps(_mm256_add_ps(at[3], at[7]), at[11]);
                    __m256 l0 = _mm256_sub_ps(_mm256_sub_ps(at[4], at[8]), at[12]), l1 = _mm256_sub_ps(_mm256_sub_ps(at[5], at[9]), at[13]);
                    __m256 l2 = _mm256_sub_ps(_mm256_sub_ps(at[6], at[10]), at[14]), l3 = _mm256_sub_ps(_mm256_sub_ps(at[7], at[11]), at[15]);
                    __m256 y00 = _mm256_add_ps(offset, _mm256_add_ps(_mm256_add_ps(u0, u1), u2));
                    __m256 y01 = _mm256_add_ps(offset, _mm256_sub_ps(_mm256_sub_ps(u1, u2), u3));
                    __m256 y10 = _mm256_add_ps(offset, _mm256_add_ps(_mm256_add_ps(l0, l1), l2));
                    __m256 y11 = _mm256_add_ps(offset, _mm256_sub_ps(_mm256_sub_ps(l1, l2), l3));
                    __mmask16 both = first(2 * count);
                    __m512 upper = _mm512_insertf32x8(_mm512_castps256_ps512(y00), y01, 1);
                    __m512 lower = _mm512_insertf32x8(_mm512_castps256_ps512(y10), y11, 1);
                    _mm512_mask_storeu_ps(top + 2 * tx, both, _mm512_permutexvar_ps(interleaving, upper));
                    _mm512_mask_storeu_ps(bottom + 2 * tx, both, _mm512_permutexvar_ps(interleaving, lower));
                }
            }
        }
    }
}

#else
int dae_winograd_avx512_built(void) { return 0; }
void dae_winograd_input_avx512(const float *x, int64_t channels, int64_t n, int64_t h, int64_t w, float *v) {}
void dae_winograd_output_gradient_avx512(const float *dy, int64_t channels, int64_t n, int64_t h, int64_t w, float *q) {}
void dae_winograd_output_avx512(const float *m, int64_t channels, int64_t n, int64_t h, int64_t w, const float *bias, float *y) {}
#endif
