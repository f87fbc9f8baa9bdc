/* The DRM client the domU runs against xen-drm-front: for every connector it
 * creates two dumb buffers in each of the two pixel formats displ_pattern.h
 * names for it, draws the expected picture of each frame, sets the mode with
 * frame 0 and page-flips frames 1..N-1, waiting for each flip to complete.
 * Frame DISPL_PATTERN_SWITCH is not flipped but shown by setting the same
 * mode again with a framebuffer of the other format (xen-drm-front sends
 * that as a PG_FLIP alone). It then keeps flipping (frames N, N+1, ...) until
 * the domain is destroyed, so that happens mid-run.
 * Only kernel UAPI ioctls; built static.
 * Usage: drm_client FRAMES */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <drm.h>
#include <drm_mode.h>

#include "displ_pattern.h"

#define MAX_CONN 8

/* Two framebuffers of one pixel format. */
struct fbset {
  enum displ_format format;
  uint32_t pitch;
  uint32_t fb[2];
  unsigned char* map[2];
};

/* set[0] shows the frames before DISPL_PATTERN_SWITCH, set[1] the others. */
struct output {
  uint32_t conn_id, crtc_id, w, h;
  struct drm_mode_modeinfo mode;
  struct fbset set[2];
  int pending;
};

/* Every failure ends the client with a line the test can find. */
static void die(const char* what) {
  printf("DRMCLIENT: FAIL: %s: %s\n", what, strerror(errno));
  fflush(stdout);
  exit(1);
}

static void xioctl(int fd, unsigned long req, void* arg, const char* what) {
  while (ioctl(fd, req, arg) != 0) {
    if (errno != EINTR) die(what);
  }
}

static void draw(struct output* o, const struct fbset* s, unsigned c, unsigned k, int buf) {
  const unsigned bytes = displ_format_bpp(s->format) / 8;
  for (unsigned y = 0; y < o->h; ++y) {
    unsigned char* row = s->map[buf] + (size_t)y * s->pitch;
    for (unsigned x = 0; x < o->w; ++x) {
      displ_pattern_store(s->format, row + (size_t)x * bytes,
                          displ_pattern_pixel(c, k, x, y, o->w, o->h));
    }
  }
}

/* Finds each connected connector, its mode and a CRTC its encoder can drive.
 * Returns -1 if a connector the card lists cannot be looked up yet: the card
 * node appears before its connectors are registered (GETCONNECTOR then fails
 * with ENOENT), so the caller asks again. */
static int find_outputs(int fd, struct output* out) {
  struct drm_mode_card_res res;
  memset(&res, 0, sizeof res);
  xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res, "GETRESOURCES");
  uint32_t conns[MAX_CONN], crtcs[MAX_CONN], encs[MAX_CONN], fbs[MAX_CONN];
  if (res.count_connectors > MAX_CONN || res.count_crtcs > MAX_CONN ||
      res.count_encoders > MAX_CONN || res.count_fbs > MAX_CONN) {
    errno = E2BIG;
    die("too many DRM objects");
  }
  res.connector_id_ptr = (uintptr_t)conns;
  res.crtc_id_ptr = (uintptr_t)crtcs;
  res.encoder_id_ptr = (uintptr_t)encs;
  res.fb_id_ptr = (uintptr_t)fbs;
  xioctl(fd, DRM_IOCTL_MODE_GETRESOURCES, &res, "GETRESOURCES");
  int n = 0;
  uint32_t used = 0;
  for (uint32_t i = 0; i < res.count_connectors; ++i) {
    struct drm_mode_get_connector gc;
    struct drm_mode_modeinfo modes[16];
    uint32_t enc_ids[8];
    memset(&gc, 0, sizeof gc);
    gc.connector_id = conns[i];
    while (ioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &gc) != 0) {
      if (errno == ENOENT) return -1;
      if (errno != EINTR) die("GETCONNECTOR");
    }
    if (gc.count_modes == 0 || gc.count_modes > 16 || gc.count_encoders == 0 ||
        gc.count_encoders > 8) {
      continue;
    }
    gc.modes_ptr = (uintptr_t)modes;
    gc.encoders_ptr = (uintptr_t)enc_ids;
    gc.count_props = 0;
    xioctl(fd, DRM_IOCTL_MODE_GETCONNECTOR, &gc, "GETCONNECTOR");
    if (gc.connection != 1) continue;
    struct drm_mode_get_encoder ge;
    memset(&ge, 0, sizeof ge);
    ge.encoder_id = enc_ids[0];
    xioctl(fd, DRM_IOCTL_MODE_GETENCODER, &ge, "GETENCODER");
    uint32_t crtc = 0;
    for (uint32_t j = 0; j < res.count_crtcs; ++j) {
      if ((ge.possible_crtcs & (1u << j)) && !(used & (1u << j))) {
        crtc = crtcs[j];
        used |= 1u << j;
        break;
      }
    }
    if (crtc == 0) continue;
    out[n].conn_id = conns[i];
    out[n].crtc_id = crtc;
    out[n].mode = modes[0];
    out[n].w = modes[0].hdisplay;
    out[n].h = modes[0].vdisplay;
    ++n;
  }
  return n;
}

/* Two dumb buffers of the set's format, each a framebuffer of that format. */
static void create_buffers(int fd, struct output* o, struct fbset* s) {
  for (int b = 0; b < 2; ++b) {
    struct drm_mode_create_dumb cd;
    memset(&cd, 0, sizeof cd);
    cd.width = o->w;
    cd.height = o->h;
    cd.bpp = displ_format_bpp(s->format);
    xioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, &cd, "CREATE_DUMB");
    s->pitch = cd.pitch;
    struct drm_mode_fb_cmd2 fb;
    memset(&fb, 0, sizeof fb);
    fb.width = o->w;
    fb.height = o->h;
    fb.pixel_format = displ_format_fourcc(s->format);
    fb.handles[0] = cd.handle;
    fb.pitches[0] = cd.pitch;
    xioctl(fd, DRM_IOCTL_MODE_ADDFB2, &fb, "ADDFB2");
    s->fb[b] = fb.fb_id;
    struct drm_mode_map_dumb md;
    memset(&md, 0, sizeof md);
    md.handle = cd.handle;
    xioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, &md, "MAP_DUMB");
    void* p = mmap(NULL, cd.size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, (off_t)md.offset);
    if (p == MAP_FAILED) die("mmap of a dumb buffer");
    s->map[b] = p;
  }
}

/* Sets the connector's mode with framebuffer fb_id. */
static void set_mode(int fd, struct output* o, uint32_t fb_id) {
  struct drm_mode_crtc sc;
  memset(&sc, 0, sizeof sc);
  sc.crtc_id = o->crtc_id;
  sc.fb_id = fb_id;
  sc.set_connectors_ptr = (uintptr_t)&o->conn_id;
  sc.count_connectors = 1;
  sc.mode = o->mode;
  sc.mode_valid = 1;
  xioctl(fd, DRM_IOCTL_MODE_SETCRTC, &sc, "SETCRTC");
}

/* Waits until every flip sent has completed (its event read). */
static void wait_flips(int fd, struct output* out, int n) {
  for (;;) {
    int pending = 0;
    for (int i = 0; i < n; ++i) pending += out[i].pending;
    if (pending == 0) return;
    struct pollfd p = {fd, POLLIN, 0};
    int r = poll(&p, 1, 10000);
    if (r == 0) {
      errno = ETIMEDOUT;
      die("waiting for a flip event");
    }
    if (r < 0) {
      if (errno == EINTR) continue;
      die("poll");
    }
    char buf[1024];
    ssize_t len = read(fd, buf, sizeof buf);
    if (len < 0) die("read of DRM events");
    for (ssize_t at = 0; at + (ssize_t)sizeof(struct drm_event) <= len;) {
      struct drm_event* e = (struct drm_event*)(buf + at);
      if (e->type == DRM_EVENT_FLIP_COMPLETE) {
        struct drm_event_vblank* v = (struct drm_event_vblank*)e;
        if (v->user_data < (uint64_t)n) out[v->user_data].pending = 0;
      }
      at += e->length;
      if (e->length == 0) break;
    }
  }
}

int main(int argc, char** argv) {
  const unsigned frames = argc > 1 ? (unsigned)atoi(argv[1]) : 4;
  int fd = -1;
  for (int i = 0; i < 600 && fd < 0; ++i) {
    fd = open("/dev/dri/card0", O_RDWR | O_CLOEXEC);
    if (fd < 0) usleep(100000);
  }
  if (fd < 0) die("open /dev/dri/card0");
  struct output out[MAX_CONN];
  memset(out, 0, sizeof out);
  /* Up to 10 s for the card's connectors to be registered and connected. */
  int n = find_outputs(fd, out);
  for (int i = 0; i < 100 && n <= 0; ++i) {
    usleep(100000);
    memset(out, 0, sizeof out);
    n = find_outputs(fd, out);
  }
  if (n < 0) {
    errno = ENOENT;
    die("GETCONNECTOR: a listed connector is still not registered after 10 s");
  }
  if (n == 0) {
    errno = ENODEV;
    die("no connected connector");
  }
  for (int i = 0; i < n; ++i) {
    for (int s = 0; s < 2; ++s) {
      out[i].set[s].format = displ_pattern_format((unsigned)i, s == 0 ? 0 : DISPL_PATTERN_SWITCH);
      create_buffers(fd, &out[i], &out[i].set[s]);
    }
    printf("DRMCLIENT: connector %d: %ux%u, %s pitch %u, from frame %u %s pitch %u\n", i,
           out[i].w, out[i].h, displ_format_name(out[i].set[0].format), out[i].set[0].pitch,
           DISPL_PATTERN_SWITCH, displ_format_name(out[i].set[1].format), out[i].set[1].pitch);
  }
  for (int i = 0; i < n; ++i) {
    draw(&out[i], &out[i].set[0], (unsigned)i, 0, 0);
    set_mode(fd, &out[i], out[i].set[0].fb[0]);
  }
  printf("DRMCLIENT: frame 0 set on %d connector(s)\n", n);
  fflush(stdout);
  for (unsigned k = 1;; ++k) {
    for (int i = 0; i < n; ++i) {
      struct fbset* s = &out[i].set[k >= DISPL_PATTERN_SWITCH];
      draw(&out[i], s, (unsigned)i, k, (int)(k % 2));
      if (k == DISPL_PATTERN_SWITCH) {
        /* The same mode again, now with a framebuffer of the other format:
         * returns once the backend reported the frame shown. */
        set_mode(fd, &out[i], s->fb[k % 2]);
        printf("DRMCLIENT: connector %d: frame %u: mode set again, %s -> %s\n", i, k,
               displ_format_name(out[i].set[0].format), displ_format_name(s->format));
        fflush(stdout);
        continue;
      }
      struct drm_mode_crtc_page_flip pf;
      memset(&pf, 0, sizeof pf);
      pf.crtc_id = out[i].crtc_id;
      pf.fb_id = s->fb[k % 2];
      pf.flags = DRM_MODE_PAGE_FLIP_EVENT;
      pf.user_data = (uint64_t)i;
      xioctl(fd, DRM_IOCTL_MODE_PAGE_FLIP, &pf, "PAGE_FLIP");
      out[i].pending = 1;
    }
    wait_flips(fd, out, n);
    if (k + 1 == frames) {
      printf("DRMCLIENT: DONE %u frames on %d connector(s)\n", frames, n);
      fflush(stdout);
    }
    if (k + 1 >= frames) sleep(1);
  }
}
