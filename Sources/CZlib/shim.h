// zlib: gzip reading for the IDX files (gzopen/gzread), deflate for PNG later.
#include <zlib.h>

// inflateInit2 and deflateInit2 are macros (they pass ZLIB_VERSION and the struct size), which
// Swift cannot import; these wrappers make them callable.
static inline int dae_inflate_init_gzip(z_stream *stream) {
    return inflateInit2(stream, 15 + 16);  // 15-bit window, +16: expect a gzip wrapper
}
static inline int dae_deflate_init_zlib(z_stream *stream, int level) {
    return deflateInit(stream, level);
}
