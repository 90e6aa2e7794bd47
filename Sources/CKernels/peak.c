// The FP32 and bf16 arithmetic peaks of one core, measured rather than taken from a data sheet
// (a VM's core may run at another clock, or lack a second FMA unit): the roofline that
// `dae-dist bench --what peak` and `--what phases` compare the layers with.
//
// Each probe keeps independent accumulator chains in registers: an FMA unit needs latency x
// ports chains in flight (4-5 cycles x 2 ports: 8-10). AVX-512 has 32 vector registers, so 16
// chains plus the two operands fit with margin; AVX2 has 16, so 12 chains (no spills). Nothing
// touches memory inside the loop. Without -ffast-math the compiler may not reassociate the
// recurrences, and the final sum into `sink` keeps every chain alive, so no chain is optimised
// away. Unoptimised (debug) builds keep the registers on the stack and would measure memory, so
// there the probes refuse (return 0) and the caller says that a release build is needed.

#include "CKernels.h"

#if defined(__x86_64__) && defined(__OPTIMIZE__)
#include <immintrin.h>

#define CHAINS 16
#define CHAINS_AVX2 12

int dae_peak_probes_built(void) { return 1; }

__attribute__((target("avx512f")))
double dae_peak_fma_avx512(int64_t iterations, float *sink) {
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c * 1e-3f);
    const __m512 a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
    for (int64_t i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_fmadd_ps(acc[c], a, b);
    }
    __m512 total = acc[0];
    for (int c = 1; c < CHAINS; c++) total = _mm512_add_ps(total, acc[c]);
    *sink = _mm512_reduce_add_ps(total);
    return 2.0 * 16 * CHAINS * (double)iterations;
}

__attribute__((target("avx2,fma")))
double dae_peak_fma_avx2(int64_t iterations, float *sink) {
    __m256 acc[CHAINS_AVX2];
    for (int c = 0; c < CHAINS_AVX2; c++) acc[c] = _mm256_set1_ps((float)c * 1e-3f);
    const __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    for (int64_t i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS_AVX2; c++) acc[c] = _mm256_fmadd_ps(acc[c], a, b);
    }
    __m256 total = acc[0];
    for (int c = 1; c < CHAINS_AVX2; c++) total = _mm256_add_ps(total, acc[c]);
    float lanes[8];
    _mm256_storeu_ps(lanes, total);
    float s = 0;
    for (int l = 0; l < 8; l++) s += lanes[l];
    *sink = s;
    return 2.0 * 8 * CHAINS_AVX2 * (double)iterations;
}

// vdpbf16ps: per 32-bit lane, acc += a.lo*b.lo + a.hi*b.hi over bf16 pairs, FP32 accumulation:
// 32 multiplies and 32 adds per 512-bit instruction.
__attribute__((target("avx512f,avx512bf16")))
double dae_peak_dpbf16_avx512(int64_t iterations, float *sink) {
    __m512 acc[CHAINS];
    for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_set1_ps((float)c * 1e-3f);
    const __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x3380);   // 1.0 and ~6e-8 in bf16
    for (int64_t i = 0; i < iterations; i++) {
        for (int c = 0; c < CHAINS; c++) acc[c] = _mm512_dpbf16_ps(acc[c], a, b);
    }
    __m512 total = acc[0];
    for (int c = 1; c < CHAINS; c++) total = _mm512_add_ps(total, acc[c]);
    *sink = _mm512_reduce_add_ps(total);
    return 4.0 * 16 * CHAINS * (double)iterations;
}

#else   // not x86-64, or not optimised: no probe

int dae_peak_probes_built(void) { return 0; }

double dae_peak_fma_avx512(int64_t iterations, float *sink) { (void)iterations; *sink = 0; return 0; }
double dae_peak_fma_avx2(int64_t iterations, float *sink) { (void)iterations; *sink = 0; return 0; }
double dae_peak_dpbf16_avx512(int64_t iterations, float *sink) { (void)iterations; *sink = 0; return 0; }

#endif
