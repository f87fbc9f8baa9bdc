// shbuf sim status|reset|device: look at or clear a simulator instance, and
// add or remove PV devices in its xenstore as a toolstack does.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "pv/displ/device.h"
#include "pv/platform.h"
#include "pv/toolstack.h"
#include "shbuf/grant/sim.h"

namespace shbuf::cli {
namespace {

std::string to_json(const SimStatus& s) {
  Json j = {{"path", s.path},
            {"max_grant_frames", s.max_grant_frames},
            {"grants_per_domain", s.grants_per_domain}};
  j["attachments"] = Json::array();
  for (const auto& a : s.attachments) {
    j["attachments"].push_back({{"domid", a.domid}, {"pid", a.pid}, {"alive", a.alive}});
  }
  j["domains"] = Json::array();
  for (const auto& d : s.domains) {
    j["domains"].push_back({{"domid", d.domid},
                            {"alive", d.alive},
                            {"attached", d.attached},
                            {"grants_in_use", d.grants_in_use},
                            {"grants_read_only", d.grants_read_only},
                            {"grants_mapped", d.grants_mapped},
                            {"pending", d.pending},
                            {"frames_in_use", d.frames_in_use}});
  }
  j["grants"] = Json::array();
  for (const auto& g : s.grants) {
    j["grants"].push_back({{"granter", g.granter},
                           {"gref", g.gref},
                           {"grantee", g.grantee},
                           {"read_only", g.read_only},
                           {"map_count", g.map_count},
                           {"pending", g.pending}});
  }
  j["mappings"] = Json::array();
  for (const auto& m : s.mappings) {
    j["mappings"].push_back({{"mapper", m.mapper},
                             {"granter", m.granter},
                             {"gref", m.gref},
                             {"count", m.count},
                             {"writable", m.writable},
                             {"pid", m.pid}});
  }
  return json_text(j);
}

std::string gref_range(Gref first, std::uint64_t count) {
  return count == 1 ? std::to_string(first) : fmt::format("{}-{}", first, first + count - 1);
}

// Consecutive grefs with the same attributes share one line.
std::string to_table(const SimStatus& s) {
  std::string t = fmt::format("instance {} (max_grant_frames {}, {} grants per domain)\n", s.path,
                              s.max_grant_frames, s.grants_per_domain);
  t += "\ndomains:\n";
  if (s.domains.empty())
    t += "  (none)\n";
  else
    t += fmt::format("  {:<6} {:<5} {:>8} {:>7} {:>9} {:>7} {:>8} {:>7}\n", "DOMID", "ALIVE",
                     "ATTACHED", "GRANTS", "READ-ONLY", "MAPPED", "PENDING", "FRAMES");
  for (const auto& d : s.domains) {
    t += fmt::format("  {:<6} {:<5} {:>8} {:>7} {:>9} {:>7} {:>8} {:>7}\n", d.domid,
                     d.alive ? "yes" : "no", d.attached, d.grants_in_use, d.grants_read_only,
                     d.grants_mapped, d.pending, d.frames_in_use);
  }
  t += "\ngrants:\n";
  if (s.grants.empty())
    t += "  (none)\n";
  else
    t += fmt::format("  {:<7} {:<17} {:<7} {:<6} {:>5}  {}\n", "GRANTER", "GREFS", "GRANTEE",
                     "ACCESS", "MAPS", "STATE");
  for (std::size_t i = 0; i < s.grants.size();) {
    const auto& g = s.grants[i];
    std::size_t j = i + 1;
    while (j < s.grants.size()) {
      const auto& h = s.grants[j];
      if (h.granter != g.granter || h.gref != g.gref + (j - i) || h.grantee != g.grantee ||
          h.read_only != g.read_only || h.map_count != g.map_count || h.pending != g.pending) {
        break;
      }
      ++j;
    }
    t += fmt::format("  {:<7} {:<17} {:<7} {:<6} {:>5}  {}\n", g.granter, gref_range(g.gref, j - i),
                     g.grantee, g.read_only ? "ro" : "rw", g.map_count,
                     g.pending ? "pending (revoked, still mapped)" : "granted");
    i = j;
  }
  t += "\nmappings:\n";
  if (s.mappings.empty())
    t += "  (none)\n";
  else
    t += fmt::format("  {:<6} {:<7} {:<17} {:<6} {}\n", "MAPPER", "GRANTER", "GREFS", "ACCESS",
                     "PID");
  for (const auto& m : s.mappings) {
    t += fmt::format("  {:<6} {:<7} {:<17} {:<6} {}\n", m.mapper, m.granter,
                     gref_range(m.gref, m.count), m.writable ? "rw" : "ro", m.pid);
  }
  return t;
}

struct DeviceArgs {
  std::string kind;
  std::string path;
  int frontend = 1;
  int backend = 0;
  std::uint32_t devid = 0;
  // vdispl
  bool be_alloc = false;
  std::string connectors = "640x480";
  // vsnd
  std::string short_name = "Card0";
  std::string long_name = "Xen PV card";
  std::string sample_rates = "44100,48000";
  std::string sample_formats = "s16_le";
  std::uint32_t channels_min = 1;
  std::uint32_t channels_max = 2;
  std::uint32_t buffer_size = 65536;
  std::string streams = "p,c";
  double timeout = 5;
};

// The simulator's xenstore as dom0, the toolstack's domain.
std::unique_ptr<pv::Xenstore> toolstack_xenstore(const std::string& path) {
  SimOptions o;
  o.path = path;
  o.domid = 0;
  auto grants = take(SimProvider::open(o));
  return take(pv::open_sim_xenstore(grants->path(), 0));
}

// libxl's vdispl keys: be-alloc and each connector's resolution and id.
void vdispl_entries(const DeviceArgs& a, pv::DeviceSpec& spec) {
  spec.ro_front.emplace_back("be-alloc", a.be_alloc ? "1" : "0");
  std::size_t i = 0;
  for (std::string_view rest = a.connectors; !rest.empty(); ++i) {
    const std::size_t comma = rest.find(',');
    const std::string one(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    const displ::Resolution r = take(displ::parse_resolution(one));
    spec.ro_front.emplace_back(std::to_string(i) + "/resolution",
                               fmt::format("{}x{}", r.width, r.height));
    spec.ro_front.emplace_back(std::to_string(i) + "/unique-id", fmt::format("c{}", i));
  }
  if (i == 0 || i > displ::kMaxConnectors) {
    fail(kExitUsage,
         fmt::format("--connectors: 1 to {} resolutions, not {}", displ::kMaxConnectors, i));
  }
}

// libxl's vsnd keys: the card, one PCM device "pcm0", a stream per type.
// libxl writes them all as the frontend's own (libxl_vsnd.c has no
// read-only entries), so a guest may change any of them at any time.
void vsnd_entries(const DeviceArgs& a, pv::DeviceSpec& spec) {
  if (a.channels_min > a.channels_max) {
    fail(kExitUsage, fmt::format("--channels-min {} is above --channels-max {}", a.channels_min,
                                 a.channels_max));
  }
  spec.front = {{"short-name", a.short_name},
                {"long-name", a.long_name},
                {"sample-rates", a.sample_rates},
                {"sample-formats", a.sample_formats},
                {"channels-min", std::to_string(a.channels_min)},
                {"channels-max", std::to_string(a.channels_max)},
                {"buffer-size", std::to_string(a.buffer_size)},
                {"0/name", "pcm0"}};
  std::size_t j = 0;
  for (std::string_view rest = a.streams; !rest.empty(); ++j) {
    const std::size_t comma = rest.find(',');
    const std::string type(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (type != "p" && type != "c") {
      fail(kExitUsage,
           fmt::format("--streams: '{}' is not p (playback) or c (capture)", printable(type)));
    }
    spec.front.emplace_back(fmt::format("0/{}/unique-id", j), fmt::format("s{}{}", j, type));
    spec.front.emplace_back(fmt::format("0/{}/type", j), type);
  }
  if (j == 0 || j > 16) fail(kExitUsage, fmt::format("--streams: 1 to 16 streams, not {}", j));
}

void add_device_commands(CLI::App* sim) {
  CLI::App* device = sim->add_subcommand(
      "device", "Add or remove a PV device in the simulator's xenstore, as xl does on Xen");
  device->require_subcommand(1);
  auto add_args = std::make_shared<DeviceArgs>();
  auto common = [](CLI::App* cmd, DeviceArgs& a) {
    cmd->add_option("kind", a.kind, "vdispl or vsnd")
        ->required()
        ->check(CLI::IsMember({"vdispl", "vsnd"}));
    cmd->add_option("--sim", a.path,
                    "Simulator instance directory (default: $SHBUF_SIM or a per-user one)");
    cmd->add_option("--frontend", a.frontend, "The frontend's domain")
        ->check(decimal_in(1, kDomIdSelf - 1))
        ->capture_default_str();
    cmd->add_option("--backend", a.backend, "The backend's domain")
        ->check(decimal_in(0, kDomIdSelf - 1))
        ->capture_default_str();
    cmd->add_option("--devid", a.devid, "Device number")
        ->check(decimal_in(0, 65535))
        ->capture_default_str();
  };
  CLI::App* add = device->add_subcommand(
      "add", "Write the backend's and the frontend's directories, both Initialising");
  common(add, *add_args);
  add->add_flag("--be-alloc", add_args->be_alloc, "vdispl: the backend allocates the buffers");
  add->add_option("--connectors", add_args->connectors,
                  "vdispl: connector resolutions, comma-separated (640x480,800x600)")
      ->capture_default_str();
  add->add_option("--short-name", add_args->short_name, "vsnd: the card's short name")
      ->capture_default_str();
  add->add_option("--long-name", add_args->long_name, "vsnd: the card's long name")
      ->capture_default_str();
  add->add_option("--sample-rates", add_args->sample_rates, "vsnd: rates, comma-separated")
      ->capture_default_str();
  add->add_option("--sample-formats", add_args->sample_formats, "vsnd: formats, comma-separated")
      ->capture_default_str();
  add->add_option("--channels-min", add_args->channels_min, "vsnd: fewest channels")
      ->check(decimal_in(1, 128))
      ->capture_default_str();
  add->add_option("--channels-max", add_args->channels_max, "vsnd: most channels")
      ->check(decimal_in(1, 128))
      ->capture_default_str();
  add->add_option("--buffer-size", add_args->buffer_size, "vsnd: the largest buffer, in bytes")
      ->check(decimal_in(1, 1u << 30))
      ->capture_default_str();
  add->add_option("--streams", add_args->streams,
                  "vsnd: the PCM device's streams, p (playback) or c (capture), comma-separated")
      ->capture_default_str();
  add->callback([add_args] {
    const DeviceArgs& a = *add_args;
    if (a.frontend == a.backend) fail(kExitUsage, "--frontend and --backend are the same domain");
    pv::DeviceSpec spec;
    spec.kind = a.kind;
    spec.frontend = DomId(a.frontend);
    spec.backend = DomId(a.backend);
    spec.devid = a.devid;
    if (a.kind == "vdispl") {
      vdispl_entries(a, spec);
    } else {
      vsnd_entries(a, spec);
    }
    auto xs = toolstack_xenstore(a.path);
    check(pv::add_device(*xs, spec));
    std::printf("added %s\n", pv::frontend_path(spec.kind, spec.frontend, spec.devid).c_str());
  });

  auto remove_args = std::make_shared<DeviceArgs>();
  CLI::App* remove = device->add_subcommand(
      "remove",
      "Tear a device down as xl destroy does: the backend's state to Closing, the frontend's "
      "directory gone, the backend's once it says Closed (or after --timeout)");
  common(remove, *remove_args);
  remove
      ->add_option("--timeout", remove_args->timeout,
                   "Seconds to wait for the backend to say Closed")
      ->check(seconds_in(kMaxTimeoutSeconds))
      ->capture_default_str();
  remove->callback([remove_args] {
    const DeviceArgs& a = *remove_args;
    auto xs = toolstack_xenstore(a.path);
    check(pv::remove_device(*xs, a.kind, DomId(a.backend), DomId(a.frontend), a.devid,
                            std::chrono::milliseconds(seconds_to_ms(a.timeout))));
    std::printf("removed %s\n", pv::frontend_path(a.kind, DomId(a.frontend), a.devid).c_str());
  });
}

}  // namespace

void add_sim_commands(CLI::App& app) {
  CLI::App* sim =
      app.add_subcommand("sim", "Inspect or clear the simulator, and add or remove its PV devices");
  sim->require_subcommand(1);

  struct StatusArgs {
    std::string path;
    bool json = false;
  };
  auto status_args = std::make_shared<StatusArgs>();
  CLI::App* status = sim->add_subcommand(
      "status", "List domains, grants in use and mappings of a simulator instance");
  status->add_option("--sim", status_args->path,
                     "Simulator instance directory (default: $SHBUF_SIM or a per-user one)");
  status->add_flag("--json", status_args->json, "Print JSON instead of tables");
  status->callback([status_args] {
    const SimStatus s = take(SimProvider::status(status_args->path));
    const std::string out = status_args->json ? to_json(s) : to_table(s);
    std::fwrite(out.data(), 1, out.size(), stdout);
  });

  auto reset_path = std::make_shared<std::string>();
  CLI::App* reset =
      sim->add_subcommand("reset", "Remove every grant, mapping and page of a simulator instance");
  reset->add_option("--sim", *reset_path,
                    "Simulator instance directory (default: $SHBUF_SIM or a per-user one)");
  reset->callback([reset_path] {
    const std::string dir = reset_path->empty() ? sim_default_path() : *reset_path;
    struct stat sb {};
    const bool present = lstat((dir + "/state").c_str(), &sb) == 0;
    check(SimProvider::reset(*reset_path));
    std::printf(present ? "reset %s\n" : "nothing to reset at %s\n", dir.c_str());
  });
  add_device_commands(sim);
}

}  // namespace shbuf::cli
