// shbuf: the command-line tool over the library.
#include <cstdio>
#include <string>

#include "cli.h"

namespace shbuf::cli {

void fail(int code, const std::string& message) {
  std::fprintf(stderr, "shbuf: error: %s\n", message.c_str());
  throw Exit{code};
}

void fail(const Error& error) { fail(kExitFailure, error.describe()); }

}  // namespace shbuf::cli

int main(int argc, char** argv) {
  using namespace shbuf::cli;
  CLI::App app{"shbuf: Xen page directory shared buffers, both ends", "shbuf"};
  app.require_subcommand(1);
  app.set_help_all_flag("--help-all", "Show help for every command");
  add_dir_commands(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "shbuf: error: %s (see --help)\n", e.what());
    return kExitUsage;
  } catch (const Exit& e) {
    return e.code;
  }
  return kExitOk;
}
