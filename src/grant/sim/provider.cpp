// SimProvider's life and upkeep: opening and attaching, detaching, fault
// injection, sweeps, status, and resetting an instance. The grant table
// operations are in table.cpp.
#include "grant/sim/provider.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "grant/sim/status.h"
#include "grant/sim/text.h"

namespace shbuf {

using namespace sim;

namespace {

std::string resolve(const std::string& path) {
  return path.empty() ? sim_default_path() : path;
}

// EINVAL for a reserved domid, saying what was to be done with it.
Status check_domid(DomId domid, std::string_view action) {
  if (domid < kDomIdFirstReserved) return {};
  return make_error(EINVAL, std::string(action) + " domid " + std::to_string(domid) +
                                ": ids from " + std::to_string(kDomIdFirstReserved) +
                                " up are reserved by Xen");
}

}  // namespace

std::string sim_default_path() {
  const char* env = std::getenv("SHBUF_SIM");
  if (env != nullptr && *env != '\0') return env;
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  if (xdg != nullptr && *xdg != '\0') return std::string(xdg) + "/shbuf-sim";
  return "/dev/shm/shbuf-sim-" + std::to_string(getuid());
}

Status SimProvider::Impl::owned() const {
  if (self_pid() == pid) return {};
  return make_error(EPERM, "this sim provider was opened by process " + std::to_string(pid) +
                               "; a forked child must open its own");
}

Status SimProvider::Impl::admit(DomId peer, std::string_view action, SimFaultOp op) {
  SHBUF_TRY(owned());
  SHBUF_TRY(check_domid(peer, action));
  return faults.fail_call(op);
}

Result<Instance::Locked> SimProvider::Impl::lock_swept() {
  auto locked = in->hold();
  if (!locked.ok()) return std::move(locked).error();
  SHBUF_TRY(in->check_liveness(false));
  return locked;
}

SimProvider::SimProvider(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

// Detaching reclaims anything still held, so even leaked handles do not
// keep pages after the provider is gone.
SimProvider::~SimProvider() {
  if (!impl_ || !impl_->in) return;
  if (!impl_->owned().ok()) return;
  if (auto locked = impl_->in->hold(); locked.ok()) (void)impl_->in->detach();
}

Result<std::unique_ptr<SimProvider>> SimProvider::open(const SimOptions& options) {
  const long host_page = sysconf(_SC_PAGESIZE);
  if (host_page != long(kPageSize)) {
    return make_error(ENOTSUP,
                      "the sim provider needs 4096-byte host pages (Xen's page size); "
                      "this host uses " +
                          std::to_string(host_page));
  }
  SHBUF_TRY(check_domid(options.domid, "cannot attach as"));
  if (options.max_grant_frames == 0 || options.max_grant_frames > kMaxGrantFramesLimit) {
    return make_error(EINVAL, "max_grant_frames " + std::to_string(options.max_grant_frames) +
                                  " is out of range (1.." + std::to_string(kMaxGrantFramesLimit) +
                                  ")");
  }
  auto impl = std::make_unique<Impl>();
  SHBUF_TRY(impl->faults.parse(options.faults, "SimOptions::faults"));
  if (const char* env = std::getenv(kSimFaultEnv); env != nullptr) {
    SHBUF_TRY(impl->faults.parse(env, kSimFaultEnv));
  }
  auto in = Instance::open(resolve(options.path), true, options.max_grant_frames);
  if (!in.ok()) return std::move(in).error();
  impl->in = std::move(in).value();
  impl->pid = getpid();
  impl->domid = options.domid;
  impl->grant_copy = options.grant_copy;
  {
    auto locked = impl->in->hold();
    if (!locked.ok()) return std::move(locked).error();
    auto slot = impl->in->attach(options.domid, impl->pid);
    if (!slot.ok()) return std::move(slot).error();
    impl->slot = *slot;
    impl->dom_index = impl->in->slot(*slot).dom_index;
  }
  return std::unique_ptr<SimProvider>(new SimProvider(std::move(impl)));
}

DomId SimProvider::self() const {
  return impl_->domid;
}

ProviderFeatures SimProvider::features() const {
  ProviderFeatures f;
  f.grant_copy = impl_->grant_copy;
  return f;
}

const std::string& SimProvider::path() const {
  return impl_->in->dir();
}

std::size_t SimProvider::pending_pages() {
  Impl& m = *impl_;
  if (!m.owned().ok()) return 0;
  auto locked = m.in->hold();
  if (!locked.ok()) return 0;
  (void)m.in->check_liveness(true);
  return m.in->slot(m.slot).pending;
}

void SimProvider::inject_fault(SimFaultOp op, unsigned k, int error) {
  impl_->faults.inject(op, k, error);
}

void SimProvider::inject_gref_fault(DomId granter, Gref gref, int error) {
  impl_->faults.inject_gref(granter, gref, error);
}

void SimProvider::clear_faults() {
  impl_->faults.clear();
}

void SimProvider::sweep() {
  Impl& m = *impl_;
  if (!m.owned().ok()) return;
  if (auto locked = m.in->hold(); locked.ok()) (void)m.in->check_liveness(true);
}

Result<SimStatus> SimProvider::status() {
  SHBUF_TRY(impl_->owned());
  return read_status(*impl_->in);
}

Result<SimStatus> SimProvider::status(const std::string& path) {
  auto in = Instance::open(resolve(path), false, 0);
  if (!in.ok()) return std::move(in).error();
  return read_status(**in);
}

namespace {

// The names of the files an instance makes, but `state`: lives, the
// xenstore tree and the event channel table of the PV services,
// dom<id>.gnt and dom<id>.mem for a valid domid, and <state or
// xenstore>.tmp.<pid>.<n> of a write that did not finish.
bool instance_file(std::string_view name) {
  if (name == "lives" || name == kXenstoreFile || name == kEvtchnFile) return true;
  unsigned a = 0;
  unsigned b = 0;
  for (const std::string_view base : {std::string_view("state"), kXenstoreFile}) {
    if (name.starts_with(base) && name.substr(base.size()).starts_with(".tmp.")) {
      const std::vector<std::string_view> parts = split(name.substr(base.size() + 5), '.');
      return parts.size() == 2 && parse_uint(parts[0], a) && parse_uint(parts[1], b);
    }
  }
  if (name.size() < 8 || !name.starts_with("dom") ||
      !(name.ends_with(".gnt") || name.ends_with(".mem"))) {
    return false;
  }
  const std::string_view id = name.substr(3, name.size() - 7);
  return parse_uint(id, a) && a < kDomIdFirstReserved && std::to_string(a) == id;
}

}  // namespace

// Only an instance is reset: `state` must be a regular file of ours that
// starts with the simulator's magic (of any layout version, so that an old
// instance can be cleared), else nothing is removed. Then the state is marked
// reset under its lock (when its layout is this one) before the files go,
// `state` last: attached processes then fail with ESTALE, and a new instance
// cannot appear until the old one is fully gone. Only regular files of ours
// with an instance's names are removed; symbolic links are not followed.
Status SimProvider::reset(const std::string& path) {
  const std::string dir = resolve(path);
  const UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  const int dfd = dir_fd.get();
  if (!dir_fd) {
    if (errno == ENOENT) return {};
    if (errno == ENOTDIR) return make_error(ENOTDIR, dir + " is not a directory");
    return errno_error("cannot open " + dir);
  }
  auto refuse = [&](const std::string& why) {
    return make_error(EINVAL, "refusing to reset " + dir + ": " + why +
                                  ", so it is not a simulator instance; nothing was removed");
  };
  const UniqueFd state_fd(openat(dfd, "state", O_RDWR | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK));
  const int fd = state_fd.get();
  if (!state_fd) {
    if (errno == ENOENT) return {};  // nothing to reset
    if (errno == ELOOP) return refuse("its state is a symbolic link");
    return errno_error("cannot open " + dir + "/state");
  }
  struct stat fs {};
  if (fstat(fd, &fs) != 0) return errno_error("cannot stat " + dir + "/state");
  if (!S_ISREG(fs.st_mode)) return refuse("its state is not a regular file");
  if (fs.st_uid != geteuid()) {
    return refuse("its state belongs to uid " + std::to_string(fs.st_uid) + ", not " +
                  std::to_string(geteuid()));
  }
  char head[offsetof(Header, page_size)] = {};
  if (pread(fd, head, sizeof head, 0) != ssize_t(sizeof head) ||
      std::memcmp(head, kMagic, sizeof kMagic) != 0) {
    return refuse("its state does not start with the simulator's magic");
  }
  std::uint32_t version = 0;
  std::memcpy(&version, head + offsetof(Header, version), sizeof version);
  Header* h = nullptr;
  if (version == kVersion && fs.st_size == off_t(kStateSize)) {
    void* p = mmap(nullptr, kSlotsOffset, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) h = static_cast<Header*>(p);
  }
  bool locked = false;
  if (h != nullptr) {
    // A holder that never lets go does not stop a reset: it goes on unlocked.
    auto timeout = lock_timeout_ms();
    const int rc = lock_within(h->mutex, timeout.ok() ? *timeout : kSimLockTimeoutMs);
    if (rc == EOWNERDEAD) pthread_mutex_consistent(&h->mutex);
    locked = rc == 0 || rc == EOWNERDEAD;
    h->reset = 1;
  }
  Status result;
  if (DIR* d = fdopendir(dup(dfd))) {
    std::vector<std::string> names;
    while (const dirent* e = readdir(d)) {
      if (instance_file(e->d_name)) names.emplace_back(e->d_name);
    }
    closedir(d);
    for (const std::string& name : names) {
      struct stat sb {};
      if (fstatat(dfd, name.c_str(), &sb, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(sb.st_mode) ||
          sb.st_uid != geteuid()) {
        continue;
      }
      if (unlinkat(dfd, name.c_str(), 0) != 0 && errno != ENOENT) {
        result = errno_error("cannot remove " + dir + "/" + name);
      }
    }
  } else {
    result = errno_error("cannot list " + dir);
  }
  if (unlinkat(dfd, "state", 0) != 0 && errno != ENOENT) {
    result = errno_error("cannot remove " + dir + "/state");
  }
  if (locked) pthread_mutex_unlock(&h->mutex);
  if (h != nullptr) munmap(h, kSlotsOffset);
  return result;
}

}  // namespace shbuf
