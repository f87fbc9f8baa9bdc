// shbuf: the command-line tool over the library.
#include <cstdio>
#include <string>

#include "cli.h"

namespace shbuf::cli {

// tools/cmd_snd.cpp: snd-be and snd-fe.
void add_snd_commands(CLI::App& app);

void ProviderArgs::add_to(CLI::App* app, int default_domid, const std::string& flag,
                          const std::string& what) {
  domid = default_domid;
  app->add_option(flag, provider, what + ": sim or xen")
      ->check(CLI::IsMember({"sim", "xen"}))
      ->capture_default_str();
  sim_option = app->add_option(
      "--sim", sim_path,
      "Simulator instance directory (default: $SHBUF_SIM or a per-user one); sim only");
  domid_option = app->add_option("--domid", domid,
                                 "Domain to act as (sim); with xen, checked against the "
                                 "domain this runs in")
                     ->check(decimal_in(0, kDomIdSelf - 1))
                     ->capture_default_str();
}

// Nothing given on the command line is silently ignored: the xen provider has
// no instance, and acts as the domain it runs in.
std::unique_ptr<Provider> ProviderArgs::open() const {
  refuse_sim_options_with_xen();
  ProviderOptions options;
  options.name = provider;
  options.self = static_cast<DomId>(domid);
  options.sim_path = sim_path;
  std::unique_ptr<Provider> opened = take(open_provider(options));
  if (provider == "xen" && domid_option->count() > 0 && opened->self() != domid) {
    fail(kExitUsage, fmt::format("--domid {}: the xen provider acts as domain {}, the domain "
                                 "this runs in",
                                 domid, opened->self()));
  }
  return opened;
}

void ProviderArgs::refuse_sim_options_with_xen() const {
  if (provider == "xen" && sim_option->count() > 0) {
    fail(kExitUsage, "--sim is for the sim provider or platform; Xen has no instance");
  }
}

pv::PlatformOptions ProviderArgs::platform() const {
  refuse_sim_options_with_xen();
  if (provider == "xen" && domid_option->count() > 0) {
    fail(kExitUsage,
         "--domid is for the simulator; on Xen the backend acts as the domain it "
         "runs in");
  }
  pv::PlatformOptions options;
  options.name = provider;
  options.self = static_cast<DomId>(domid);
  options.sim_path = sim_path;
  return options;
}

}  // namespace shbuf::cli

int main(int argc, char** argv) {
  using namespace shbuf::cli;
  CLI::App app{"shbuf: Xen page directory shared buffers, both ends", "shbuf"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  add_dir_commands(app);
  add_sim_commands(app);
  add_peer_commands(app);
  add_displ_commands(app);
  add_snd_commands(app);
  add_bench_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "shbuf: error: %s (see --help)\n", printable(e.what()).c_str());
    return kExitUsage;
  } catch (const Exit& e) {
    return e.code;
  }
  return kExitOk;
}
