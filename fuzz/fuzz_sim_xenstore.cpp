// Fuzzes the reading of the simulator's xenstore file, which any process of
// the instance (or a crash mid-write) may have left in any state. Whatever
// the bytes: no crash, a refusal is EUCLEAN with a message, and a tree that
// is accepted is written back as a file that reads as the same tree.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "pv/sim/xenstore_tree.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shbuf::pv::sim;
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  const auto tree = parse_tree(bytes);
  if (!tree.ok()) {
    if ((tree.error().code != EUCLEAN && tree.error().code != ENOMEM) ||
        tree.error().message.empty()) {
      std::abort();
    }
    return 0;
  }
  if (!tree->nodes.contains("/")) std::abort();
  const std::string written = serialise_tree(*tree);
  const auto again = parse_tree(written);
  if (!again.ok() || !(*again == *tree) || serialise_tree(*again) != written) std::abort();
  return 0;
}
