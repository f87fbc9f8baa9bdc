// shbuf sim status|reset: look at or clear a grant-table simulator instance.
#include <fmt/format.h>
#include <sys/stat.h>

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
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

}  // namespace

void add_sim_commands(CLI::App& app) {
  CLI::App* sim = app.add_subcommand("sim", "Inspect or clear the grant-table simulator");
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
}

}  // namespace shbuf::cli
