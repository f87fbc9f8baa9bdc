// libFuzzer target: any bytes as one line of the frontend/backend protocol,
// parsed as the backend parses a request and as the frontend parses a
// greeting and a reply. Parsing must never crash or read out of bounds, and
// whatever it accepts must survive being formatted and parsed again.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "peer_protocol.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace shbuf::cli::peer;
  const std::string_view line(reinterpret_cast<const char*>(data), size);
  auto request = parse_request(line);
  if (request.ok()) {
    // What was accepted survives the way back: formatted as the frontend
    // formats it, it parses to the same request.
    std::string again;
    switch (request->kind) {
      case Request::Kind::kAttach:
        again = format_attach(request->attach);
        break;
      case Request::Kind::kCheck:
        again = format_check(request->seed);
        break;
      case Request::Kind::kDetach:
        again = format_detach();
        break;
      case Request::Kind::kBye:
        again = format_bye();
        break;
    }
    auto back = parse_request(again);
    if (!back.ok() || back->kind != request->kind || back->seed != request->seed ||
        back->attach.mode != request->attach.mode || back->attach.pages != request->attach.pages ||
        back->attach.directory_gref != request->attach.directory_gref ||
        back->attach.frontend != request->attach.frontend) {
      __builtin_trap();
    }
  }
  if (auto backend = parse_hello(line)) {
    if (parse_hello(format_hello(*backend)) != backend) __builtin_trap();
  }
  if (auto reply = parse_reply(line)) (void)parse_attached(reply->text);
  return 0;
}
