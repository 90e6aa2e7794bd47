// dae-dist's own C kernels: code that needs instructions Swift cannot ask for on a baseline
// x86-64 build. Each kernel is compiled for its instruction set by a function attribute, and the
// caller picks one by the CPU's features at run time (never a -march/-target-cpu build flag).
#ifndef DAE_CKERNELS_H
#define DAE_CKERNELS_H

#include <stdint.h>

/// Peak probes: `iterations` rounds of independent multiply-adds on registers only, enough
/// chains in flight to cover the FMA latency on every port. Return the floating-point
/// operations done (a multiply-add counts 2; a bf16 dot-product pair counts 4), or 0 where the
/// build has no such kernel (not x86-64). `sink` receives a value derived from the registers so
/// that the work cannot be optimised away.
double dae_peak_fma_avx512(int64_t iterations, float *sink);
double dae_peak_fma_avx2(int64_t iterations, float *sink);
double dae_peak_dpbf16_avx512(int64_t iterations, float *sink);
/// 1 where the probes above were built (x86-64, optimised build), else 0; safe on any CPU.
int dae_peak_probes_built(void);

/// Winograd F(2x2, 3x3) tile transforms in AVX-512 (F, DQ, VL, BW), bitwise the same as the Swift
/// ones in Winograd.swift: input tiles B^T d B, output-gradient tiles A dY A^T, and output tiles
/// A^T m A (+ bias[k], or + 0 when bias is NULL). Call only where the CPU has those features and
/// dae_winograd_avx512_built() is 1 (x86-64 builds).
void dae_winograd_input_avx512(const float *x, int64_t channels, int64_t n, int64_t h, int64_t w, float *v);
void dae_winograd_output_gradient_avx512(const float *dy, int64_t channels, int64_t n, int64_t h, int64_t w, float *q);
void dae_winograd_output_avx512(const float *m, int64_t channels, int64_t n, int64_t h, int64_t w, const float *bias, float *y);
int dae_winograd_avx512_built(void);

/// One Adam step's constants (Sources/DAE/Optimizer/Adam.swift).
typedef struct {
    float one_minus_beta1, beta2, one_minus_beta2, eps;
    float step_size;      // lr / (1 - beta1^t)
    float correction2;    // sqrt(1 - beta2^t)
    float grad_scale;     // the gradient's factor: gradient clipping's coefficient, else 1
    float decay;          // the parameters' factor before the update: AdamW's 1 - lr * weight_decay, else 1
} DaeAdamStep;

/// Adam's update of parameters p[begin ..< end] with moments m, v from the gradient
/// g[0] + g[1] + ... + g[ng-1] (ng >= 1 buffers, added in that order) (update.c). dae_adam runs on
/// any CPU (SSE2 on x86-64); dae_adam_avx2 only where the CPU has AVX2 and
/// dae_update_avx2_built() is 1. Both give the same bits.
void dae_adam(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end);
void dae_adam_avx2(const DaeAdamStep *s, float *p, const float *const *g, int32_t ng, float *m, float *v, int64_t begin, int64_t end);
int dae_update_avx2_built(void);

/// acc[i] += round_half_even(values[i] * 2^40) for i < n, in AVX2 when `avx2` is 1 (only where
/// the CPU has it), else SSE2; the same bits either way. Returns 0, leaving acc partly updated,
/// if some |values[i]| exceeds `limit` or is not finite.
int dae_fixed_point_accumulate(const float *values, int64_t *acc, int64_t n, double limit, int avx2);

/// out[i] = (float)((double)acc[i] * 2^-40) and acc[i] = 0 for i < n, in AVX2 when `avx2` is 1
/// (only where the CPU has it), else one at a time; the same bits either way.
void dae_fixed_point_drain(int64_t *acc, float *out, int64_t n, int avx2);

/// C[i, j] = sum over kk of A[i, kk] * B[kk, j] (+ bias[j] unless bias is NULL) for i < m, j < n
/// (linear.c): each element one chain of fused multiply-adds over kk = 0 ..< k in order, starting
/// from 0, then the bias added; so a value does not depend on m, n or which rows and columns a
/// call holds. A[i, kk] = a[i * lda + kk * acs], B[kk, j] = b[kk * bks + j * bjs] (a matrix or
/// its transpose, read in place), C row-major (row stride ldc). With `acc` (not NULL), C's values
/// are not stored but added to acc[i * ldacc + j] as dae_fixed_point_accumulate(.., limit) would
/// add them (the same bits; C's memory may be written as scratch); the return value is then 0 if
/// some value exceeded `limit` or was not finite (left out), else 1 (always 1 without acc). Call
/// only where the CPU has AVX2 and FMA and dae_linear_avx2_built() is 1 (x86-64 builds).
int dae_linear_avx2(int64_t m, int64_t n, int64_t k, const float *a, int64_t lda, int64_t acs, const float *b, int64_t bks,
                    int64_t bjs, const float *bias, float *c, int64_t ldc, int64_t *acc, int64_t ldacc, double limit);
int dae_linear_avx2_built(void);

#endif
