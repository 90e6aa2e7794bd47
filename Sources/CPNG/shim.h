// libpng's simplified API (png_image_*): reads any PNG (palette, 16-bit, colour, alpha) converted
// to 8-bit gray, and writes 8-bit gray PNGs, with no setjmp in the caller. The version field, the
// format codes and the buffer size are macros, which Swift cannot import; these make them callable.
#include <png.h>
#include <string.h>

static inline void dae_png_image_init(png_image *image) {
    memset(image, 0, sizeof *image);
    image->version = PNG_IMAGE_VERSION;
}
static inline png_uint_32 dae_png_format_gray(void) { return PNG_FORMAT_GRAY; }
static inline png_uint_32 dae_png_flag_16bit_srgb(void) { return PNG_IMAGE_FLAG_16BIT_sRGB; }
static inline size_t dae_png_image_size(const png_image *image) { return PNG_IMAGE_SIZE(*image); }
