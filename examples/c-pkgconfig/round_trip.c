/* Both ends of a shared buffer in one C program, over the grant table
 * simulator: domain 1 shares 1024 pages through a page directory in
 * backend-allocated mode, domain 0 attaches (granting the pages and writing
 * their grefs into the directory), domain 1 maps them, and each reads what the
 * other wrote.
 *   cc -std=c99 round_trip.c $(pkg-config --cflags --libs shbuf)
 * Usage: round_trip SIM_DIR */
#include <shbuf.h>

#include <stdio.h>
#include <string.h>

static int fail(const char* what, int rc) {
  fprintf(stderr, "round_trip: %s: %s (%d)\n", what, shbuf_last_error(), rc);
  return 1;
}

int main(int argc, char** argv) {
  struct shbuf_provider_options options;
  struct shbuf_frontend_config fc;
  struct shbuf_backend_config bc;
  shbuf_provider *fe = NULL, *be = NULL;
  shbuf_frontend* shared = NULL;
  shbuf_backend* attached = NULL;
  int rc, seen, answered;

  if (argc != 2) {
    fprintf(stderr, "usage: round_trip SIM_DIR\n");
    return 2;
  }
  memset(&options, 0, sizeof options);
  options.size = sizeof options;
  options.sim_path = argv[1];
  options.domid = 1;
  if ((rc = shbuf_provider_open(&options, &fe)) != 0) return fail("opening domain 1", rc);
  options.domid = 0;
  if ((rc = shbuf_provider_open(&options, &be)) != 0) return fail("opening domain 0", rc);

  memset(&fc, 0, sizeof fc);
  fc.size = sizeof fc;
  fc.backend = 0;
  fc.pages = 1024;
  fc.mode = SHBUF_BACKEND_ALLOC;
  if ((rc = shbuf_frontend_create(fe, &fc, &shared)) != 0) return fail("creating", rc);

  memset(&bc, 0, sizeof bc);
  bc.size = sizeof bc;
  bc.frontend = 1;
  bc.directory_gref = shbuf_frontend_directory_gref(shared);
  bc.pages = 1024;
  bc.mode = SHBUF_BACKEND_ALLOC;
  if ((rc = shbuf_backend_attach(be, &bc, &attached)) != 0) return fail("attaching", rc);
  if ((rc = shbuf_frontend_map(shared)) != 0) return fail("mapping", rc);

  memcpy(shbuf_backend_data(attached), "hello from domain 0", 20);
  seen = memcmp(shbuf_frontend_data(shared), "hello from domain 0", 20) == 0;
  memcpy((char*)shbuf_frontend_data(shared) + 4096 * 1023, "hello from domain 1", 20);
  answered = memcmp((char*)shbuf_backend_data(attached) + 4096 * 1023, "hello from domain 1",
                    20) == 0;

  if ((rc = shbuf_frontend_unmap(shared)) != 0) return fail("unmapping", rc);
  if ((rc = shbuf_backend_detach(attached)) != 0) return fail("detaching", rc);
  if ((rc = shbuf_frontend_free(shared)) != 0) return fail("freeing", rc);
  shbuf_provider_close(be);
  shbuf_provider_close(fe);
  printf("C round trip over 1024 pages, backend-allocated (shbuf %s): %s\n", shbuf_version(),
         seen && answered ? "ok" : "FAILED");
  return seen && answered ? 0 : 1;
}
