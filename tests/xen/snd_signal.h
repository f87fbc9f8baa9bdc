/* The signal the domU's sound client plays through snd_xen_front, in integer
 * arithmetic only, so that a check in dom0 can regenerate it sample for
 * sample and compare it with what the backend wrote: one definition for
 * both. S16_LE, two channels, 48000 Hz; frame n of the signal is
 *   left:  a triangle wave of period SND_SIGNAL_PERIOD frames (about 444 Hz),
 *   right: quiet noise from a hash of n (any frame dropped, repeated or
 *          swapped changes it).
 * Both channels differ, so swapped channels are caught too. */
#ifndef SHBUF_TESTS_XEN_SND_SIGNAL_H
#define SHBUF_TESTS_XEN_SND_SIGNAL_H

#include <stdint.h>

#define SND_SIGNAL_RATE 48000u
#define SND_SIGNAL_CHANNELS 2u
#define SND_SIGNAL_FRAME_BYTES 4u
/* What the client plays unless told otherwise: three seconds. */
#define SND_SIGNAL_FRAMES (3u * SND_SIGNAL_RATE)
#define SND_SIGNAL_PERIOD 108u

static inline int16_t snd_signal_left(uint32_t n) {
  const uint32_t half = SND_SIGNAL_PERIOD / 2u;
  const uint32_t p = n % SND_SIGNAL_PERIOD;
  const int32_t up = (int32_t)(p < half ? p : SND_SIGNAL_PERIOD - p); /* 0..half */
  return (int16_t)(up * 1200 - (int32_t)half * 600);                   /* -32400..32400 */
}

static inline int16_t snd_signal_right(uint32_t n) {
  uint32_t h = n * 2654435761u;
  h ^= h >> 15;
  h *= 2246822519u;
  h ^= h >> 13;
  return (int16_t)(((int32_t)(h >> 16) - 32768) / 8);
}

/* Frame n as the bytes of S16_LE interleaved (left, right). */
static inline void snd_signal_frame(uint32_t n, unsigned char out[SND_SIGNAL_FRAME_BYTES]) {
  const uint16_t l = (uint16_t)snd_signal_left(n);
  const uint16_t r = (uint16_t)snd_signal_right(n);
  out[0] = (unsigned char)(l & 0xff);
  out[1] = (unsigned char)(l >> 8);
  out[2] = (unsigned char)(r & 0xff);
  out[3] = (unsigned char)(r >> 8);
}

/* FNV-1a, 64 bits: the digest the client prints of the bytes it recorded. */
#define SND_FNV1A64_INIT 0xcbf29ce484222325ull

static inline uint64_t snd_fnv1a64(uint64_t h, const unsigned char* p, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

#endif
