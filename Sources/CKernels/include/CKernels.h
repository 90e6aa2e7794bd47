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

#endif
