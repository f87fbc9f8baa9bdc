// A private simulator instance with a frontend (domain 1) and a backend
// (domain 0) attached, made once per fuzzing process and removed at its end.
#pragma once

#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "shbuf/grant/sim.h"

struct FuzzSimDomains {
  static constexpr shbuf::DomId kFrontend = 1;
  std::string path;
  std::unique_ptr<shbuf::SimProvider> frontend;
  std::unique_ptr<shbuf::SimProvider> backend;

  explicit FuzzSimDomains(const std::string& name) {
    path = "/dev/shm/shbuf-fuzz-" + name + "-" + std::to_string(::getpid());
    std::filesystem::remove_all(path);
    shbuf::SimOptions o;
    o.path = path;
    o.max_grant_frames = 64;
    o.domid = kFrontend;
    auto f = shbuf::SimProvider::open(o);
    o.domid = 0;
    auto b = shbuf::SimProvider::open(o);
    if (!f.ok() || !b.ok()) std::abort();
    frontend = std::move(f).value();
    backend = std::move(b).value();
  }
  ~FuzzSimDomains() {
    frontend.reset();
    backend.reset();
    (void)shbuf::SimProvider::reset(path);
    std::filesystem::remove_all(path);
  }
  FuzzSimDomains(const FuzzSimDomains&) = delete;
  FuzzSimDomains& operator=(const FuzzSimDomains&) = delete;
};
