// shbuf displ-be: the headless PV display backend, writing each frame the
// guest shows as a PNG, on Xen or on the simulator; and shbuf displ-fe, our
// frontend, drawing test pictures for it.
#include <string>

#include "cli.h"
#include "hostile.h"
#include "pv/displ/backend.h"
#include "pv/displ/frontend.h"

namespace shbuf::cli {
namespace {

struct FrontendArgs {
  ProviderArgs platform;
  std::uint32_t devid = 0;
  std::uint32_t frames = 3;
  double timeout = 5;
  HostileOptions hostile;
};

// Frame `frame` of `connector`: bands that move by a few pixels per frame,
// in XRGB8888.
void draw_frame(std::span<std::byte> px, const displ::Resolution& r, std::size_t connector,
                std::uint32_t frame) {
  for (std::uint32_t y = 0; y < r.height; ++y) {
    for (std::uint32_t x = 0; x < r.width; ++x) {
      std::byte* p = px.data() + (std::size_t(y) * r.width + x) * 4;
      p[0] = std::byte((x + frame * 4) & 0xff);              // blue
      p[1] = std::byte((y * 255) / std::max(1u, r.height));  // green
      p[2] = std::byte(connector * 80 + frame * 16);         // red
      p[3] = std::byte{0};
    }
  }
}

// Connects, shows the frames on every connector, closes.
void run_frontend(const FrontendArgs& a) {
  pv::Platform platform = take(pv::open_platform(a.platform.platform()));
  displ::FrontendOptions options;
  options.devid = a.devid;
  options.timeout = std::chrono::milliseconds(seconds_to_ms(a.timeout));
  if (a.hostile.enabled) {
    const int rc = run_hostile_displ(platform, options, a.hostile);
    platform = {};
    std::exit(rc);
  }
  auto fe = take(displ::DisplFrontend::connect(platform, options));
  std::printf("connected to domain %u: %zu connector(s), %s buffers\n", unsigned{fe->backend()},
              fe->connectors().size(), fe->be_alloc() ? "backend-allocated" : "frontend-allocated");
  for (std::size_t c = 0; c < fe->connectors().size(); ++c) {
    const displ::Resolution r = fe->connectors()[c];
    const std::uint64_t dbuf = take(fe->dbuf_create(r.width, r.height, 32));
    const std::uint64_t fb = take(fe->fb_attach(dbuf, displ::kFormatXRGB8888));
    draw_frame(fe->pixels(dbuf), r, c, 0);
    check(fe->set_config(c, fb));
    for (std::uint32_t f = 1; f <= a.frames; ++f) {
      draw_frame(fe->pixels(dbuf), r, c, f);
      check(fe->page_flip(c, fb));
      std::printf("connector %zu: %ux%u: frame %u shown\n", c, r.width, r.height, f);
    }
    check(fe->set_config(c, 0));
    check(fe->fb_detach(fb));
    check(fe->dbuf_destroy(dbuf));
  }
  check(fe->close());
  std::printf("closed\n");
}

}  // namespace

// Options map one to one onto BackendOptions.
void add_displ_commands(CLI::App& app) {
  static displ::BackendOptions options;
  static ProviderArgs platform;
  static std::uint32_t max_buffer_mib = options.limits.max_buffer_bytes >> 20;
  CLI::App* be = app.add_subcommand(
      "displ-be",
      "Serve Xen PV display (vdispl) frontends and write every frame they show as a PNG; runs "
      "until SIGINT or SIGTERM. A flip is answered once its frame is copied; one worker thread "
      "writes the frames, dropping (and counting) older ones when it falls behind");
  platform.provider = "xen";
  platform.add_to(be, 0, "--platform", "Where the frontends are");
  be->add_option("--out", options.out_dir, "Directory receiving the PNGs (must exist)")
      ->capture_default_str();
  be->add_flag("--last-only", options.last_frame_only,
               "Keep only the last frame of each connector (<...>-last.png)");
  be->add_option("--max-frames", options.max_frames,
                 "Frames of each connector written to files of their own; every later frame "
                 "overwrites the connector's <...>-last.png, so a guest cannot fill the disk")
      ->check(decimal_in(0, 1000000000))
      ->capture_default_str();
  be->add_option("--png-level", options.png_level,
                 "zlib compression level of the PNGs: 0 stores, 9 compresses most (and slowest)")
      ->check(decimal_in(0, 9))
      ->capture_default_str();
  be->add_flag("--digest-only", options.digest_only,
               "Write no image but one line per frame, '<frame> <width>x<height> <digest>', "
               "appended to dom<d>-dev<n>-c<c>.digests (frames from --max-frames on, or all with "
               "--last-only, replace the one line of dom<d>-dev<n>-c<c>-last.digest); the digest "
               "is the 64-bit FNV-1a of the frame's RGB pixels (R, G, B bytes, row by row, as a "
               "PNG of it decodes to), in 16 hex digits");
  be->add_option("--verbose,-v", options.verbosity,
                 "Log level: 0 errors, 1 devices and frames, 2 every request, 3 every scan")
      ->check(decimal_in(0, 3))
      ->capture_default_str();
  be->add_option("--max-buffer-mib", max_buffer_mib, "Largest display buffer accepted, in MiB")
      ->check(decimal_in(1, 4095))
      ->capture_default_str();
  be->callback([] {
    options.limits.max_buffer_bytes = max_buffer_mib << 20;
    options.platform = platform.platform();
    check(displ::run_backend(options, stop_on_signals()));
  });

  static FrontendArgs fe_args;
  CLI::App* fe = app.add_subcommand(
      "displ-fe",
      "Be a PV display frontend: connect the domain's vdispl device, show test pictures on every "
      "connector, close");
  fe_args.platform.add_to(fe, 1, "--platform", "Where the backend is");
  fe->add_option("--devid", fe_args.devid, "The vdispl device")
      ->check(decimal_in(0, 65535))
      ->capture_default_str();
  fe->add_option("--frames", fe_args.frames, "Frames shown on each connector")
      ->check(decimal_in(0, 100000))
      ->capture_default_str();
  fe->add_option("--timeout", fe_args.timeout, "Seconds each answer of the backend may take")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  fe_args.hostile.add_to(fe);
  fe->callback([] { run_frontend(fe_args); });
}

}  // namespace shbuf::cli
