// shbuf displ-be: the headless PV display backend, writing each frame the
// guest shows as a PNG, on Xen or on the simulator.
#include <signal.h>

#include <atomic>
#include <string>

#include "cli.h"
#include "pv/displ/backend.h"

namespace shbuf::cli {
namespace {

std::atomic<bool> g_stop{false};

// SIGINT and SIGTERM end the loop cleanly, so every grant is released.
extern "C" void on_stop_signal(int) {
  g_stop.store(true);
}

// Installs the handlers without SA_RESTART: poll() returns at once.
void install_stop_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM}) sigaction(sig, &sa, nullptr);
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
      "until SIGINT or SIGTERM");
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
    install_stop_handlers();
    check(displ::run_backend(options, g_stop));
  });
}

}  // namespace shbuf::cli
