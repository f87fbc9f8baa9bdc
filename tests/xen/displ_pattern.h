/* The picture the domU's DRM client draws for connector c, frame k, the
 * pixel format of the framebuffer it draws it into, and the picture the dom0
 * check expects in the backend's PNG: one definition for both, so any pixel
 * the transport or the conversion changes is caught.
 * A gradient, colour bars, a square that moves with k and k+1 counter marks. */
#ifndef SHBUF_TESTS_XEN_DISPL_PATTERN_H
#define SHBUF_TESTS_XEN_DISPL_PATTERN_H

#include <stdint.h>

/* 0x00RRGGBB, as XRGB8888 stores it. */
static inline uint32_t displ_pattern_pixel(unsigned c, unsigned k, unsigned x, unsigned y,
                                           unsigned w, unsigned h) {
  static const uint32_t bars[8] = {0xffffff, 0xffff00, 0x00ffff, 0x00ff00,
                                   0xff00ff, 0xff0000, 0x0000ff, 0x000000};
  const unsigned side = 80;
  const unsigned span = w > side + 80 ? w - side - 80 : 1;
  const unsigned sx = 40 + (k * 60) % span;
  const unsigned sy = h > side ? (h - side) / 2 : 0;
  if (y < 32) return bars[(x * 8) / w];
  if (x >= sx && x < sx + side && y >= sy && y < sy + side) return c == 0 ? 0xffffff : 0xffd000;
  if (y >= h - 24 && y < h - 8 && x >= 8 && x < 8 + 24 * (k + 1) && (x - 8) % 24 < 16) {
    return 0xff3030;
  }
  {
    const uint32_t r = (uint32_t)(x * 255u / (w > 1 ? w - 1 : 1));
    const uint32_t g = (uint32_t)(y * 255u / (h > 1 ? h - 1 : 1));
    const uint32_t b = c == 0 ? 0x60 : 0xa0;
    return r << 16 | g << 8 | b;
  }
}

/* From frame DISPL_PATTERN_SWITCH on, the client sets each connector's mode
 * again with a framebuffer of another pixel format (xen-drm-front sends that
 * as a flip alone): connector 0 goes from XRGB8888 to RGB565, connector 1
 * from RGB888 (24 bpp) to XRGB8888 (32 bpp), others stay XRGB8888. */
#define DISPL_PATTERN_SWITCH 2u

enum displ_format { DISPL_XRGB8888, DISPL_RGB888, DISPL_RGB565 };

static inline enum displ_format displ_pattern_format(unsigned c, unsigned k) {
  const int after = k >= DISPL_PATTERN_SWITCH;
  if (c == 0) return after ? DISPL_RGB565 : DISPL_XRGB8888;
  if (c == 1) return after ? DISPL_XRGB8888 : DISPL_RGB888;
  return DISPL_XRGB8888;
}

static inline const char* displ_format_name(enum displ_format f) {
  return f == DISPL_RGB565 ? "RGB565" : f == DISPL_RGB888 ? "RGB888" : "XRGB8888";
}

static inline unsigned displ_format_bpp(enum displ_format f) {
  return f == DISPL_RGB565 ? 16 : f == DISPL_RGB888 ? 24 : 32;
}

/* The DRM fourcc code. */
static inline uint32_t displ_format_fourcc(enum displ_format f) {
  const char* s = f == DISPL_RGB565 ? "RG16" : f == DISPL_RGB888 ? "RG24" : "XR24";
  return (uint32_t)s[0] | (uint32_t)s[1] << 8 | (uint32_t)s[2] << 16 | (uint32_t)s[3] << 24;
}

/* Stores 0x00RRGGBB as one pixel of format f, little-endian as DRM defines. */
static inline void displ_pattern_store(enum displ_format f, unsigned char* p, uint32_t rgb) {
  uint32_t v = rgb;
  if (f == DISPL_RGB565) v = (rgb >> 19 & 0x1f) << 11 | (rgb >> 10 & 0x3f) << 5 | (rgb >> 3 & 0x1f);
  for (unsigned i = 0; i < displ_format_bpp(f) / 8; ++i) p[i] = (unsigned char)(v >> (8 * i));
}

/* What a display shows of 0x00RRGGBB stored in format f: the 24-bit formats
 * keep it; RGB565 keeps each channel's top bits, shown as the nearest 8-bit
 * value. */
static inline uint32_t displ_pattern_shown(enum displ_format f, uint32_t rgb) {
  if (f != DISPL_RGB565) return rgb;
  {
    const uint32_t r = rgb >> 19 & 0x1f, g = rgb >> 10 & 0x3f, b = rgb >> 3 & 0x1f;
    return (r * 255 + 15) / 31 << 16 | (g * 255 + 31) / 63 << 8 | (b * 255 + 15) / 31;
  }
}

/* The pixel the backend's PNG must hold for connector c, frame k. */
static inline uint32_t displ_pattern_expected(unsigned c, unsigned k, unsigned x, unsigned y,
                                              unsigned w, unsigned h) {
  return displ_pattern_shown(displ_pattern_format(c, k), displ_pattern_pixel(c, k, x, y, w, h));
}

#endif
