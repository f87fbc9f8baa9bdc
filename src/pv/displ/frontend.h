// A displif frontend in user space, over the same platform services as the
// backend (pv/platform.h): what Linux's xen-drm-front does, for the lab and
// its tests. It reads its vdispl device's configuration, publishes each
// connector's request ring and event page with their event channels in one
// transaction, walks the xenbus states with the backend, creates display
// buffers through FrontendBuffer in the device's allocation mode, and sends
// requests one at a time, each answered within the timeout.
//
// For tests that play a hostile frontend it also hands out the raw request
// page and sends packets without waiting for their answer.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pv/displ/device.h"
#include "pv/displ/protocol.h"
#include "pv/frontend.h"
#include "shbuf/core/frontend_buffer.h"

namespace shbuf::displ {

struct FrontendOptions {
  std::uint32_t devid = 0;
  // Each wait: for a backend state, a response, an event.
  std::chrono::milliseconds timeout{5000};
};

class DisplFrontend {
 public:
  // Connects device `devid` of the platform's domain (from Initialising
  // again when an earlier frontend closed it): Initialised once its
  // rings are published, Connected once the backend is. ETIMEDOUT when the
  // backend does not answer in time, ECONNREFUSED (with the backend's error
  // node) when it closes instead.
  static Result<std::unique_ptr<DisplFrontend>> connect(pv::Platform& platform,
                                                        const FrontendOptions& options);
  // Closes (see close()) unless already closed.
  ~DisplFrontend();
  DisplFrontend(const DisplFrontend&) = delete;
  DisplFrontend& operator=(const DisplFrontend&) = delete;

  bool be_alloc() const { return be_alloc_; }
  const std::vector<Resolution>& connectors() const { return resolutions_; }
  DomId backend() const { return link_->backend(); }

  // One request on `connector`'s ring and its response's status (0 or a
  // negative errno). ETIMEDOUT when no response comes in time, EPROTO when
  // the response answers another request.
  Result<std::int32_t> request(std::size_t connector, Request request);

  // Buffers and framebuffers belong to the device: their requests travel on
  // connector 0's ring, as xen-drm-front sends them.

  // DBUF_CREATE of a width x height x bpp buffer, shared in the device's
  // mode (mapped once the backend has allocated it). Returns its cookie; a
  // refusal is an error carrying the status.
  Result<std::uint64_t> dbuf_create(std::uint32_t width, std::uint32_t height, std::uint32_t bpp);
  // The buffer's pixels, rows of ceil(width * bpp / 8) bytes; empty for an
  // unknown cookie.
  std::span<std::byte> pixels(std::uint64_t dbuf_cookie);
  Status dbuf_destroy(std::uint64_t dbuf_cookie);
  // FB_ATTACH of the whole dbuf as a framebuffer in `pixel_format`.
  Result<std::uint64_t> fb_attach(std::uint64_t dbuf_cookie, std::uint32_t pixel_format);
  Status fb_detach(std::uint64_t fb_cookie);

  // SET_CONFIG showing the framebuffer on `connector` at its size
  // (fb_cookie 0: off).
  Status set_config(std::size_t connector, std::uint64_t fb_cookie);
  // PG_FLIP, then the page-flip event for it.
  Status page_flip(std::size_t connector, std::uint64_t fb_cookie);

  // Closing, the backend's Closed awaited (bounded), everything let go,
  // then Closed; only let go when the toolstack removed the device.
  Status close();

  // For hostile tests: the raw request ring page, sending a packet without
  // waiting, and signalling.
  std::span<std::byte> request_page(std::size_t connector);
  Status send_packet(std::size_t connector, const Packet& packet);
  Status notify(std::size_t connector);

 private:
  struct Connector : pv::FrontChannel {};
  struct Dbuf {
    FrontendBuffer buffer;
    std::uint32_t width = 0, height = 0, bpp = 0;
  };

  explicit DisplFrontend(pv::Platform& platform) : platform_(platform) {}
  Status read_config();
  Status publish();
  Status check_connector(std::size_t connector) const;
  void release();

  pv::Platform& platform_;
  FrontendOptions options_;
  std::optional<pv::FrontendLink> link_;
  bool be_alloc_ = false;
  std::vector<Resolution> resolutions_;
  std::vector<Connector> connectors_;
  std::map<std::uint64_t, Dbuf> dbufs_;
  std::map<std::uint64_t, std::uint64_t> fbs_;  // fb cookie -> dbuf cookie
  std::uint64_t next_cookie_ = 1;
  std::uint16_t next_id_ = 0;
  bool open_ = false;
};

}  // namespace shbuf::displ
