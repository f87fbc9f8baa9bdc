// The vsnd protocol on the generic PV backend: rings and events of each
// stream, requests answered by SoundDevice, position events on the timer.
#include "pv/snd/backend.h"

#include <sndfile.h>

#include "pv/ring.h"

namespace shbuf::snd {
namespace {

// Requests handled on one ring before the loop looks at the others.
constexpr int kRequestsPerTurn = 64;

static_assert(pv::ring_size(kPacketSize) == 32);

// One stream: channel 2i carries requests, 2i+1 events.
struct StreamRings {
  pv::BackRing req;
  pv::EventProducer evt;
  std::uint16_t next_event_id = 0;  // for the life of the connection
  bool dropping = false;            // the frontend is not consuming
};

class SndDevice final : public pv::Device {
 public:
  SndDevice(const pv::DeviceInfo& info, DeviceLimits limits, WavFiles& files,
            const std::string& capture_wav, Signal signal)
      : info_(info), limits_(limits), files_(files), capture_wav_(capture_wav), signal_(signal) {}

  // Reads everything the frontend published before mapping anything.
  Status connect(pv::DeviceContext& ctx) override {
    auto streams = read_streams([&ctx](const std::string& key) { return ctx.read(key); });
    if (!streams.ok()) return streams.error();
    for (const StreamConfig& s : *streams) SHBUF_TRY(connect_stream(ctx, s));
    std::string list;
    for (const StreamConfig& s : *streams) {
      list += (list.empty() ? "" : ", ") + std::to_string(s.pcm) + "/" + std::to_string(s.index) +
              (s.capture ? " capture" : " playback");
    }
    ctx.log(1, "connected: " + std::to_string(streams->size()) + " stream(s): " + list);
    const DomId fe = info_.frontend;
    const std::uint32_t devid = info_.devid;
    WavFiles& files = files_;
    SinkFactory sinks = [&files, fe, devid](const StreamConfig& s, const StreamFormat& f) {
      return files.open(fe, devid, s, f);
    };
    const std::string wav = capture_wav_;
    const Signal signal = signal_;
    SourceFactory sources = [wav, signal](
                                const StreamConfig&,
                                const StreamFormat& f) -> Result<std::unique_ptr<CaptureSource>> {
      if (!wav.empty()) return open_wav_source(wav, f);
      return make_signal_source(signal, f);
    };
    sound_ = std::make_unique<SoundDevice>(ctx.grants(), fe, std::move(streams).value(), limits_,
                                           std::move(sinks), std::move(sources));
    return {};
  }

  // Answers up to kRequestsPerTurn requests, so one busy frontend cannot
  // starve the others. Events the frontend signals back need nothing.
  Result<bool> serve(pv::DeviceContext& ctx, std::size_t channel) override {
    const std::size_t index = channel / 2;
    if (!sound_ || channel % 2 != 0 || index >= rings_.size()) return false;
    pv::BackRing& ring = rings_[index].req;
    const std::string name = "s" + std::to_string(index) + ": ";
    for (int n = 0; n < kRequestsPerTurn; ++n) {
      Packet packet;
      auto next = ring.next_request(packet);
      if (!next.ok()) return next.error();
      if (!*next) {
        auto more = ring.final_check();
        if (!more.ok()) return more.error();
        if (!*more) return false;
        continue;
      }
      const Outcome out = sound_->handle(index, packet, Clock::now());
      if (out.response.status != 0) {
        ctx.log(1, name + "refused: " + out.error);
      } else {
        ctx.log(2, name + op_name(out.response.operation) + " id " +
                       std::to_string(out.response.id) + ": ok");
      }
      auto notify = ring.push_response(encode_response(out.response));
      if (!notify.ok()) return notify.error();
      if (*notify) SHBUF_TRY(ctx.notify(2 * index));
    }
    return true;
  }

  std::optional<Clock::time_point> next_wakeup() const override {
    return sound_ ? sound_->next_due() : std::nullopt;
  }

  // A frontend that does not consume its events loses the later ones, as
  // a sound card's interrupts would be lost: logged, never waited for.
  Status tick(pv::DeviceContext& ctx) override {
    if (!sound_) return {};
    for (const DueEvent& e : sound_->due_events(Clock::now())) {
      StreamRings& r = rings_[e.stream];
      Status pushed = r.evt.push(encode_cur_pos_event({r.next_event_id, e.position}));
      if (!pushed.ok()) {
        // Once per run of drops, not once per event.
        if (!r.dropping) {
          ctx.log(1, "s" + std::to_string(e.stream) +
                         ": position events dropped: " + pushed.error().describe());
        }
        r.dropping = true;
        continue;
      }
      r.dropping = false;
      ++r.next_event_id;
      SHBUF_TRY(ctx.notify(2 * e.stream + 1));
    }
    return {};
  }

  void disconnect() override {
    if (sound_) {
      Status s = sound_->release_all();
      if (!s.ok()) {
        std::fprintf(stderr, "snd-be: dom%u/%u: releasing streams: %s\n", info_.frontend,
                     info_.devid, s.error().describe().c_str());
      }
      sound_.reset();
    }
    rings_.clear();
  }

  std::vector<std::size_t> holdings() const override {
    if (!sound_) return {0, 0};
    return {sound_->open_streams(), sound_->pages_held()};
  }

 private:
  // One stream: the refs and ports come from its directory.
  Status connect_stream(pv::DeviceContext& ctx, const StreamConfig& s) {
    const std::string p = std::to_string(s.pcm) + "/" + std::to_string(s.index) + "/";
    auto req_ref = ctx.read_u32(p + "ring-ref");
    if (!req_ref.ok()) return req_ref.error();
    auto req_chn = ctx.read_u32(p + "event-channel");
    if (!req_chn.ok()) return req_chn.error();
    auto evt_ref = ctx.read_u32(p + "evt-ring-ref");
    if (!evt_ref.ok()) return evt_ref.error();
    auto evt_chn = ctx.read_u32(p + "evt-event-channel");
    if (!evt_chn.ok()) return evt_chn.error();
    auto req_channel = ctx.connect_channel(*req_ref, *req_chn);
    if (!req_channel.ok()) return req_channel.error();
    auto evt_channel = ctx.connect_channel(*evt_ref, *evt_chn);
    if (!evt_channel.ok()) return evt_channel.error();
    StreamRings r;
    auto req = pv::BackRing::attach(ctx.page(*req_channel), kPacketSize);
    if (!req.ok()) return req.error();
    r.req = *req;
    auto evt = pv::EventProducer::attach(ctx.page(*evt_channel), kPacketSize);
    if (!evt.ok()) return evt.error();
    r.evt = *evt;
    rings_.push_back(r);
    return {};
  }

  pv::DeviceInfo info_;
  DeviceLimits limits_;
  WavFiles& files_;
  std::string capture_wav_;
  Signal signal_;
  std::vector<StreamRings> rings_;
  std::unique_ptr<SoundDevice> sound_;
};

}  // namespace

std::unique_ptr<pv::Device> SndProtocol::make_device(const pv::DeviceInfo& info) {
  return std::make_unique<SndDevice>(info, limits_, files_, capture_wav_, signal_);
}

Result<WavStats> run_backend(const BackendOptions& options, const std::atomic<bool>& stop) {
  SHBUF_TRY(pv::check_output_dir(options.out_dir));
  if (!options.capture_wav.empty()) {
    SF_INFO info{};
    SNDFILE* f = sf_open(options.capture_wav.c_str(), SFM_READ, &info);
    if (f == nullptr) {
      return make_error(ENOENT, "cannot read " + options.capture_wav + ": " + sf_strerror(nullptr));
    }
    sf_close(f);
  }
  WavFiles files(options.out_dir, options.wav);
  SndProtocol protocol(options.limits, files, options.capture_wav, options.signal);
  pv::BackendConfig config;
  config.verbosity = options.verbosity;
  config.name = "snd-be";
  SHBUF_TRY(pv::run_backend(options.platform, protocol, config, stop));
  return files.stats();
}

}  // namespace shbuf::snd
