// shbuf: the command-line tool over the library.
#include <cstdio>
#include <string>

#include "cli.h"

namespace shbuf::cli {

void ProviderArgs::add_to(CLI::App* app, int default_domid) {
  domid = default_domid;
  app->add_option("--provider", provider, "Grant provider: sim or xen")
      ->check(CLI::IsMember({"sim", "xen"}))
      ->capture_default_str();
  app->add_option(
      "--sim", sim_path,
      "Simulator instance directory (default: $SHBUF_SIM or " + std::string("a per-user one)"));
  app->add_option("--domid", domid, "Domain to act as (sim provider)")
      ->check(decimal_in(0, kDomIdSelf - 1))
      ->capture_default_str();
}

std::unique_ptr<Provider> ProviderArgs::open() const {
  ProviderOptions options;
  options.name = provider;
  options.self = static_cast<DomId>(domid);
  options.sim_path = sim_path;
  return take(open_provider(options));
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
