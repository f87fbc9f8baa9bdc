// Both ends of a shared buffer in one program, over the grant table
// simulator: domain 1 shares 1024 pages through a page directory, domain 0
// attaches them from the one directory gref, and each reads what the other
// wrote. Usage: round_trip SIM_DIR
#include <shbuf/core/backend_buffer.h>
#include <shbuf/core/frontend_buffer.h>
#include <shbuf/grant/sim.h>

#include <cstdio>
#include <cstring>

namespace {

int fail(const char* what, const shbuf::Error& error) {
  std::fprintf(stderr, "round_trip: %s: %s\n", what, error.describe().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: round_trip SIM_DIR\n");
    return 2;
  }
  shbuf::SimOptions fe_options;
  fe_options.path = argv[1];
  fe_options.domid = 1;
  auto frontend = shbuf::SimProvider::open(fe_options);
  if (!frontend.ok()) return fail("opening domain 1", frontend.error());
  shbuf::SimOptions be_options = fe_options;
  be_options.domid = 0;
  auto backend = shbuf::SimProvider::open(be_options);
  if (!backend.ok()) return fail("opening domain 0", backend.error());

  shbuf::FrontendBufferConfig config;
  config.backend = 0;
  config.pages = 1024;
  auto shared = shbuf::FrontendBuffer::create(**frontend, config);
  if (!shared.ok()) return fail("creating the buffer", shared.error());

  shbuf::BackendBufferConfig attach;
  attach.frontend = 1;
  attach.directory_gref = shared->directory_gref();
  attach.pages = 1024;
  auto attached = shbuf::BackendBuffer::attach(**backend, attach);
  if (!attached.ok()) return fail("attaching the buffer", attached.error());

  std::memcpy(shared->memory().data(), "hello from domain 1", 20);
  const bool seen = std::memcmp(attached->memory().data(), "hello from domain 1", 20) == 0;
  std::memcpy(attached->memory().last(4096).data(), "hello from domain 0", 20);
  const bool answered =
      std::memcmp(shared->memory().last(4096).data(), "hello from domain 0", 20) == 0;

  if (auto s = attached->detach(); !s.ok()) return fail("detaching", s.error());
  if (auto s = shared->free(); !s.ok()) return fail("freeing", s.error());
  std::printf("C++ round trip over %zu pages (directory gref %u): %s\n", attach.pages,
              attach.directory_gref, seen && answered ? "ok" : "FAILED");
  return seen && answered ? 0 : 1;
}
