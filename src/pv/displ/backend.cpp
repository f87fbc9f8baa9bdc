#include "pv/displ/backend.h"

#include <cstdio>

#include "pv/displ/ring.h"

namespace shbuf::displ {
namespace {

// Requests handled on one ring before the loop looks at the others.
constexpr int kRequestsPerTurn = 64;

// One connector: channel 2i carries requests, 2i+1 events.
struct Connector {
  RequestRing req;
  EventRing evt;
};

class DisplDevice final : public pv::Device {
 public:
  DisplDevice(const pv::DeviceInfo& info, DeviceLimits limits, FrameSink sink, FrameStorage storage)
      : info_(info), limits_(limits), sink_(std::move(sink)), storage_(std::move(storage)) {}

  // Reads everything the frontend published before mapping anything.
  Status connect(pv::DeviceContext& ctx) override {
    DeviceConfig config;
    config.frontend = info_.frontend;
    config.limits = limits_;
    auto be_alloc = ctx.read("be-alloc");
    config.be_alloc = be_alloc.ok() && *be_alloc == "1";
    for (std::size_t i = 0;; ++i) {
      auto res = ctx.read(std::to_string(i) + "/resolution");
      if (!res.ok()) break;
      if (i == kMaxConnectors) {
        return make_error(E2BIG, "the frontend lists more than " + std::to_string(kMaxConnectors) +
                                     " connectors");
      }
      auto r = parse_resolution(*res);
      if (!r.ok()) {
        return make_error(EINVAL, "connector " + std::to_string(i) + ": " + r.error().message);
      }
      config.connectors.push_back(*r);
    }
    if (config.connectors.empty()) {
      return make_error(
          EINVAL, "the frontend lists no connector (" + info_.frontend_path + "/0/resolution)");
    }
    for (std::size_t i = 0; i < config.connectors.size(); ++i) {
      SHBUF_TRY(connect_connector(ctx, i));
    }
    std::string sizes;
    for (const Resolution& r : config.connectors) {
      sizes +=
          (sizes.empty() ? "" : ", ") + std::to_string(r.width) + "x" + std::to_string(r.height);
    }
    ctx.log(1, "connected: " + std::to_string(config.connectors.size()) + " connector(s) " + sizes +
                   ", " + (config.be_alloc ? "backend-allocated" : "frontend-allocated") +
                   " buffers");
    display_ = std::make_unique<DisplayDevice>(ctx.grants(), std::move(config), sink_, storage_);
    return {};
  }

  // Answers up to kRequestsPerTurn requests, so one busy frontend cannot
  // starve the others. Events the frontend signals back need nothing.
  Result<bool> serve(pv::DeviceContext& ctx, std::size_t channel) override {
    const std::size_t index = channel / 2;
    if (!display_ || channel % 2 != 0 || index >= connectors_.size()) return false;
    Connector& c = connectors_[index];
    const std::string name = "c" + std::to_string(index) + ": ";
    for (int n = 0; n < kRequestsPerTurn; ++n) {
      auto next = c.req.next_request();
      if (!next.ok()) return next.error();
      if (!next->has_value()) {
        auto more = c.req.final_check();
        if (!more.ok()) return more.error();
        if (!*more) return false;
        continue;
      }
      const Outcome out = display_->handle(index, **next);
      if (out.response.status != 0) {
        ctx.log(1, name + "refused: " + out.error);
      } else {
        ctx.log(2, name + op_name(out.response.operation) + " id " +
                       std::to_string(out.response.id) + ": ok");
      }
      auto notify = c.req.push_response(encode_response(out.response));
      if (!notify.ok()) return notify.error();
      if (*notify) SHBUF_TRY(ctx.notify(2 * index));
      if (out.flip_event) {
        Status s = c.evt.push_pg_flip(*out.flip_event);
        if (s.ok()) {
          SHBUF_TRY(ctx.notify(2 * index + 1));
          ctx.log(1, name + "frame " + std::to_string(display_->frames(index) - 1) + " shown");
        } else {
          ctx.log(0, name + "page-flip event dropped: " + s.error().describe());
        }
      }
    }
    return true;
  }

  void disconnect() override {
    if (display_) {
      Status s = display_->release_all();
      if (!s.ok()) {
        std::fprintf(stderr, "displ-be: dom%u/%u: releasing buffers: %s\n", info_.frontend,
                     info_.devid, s.error().describe().c_str());
      }
      display_.reset();
    }
    connectors_.clear();
  }

  std::vector<std::size_t> holdings() const override {
    if (!display_) return {0, 0};
    return {display_->dbuf_count(), display_->pages_held()};
  }

 private:
  // One connector: the refs and ports come from the frontend's directory.
  Status connect_connector(pv::DeviceContext& ctx, std::size_t i) {
    const std::string p = std::to_string(i) + "/";
    auto req_ref = ctx.read_u32(p + "req-ring-ref");
    if (!req_ref.ok()) return req_ref.error();
    auto req_chn = ctx.read_u32(p + "req-event-channel");
    if (!req_chn.ok()) return req_chn.error();
    auto evt_ref = ctx.read_u32(p + "evt-ring-ref");
    if (!evt_ref.ok()) return evt_ref.error();
    auto evt_chn = ctx.read_u32(p + "evt-event-channel");
    if (!evt_chn.ok()) return evt_chn.error();
    auto req_channel = ctx.connect_channel(*req_ref, *req_chn);
    if (!req_channel.ok()) return req_channel.error();
    auto evt_channel = ctx.connect_channel(*evt_ref, *evt_chn);
    if (!evt_channel.ok()) return evt_channel.error();
    Connector c;
    auto req = RequestRing::attach(ctx.page(*req_channel));
    if (!req.ok()) return req.error();
    c.req = *req;
    auto evt = EventRing::attach(ctx.page(*evt_channel));
    if (!evt.ok()) return evt.error();
    c.evt = *evt;
    connectors_.push_back(c);
    return {};
  }

  pv::DeviceInfo info_;
  DeviceLimits limits_;
  FrameSink sink_;
  FrameStorage storage_;
  std::vector<Connector> connectors_;
  std::unique_ptr<DisplayDevice> display_;
};

}  // namespace

std::unique_ptr<pv::Device> DisplProtocol::make_device(const pv::DeviceInfo& info) {
  FrameSink sink = sink_for_(info.frontend, info.devid);
  if (!writer_) return std::make_unique<DisplDevice>(info, limits_, std::move(sink), nullptr);
  const std::string name = "dom" + std::to_string(info.frontend) + "/" + std::to_string(info.devid);
  return std::make_unique<DisplDevice>(info, limits_, writer_->queue_to(name, std::move(sink)),
                                       writer_->storage_source());
}

Status run_backend(const BackendOptions& options, const std::atomic<bool>& stop) {
  SHBUF_TRY(pv::check_output_dir(options.out_dir));
  if (options.png_level < 0 || options.png_level > 9) {
    return make_error(EINVAL, "PNG level " + std::to_string(options.png_level) + " is not 0..9");
  }
  WriterOptions wo;
  wo.budget_bytes = options.queue_budget_bytes;
  wo.log = [](const std::string& line) { std::fprintf(stderr, "displ-be: %s\n", line.c_str()); };
  FrameWriter writer(wo);
  auto sink_for = [&options](DomId frontend, std::uint32_t devid) {
    if (options.digest_only) {
      return digest_frame_sink(options.out_dir, frontend, devid, options.last_frame_only,
                               options.max_frames, worker_gives_way());
    }
    return png_frame_sink(options.out_dir, frontend, devid, options.last_frame_only,
                          options.max_frames, options.png_level, worker_gives_way());
  };
  DisplProtocol protocol(options.limits, sink_for, &writer, options.flush_timeout);
  pv::BackendConfig config;
  config.verbosity = options.verbosity;
  config.name = "displ-be";
  return pv::run_backend(options.platform, protocol, config, stop);
}

}  // namespace shbuf::displ
