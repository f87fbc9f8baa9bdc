/* The dom0 side of the PV sound proof's checks, from the signal of
 * snd_signal.h (the one the domU's snd_client plays):
 *   snd_check wav FILE FIRST FRAMES     writes signal frames FIRST.. as a WAV
 *                                       (PCM, S16_LE, 2 channels, 48000 Hz):
 *                                       what the backend gives the capture
 *   snd_check digest FIRST FRAMES       prints the fnv1a64 of those frames'
 *                                       bytes (what snd_client prints of what
 *                                       it recorded)
 *   snd_check compare FILE FRAMES       checks that the WAV FILE has that
 *                                       format and holds exactly signal frames
 *                                       0..FRAMES-1 (what the client played)
 * Exit 0 when the check holds, 1 with one line saying why otherwise.
 * Built static by tests/xen/run.sh; runs in dom0 from the share. */
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "snd_signal.h"

static int failed(const char* fmt, const char* a, const char* b) {
  printf("snd-check: FAIL: ");
  printf(fmt, a, b);
  printf("\n");
  return 1;
}

static int parse(const char* s, uint32_t* v) {
  char* end = NULL;
  errno = 0;
  const unsigned long x = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || x > UINT32_MAX) return 0;
  *v = (uint32_t)x;
  return 1;
}

static void put16(unsigned char* p, uint32_t v) {
  p[0] = (unsigned char)(v & 0xff);
  p[1] = (unsigned char)(v >> 8 & 0xff);
}

static void put32(unsigned char* p, uint32_t v) {
  put16(p, v & 0xffff);
  put16(p + 2, v >> 16);
}

static uint32_t get16(const unsigned char* p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8; }

static uint32_t get32(const unsigned char* p) { return get16(p) | get16(p + 2) << 16; }

static int write_wav(const char* path, uint32_t first, uint32_t frames) {
  if (frames > (UINT32_MAX - 36) / SND_SIGNAL_FRAME_BYTES) return failed("%s%s: too many frames", path, "");
  const uint32_t data = frames * SND_SIGNAL_FRAME_BYTES;
  unsigned char h[44];
  memcpy(h, "RIFF", 4);
  put32(h + 4, 36 + data);
  memcpy(h + 8, "WAVEfmt ", 8);
  put32(h + 16, 16);
  put16(h + 20, 1); /* PCM */
  put16(h + 22, SND_SIGNAL_CHANNELS);
  put32(h + 24, SND_SIGNAL_RATE);
  put32(h + 28, SND_SIGNAL_RATE * SND_SIGNAL_FRAME_BYTES);
  put16(h + 32, SND_SIGNAL_FRAME_BYTES);
  put16(h + 34, 16);
  memcpy(h + 36, "data", 4);
  put32(h + 40, data);
  FILE* f = fopen(path, "wb");
  if (f == NULL) return failed("cannot create %s: %s", path, strerror(errno));
  int ok = fwrite(h, sizeof h, 1, f) == 1;
  unsigned char b[SND_SIGNAL_FRAME_BYTES];
  for (uint32_t n = 0; ok && n < frames; ++n) {
    snd_signal_frame(first + n, b);
    ok = fwrite(b, sizeof b, 1, f) == 1;
  }
  if (fclose(f) != 0) ok = 0;
  if (!ok) return failed("cannot write %s: %s", path, strerror(errno));
  printf("snd-check: %s: signal frames %" PRIu32 "..%" PRIu32 "\n", path, first,
         first + frames - 1);
  return 0;
}

static int compare(const char* path, uint32_t frames) {
  FILE* f = fopen(path, "rb");
  if (f == NULL) return failed("cannot open %s: %s", path, strerror(errno));
  unsigned char h[12];
  if (fread(h, sizeof h, 1, f) != 1 || memcmp(h, "RIFF", 4) != 0 || memcmp(h + 8, "WAVE", 4) != 0) {
    fclose(f);
    return failed("%s is not a RIFF/WAVE file%s", path, "");
  }
  int have_fmt = 0;
  uint32_t data = 0;
  /* Chunks up to "data": "fmt " must say PCM, 2 channels, 48000 Hz, 16 bits. */
  for (;;) {
    unsigned char c[8];
    if (fread(c, sizeof c, 1, f) != 1) {
      fclose(f);
      return failed("%s has no data chunk%s", path, "");
    }
    const uint32_t size = get32(c + 4);
    if (memcmp(c, "fmt ", 4) == 0) {
      unsigned char fmt[16];
      if (size < 16 || fread(fmt, sizeof fmt, 1, f) != 1 ||
          fseek(f, (long)(size - 16 + (size & 1)), SEEK_CUR) != 0) {
        fclose(f);
        return failed("%s: short fmt chunk%s", path, "");
      }
      if (get16(fmt) != 1 || get16(fmt + 2) != SND_SIGNAL_CHANNELS ||
          get32(fmt + 4) != SND_SIGNAL_RATE || get16(fmt + 14) != 16) {
        char what[96];
        snprintf(what, sizeof what, "format %" PRIu32 ", %" PRIu32 " channel(s), %" PRIu32
                 " Hz, %" PRIu32 " bits", get16(fmt), get16(fmt + 2), get32(fmt + 4),
                 get16(fmt + 14));
        fclose(f);
        return failed("%s: %s, not PCM S16_LE, 2 channels, 48000 Hz", path, what);
      }
      have_fmt = 1;
    } else if (memcmp(c, "data", 4) == 0) {
      data = size;
      break;
    } else if (fseek(f, (long)size + (long)(size & 1), SEEK_CUR) != 0) {
      fclose(f);
      return failed("%s: a chunk runs past the end%s", path, "");
    }
  }
  if (!have_fmt) {
    fclose(f);
    return failed("%s: no fmt chunk before the data%s", path, "");
  }
  unsigned char b[SND_SIGNAL_FRAME_BYTES], want[SND_SIGNAL_FRAME_BYTES];
  uint32_t n = 0;
  for (; n < frames && fread(b, sizeof b, 1, f) == 1; ++n) {
    snd_signal_frame(n, want);
    if (memcmp(b, want, sizeof b) != 0) {
      printf("snd-check: FAIL: %s: frame %" PRIu32 " is %02x%02x %02x%02x, the signal's is "
             "%02x%02x %02x%02x (S16_LE left, right)\n",
             path, n, b[1], b[0], b[3], b[2], want[1], want[0], want[3], want[2]);
      fclose(f);
      return 1;
    }
  }
  fclose(f);
  if (n < frames || data != frames * SND_SIGNAL_FRAME_BYTES) {
    printf("snd-check: FAIL: %s: %" PRIu32 " data bytes (%" PRIu32 " frames of the signal), "
           "expected exactly %" PRIu32 " frames\n", path, data, n, frames);
    return 1;
  }
  printf("snd-check: %s: %" PRIu32 " frames, equal to the signal\n", path, frames);
  return 0;
}

int main(int argc, char** argv) {
  uint32_t a = 0, b = 0;
  if (argc == 5 && strcmp(argv[1], "wav") == 0 && parse(argv[3], &a) && parse(argv[4], &b)) {
    return write_wav(argv[2], a, b);
  }
  if (argc == 4 && strcmp(argv[1], "digest") == 0 && parse(argv[2], &a) && parse(argv[3], &b)) {
    uint64_t h = SND_FNV1A64_INIT;
    unsigned char f[SND_SIGNAL_FRAME_BYTES];
    for (uint32_t n = 0; n < b; ++n) {
      snd_signal_frame(a + n, f);
      h = snd_fnv1a64(h, f, sizeof f);
    }
    printf("%016" PRIx64 "\n", h);
    return 0;
  }
  if (argc == 4 && strcmp(argv[1], "compare") == 0 && parse(argv[3], &a)) {
    return compare(argv[2], a);
  }
  fprintf(stderr,
          "usage: snd_check wav FILE FIRST FRAMES | digest FIRST FRAMES | compare FILE FRAMES\n");
  return 2;
}
