/* The sound client the domU runs against snd_xen_front (Linux's PV sound
 * frontend): waits (bounded) for the card's playback device, sets its
 * hardware parameters (RW_INTERLEAVED, S16_LE, 2 channels, 48000 Hz), plays
 * the signal of snd_signal.h from frame 0, drains and closes; then records
 * from the capture device, drops and closes. One console line per fact,
 * each starting with "SNDCLIENT: ":
 *   playback: period P frames, buffer B frames
 *   played F frames, xruns X
 *   recorded F frames, xruns X, fnv1a64 HEX   (a digest of the bytes read)
 *   FAIL: WHAT: errno E (TEXT)                (and exit 1)
 * An xrun (EPIPE) is counted, the stream prepared again and the transfer
 * continued. Raw ALSA PCM ioctls from the kernel's UAPI (no alsa-lib); built
 * static. Usage: snd_client [PLAY_FRAMES [RECORD_FRAMES [WAIT_SECONDS]]]
 * (defaults: SND_SIGNAL_FRAMES, 48000, 60). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <sound/asound.h>

#include "snd_signal.h"

#define PLAYBACK "/dev/snd/pcmC0D0p"
#define CAPTURE "/dev/snd/pcmC0D0c"
/* Frames per WRITEI/READI call: 100 ms. */
#define CHUNK 4800u

static void fail(const char* what) {
  const int e = errno;
  printf("SNDCLIENT: FAIL: %s: errno %d (%s)\n", what, e, strerror(e));
  fflush(stdout);
  exit(1);
}

static void say(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("SNDCLIENT: ", stdout);
  vprintf(fmt, ap);
  fputc('\n', stdout);
  fflush(stdout);
  va_end(ap);
}

static uint32_t parse(const char* s, const char* what) {
  char* end = NULL;
  errno = 0;
  const unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > UINT32_MAX) {
    say("FAIL: bad %s: %s", what, s);
    exit(2);
  }
  return (uint32_t)v;
}

static struct snd_mask* mask(struct snd_pcm_hw_params* p, int param) {
  return &p->masks[param - SNDRV_PCM_HW_PARAM_FIRST_MASK];
}

static struct snd_interval* interval(struct snd_pcm_hw_params* p, int param) {
  return &p->intervals[param - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}

static void mask_only(struct snd_pcm_hw_params* p, int param, unsigned bit) {
  struct snd_mask* m = mask(p, param);
  memset(m->bits, 0, sizeof m->bits);
  m->bits[bit / 32] = 1u << (bit % 32);
}

static void interval_exactly(struct snd_pcm_hw_params* p, int param, unsigned v) {
  struct snd_interval* i = interval(p, param);
  i->min = v;
  i->max = v;
  i->openmin = 0;
  i->openmax = 0;
  i->integer = 1;
}

/* Waits up to `seconds` for the device node: snd_xen_front creates the card
 * only once its backend is connected. */
static void wait_for_node(const char* path, uint32_t seconds) {
  struct stat st;
  for (uint32_t waited = 0; stat(path, &st) != 0; ++waited) {
    if (waited >= seconds) {
      say("FAIL: no %s after %" PRIu32 "s (is the backend connected?)", path, seconds);
      exit(1);
    }
    sleep(1);
  }
}

/* Opens the PCM device and sets the hardware parameters sndif.md names:
 * everything allowed first (as alsa-lib's hw_params_any), then narrowed. */
static int open_pcm(const char* path, const char* name) {
  char what[96];
  const int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    snprintf(what, sizeof what, "open %s", path);
    fail(what);
  }
  struct snd_pcm_hw_params p;
  memset(&p, 0, sizeof p);
  for (int k = SNDRV_PCM_HW_PARAM_FIRST_MASK; k <= SNDRV_PCM_HW_PARAM_LAST_MASK; ++k) {
    memset(mask(&p, k)->bits, 0xff, sizeof mask(&p, k)->bits);
  }
  for (int k = SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; k <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL; ++k) {
    interval(&p, k)->min = 0;
    interval(&p, k)->max = UINT_MAX;
  }
  p.rmask = ~0u;
  p.cmask = 0;
  p.info = ~0u;
  mask_only(&p, SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED);
  mask_only(&p, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
  mask_only(&p, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
  interval_exactly(&p, SNDRV_PCM_HW_PARAM_CHANNELS, SND_SIGNAL_CHANNELS);
  interval_exactly(&p, SNDRV_PCM_HW_PARAM_RATE, SND_SIGNAL_RATE);
  if (ioctl(fd, SNDRV_PCM_IOCTL_HW_PARAMS, &p) != 0) {
    snprintf(what, sizeof what, "HW_PARAMS on %s", path);
    fail(what);
  }
  say("%s: period %u frames, buffer %u frames", name,
      interval(&p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min,
      interval(&p, SNDRV_PCM_HW_PARAM_BUFFER_SIZE)->min);
  if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) != 0) {
    snprintf(what, sizeof what, "PREPARE on %s", path);
    fail(what);
  }
  return fd;
}

/* One WRITEI or READI of up to `frames`; an xrun is counted and the stream
 * prepared again. Returns the frames moved (0 after an xrun). */
static uint32_t transfer(int fd, unsigned long req, unsigned char* buf, uint32_t frames,
                         uint32_t* xruns, const char* what) {
  struct snd_xferi x;
  memset(&x, 0, sizeof x);
  x.buf = buf;
  x.frames = frames;
  while (ioctl(fd, req, &x) != 0) {
    if (errno == EINTR) continue;
    if (errno == EPIPE) {
      if (++*xruns > 100) {
        say("FAIL: %s: more than 100 xruns", what);
        exit(1);
      }
      if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) != 0) fail("PREPARE after an xrun");
      return 0;
    }
    fail(what);
  }
  if (x.result <= 0 || (uint64_t)x.result > frames) {
    say("FAIL: %s moved %ld of %" PRIu32 " frames", what, (long)x.result, frames);
    exit(1);
  }
  return (uint32_t)x.result;
}

int main(int argc, char** argv) {
  const uint32_t play = argc > 1 ? parse(argv[1], "PLAY_FRAMES") : SND_SIGNAL_FRAMES;
  const uint32_t record = argc > 2 ? parse(argv[2], "RECORD_FRAMES") : 48000u;
  const uint32_t wait_s = argc > 3 ? parse(argv[3], "WAIT_SECONDS") : 60u;
  static unsigned char buf[CHUNK * SND_SIGNAL_FRAME_BYTES];

  wait_for_node(PLAYBACK, wait_s);
  int fd = open_pcm(PLAYBACK, "playback");
  uint32_t done = 0;
  uint32_t xruns = 0;
  while (done < play) {
    const uint32_t n = play - done < CHUNK ? play - done : CHUNK;
    /* After an xrun the signal goes on from the first frame not written. */
    for (uint32_t k = 0; k < n; ++k) snd_signal_frame(done + k, buf + k * SND_SIGNAL_FRAME_BYTES);
    uint32_t off = 0;
    while (off < n) {
      off += transfer(fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, buf + off * SND_SIGNAL_FRAME_BYTES,
                      n - off, &xruns, "WRITEI_FRAMES on " PLAYBACK);
    }
    done += n;
  }
  while (ioctl(fd, SNDRV_PCM_IOCTL_DRAIN) != 0) {
    if (errno == EINTR) continue;
    if (errno == EPIPE) {
      ++xruns;
      break;
    }
    fail("DRAIN on " PLAYBACK);
  }
  if (close(fd) != 0) fail("close " PLAYBACK);
  say("played %" PRIu32 " frames, xruns %" PRIu32, done, xruns);

  wait_for_node(CAPTURE, wait_s);
  fd = open_pcm(CAPTURE, "capture");
  uint64_t digest = SND_FNV1A64_INIT;
  done = 0;
  xruns = 0;
  while (done < record) {
    const uint32_t n = record - done < CHUNK ? record - done : CHUNK;
    const uint32_t got =
        transfer(fd, SNDRV_PCM_IOCTL_READI_FRAMES, buf, n, &xruns, "READI_FRAMES on " CAPTURE);
    digest = snd_fnv1a64(digest, buf, (uint64_t)got * SND_SIGNAL_FRAME_BYTES);
    done += got;
  }
  if (ioctl(fd, SNDRV_PCM_IOCTL_DROP) != 0) fail("DROP on " CAPTURE);
  if (close(fd) != 0) fail("close " CAPTURE);
  say("recorded %" PRIu32 " frames, xruns %" PRIu32 ", fnv1a64 %016" PRIx64, done, xruns,
      digest);
  return 0;
}
