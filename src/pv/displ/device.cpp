// Request handling of one PV display device: every field checked against the
// others and against what the device holds before anything is mapped.
#include "pv/displ/device.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <charconv>
#include <cstring>
#include <span>
#include <string_view>

#include "core/unique_fd.h"

namespace shbuf::displ {
namespace {

// Numbers in error messages, decimal and hex.
std::string str(std::uint64_t v) {
  return std::to_string(v);
}

std::string hex(std::uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// Buffer operations are device-wide: the protocol puts them on connector 0.
Status on_connector_zero(std::size_t connector, const char* what) {
  if (connector != 0) {
    return make_error(EINVAL, std::string(what) + " arrived on connector " + str(connector) +
                                  "'s ring; the protocol sends it on connector 0");
  }
  return {};
}

// ceil(a / b) without overflow for the 64-bit sizes used here.
std::uint64_t div_up(std::uint64_t a, std::uint64_t b) {
  return a / b + (a % b != 0 ? 1 : 0);
}

// Whether framebuffer `cookie` can show the region a SET_CONFIG enabled: at
// least as large. Its depth and pixel format are its own (displif: the
// buffers' depths and pixel formats can differ); show() converts with them.
Status fits(const SetConfig& cfg, std::uint64_t cookie, const FbAttach& fb) {
  if (cfg.width > fb.width || cfg.height > fb.height) {
    return make_error(EINVAL, "configuration " + str(cfg.width) + "x" + str(cfg.height) +
                                  " is larger than framebuffer " + hex(cookie) + "'s " +
                                  str(fb.width) + "x" + str(fb.height));
  }
  return {};
}

}  // namespace

// In 2 MiB pages the faults are a few instead of one per 4 KiB (a 1920x1080
// frame took 8 ms of faults here); the advice covers the whole 2 MiB pages
// inside the buffer.
std::vector<std::byte> fresh_frame_storage(std::size_t bytes) {
  std::vector<std::byte> v;
  v.reserve(bytes);
  constexpr std::uintptr_t kHuge = std::uintptr_t{2} << 20;
  const auto a = reinterpret_cast<std::uintptr_t>(v.data());
  const std::uintptr_t first = (a + kHuge - 1) & ~(kHuge - 1);
  const std::uintptr_t last = (a + bytes) & ~(kHuge - 1);
  if (last > first) (void)::madvise(reinterpret_cast<void*>(first), last - first, MADV_HUGEPAGE);
  v.resize(bytes);
  return v;
}

// Xenstore text from the frontend's directory: parsed strictly.
Result<Resolution> parse_resolution(const std::string& text) {
  const auto x = text.find('x');
  auto number = [](const char* first, const char* last) -> std::optional<std::uint32_t> {
    std::uint32_t v = 0;
    auto [end, ec] = std::from_chars(first, last, v);
    if (ec != std::errc() || end != last || first == last) return std::nullopt;
    return v;
  };
  if (x != std::string::npos) {
    auto w = number(text.data(), text.data() + x);
    auto h = number(text.data() + x + 1, text.data() + text.size());
    if (w && h && *w != 0 && *h != 0 && *w <= kMaxImageDimension && *h <= kMaxImageDimension) {
      return Resolution{*w, *h};
    }
  }
  return make_error(EINVAL, "resolution '" + text + "' is not WIDTHxHEIGHT with each in 1.." +
                                str(kMaxImageDimension));
}

// One name per connector and frame, so several frontends share a directory.
std::string frame_file_name(DomId frontend, std::uint32_t device, std::size_t connector,
                            std::uint64_t frame, bool last_only) {
  char buf[96];
  if (last_only) {
    std::snprintf(buf, sizeof buf, "dom%u-dev%u-c%zu-last.png", unsigned{frontend}, device,
                  connector);
  } else {
    std::snprintf(buf, sizeof buf, "dom%u-dev%u-c%zu-%06llu.png", unsigned{frontend}, device,
                  connector, static_cast<unsigned long long>(frame));
  }
  return buf;
}

namespace {

// Hands `each` the R, G, B of every pixel, row by row, converted from the
// guest's format with the same function the device has always used; zeros
// for every pixel of a frame whose bytes fall short. `between_rows`, when
// set, after each row.
template <typename Each>
void for_each_rgb(const RawFrame& raw, const BetweenRows& between_rows, Each each) {
  const std::size_t pixels = std::size_t{raw.width} * raw.height;
  const std::size_t bytes_pp = raw.format.bpp / 8;
  const bool whole = bytes_pp != 0 && raw.bytes.size() >= pixels * bytes_pp;
  std::uint8_t rgb[3] = {0, 0, 0};
  std::size_t i = 0;
  for (std::uint32_t y = 0; y < raw.height; ++y) {
    for (std::uint32_t x = 0; x < raw.width; ++x, ++i) {
      if (whole) pixel_to_rgb(raw.format, raw.bytes.data() + i * bytes_pp, rgb);
      each(rgb);
    }
    if (between_rows) between_rows();
  }
}

}  // namespace

RgbImage to_rgb(const RawFrame& raw, const BetweenRows& between_rows) {
  RgbImage image;
  image.width = raw.width;
  image.height = raw.height;
  image.rgb.resize(std::size_t{raw.width} * raw.height * 3);
  std::uint8_t* out = image.rgb.data();
  for_each_rgb(raw, between_rows, [&](const std::uint8_t* rgb) {
    std::memcpy(out, rgb, 3);
    out += 3;
  });
  return image;
}

// Encode, then write whole.
FrameSink png_frame_sink(std::string dir, DomId frontend, std::uint32_t device, bool last_only,
                         std::uint64_t max_frames, int png_level, BetweenRows between_rows) {
  return [dir = std::move(dir), frontend, device, last_only, max_frames, png_level,
          between_rows = std::move(between_rows)](Frame&& f) -> Status {
    auto png = encode_png(to_rgb(f.pixels, between_rows), png_level, between_rows);
    if (!png.ok()) return png.error();
    const bool to_last = last_only || f.number >= max_frames;
    const std::string path =
        dir + "/" + frame_file_name(frontend, device, f.connector, f.number, to_last);
    return write_file_atomically(path, *png);
  };
}

namespace {

constexpr std::uint64_t kFnvOffsetBasis = 0xcbf29ce484222325ull;

// FNV-1a: a few lines anyone can write again in a CI script.
std::uint64_t fnv1a(std::uint64_t h, std::span<const std::uint8_t> bytes) {
  for (const std::uint8_t b : bytes) {
    h ^= b;
    h *= 0x100000001b3ull;
  }
  return h;
}

}  // namespace

std::uint64_t rgb_digest(const RgbImage& image) {
  return fnv1a(kFnvOffsetBasis, image.rgb);
}

// Hashed as converted: no image is made, which matters to a writer that
// must keep up with flips.
std::uint64_t frame_digest(const RawFrame& raw, const BetweenRows& between_rows) {
  std::uint64_t h = kFnvOffsetBasis;
  for_each_rgb(raw, between_rows,
               [&](const std::uint8_t* rgb) { h = fnv1a(h, std::span(rgb, 3)); });
  return h;
}

std::string digest_file_name(DomId frontend, std::uint32_t device, std::size_t connector,
                             bool last_only) {
  char buf[96];
  std::snprintf(buf, sizeof buf, "dom%u-dev%u-c%zu%s", unsigned{frontend}, device, connector,
                last_only ? "-last.digest" : ".digests");
  return buf;
}

namespace {

// One whole line at the end of `path` (O_APPEND: a reader sees whole lines
// as long as each is written by one write).
Status append_line(const std::string& path, const std::string& line) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644));
  if (!fd) return errno_error("cannot open " + path);
  const ssize_t n = ::write(fd.get(), line.data(), line.size());
  if (n < 0) return errno_error("cannot append to " + path);
  if (std::size_t(n) != line.size()) return make_error(EIO, "short append to " + path);
  if (const int e = fd.close(); e != 0) return errno_error(e, "cannot close " + path);
  return {};
}

}  // namespace

// What CI compares: a line per frame, no image.
FrameSink digest_frame_sink(std::string dir, DomId frontend, std::uint32_t device, bool last_only,
                            std::uint64_t max_frames, BetweenRows between_rows) {
  return [dir = std::move(dir), frontend, device, last_only, max_frames,
          between_rows = std::move(between_rows)](Frame&& f) -> Status {
    char line[96];
    std::snprintf(line, sizeof line, "%llu %ux%u %016llx\n",
                  static_cast<unsigned long long>(f.number), f.pixels.width, f.pixels.height,
                  static_cast<unsigned long long>(frame_digest(f.pixels, between_rows)));
    const bool to_last = last_only || f.number >= max_frames;
    const std::string path = dir + "/" + digest_file_name(frontend, device, f.connector, to_last);
    if (to_last) {
      const std::string_view text(line);
      return write_file_atomically(
          path, std::span(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()));
    }
    return append_line(path, line);
  };
}

// Connectors start disabled, as a display does before its first mode set.
DisplayDevice::DisplayDevice(Provider& provider, DeviceConfig config, FrameSink sink,
                             FrameStorage storage)
    : provider_(&provider),
      config_(std::move(config)),
      sink_(std::move(sink)),
      storage_(std::move(storage)) {
  for (const Resolution& r : config_.connectors) connectors_.push_back(Connector{r, {}, 0});
}

// Whatever the frontend left behind is released with the device.
DisplayDevice::~DisplayDevice() {
  (void)release_all();
}

// For logs and tests: how far a connector has got.
std::uint64_t DisplayDevice::frames(std::size_t connector) const {
  return connector < connectors_.size() ? connectors_[connector].frames : 0;
}

// Every request gets exactly one response; failures carry their reason.
Outcome DisplayDevice::handle(std::size_t connector, const Packet& packet) {
  const Request request = decode_request(packet);
  Outcome out;
  out.response.id = request.id;
  out.response.operation = request.operation;
  Status status;
  if (connector >= connectors_.size()) {
    status = make_error(EINVAL, "no connector " + str(connector));
  } else if (const auto* c = std::get_if<DbufCreate>(&request.body)) {
    status = dbuf_create(connector, *c);
  } else if (const auto* d = std::get_if<DbufDestroy>(&request.body)) {
    status = dbuf_destroy(connector, *d);
  } else if (const auto* a = std::get_if<FbAttach>(&request.body)) {
    status = fb_attach(connector, *a);
  } else if (const auto* f = std::get_if<FbDetach>(&request.body)) {
    status = fb_detach(connector, *f);
  } else if (const auto* s = std::get_if<SetConfig>(&request.body)) {
    status = set_config(connector, *s);
  } else if (const auto* p = std::get_if<PgFlip>(&request.body)) {
    status = pg_flip(connector, *p);
    if (status.ok()) out.flip_event = p->fb_cookie;
  } else if (const auto* e = std::get_if<GetEdid>(&request.body)) {
    auto size = get_edid(connector, *e);
    if (size.ok()) {
      out.response.edid_sz = *size;
    } else {
      status = size.error();
    }
  } else {
    status = make_error(ENOTSUP, "operation " + op_name(request.operation) + " is not known");
  }
  if (!status.ok()) {
    out.response.status = -status.error().code;
    out.error = op_name(request.operation) + ": " + status.error().describe();
  }
  return out;
}

// All of width, height, bpp, buffer_sz and data_ofs are checked against each
// other, in 64 bits, before the directory is walked.
Status DisplayDevice::dbuf_create(std::size_t connector, const DbufCreate& r) {
  SHBUF_TRY(on_connector_zero(connector, "DBUF_CREATE"));
  const DeviceLimits& lim = config_.limits;
  if (r.dbuf_cookie == 0) return make_error(EINVAL, "dbuf_cookie 0 is invalid");
  if (dbufs_.count(r.dbuf_cookie) != 0) {
    return make_error(EEXIST, "dbuf_cookie " + hex(r.dbuf_cookie) + " is in use");
  }
  if ((r.flags & ~kDbufFlagReqAlloc) != 0) {
    return make_error(EINVAL, "unknown flag bits " + hex(r.flags & ~kDbufFlagReqAlloc));
  }
  const bool backend_alloc = (r.flags & kDbufFlagReqAlloc) != 0;
  if (backend_alloc && !config_.be_alloc) {
    return make_error(EINVAL, "backend allocation requested but be-alloc is not enabled");
  }
  if (r.width == 0 || r.height == 0 || r.width > lim.max_dimension ||
      r.height > lim.max_dimension) {
    return make_error(EINVAL, "dbuf size " + str(r.width) + "x" + str(r.height) +
                                  " is outside 1.." + str(lim.max_dimension));
  }
  if (r.bpp != 8 && r.bpp != 16 && r.bpp != 24 && r.bpp != 32) {
    return make_error(EINVAL, "bpp " + str(r.bpp) + " is not 8, 16, 24 or 32");
  }
  if (r.buffer_sz > lim.max_buffer_bytes) {
    return make_error(E2BIG, "buffer_sz " + str(r.buffer_sz) + " is above the limit of " +
                                 str(lim.max_buffer_bytes));
  }
  // With stride <= buffer_sz < 2^32 and height, data_ofs < 2^32 the sum
  // below stays under 2^64: no overflow whatever the frontend sent.
  const std::uint64_t stride = div_up(std::uint64_t{r.width} * r.bpp, 8);
  if (stride > r.buffer_sz ||
      std::uint64_t{r.buffer_sz} < stride * r.height + std::uint64_t{r.data_ofs}) {
    return make_error(EINVAL, "buffer_sz " + str(r.buffer_sz) + " cannot hold " + str(r.width) +
                                  "x" + str(r.height) + "x" + str(r.bpp) + " at data_ofs " +
                                  str(r.data_ofs) + " (" + str(stride) + " bytes per row)");
  }
  if (r.gref_directory == kDirListEnd) return make_error(EINVAL, "gref_directory 0 is invalid");
  if (dbufs_.size() >= lim.max_dbufs) {
    return make_error(ENOSPC, "the device already holds " + str(dbufs_.size()) + " dbufs");
  }
  const std::size_t pages = div_up(r.buffer_sz, kPageSize);
  if (pages_held_ + pages > lim.max_total_pages) {
    return make_error(ENOSPC, "the device holds " + str(pages_held_) + " pages; " + str(pages) +
                                  " more exceed its limit of " + str(lim.max_total_pages));
  }
  BackendBufferConfig bc;
  bc.frontend = config_.frontend;
  bc.directory_gref = r.gref_directory;
  bc.pages = pages;
  bc.mode = backend_alloc ? AllocMode::kBackend : AllocMode::kFrontend;
  bc.max_pages = lim.max_total_pages;
  bc.access = Access::kReadWrite;
  auto buffer = BackendBuffer::attach(*provider_, bc);
  if (!buffer.ok()) return buffer.error();
  dbufs_.emplace(r.dbuf_cookie, Dbuf{r, stride, std::move(buffer).value()});
  pages_held_ += pages;
  return {};
}

// Framebuffers on the dbuf go with it; a connector showing one is disabled.
Status DisplayDevice::dbuf_destroy(std::size_t connector, const DbufDestroy& r) {
  SHBUF_TRY(on_connector_zero(connector, "DBUF_DESTROY"));
  auto it = dbufs_.find(r.dbuf_cookie);
  if (it == dbufs_.end()) {
    return make_error(ENOENT, "no dbuf with cookie " + hex(r.dbuf_cookie));
  }
  std::vector<std::uint64_t> attached;
  for (const auto& [cookie, fb] : fbs_) {
    if (fb.request.dbuf_cookie == r.dbuf_cookie) attached.push_back(cookie);
  }
  for (std::uint64_t cookie : attached) forget_fb(cookie);
  pages_held_ -= it->second.buffer.pages();
  // EBUSY only says the provider keeps pages the frontend still maps; the
  // dbuf is gone either way.
  (void)it->second.buffer.detach();
  dbufs_.erase(it);
  return {};
}

// The framebuffer must fit in its dbuf with the dbuf's own bpp.
Status DisplayDevice::fb_attach(std::size_t connector, const FbAttach& r) {
  SHBUF_TRY(on_connector_zero(connector, "FB_ATTACH"));
  if (r.fb_cookie == 0) return make_error(EINVAL, "fb_cookie 0 is invalid");
  if (fbs_.count(r.fb_cookie) != 0) {
    return make_error(EEXIST, "fb_cookie " + hex(r.fb_cookie) + " is in use");
  }
  auto dbuf = dbufs_.find(r.dbuf_cookie);
  if (dbuf == dbufs_.end()) {
    return make_error(ENOENT, "no dbuf with cookie " + hex(r.dbuf_cookie));
  }
  auto format = find_pixel_format(r.pixel_format);
  if (!format) return make_error(EINVAL, "pixel format " + hex(r.pixel_format) + " is not offered");
  const DbufCreate& d = dbuf->second.request;
  if (format->bpp != d.bpp) {
    return make_error(EINVAL, std::string(format->name) + " has " + str(format->bpp) +
                                  " bpp, the dbuf " + str(d.bpp));
  }
  if (r.width == 0 || r.height == 0 || r.width > d.width || r.height > d.height) {
    return make_error(EINVAL, "framebuffer " + str(r.width) + "x" + str(r.height) +
                                  " does not fit its dbuf of " + str(d.width) + "x" +
                                  str(d.height));
  }
  if (fbs_.size() >= config_.limits.max_fbs) {
    return make_error(ENOSPC, "the device already holds " + str(fbs_.size()) + " framebuffers");
  }
  fbs_.emplace(r.fb_cookie, Fb{r, *format});
  return {};
}

// The framebuffer goes; its dbuf stays until DBUF_DESTROY.
Status DisplayDevice::fb_detach(std::size_t connector, const FbDetach& r) {
  SHBUF_TRY(on_connector_zero(connector, "FB_DETACH"));
  if (fbs_.count(r.fb_cookie) == 0) {
    return make_error(ENOENT, "no framebuffer with cookie " + hex(r.fb_cookie));
  }
  forget_fb(r.fb_cookie);
  return {};
}

// A connector never keeps pointing at a framebuffer that is gone.
void DisplayDevice::forget_fb(std::uint64_t fb_cookie) {
  for (Connector& c : connectors_) {
    if (c.config && c.config->fb_cookie == fb_cookie) c.config.reset();
  }
  fbs_.erase(fb_cookie);
}

// All zeros disables the connector; anything else must fit both the
// connector's resolution and the framebuffer, and enables it with a frame.
Status DisplayDevice::set_config(std::size_t connector, const SetConfig& r) {
  Connector& c = connectors_[connector];
  if (r.fb_cookie == 0 && r.x == 0 && r.y == 0 && r.width == 0 && r.height == 0 && r.bpp == 0) {
    c.config.reset();
    return {};
  }
  auto fb = fbs_.find(r.fb_cookie);
  if (fb == fbs_.end()) return make_error(ENOENT, "no framebuffer with cookie " + hex(r.fb_cookie));
  const Resolution& res = c.resolution;
  if (r.width == 0 || r.height == 0 || std::uint64_t{r.x} + r.width > res.width ||
      std::uint64_t{r.y} + r.height > res.height) {
    return make_error(EINVAL, "configuration " + str(r.width) + "x" + str(r.height) + "+" +
                                  str(r.x) + "+" + str(r.y) + " exceeds the connector's " +
                                  str(res.width) + "x" + str(res.height));
  }
  SHBUF_TRY(fits(r, r.fb_cookie, fb->second.request));
  // SET_CONFIG's bpp describes the framebuffer it names (Linux sends that
  // framebuffer's); a request contradicting itself is refused.
  if (r.bpp != fb->second.format.bpp) {
    return make_error(EINVAL, "bpp " + str(r.bpp) + " differs from framebuffer " +
                                  hex(r.fb_cookie) + "'s " + str(fb->second.format.bpp) + " (" +
                                  fb->second.format.name + ")");
  }
  c.config = r;
  return show(connector, r.fb_cookie);
}

// A flip shows another framebuffer, which must be at least as large as the
// region SET_CONFIG enabled; its pixel format and depth may differ from the
// first one's (Linux sends only a flip when a mode is set again with a
// framebuffer of another format).
Status DisplayDevice::pg_flip(std::size_t connector, const PgFlip& r) {
  Connector& c = connectors_[connector];
  if (!c.config) return make_error(EINVAL, "connector " + str(connector) + " is not enabled");
  auto fb = fbs_.find(r.fb_cookie);
  if (fb == fbs_.end()) return make_error(ENOENT, "no framebuffer with cookie " + hex(r.fb_cookie));
  SHBUF_TRY(fits(*c.config, r.fb_cookie, fb->second.request));
  return show(connector, r.fb_cookie);
}

// Copies the configured region out of the shared buffer once, row by row (no
// value read steers anything), and hands it to the sink: the guest may
// reuse its buffer as soon as the flip is answered.
Status DisplayDevice::show(std::size_t connector, std::uint64_t fb_cookie) {
  Connector& c = connectors_[connector];
  const Fb& fb = fbs_.at(fb_cookie);
  const Dbuf& dbuf = dbufs_.at(fb.request.dbuf_cookie);
  const std::uint32_t w = c.config->width, h = c.config->height;
  const std::size_t bytes_pp = fb.format.bpp / 8;
  // Bounds were proven at DBUF_CREATE (data_ofs + stride * height fits the
  // mapping), FB_ATTACH (the framebuffer fits its dbuf, of the dbuf's bpp)
  // and SET_CONFIG / PG_FLIP (the region fits the framebuffer shown); checked
  // again here, with this framebuffer's own format and its dbuf's stride,
  // because reading outside the mapping must never happen.
  const std::span<std::byte> mem = dbuf.buffer.memory();
  const std::uint64_t row_bytes = std::uint64_t{w} * bytes_pp;
  const std::uint64_t last = dbuf.request.data_ofs + dbuf.stride * (h - 1) + row_bytes;
  if (last > mem.size() || row_bytes > dbuf.stride || h > dbuf.request.height ||
      fb.format.bpp != dbuf.request.bpp) {
    return make_error(EFAULT, "framebuffer region ends at byte " + str(last) + " of a buffer of " +
                                  str(mem.size()));
  }
  Frame frame{connector, c.frames, fb_cookie, RawFrame{fb.format, w, h, {}}};
  const std::size_t bytes = std::size_t(row_bytes) * h;
  frame.pixels.bytes = storage_ ? storage_(bytes) : std::vector<std::byte>();
  if (frame.pixels.bytes.capacity() < bytes) frame.pixels.bytes = fresh_frame_storage(bytes);
  frame.pixels.bytes.resize(bytes);
  for (std::uint32_t y = 0; y < h; ++y) {
    std::memcpy(frame.pixels.bytes.data() + y * row_bytes,
                mem.data() + dbuf.request.data_ofs + y * dbuf.stride, row_bytes);
  }
  if (sink_) SHBUF_TRY(sink_(std::move(frame)));
  ++c.frames;
  return {};
}

// The EDID goes into a buffer the frontend shares through a page directory;
// it is mapped only for the copy.
Result<std::uint32_t> DisplayDevice::get_edid(std::size_t connector, const GetEdid& r) {
  if (r.buffer_sz < kEdidMaxSize) {
    return make_error(EINVAL,
                      "EDID buffer_sz " + str(r.buffer_sz) + " is below " + str(kEdidMaxSize));
  }
  if (r.buffer_sz > config_.limits.max_edid_buffer_bytes) {
    return make_error(E2BIG, "EDID buffer_sz " + str(r.buffer_sz) + " is above the limit of " +
                                 str(config_.limits.max_edid_buffer_bytes));
  }
  if (r.gref_directory == kDirListEnd) return make_error(EINVAL, "gref_directory 0 is invalid");
  const Resolution& res = connectors_[connector].resolution;
  auto edid = make_edid(res.width, res.height);
  if (!edid.ok()) return edid.error();
  BackendBufferConfig bc;
  bc.frontend = config_.frontend;
  bc.directory_gref = r.gref_directory;
  bc.pages = div_up(r.buffer_sz, kPageSize);
  bc.mode = AllocMode::kFrontend;
  bc.access = Access::kReadWrite;
  auto buffer = BackendBuffer::attach(*provider_, bc);
  if (!buffer.ok()) return buffer.error();
  std::memcpy(buffer->memory().data(), edid->data(), edid->size());
  SHBUF_TRY(buffer->detach());
  return static_cast<std::uint32_t>(edid->size());
}

// Detaching everything is what a closing or vanished frontend needs.
Status DisplayDevice::release_all() {
  Status first;
  for (auto& [cookie, dbuf] : dbufs_) {
    Status s = dbuf.buffer.detach();
    if (!s.ok() && first.ok()) first = s;
  }
  dbufs_.clear();
  fbs_.clear();
  for (Connector& c : connectors_) c.config.reset();
  pages_held_ = 0;
  return first;
}

}  // namespace shbuf::displ
