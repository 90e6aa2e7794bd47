// libjpeg-turbo's TurboJPEG API: whole-image decoding with error codes and messages, no setjmp in
// the caller (libjpeg's own API reports errors by longjmp, which Swift cannot catch).
#include <turbojpeg.h>
