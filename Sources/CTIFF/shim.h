// libtiff: every page of a TIFF file as 8-bit RGBA (TIFFReadRGBAImageOriented converts 8- and
// 16-bit, gray, palette and colour images). Its default handlers print warnings and errors to
// stderr; the library silences them (dae_tiff_quiet) and reports failures itself.
#include <tiffio.h>

static inline void dae_tiff_quiet(void) {
    TIFFSetErrorHandler(NULL);
    TIFFSetWarningHandler(NULL);
}

// TIFFGetField is variadic, which Swift cannot call: the two fields read here.
static inline int dae_tiff_size(TIFF *tif, uint32_t *width, uint32_t *height) {
    return TIFFGetField(tif, TIFFTAG_IMAGEWIDTH, width) && TIFFGetField(tif, TIFFTAG_IMAGELENGTH, height);
}
