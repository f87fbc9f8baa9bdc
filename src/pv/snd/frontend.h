// A sndif frontend in user space, over the same platform services as the
// backend (pv/platform.h): what Linux's snd_xen_front does, for the lab and
// its tests. It reads its vsnd device's configuration (read_streams()),
// publishes each stream's request ring and event page with their event
// channels in one transaction, walks the xenbus states with the backend,
// shares each stream's PCM buffer through FrontendBuffer (frontend-
// allocated, as sndif requires), sends requests one at a time, each
// answered within the timeout, and receives position events.
//
// For tests that play a hostile frontend it also sends raw requests, hands
// out the raw request page, sets the request producer index, sends packets
// without waiting, signals, and rewrites its xenstore values.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "pv/frontend.h"
#include "pv/snd/protocol.h"
#include "shbuf/core/frontend_buffer.h"

namespace shbuf::snd {

struct FrontendOptions {
  std::uint32_t devid = 0;
  // Each wait: for a backend state, a response, an event.
  std::chrono::milliseconds timeout{5000};
};

class SndFrontend {
 public:
  // Connects device `devid` of the platform's domain (from Initialising
  // again when an earlier frontend closed it): Initialised once its rings
  // are published, Connected once the backend is. ETIMEDOUT when the
  // backend does not answer in time, ECONNREFUSED (with the backend's error
  // node) when it closes instead.
  static Result<std::unique_ptr<SndFrontend>> connect(pv::Platform& platform,
                                                      const FrontendOptions& options);
  // Closes (see close()) unless already closed.
  ~SndFrontend();
  SndFrontend(const SndFrontend&) = delete;
  SndFrontend& operator=(const SndFrontend&) = delete;

  const std::vector<StreamConfig>& streams() const { return configs_; }
  DomId backend() const { return link_->backend(); }

  // One request on `stream`'s ring and its response (status 0 or a negative
  // errno). The id is ours: requests count from 0 per stream. ETIMEDOUT
  // when no response comes in time, EPROTO when the response answers
  // another request.
  Result<Response> request(std::size_t stream, Request request);

  // HW_PARAM_QUERY; a refusal is an error carrying the status.
  Result<HwParams> query(std::size_t stream, const HwParams& params);
  // Shares a buffer of `buffer_bytes` and sends OPEN for it (the previous
  // buffer of the stream, if any, is freed once the backend answered, as
  // Linux re-opens without CLOSE). A refusal is an error carrying the
  // status, and frees the new buffer.
  Status open(std::size_t stream, std::uint32_t rate, std::uint8_t format, std::uint8_t channels,
              std::uint32_t buffer_bytes, std::uint32_t period_bytes);
  // The stream's buffer (buffer_bytes long); empty when not open.
  std::span<std::byte> buffer(std::size_t stream);
  Status write(std::size_t stream, std::uint32_t offset, std::uint32_t length);
  Status read(std::size_t stream, std::uint32_t offset, std::uint32_t length);
  Status trigger(std::size_t stream, std::uint8_t type);
  // CLOSE, then the buffer freed.
  Status close_stream(std::size_t stream);

  // The next position event of the stream, waiting at most the timeout.
  Result<CurPosEvent> next_event(std::size_t stream);
  // Every position event already published, without waiting.
  Result<std::vector<CurPosEvent>> drain_events(std::size_t stream);

  // Closing, the backend's Closed awaited (bounded), everything let go,
  // then Closed; only let go when the toolstack removed the device.
  Status close();

  // For hostile tests: a packet sent without waiting, the raw ring page,
  // the shared request producer index set to anything (without signalling),
  // signalling, and a value of our xenstore directory rewritten (`key`
  // relative to it; the toolstack's keys are refused with EACCES).
  Status send_packet(std::size_t stream, const Packet& packet);
  std::span<std::byte> request_page(std::size_t stream);
  Status set_request_producer(std::size_t stream, std::uint32_t index);
  Status notify(std::size_t stream);
  Status rewrite(const std::string& key, const std::string& value);
  // The key of `name` in a stream's directory: "<pcm>/<index>/<name>".
  std::string stream_key(std::size_t stream, const std::string& name) const;

 private:
  struct Stream : pv::FrontChannel {
    std::uint16_t next_id = 0;
    std::optional<FrontendBuffer> buffer;
    std::uint32_t buffer_bytes = 0;
  };

  explicit SndFrontend(pv::Platform& platform) : platform_(platform) {}
  Status read_config();
  Status publish();
  Status check_stream(std::size_t stream) const;
  Status expect_ok(const char* what, const Result<Response>& r);
  void release();

  pv::Platform& platform_;
  FrontendOptions options_;
  std::optional<pv::FrontendLink> link_;
  std::vector<StreamConfig> configs_;
  std::vector<Stream> streams_;
  bool open_ = false;
};

}  // namespace shbuf::snd
