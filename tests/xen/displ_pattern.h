/* The picture the domU's DRM client draws for connector c, frame k, and the
 * one the dom0 check expects in the backend's PNG: one definition for both,
 * so any pixel the transport changes is caught.
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

#endif
