/* Tests of the C API (shbuf.h), in C99: both allocation modes end to end over
 * a private simulator instance, with a frontend (domain 1) and a backend
 * (domain 0) provider in this process, and every documented refusal with its
 * code and message. */
#define _POSIX_C_SOURCE 200809L

#include "shbuf.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int g_passed;
static int g_failed;

#define CHECK(expr)                                                            \
  do {                                                                         \
    if (expr) {                                                                \
      ++g_passed;                                                              \
    } else {                                                                   \
      ++g_failed;                                                              \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
    }                                                                          \
  } while (0)

/* What the logger saw last. */
static char g_logged[1024];
static int g_log_level = -1;

static void test_logger(void* user, int level, const char* message) {
  ++*(int*)user;
  g_log_level = level;
  snprintf(g_logged, sizeof g_logged, "%s", message);
}

/* A failing call: its code, its message on the handle and the thread, that it
 * names the errno and holds `word`, and that the logger got it. */
static void check_failure(const char* file, int line, const char* call, int rc, int code,
                          const char* code_name, const char* handle_message, const char* word) {
  char tag[64];
  const char* thread_message = shbuf_last_error();
  int ok = 1;
  snprintf(tag, sizeof tag, "(%s)", code_name);
  if (rc != -code) {
    fprintf(stderr, "%s:%d: %s returned %d, expected -%s (%d)\n", file, line, call, rc, code_name,
            -code);
    ok = 0;
  }
  if (handle_message != NULL && strcmp(handle_message, thread_message) != 0) {
    fprintf(stderr, "%s:%d: %s: handle message \"%s\" differs from the thread's \"%s\"\n", file,
            line, call, handle_message, thread_message);
    ok = 0;
  }
  if (strstr(thread_message, tag) == NULL || strstr(thread_message, word) == NULL) {
    fprintf(stderr, "%s:%d: %s: message \"%s\" lacks \"%s\" or \"%s\"\n", file, line, call,
            thread_message, word, tag);
    ok = 0;
  }
  if (strcmp(g_logged, thread_message) != 0 || g_log_level != SHBUF_LOG_ERROR) {
    fprintf(stderr, "%s:%d: %s: the logger got \"%s\" (level %d), not \"%s\"\n", file, line, call,
            g_logged, g_log_level, thread_message);
    ok = 0;
  }
  if (ok) {
    ++g_passed;
  } else {
    ++g_failed;
  }
}

/* CHECK_FAIL(call, ECODE, handle message or NULL, word in the message) */
#define CHECK_FAIL(call, code, handle_message, word)                                        \
  do {                                                                                      \
    const int check_rc_ = (call);                                                           \
    check_failure(__FILE__, __LINE__, #call, check_rc_, code, #code, handle_message, word); \
  } while (0)

static char g_sim[256];

static struct shbuf_provider_options sim_options(uint32_t domid) {
  struct shbuf_provider_options o;
  memset(&o, 0, sizeof o);
  o.size = sizeof o;
  o.name = "sim";
  o.domid = domid;
  o.sim_path = g_sim;
  return o;
}

static shbuf_provider* open_dom(uint32_t domid, const char* faults) {
  struct shbuf_provider_options o = sim_options(domid);
  shbuf_provider* p = NULL;
  int rc;
  o.sim_faults = faults;
  rc = shbuf_provider_open(&o, &p);
  if (rc != 0) fprintf(stderr, "opening domain %u: %s\n", (unsigned)domid, shbuf_last_error());
  CHECK(rc == 0 && p != NULL);
  return p;
}

static struct shbuf_frontend_config fe_config(size_t pages, int mode) {
  struct shbuf_frontend_config c;
  memset(&c, 0, sizeof c);
  c.size = sizeof c;
  c.backend = 0;
  c.pages = pages;
  c.mode = mode;
  return c;
}

static struct shbuf_backend_config be_config(uint32_t gref, size_t pages, int mode) {
  struct shbuf_backend_config c;
  memset(&c, 0, sizeof c);
  c.size = sizeof c;
  c.frontend = 1;
  c.directory_gref = gref;
  c.pages = pages;
  c.mode = mode;
  return c;
}

static void fill(void* data, size_t size, uint32_t seed) {
  uint32_t* w = data;
  size_t i;
  for (i = 0; i < size / 4; ++i) w[i] = seed ^ (uint32_t)(i * 2654435761u);
}

static int holds(const void* data, size_t size, uint32_t seed) {
  const uint32_t* w = data;
  size_t i;
  for (i = 0; i < size / 4; ++i) {
    if (w[i] != (seed ^ (uint32_t)(i * 2654435761u))) return 0;
  }
  return 1;
}

static void check_usage(size_t want_grants, size_t want_mappings, int at_least) {
  size_t grants = 99, mappings = 99;
  int rc = shbuf_sim_usage(g_sim, &grants, &mappings);
  CHECK(rc == 0);
  if (at_least) {
    CHECK(grants >= want_grants);
    CHECK(mappings >= want_mappings);
  } else {
    CHECK(grants == want_grants);
    CHECK(mappings == want_mappings);
  }
  if (rc != 0 || (!at_least && (grants != want_grants || mappings != want_mappings))) {
    fprintf(stderr, "  sim usage: rc %d, %zu grants, %zu mappings\n", rc, grants, mappings);
  }
}

/* Both sides hold the same grefs. */
static void check_same_grefs(const shbuf_frontend* fe, const shbuf_backend* be, size_t pages) {
  uint32_t* a = calloc(pages, sizeof *a);
  uint32_t* b = calloc(pages, sizeof *b);
  CHECK(a != NULL && b != NULL);
  if (a != NULL && b != NULL) {
    CHECK(shbuf_frontend_grefs(fe, a, pages) == (int)pages);
    CHECK(shbuf_backend_grefs(be, b, pages) == (int)pages);
    CHECK(memcmp(a, b, pages * sizeof *a) == 0);
    CHECK(a[0] != 0 && a[pages - 1] != 0);
  }
  free(a);
  free(b);
}

/* Writes on each side and reads on the other. */
static void check_both_directions(shbuf_frontend* fe, shbuf_backend* be, size_t pages) {
  const size_t size = pages * SHBUF_PAGE_SIZE;
  CHECK(shbuf_frontend_size(fe) == size);
  CHECK(shbuf_backend_size(be) == size);
  CHECK(shbuf_frontend_data(fe) != NULL && shbuf_backend_data(be) != NULL);
  if (shbuf_frontend_data(fe) == NULL || shbuf_backend_data(be) == NULL) return;
  fill(shbuf_frontend_data(fe), size, 0xf00d0000u + (uint32_t)pages);
  CHECK(holds(shbuf_backend_data(be), size, 0xf00d0000u + (uint32_t)pages));
  fill(shbuf_backend_data(be), size, 0xbeef0000u + (uint32_t)pages);
  CHECK(holds(shbuf_frontend_data(fe), size, 0xbeef0000u + (uint32_t)pages));
}

static void test_version(void) {
  char built[32];
  snprintf(built, sizeof built, "%d.%d.%d", SHBUF_VERSION_MAJOR, SHBUF_VERSION_MINOR,
           SHBUF_VERSION_PATCH);
  CHECK(strcmp(shbuf_version(), SHBUF_VERSION_STRING) == 0);
  CHECK(strcmp(built, SHBUF_VERSION_STRING) == 0);
  CHECK(strcmp(shbuf_version(), SHBUF_PROJECT_VERSION) == 0);
}

static void test_open_refusals(void) {
  struct shbuf_provider_options o = sim_options(1);
  shbuf_provider* p = (shbuf_provider*)&o;
  struct {
    struct shbuf_provider_options known;
    unsigned char newer[16];
  } grown;

  CHECK_FAIL(shbuf_provider_open(&o, NULL), EINVAL, NULL, "shbuf_provider_open: out is NULL");

  o.name = "vmware";
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "unknown grant provider 'vmware'");
  CHECK(p == NULL);
  o.name = "sim\n";
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "'sim\\x0a'");

  o = sim_options(1);
  o.size = 4;
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "opts->size is 4");
  o.size = sizeof o + 1000000;
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "sizeof(struct shbuf_provider_options)");

  memset(&grown, 0, sizeof grown);
  grown.known = sim_options(1);
  grown.known.size = sizeof grown;
  grown.newer[3] = 1;
  CHECK_FAIL(shbuf_provider_open(&grown.known, &p), EINVAL, NULL, "does not know");
  grown.newer[3] = 0;
  CHECK(shbuf_provider_open(&grown.known, &p) == 0 && p != NULL);
  shbuf_provider_close(p);

  o = sim_options(70000);
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "opts->domid is 70000");
  o = sim_options(0x7ff0);
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "reserved");
  o = sim_options(1);
  o.max_grant_frames = 1u << 30;
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "max_grant_frames");
  o = sim_options(1);
  o.sim_faults = "share:x";
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "share:x");

  o = sim_options(1);
  o.name = "xen";
  CHECK_FAIL(shbuf_provider_open(&o, &p), EINVAL, NULL, "opts->sim_path is for the sim provider");
  o.sim_path = NULL;
  if (shbuf_provider_open(&o, &p) == 0) {
    CHECK(strcmp(shbuf_provider_name(p), "xen") == 0);
    shbuf_provider_close(p);
  } else {
    CHECK(p == NULL);
    CHECK(strstr(shbuf_last_error(), "shbuf_provider_open: ") == shbuf_last_error());
  }
}

static void test_frontend_alloc(shbuf_provider* fp, shbuf_provider* bp, size_t pages) {
  struct shbuf_frontend_config fc = fe_config(pages, SHBUF_FRONTEND_ALLOC);
  struct shbuf_backend_config bc;
  shbuf_frontend* fe = NULL;
  shbuf_backend* be = NULL;

  CHECK(shbuf_frontend_create(fp, &fc, &fe) == 0 && fe != NULL);
  if (fe == NULL) return;
  CHECK(shbuf_frontend_pages(fe) == pages);
  CHECK(shbuf_frontend_directory_gref(fe) != 0);
  CHECK(shbuf_frontend_data(fe) != NULL);
  CHECK(strcmp(shbuf_frontend_last_error(fe), "") == 0);

  bc = be_config(shbuf_frontend_directory_gref(fe), pages, SHBUF_FRONTEND_ALLOC);
  CHECK(shbuf_backend_attach(bp, &bc, &be) == 0 && be != NULL);
  if (be == NULL) {
    fprintf(stderr, "  attach: %s\n", shbuf_last_error());
    CHECK(shbuf_frontend_free(fe) == 0);
    return;
  }
  CHECK(shbuf_backend_pages(be) == pages);
  check_same_grefs(fe, be, pages);
  check_both_directions(fe, be, pages);
  check_usage(pages + 1, pages, 1);

  CHECK_FAIL(shbuf_frontend_map(fe), EINVAL, shbuf_frontend_last_error(fe),
             "shbuf_frontend_map: the frontend allocated this buffer");
  CHECK_FAIL(shbuf_frontend_unmap(fe), EINVAL, shbuf_frontend_last_error(fe),
             "shbuf_frontend_unmap: the buffer is not mapped");

  CHECK(shbuf_backend_detach(be) == 0);
  CHECK(shbuf_frontend_free(fe) == 0);
  check_usage(0, 0, 0);
}

static void test_backend_alloc(shbuf_provider* fp, shbuf_provider* bp, size_t pages) {
  struct shbuf_frontend_config fc = fe_config(pages, SHBUF_BACKEND_ALLOC);
  struct shbuf_backend_config bc;
  shbuf_frontend* fe = NULL;
  shbuf_backend* be = NULL;
  uint32_t gref = 0;

  CHECK(shbuf_frontend_create(fp, &fc, &fe) == 0 && fe != NULL);
  if (fe == NULL) return;
  CHECK(shbuf_frontend_data(fe) == NULL);
  CHECK(shbuf_frontend_size(fe) == 0);
  CHECK_FAIL(shbuf_frontend_grefs(fe, &gref, 1), EINVAL, shbuf_frontend_last_error(fe),
             "not mapped");
  CHECK_FAIL(shbuf_frontend_unmap(fe), EINVAL, shbuf_frontend_last_error(fe), "not mapped");

  bc = be_config(shbuf_frontend_directory_gref(fe), pages, SHBUF_BACKEND_ALLOC);
  CHECK(shbuf_backend_attach(bp, &bc, &be) == 0 && be != NULL);
  if (be == NULL) {
    fprintf(stderr, "  attach: %s\n", shbuf_last_error());
    CHECK(shbuf_frontend_free(fe) == 0);
    return;
  }
  CHECK(shbuf_backend_data(be) != NULL);

  CHECK(shbuf_frontend_map(fe) == 0);
  CHECK_FAIL(shbuf_frontend_map(fe), EALREADY, shbuf_frontend_last_error(fe),
             "shbuf_frontend_map: the buffer is already mapped");
  check_same_grefs(fe, be, pages);
  check_both_directions(fe, be, pages);
  check_usage(pages + 1, pages, 1);

  CHECK(shbuf_frontend_unmap(fe) == 0);
  CHECK(shbuf_frontend_data(fe) == NULL);
  CHECK_FAIL(shbuf_frontend_unmap(fe), EINVAL, shbuf_frontend_last_error(fe),
             "the buffer is not mapped");
  /* Mapping again sees what the backend wrote meanwhile. */
  fill(shbuf_backend_data(be), pages * SHBUF_PAGE_SIZE, 77);
  CHECK(shbuf_frontend_map(fe) == 0);
  CHECK(shbuf_frontend_data(fe) != NULL &&
        holds(shbuf_frontend_data(fe), pages * SHBUF_PAGE_SIZE, 77));

  if (pages == 1) {
    size_t pending = 0;
    /* Detaching while the frontend maps: EBUSY, the handle goes, the pages
     * wait in the backend's provider; free() unmaps them and they go. */
    CHECK_FAIL(shbuf_backend_detach(be), EBUSY, shbuf_provider_last_error(bp),
               "shbuf_backend_detach");
    CHECK(shbuf_provider_pending_pages(bp, &pending) == 0 && pending == pages);
    CHECK(shbuf_frontend_free(fe) == 0);
    CHECK(shbuf_provider_pending_pages(bp, &pending) == 0 && pending == 0);
  } else {
    CHECK(shbuf_frontend_unmap(fe) == 0);
    CHECK(shbuf_backend_detach(be) == 0);
    CHECK(shbuf_frontend_free(fe) == 0);
  }
  check_usage(0, 0, 0);
}

static void test_refusals(shbuf_provider* fp, shbuf_provider* bp) {
  struct shbuf_frontend_config fc = fe_config(1, SHBUF_FRONTEND_ALLOC);
  struct shbuf_backend_config bc = be_config(12345, 1, SHBUF_FRONTEND_ALLOC);
  shbuf_frontend* fe = (shbuf_frontend*)&fc;
  shbuf_backend* be = (shbuf_backend*)&bc;
  uint32_t grefs[4];
  size_t n = 0;

  /* NULL handles and out-pointers. */
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, NULL), EINVAL, shbuf_provider_last_error(fp),
             "shbuf_frontend_create: out is NULL");
  CHECK_FAIL(shbuf_frontend_create(NULL, &fc, &fe), EINVAL, NULL,
             "shbuf_frontend_create: provider is NULL");
  CHECK(fe == NULL);
  CHECK_FAIL(shbuf_frontend_create(fp, NULL, &fe), EINVAL, shbuf_provider_last_error(fp),
             "config is NULL");
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, NULL), EINVAL, shbuf_provider_last_error(bp),
             "shbuf_backend_attach: out is NULL");
  CHECK_FAIL(shbuf_backend_attach(NULL, &bc, &be), EINVAL, NULL, "provider is NULL");
  CHECK(be == NULL);
  CHECK_FAIL(shbuf_frontend_map(NULL), EINVAL, NULL, "shbuf_frontend_map: frontend is NULL");
  CHECK_FAIL(shbuf_frontend_unmap(NULL), EINVAL, NULL, "frontend is NULL");
  CHECK_FAIL(shbuf_frontend_grefs(NULL, grefs, 4), EINVAL, NULL, "frontend is NULL");
  CHECK_FAIL(shbuf_backend_grefs(NULL, grefs, 4), EINVAL, NULL, "backend is NULL");
  CHECK_FAIL(shbuf_provider_domid(NULL), EINVAL, NULL, "shbuf_provider_domid: provider is NULL");
  CHECK_FAIL(shbuf_provider_pending_pages(fp, NULL), EINVAL, shbuf_provider_last_error(fp),
             "pages is NULL");
  CHECK_FAIL(shbuf_sim_usage(g_sim, NULL, &n), EINVAL, NULL, "grants is NULL");
  CHECK(shbuf_frontend_data(NULL) == NULL);
  CHECK(strstr(shbuf_last_error(), "shbuf_frontend_data: frontend is NULL") != NULL);
  CHECK(shbuf_frontend_size(NULL) == 0 && shbuf_frontend_pages(NULL) == 0);
  CHECK(shbuf_frontend_directory_gref(NULL) == 0);
  CHECK(shbuf_backend_data(NULL) == NULL && shbuf_backend_size(NULL) == 0);
  CHECK(shbuf_backend_pages(NULL) == 0);
  CHECK(shbuf_provider_name(NULL) == NULL);
  CHECK(strcmp(shbuf_provider_last_error(NULL), "") == 0);
  CHECK(strcmp(shbuf_frontend_last_error(NULL), "") == 0);
  CHECK(strcmp(shbuf_backend_last_error(NULL), "") == 0);
  CHECK(shbuf_frontend_free(NULL) == 0 && shbuf_backend_detach(NULL) == 0);
  shbuf_provider_close(NULL);

  /* Bad configurations. */
  fc.pages = 0;
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), EINVAL, shbuf_provider_last_error(fp),
             "a buffer of 0 pages is invalid");
  fc = fe_config(5, SHBUF_FRONTEND_ALLOC);
  fc.max_pages = 4;
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), E2BIG, shbuf_provider_last_error(fp),
             "5 pages is above the limit of 4 pages");
  fc = fe_config(1, 7);
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), EINVAL, shbuf_provider_last_error(fp),
             "config->mode is 7");
  fc = fe_config(1, SHBUF_FRONTEND_ALLOC);
  fc.buffer_access = 2;
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), EINVAL, shbuf_provider_last_error(fp),
             "config->buffer_access is 2");
  fc = fe_config(1, SHBUF_FRONTEND_ALLOC);
  fc.backend = 65536;
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), EINVAL, shbuf_provider_last_error(fp),
             "config->backend is 65536, not a domain id");
  fc = fe_config(1, SHBUF_FRONTEND_ALLOC);
  fc.size = offsetof(struct shbuf_frontend_config, buffer_access);
  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), EINVAL, shbuf_provider_last_error(fp),
             "config->size is");
  bc.size = 0;
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EINVAL, shbuf_provider_last_error(bp),
             "sizeof(struct shbuf_backend_config)");
  bc = be_config(12345, 1, SHBUF_FRONTEND_ALLOC);
  bc.directory_read = 3;
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EINVAL, shbuf_provider_last_error(bp),
             "config->directory_read is 3");
  bc = be_config(12345, 0, SHBUF_FRONTEND_ALLOC);
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EINVAL, shbuf_provider_last_error(bp),
             "a buffer of 0 pages is invalid");
  bc = be_config(12345, 10, SHBUF_FRONTEND_ALLOC);
  bc.max_pages = 9;
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), E2BIG, shbuf_provider_last_error(bp),
             "10 pages is above the limit of 9 pages");

  /* A directory gref that was never granted, and gref 0. */
  bc = be_config(12345, 1, SHBUF_FRONTEND_ALLOC);
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EINVAL, shbuf_provider_last_error(bp),
             "gref 12345 of domain 1 is not granted");
  CHECK(be == NULL);
  bc = be_config(0, 1, SHBUF_FRONTEND_ALLOC);
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EINVAL, shbuf_provider_last_error(bp),
             "directory gref 0");
  check_usage(0, 0, 0);

  /* gref arrays of the wrong size. */
  fc = fe_config(3, SHBUF_FRONTEND_ALLOC);
  CHECK(shbuf_frontend_create(fp, &fc, &fe) == 0);
  CHECK_FAIL(shbuf_frontend_grefs(fe, grefs, 2), ERANGE, shbuf_frontend_last_error(fe),
             "out has room for 2 grefs but the buffer has 3");
  CHECK_FAIL(shbuf_frontend_grefs(fe, NULL, 3), EINVAL, shbuf_frontend_last_error(fe),
             "out is NULL");
  CHECK(shbuf_frontend_grefs(fe, grefs, 4) == 3);
  /* The handle's message is its own: the provider's stays as it was. */
  CHECK(strstr(shbuf_provider_last_error(fp), "out is NULL") == NULL);
  bc = be_config(shbuf_frontend_directory_gref(fe), 3, SHBUF_FRONTEND_ALLOC);
  CHECK(shbuf_backend_attach(bp, &bc, &be) == 0);
  CHECK_FAIL(shbuf_backend_grefs(be, grefs, 1), ERANGE, shbuf_backend_last_error(be),
             "room for 1 grefs");
  CHECK_FAIL(shbuf_backend_grefs(be, NULL, 3), EINVAL, shbuf_backend_last_error(be),
             "shbuf_backend_grefs: out is NULL");

  /* Freeing while the backend maps: EBUSY, the handle goes, the pages wait
   * in the provider until the backend unmaps. */
  CHECK_FAIL(shbuf_frontend_free(fe), EBUSY, shbuf_provider_last_error(fp), "shbuf_frontend_free");
  CHECK(shbuf_provider_pending_pages(fp, &n) == 0 && n == 3);
  CHECK(shbuf_backend_detach(be) == 0);
  CHECK(shbuf_provider_pending_pages(fp, &n) == 0 && n == 0);
  check_usage(0, 0, 0);
}

/* The provider's faults reach C with their codes. */
static void test_provider_faults(void) {
  shbuf_provider* fp = open_dom(1, "share:1:ENOSPC");
  shbuf_provider* bp = open_dom(0, "map:1:EIO");
  struct shbuf_frontend_config fc = fe_config(2, SHBUF_FRONTEND_ALLOC);
  struct shbuf_backend_config bc;
  shbuf_frontend* fe = NULL;
  shbuf_backend* be = NULL;
  if (fp == NULL || bp == NULL) goto out;

  CHECK_FAIL(shbuf_frontend_create(fp, &fc, &fe), ENOSPC, shbuf_provider_last_error(fp),
             "sharing 1 directory pages");
  CHECK(fe == NULL);
  CHECK(shbuf_frontend_create(fp, &fc, &fe) == 0);
  bc = be_config(shbuf_frontend_directory_gref(fe), 2, SHBUF_FRONTEND_ALLOC);
  bc.directory_read = SHBUF_DIRECTORY_READ_COPY;
  CHECK_FAIL(shbuf_backend_attach(bp, &bc, &be), EIO, shbuf_provider_last_error(bp),
             "mapping the frontend's 2 pages");
  CHECK(be == NULL);
  CHECK(shbuf_backend_attach(bp, &bc, &be) == 0);
  CHECK(shbuf_backend_detach(be) == 0);
  CHECK(shbuf_frontend_free(fe) == 0);
out:
  shbuf_provider_close(fp);
  shbuf_provider_close(bp);
  check_usage(0, 0, 0);
}

/* Closing a provider while a buffer made through it lives. */
static void test_close_before_free(void) {
  shbuf_provider* p = open_dom(1, NULL);
  struct shbuf_frontend_config fc = fe_config(4, SHBUF_FRONTEND_ALLOC);
  shbuf_frontend* fe = NULL;
  if (p == NULL) return;
  CHECK(shbuf_provider_domid(p) == 1);
  CHECK(strcmp(shbuf_provider_name(p), "sim") == 0);
  CHECK(shbuf_frontend_create(p, &fc, &fe) == 0);
  shbuf_provider_close(p);
  check_usage(5, 0, 0);
  CHECK(shbuf_frontend_data(fe) != NULL);
  if (shbuf_frontend_data(fe) != NULL) fill(shbuf_frontend_data(fe), shbuf_frontend_size(fe), 1);
  CHECK(shbuf_frontend_free(fe) == 0);
  check_usage(0, 0, 0);
}

static void* fail_in_thread(void* arg) {
  (void)arg;
  (void)shbuf_frontend_map(NULL);
  return NULL;
}

/* shbuf_last_error() is per thread. */
static void test_thread_errors(void) {
  pthread_t t;
  (void)shbuf_frontend_unmap(NULL);
  CHECK(strstr(shbuf_last_error(), "shbuf_frontend_unmap") != NULL);
  CHECK(pthread_create(&t, NULL, fail_in_thread, NULL) == 0);
  CHECK(pthread_join(t, NULL) == 0);
  CHECK(strstr(shbuf_last_error(), "shbuf_frontend_unmap") != NULL);
  CHECK(strstr(g_logged, "shbuf_frontend_map: frontend is NULL") != NULL);
}

int main(void) {
  shbuf_provider* fp;
  shbuf_provider* bp;
  int log_calls = 0;
  size_t sizes[] = {1, 1023, 1025};
  size_t i;

  snprintf(g_sim, sizeof g_sim, "/dev/shm/shbuf-test-c-api-%ld", (long)getpid());
  CHECK(strcmp(shbuf_last_error(), "") == 0);
  shbuf_set_logger(test_logger, &log_calls);

  test_version();
  test_open_refusals();

  fp = open_dom(1, NULL);
  bp = open_dom(0, NULL);
  if (fp != NULL && bp != NULL) {
    CHECK(shbuf_provider_domid(fp) == 1 && shbuf_provider_domid(bp) == 0);
    for (i = 0; i < sizeof sizes / sizeof sizes[0]; ++i) {
      test_frontend_alloc(fp, bp, sizes[i]);
      test_backend_alloc(fp, bp, sizes[i]);
    }
    test_refusals(fp, bp);
  }
  shbuf_provider_close(fp);
  shbuf_provider_close(bp);
  test_provider_faults();
  test_close_before_free();
  test_thread_errors();
  check_usage(0, 0, 0);
  CHECK(log_calls > 0);

  shbuf_set_logger(NULL, NULL);
  log_calls = 0;
  (void)shbuf_frontend_map(NULL);
  CHECK(log_calls == 0);

  CHECK(shbuf_sim_reset(g_sim) == 0);
  CHECK(rmdir(g_sim) == 0);
  {
    size_t grants = 0, mappings = 0;
    shbuf_set_logger(test_logger, &log_calls);
    CHECK_FAIL(shbuf_sim_usage(g_sim, &grants, &mappings), ENOENT, NULL,
               "no simulator instance at /dev/shm/shbuf-test-c-api-");
    shbuf_set_logger(NULL, NULL);
  }

  printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
