#include "pv/xenstore.h"

#include <charconv>

namespace shbuf::pv {

std::optional<std::uint32_t> parse_xenstore_u32(std::string_view text) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v, 10);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return v;
}

std::string domain_path(DomId domid) {
  return "/local/domain/" + std::to_string(domid);
}

Result<Permission> parse_permission(std::string_view text) {
  auto bad = [&] {
    return make_error(EINVAL, "xenstore permission '" + std::string(text) +
                                  "' is not one of n, r, w, b followed by a domid");
  };
  if (text.size() < 2) return bad();
  Permission p;
  switch (text[0]) {
    case 'n':
      p.perm = Perm::kNone;
      break;
    case 'r':
      p.perm = Perm::kRead;
      break;
    case 'w':
      p.perm = Perm::kWrite;
      break;
    case 'b':
      p.perm = Perm::kBoth;
      break;
    default:
      return bad();
  }
  const std::string_view id = text.substr(1);
  const auto value = parse_xenstore_u32(id);
  if (!value || *value >= kDomIdFirstReserved || std::to_string(*value) != id) return bad();
  p.domid = DomId(*value);
  return p;
}

std::string to_string(const Permission& p) {
  static constexpr char kLetters[] = {'n', 'r', 'w', 'b'};
  return kLetters[static_cast<int>(p.perm)] + std::to_string(p.domid);
}

Status check_path(std::string_view path) {
  auto bad = [&](const char* why) {
    return make_error(EINVAL, "xenstore path '" + std::string(path.substr(0, 64)) +
                                  (path.size() > 64 ? "...'" : "'") + " " + why);
  };
  if (path.empty()) return bad("is empty");
  if (path.size() > kXenstoreAbsPathMax) {
    return bad(("is longer than " + std::to_string(kXenstoreAbsPathMax) + " bytes").c_str());
  }
  // xenstored's special paths: @introduceDomain, @releaseDomain.
  if (path[0] == '@') {
    if (path == "@introduceDomain" || path == "@releaseDomain") return {};
    return bad("is not a special path xenstored knows");
  }
  for (const char c : path) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '-' || c == '/' || c == '_' || c == '@';
    if (!ok) return bad("holds a character xenstored refuses");
  }
  if (path.find("//") != std::string_view::npos) return bad("holds an empty component");
  if (path.size() > 1 && path.back() == '/') return bad("ends with '/'");
  return {};
}

}  // namespace shbuf::pv
