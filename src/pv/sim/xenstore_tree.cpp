#include "pv/sim/xenstore_tree.h"

#include <new>

#include "grant/sim/text.h"

// The file, one record a line, fields separated by one space:
//
//   shbuf-xenstore 1
//   generation <n>
//   node <path> <perms, "n0,r5"> =<value>
//   watch <mailbox> <domid> <relative 0|1> <overflow 0|1> <path> =<token>
//   end
//
// Values and tokens escape every byte outside '!'..'~', and '%', as %XX.
// The end line tells a whole file from one cut short.
namespace shbuf::pv::sim {
namespace {

constexpr std::string_view kFirstLine = "shbuf-xenstore 1";

bool kept_as_is(unsigned char c) {
  return c > 0x20 && c < 0x7f && c != '%';
}

void escape_to(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  out += '=';
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (kept_as_is(c)) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

// "=<escaped>" back to its bytes; false when malformed or longer than `max`.
bool unescape(std::string_view field, std::size_t max, std::string& out) {
  if (field.empty() || field[0] != '=') return false;
  out.clear();
  for (std::size_t i = 1; i < field.size(); ++i) {
    if (out.size() == max) return false;
    if (field[i] != '%') {
      if (!kept_as_is(static_cast<unsigned char>(field[i]))) return false;
      out += field[i];
      continue;
    }
    if (i + 2 >= field.size()) return false;
    const int hi = hex_digit(field[i + 1]);
    const int lo = hex_digit(field[i + 2]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return true;
}

Error bad(std::size_t line, const std::string& what) {
  return make_error(EUCLEAN, "line " + std::to_string(line) + " " + what);
}

// A node's parent: "/a/b" -> "/a", "/a" -> "/".
std::string_view parent_of(std::string_view path) {
  const std::size_t slash = path.rfind('/');
  return slash == 0 ? std::string_view("/") : path.substr(0, slash);
}

Result<std::vector<Permission>> parse_perms(std::size_t line, std::string_view field) {
  if (field.size() > kXenstorePayloadMax) {
    return bad(line,
               "holds permissions longer than " + std::to_string(kXenstorePayloadMax) + " bytes");
  }
  std::vector<Permission> perms;
  for (const std::string_view entry : ::shbuf::sim::split(field, ',')) {
    auto p = parse_permission(entry);
    if (!p.ok()) return bad(line, "holds a bad permission: " + p.error().message);
    perms.push_back(*p);
  }
  return perms;
}

Status parse_node(std::size_t line, const std::vector<std::string_view>& f, Tree& tree) {
  if (f.size() != 4)
    return bad(line, "is a node record of " + std::to_string(f.size()) + " fields");
  if (f[1].empty() || f[1][0] != '/' || !check_path(f[1]).ok()) {
    return bad(line, "holds a node path that is not a valid absolute path");
  }
  auto perms = parse_perms(line, f[2]);
  if (!perms.ok()) return std::move(perms).error();
  Node node;
  node.perms = std::move(perms).value();
  if (!unescape(f[3], kXenstorePayloadMax, node.value)) {
    return bad(line, "holds a value that is badly escaped or longer than " +
                         std::to_string(kXenstorePayloadMax) + " bytes");
  }
  if (tree.nodes.size() == kXenstoreNodesMax) {
    return bad(line, "holds a node beyond the " + std::to_string(kXenstoreNodesMax) + " allowed");
  }
  if (!tree.nodes.emplace(std::string(f[1]), std::move(node)).second) {
    return bad(line, "holds a second node " + std::string(f[1]));
  }
  return {};
}

Status parse_watch(std::size_t line, const std::vector<std::string_view>& f, Tree& tree) {
  if (f.size() != 7) {
    return bad(line, "is a watch record of " + std::to_string(f.size()) + " fields");
  }
  WatchRecord w;
  unsigned domid = 0;
  if (!::shbuf::sim::parse_uint(f[1], w.mailbox) || w.mailbox == 0) {
    return bad(line, "holds a bad mailbox address");
  }
  if (!::shbuf::sim::parse_uint(f[2], domid) || domid >= kDomIdFirstReserved) {
    return bad(line, "holds a bad watcher domid");
  }
  w.domid = DomId(domid);
  if ((f[3] != "0" && f[3] != "1") || (f[4] != "0" && f[4] != "1")) {
    return bad(line, "holds flags other than 0 and 1");
  }
  w.relative = f[3] == "1";
  w.overflow = f[4] == "1";
  w.path = std::string(f[5]);
  if (w.path.empty() || (w.path[0] != '/' && w.path[0] != '@') || !check_path(w.path).ok()) {
    return bad(line, "holds a watch path that is not a valid absolute or special path");
  }
  if (w.relative && !w.path.starts_with(domain_path(w.domid) + "/")) {
    return bad(line, "holds a relative watch outside its watcher's home");
  }
  if (!unescape(f[6], kXenstorePayloadMax, w.token) || w.token.find('\0') != std::string::npos) {
    return bad(line, "holds a token that is badly escaped, holds a NUL or is longer than " +
                         std::to_string(kXenstorePayloadMax) + " bytes");
  }
  if (tree.watches.size() == kXenstoreWatchesMax) {
    return bad(line,
               "holds a watch beyond the " + std::to_string(kXenstoreWatchesMax) + " allowed");
  }
  tree.watches.push_back(std::move(w));
  return {};
}

Result<Tree> parse_unguarded(std::string_view bytes) {
  if (bytes.size() > kXenstoreFileMax) {
    return make_error(EUCLEAN, "is " + std::to_string(bytes.size()) + " bytes, over the " +
                                   std::to_string(kXenstoreFileMax) + " allowed");
  }
  Tree tree;
  std::size_t line = 0;
  std::size_t pos = 0;
  bool ended = false;
  while (pos < bytes.size()) {
    ++line;
    const std::size_t nl = bytes.find('\n', pos);
    if (nl == std::string_view::npos) return bad(line, "does not end with a newline");
    const std::string_view text = bytes.substr(pos, nl - pos);
    pos = nl + 1;
    if (ended) return bad(line, "follows the end line");
    if (line == 1) {
      if (text != kFirstLine) {
        return make_error(EUCLEAN, "does not start with '" + std::string(kFirstLine) + "'");
      }
      continue;
    }
    const std::vector<std::string_view> f = ::shbuf::sim::split(text, ' ');
    if (line == 2) {
      if (f.size() != 2 || f[0] != "generation" ||
          !::shbuf::sim::parse_uint(f[1], tree.generation)) {
        return bad(line, "is not 'generation <number>'");
      }
      continue;
    }
    if (f[0] == "node") {
      SHBUF_TRY(parse_node(line, f, tree));
    } else if (f[0] == "watch") {
      SHBUF_TRY(parse_watch(line, f, tree));
    } else if (text == "end") {
      ended = true;
    } else {
      return bad(line, "is not a node, watch or end record");
    }
  }
  if (line < 2) return make_error(EUCLEAN, "ends before its generation line");
  if (!ended) return make_error(EUCLEAN, "ends before its end line (cut short?)");
  if (tree.nodes.find("/") == tree.nodes.end()) return make_error(EUCLEAN, "has no root node");
  for (const auto& [path, node] : tree.nodes) {
    if (path != "/" && tree.nodes.find(std::string(parent_of(path))) == tree.nodes.end()) {
      return make_error(EUCLEAN, "holds node " + path + " but not its parent");
    }
  }
  return tree;
}

}  // namespace

Tree fresh_tree() {
  Tree tree;
  for (const char* path : {"/", "/local", "/local/domain"}) {
    tree.nodes[path] = Node{{Permission{0, Perm::kNone}}, ""};
  }
  return tree;
}

Result<Tree> parse_tree(std::string_view bytes) {
  try {
    return parse_unguarded(bytes);
  } catch (const std::bad_alloc&) {
    return make_error(ENOMEM, "out of memory reading the xenstore tree");
  }
}

std::string perms_string(const std::vector<Permission>& perms) {
  std::string out;
  for (const Permission& p : perms) {
    if (!out.empty()) out += ',';
    out += to_string(p);
  }
  return out;
}

std::string serialise_tree(const Tree& tree) {
  std::string out;
  out += kFirstLine;
  out += "\ngeneration " + std::to_string(tree.generation) + "\n";
  for (const auto& [path, node] : tree.nodes) {
    out += "node " + path + " " + perms_string(node.perms) + " ";
    escape_to(out, node.value);
    out += '\n';
  }
  for (const WatchRecord& w : tree.watches) {
    out += "watch " + std::to_string(w.mailbox) + " " + std::to_string(w.domid) +
           (w.relative ? " 1" : " 0") + (w.overflow ? " 1 " : " 0 ") + w.path + " ";
    escape_to(out, w.token);
    out += '\n';
  }
  out += "end\n";
  return out;
}

}  // namespace shbuf::pv::sim
