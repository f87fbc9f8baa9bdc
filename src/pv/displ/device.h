// One PV display device (a vdispl instance of one frontend) as the backend
// sees it: the display buffers (dbufs) the frontend created, the
// framebuffers attached to them, and each connector's configuration. It
// answers each request packet, validating every field against the others
// and against its own records before anything is mapped or read, and hands
// every shown frame, copied out of the shared buffer, to a sink (which
// queues it to be written as a PNG, see writer.h).
//
// Transport-agnostic: the caller copies packets out of the rings and
// publishes responses and events (see displ_ring.h); buffers are attached
// through any Provider, so the sim provider exercises all of it.
//
// What is refused, with the negative errno the response carries:
//   EINVAL  cookie 0, sizes of 0 or above the limits' dimension, a bpp other
//           than 8/16/24/32, a buffer_sz too small for width x height x bpp
//           at data_ofs (computed without overflow), unknown flag bits,
//           backend allocation where be-alloc is off, a pixel format not
//           offered or of another bpp than its dbuf, a framebuffer larger
//           than its dbuf, a configuration outside the connector's
//           resolution or larger than its framebuffer, a SET_CONFIG whose
//           bpp is not its framebuffer's, a flip on a disabled connector or
//           to a framebuffer smaller than the configured region (one of
//           another pixel format or depth is shown, converted with its own
//           format), an EDID buffer smaller than XENDISPL_EDID_MAX_SIZE,
//           buffer requests on a connector other than 0, and a page
//           directory the walk refuses.
//   ENOENT  an unknown dbuf or fb cookie.   EEXIST  a cookie in use.
//   E2BIG   a buffer above the limit.       ENOSPC  too many dbufs, fbs or pages.
//   ENOTSUP  any other operation code.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "pv/displ/png.h"
#include "pv/displ/protocol.h"
#include "shbuf/core/backend_buffer.h"
#include "shbuf/core/provider.h"
#include "shbuf/core/result.h"

namespace shbuf::displ {

struct Resolution {
  std::uint32_t width = 0;
  std::uint32_t height = 0;
};

// Parses "640x480" (xenstore's resolution). EINVAL for anything else, a
// zero, or a dimension above kMaxImageDimension.
Result<Resolution> parse_resolution(const std::string& text);

// More connectors than any real configuration has; bounds what a frontend's
// directory can make us map.
inline constexpr std::size_t kMaxConnectors = 16;

struct DeviceLimits {
  std::uint32_t max_dimension = kMaxImageDimension;
  std::uint32_t max_buffer_bytes = 256u << 20;
  std::size_t max_total_pages = 131072;  // all dbufs of the device: 512 MiB
  std::size_t max_dbufs = 256;
  std::size_t max_fbs = 256;
  std::uint32_t max_edid_buffer_bytes = 1u << 20;
};

struct DeviceConfig {
  DomId frontend = 0;
  bool be_alloc = false;  // xenstore's be-alloc
  std::vector<Resolution> connectors;
  DeviceLimits limits;
};

// The configured region of a shown framebuffer as the guest stored it:
// `height` rows of width * format.bpp / 8 bytes each, packed, copied out of
// the shared buffer (one plain copy per row, so the flip is answered soon;
// to_rgb() converts it later, off the ring path).
struct RawFrame {
  PixelFormat format;
  std::uint32_t width = 0;
  std::uint32_t height = 0;
  std::vector<std::byte> bytes;
};

// The frame's pixels as 8-bit RGB. An image of the frame's size whatever
// `bytes` holds: pixels beyond it stay black.
RgbImage to_rgb(const RawFrame& raw, const BetweenRows& between_rows = {});

// A frame the device shows: the configured region of the framebuffer.
struct Frame {
  std::size_t connector = 0;
  std::uint64_t number = 0;  // counts this connector's frames from 0
  std::uint64_t fb_cookie = 0;
  RawFrame pixels;
};
// Receives each frame and may keep it; a failure is reported to the
// frontend as the flip's status (the backend's sink queues the frame, see
// writer.h, and fails only when it cannot take it).
using FrameSink = std::function<Status(Frame&&)>;
// Storage for a frame's `bytes` bytes (say, a buffer an earlier frame was
// written from); the device fills every byte of it.
using FrameStorage = std::function<std::vector<std::byte>(std::size_t bytes)>;
// Fresh storage for `bytes` of pixels, every page already faulted in (and in
// 2 MiB pages where the kernel can): copying a frame into it is only a copy.
std::vector<std::byte> fresh_frame_storage(std::size_t bytes);

// The file a frame is written to: "dom1-dev0-c0-000003.png", or with
// last_only "dom1-dev0-c0-last.png" (overwritten by each frame).
std::string frame_file_name(DomId frontend, std::uint32_t device, std::size_t connector,
                            std::uint64_t frame, bool last_only);

// Frames of one connector written to files of their own by default; the
// later ones all go to its "-last.png", so that a guest cannot fill the disk.
inline constexpr std::uint64_t kDefaultMaxFramesPerConnector = 10000;

// A sink writing each frame, there and then, as a PNG at zlib level
// `png_level` into `dir` under frame_file_name(): frames numbered below
// `max_frames` to their own files (none with last_only), every later one
// to the connector's last-frame file.
// `between_rows` is called after each row converted and each row encoded.
FrameSink png_frame_sink(std::string dir, DomId frontend, std::uint32_t device, bool last_only,
                         std::uint64_t max_frames = kDefaultMaxFramesPerConnector,
                         int png_level = kDefaultPngLevel, BetweenRows between_rows = {});

// The 64-bit FNV-1a hash (offset basis 0xcbf29ce484222325, prime
// 0x100000001b3) of a frame's RGB pixels, row by row, R, G, B per pixel:
// the bytes a PNG of the frame decodes to with 8-bit RGB output.
std::uint64_t rgb_digest(const RgbImage& image);
// rgb_digest(to_rgb(raw)), without making the image.
std::uint64_t frame_digest(const RawFrame& raw, const BetweenRows& between_rows = {});

// The digest file of a connector: "dom1-dev0-c0.digests", or with last_only
// "dom1-dev0-c0-last.digest".
std::string digest_file_name(DomId frontend, std::uint32_t device, std::size_t connector,
                             bool last_only);

// A sink writing, instead of an image, one line per frame:
//   <frame number> <width>x<height> <rgb_digest, 16 lower-case hex digits>
// e.g. "3 640x480 9b2f0c1d44e8a7b6". Frames numbered below `max_frames`
// (none with last_only) are appended to the connector's .digests file;
// every later one replaces the one line of its -last.digest file.
// `between_rows` is called after each row hashed.
FrameSink digest_frame_sink(std::string dir, DomId frontend, std::uint32_t device, bool last_only,
                            std::uint64_t max_frames = kDefaultMaxFramesPerConnector,
                            BetweenRows between_rows = {});

struct Outcome {
  Response response;
  // Set when a page-flip event for this cookie must follow the response.
  std::optional<std::uint64_t> flip_event;
  // Why the status is not 0, for the log.
  std::string error;
};

class DisplayDevice {
 public:
  // The provider must outlive the device. Frames' bytes come from
  // `storage` when given, from the heap otherwise.
  DisplayDevice(Provider& provider, DeviceConfig config, FrameSink sink, FrameStorage storage = {});
  DisplayDevice(DisplayDevice&&) noexcept = default;
  DisplayDevice& operator=(DisplayDevice&&) noexcept = default;
  ~DisplayDevice();

  // Answers one request that arrived on `connector`'s ring.
  Outcome handle(std::size_t connector, const Packet& packet);

  const DeviceConfig& config() const { return config_; }
  std::size_t dbuf_count() const { return dbufs_.size(); }
  std::size_t fb_count() const { return fbs_.size(); }
  std::size_t pages_held() const { return pages_held_; }
  // Frames shown on the connector so far.
  std::uint64_t frames(std::size_t connector) const;

  // Detaches every dbuf (unmaps or ends the grants); the device is empty
  // afterwards whatever the outcome. The first failure is returned.
  Status release_all();

 private:
  struct Dbuf {
    DbufCreate request;
    std::uint64_t stride = 0;
    BackendBuffer buffer;
  };
  struct Fb {
    FbAttach request;
    PixelFormat format;
  };
  struct Connector {
    Resolution resolution;
    std::optional<SetConfig> config;  // enabled when set
    std::uint64_t frames = 0;
  };

  Status dbuf_create(std::size_t connector, const DbufCreate& r);
  Status dbuf_destroy(std::size_t connector, const DbufDestroy& r);
  Status fb_attach(std::size_t connector, const FbAttach& r);
  Status fb_detach(std::size_t connector, const FbDetach& r);
  Status set_config(std::size_t connector, const SetConfig& r);
  Status pg_flip(std::size_t connector, const PgFlip& r);
  Result<std::uint32_t> get_edid(std::size_t connector, const GetEdid& r);
  Status show(std::size_t connector, std::uint64_t fb_cookie);
  void forget_fb(std::uint64_t fb_cookie);

  Provider* provider_;
  DeviceConfig config_;
  FrameSink sink_;
  FrameStorage storage_;
  std::map<std::uint64_t, Dbuf> dbufs_;
  std::map<std::uint64_t, Fb> fbs_;
  std::vector<Connector> connectors_;
  std::size_t pages_held_ = 0;
};

}  // namespace shbuf::displ
