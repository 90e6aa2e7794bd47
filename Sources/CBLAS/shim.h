// OpenBLAS's C interface (cblas_sgemm) and its thread control.
#include <cblas.h>
