// shbuf dir encode|decode|inspect: the page directory codec on stdin/stdout.
#include <fmt/format.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "cli.h"
#include "shbuf/page_directory.h"

namespace shbuf::cli {
namespace {

// Reads all of stdin, but never more than `limit` bytes plus one, so a
// too-long input is noticed without being held.
std::string read_stdin(std::size_t limit) {
  std::string data;
  char chunk[65536];
  while (data.size() <= limit) {
    const ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(kExitFailure, fmt::format("cannot read stdin: {}", std::strerror(errno)));
    }
    if (got == 0) break;
    data.append(chunk, static_cast<std::size_t>(got));
  }
  return data;
}

void write_stdout(const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t put = ::write(STDOUT_FILENO, p, size);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail(kExitFailure, fmt::format("cannot write stdout: {}", std::strerror(errno)));
    }
    p += put;
    size -= static_cast<std::size_t>(put);
  }
}

Gref parse_gref(std::string_view token, const std::string& what) {
  Gref value = 0;
  const auto [end, ec] = std::from_chars(token.data(), token.data() + token.size(), value, 10);
  if (ec != std::errc() || end != token.data() + token.size()) {
    fail(kExitFailure, fmt::format("{} '{}' is not a decimal gref (0..4294967295)", what, token));
  }
  return value;
}

// Whitespace-separated decimal grefs; at most `limit` are kept, the count of
// all is returned in `total`.
std::vector<Gref> parse_grefs(const std::string& text, std::size_t limit, std::size_t& total) {
  std::vector<Gref> grefs;
  total = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i]))) ++i;
    std::size_t j = i;
    while (j < text.size() && !std::isspace(static_cast<unsigned char>(text[j]))) ++j;
    if (j > i) {
      const Gref g = parse_gref(std::string_view(text).substr(i, j - i),
                                fmt::format("input word {}", total + 1));
      if (grefs.size() < limit) grefs.push_back(g);
      ++total;
    }
    i = j;
  }
  return grefs;
}

void run_encode(std::size_t n, bool backend_alloc) {
  const std::size_t d = dir_pages(n);
  const std::size_t want = backend_alloc ? d : d + n;
  std::size_t total = 0;
  // Decimal grefs take at most 11 bytes each with a separator.
  const std::vector<Gref> grefs = parse_grefs(read_stdin(want * 64 + 4096), want, total);
  if (total != want) {
    fail(kExitFailure,
         backend_alloc
             ? fmt::format("expected {} directory grefs on stdin for {} pages, got {}", d, n, total)
             : fmt::format("expected {} grefs on stdin ({} directory + {} buffer) for {} pages, "
                           "got {}",
                           want, d, n, n, total));
  }
  std::vector<std::byte> pages(d * kPageSize);
  const std::span<const Gref> dir(grefs.data(), d);
  if (backend_alloc) {
    check(encode_backend_alloc(dir, n, pages));
  } else {
    check(encode_frontend_alloc(dir, std::span<const Gref>(grefs).subspan(d), pages));
  }
  write_stdout(pages.data(), pages.size());
}

void run_decode(std::size_t n, const std::string& dir_grefs_arg) {
  std::vector<Gref> dir_grefs;
  if (!dir_grefs_arg.empty()) {
    std::size_t start = 0;
    while (start <= dir_grefs_arg.size()) {
      std::size_t comma = dir_grefs_arg.find(',', start);
      if (comma == std::string::npos) comma = dir_grefs_arg.size();
      dir_grefs.push_back(parse_gref(std::string_view(dir_grefs_arg).substr(start, comma - start),
                                     "--dir-grefs entry"));
      start = comma + 1;
    }
  }
  const std::size_t d = dir_pages(n);
  const std::string data = read_stdin(d * kPageSize);
  DecodeOptions options;
  options.dir_grefs = dir_grefs;
  auto grefs = take(decode_page_directory(
      std::span(reinterpret_cast<const std::byte*>(data.data()), data.size()), n, options));
  std::string out;
  out.reserve(grefs.size() * 8);
  for (Gref g : grefs) fmt::format_to(std::back_inserter(out), "{}\n", g);
  write_stdout(out.data(), out.size());
}

// Describes whatever pages arrive, well formed or not, and judges the chain.
void run_inspect() {
  const std::size_t max_bytes = dir_pages(kDefaultMaxPages) * kPageSize;
  const std::string data = read_stdin(max_bytes);
  if (data.size() > max_bytes) {
    fail(kExitFailure, fmt::format("input is larger than a directory of the most pages "
                                   "shbuf accepts ({} bytes)",
                                   max_bytes));
  }
  if (data.empty()) fail(kExitFailure, "no directory pages on stdin");
  if (data.size() % kPageSize != 0) {
    fail(kExitFailure, fmt::format("input is {} bytes, not a whole number of {}-byte pages",
                                   data.size(), kPageSize));
  }
  const std::size_t d = data.size() / kPageSize;
  const auto* bytes = reinterpret_cast<const std::byte*>(data.data());
  std::string problem;
  std::size_t total = 0;
  bool ended = false;
  std::vector<Gref> links;
  for (std::size_t i = 0; i < d; ++i) {
    Gref words[1 + kGrefsPerDirPage];
    copy_grefs_from_shared(words, bytes + i * kPageSize, 1 + kGrefsPerDirPage);
    std::size_t carried = 0;
    while (carried < kGrefsPerDirPage && words[1 + carried] != kDirListEnd) ++carried;
    std::size_t stray = 0;
    for (std::size_t k = carried; k < kGrefsPerDirPage; ++k) stray += words[1 + k] != 0;
    fmt::print("page {}: link {}, {} grefs{}\n", i, words[0], carried,
               stray ? fmt::format(" (and {} more after a 0 slot)", stray) : "");
    total += carried;
    if (problem.empty()) {
      if (ended) {
        problem = fmt::format("page {} follows the end of the chain", i);
      } else if (stray != 0) {
        problem = fmt::format("page {} has a 0 gref before other grefs", i);
      } else if (words[0] == kDirListEnd) {
        ended = true;
      } else if (carried != kGrefsPerDirPage) {
        problem = fmt::format("page {} links on but carries only {} grefs", i, carried);
      } else if (std::find(links.begin(), links.end(), words[0]) != links.end()) {
        problem =
            fmt::format("page {} links to gref {} a second time: the chain loops", i, words[0]);
      }
      links.push_back(words[0]);
    }
  }
  if (problem.empty() && !ended) {
    problem = fmt::format("the last page links to gref {}: the chain does not end", links.back());
  }
  if (problem.empty() && total == 0) problem = "the directory carries no grefs";
  if (problem.empty() && dir_pages(total) != d) {
    problem = fmt::format("{} grefs need {} directory pages, got {}", total, dir_pages(total), d);
  }
  if (!problem.empty()) {
    fmt::print("chain: broken: {}\n", problem);
    std::fflush(stdout);
    fail(kExitFailure, "directory chain is not well formed: " + problem);
  }
  fmt::print("chain: well formed, {} directory pages, {} buffer grefs\n", d, total);
}

}  // namespace

void add_dir_commands(CLI::App& app) {
  CLI::App* dir = app.add_subcommand("dir", "Encode, decode and inspect page directories");
  dir->require_subcommand(1);

  static std::size_t pages = 0;
  static bool backend_alloc = false;
  static std::string dir_grefs;

  CLI::App* encode = dir->add_subcommand(
      "encode",
      "Read decimal grefs on stdin (the directory grefs, then the buffer grefs unless "
      "--backend-alloc) and write the directory pages to stdout");
  encode->add_option("--pages", pages, "Buffer size in pages (N)")
      ->required()
      ->check(decimal_in(1, kDefaultMaxPages));
  encode->add_flag("--backend-alloc", backend_alloc,
                   "Backend-allocated mode: links only, gref slots zero");
  encode->callback([] { run_encode(pages, backend_alloc); });

  CLI::App* decode = dir->add_subcommand(
      "decode", "Read directory pages on stdin and print the N buffer grefs, one per line");
  decode->add_option("--pages", pages, "Buffer size in pages (N)")
      ->required()
      ->check(decimal_in(1, kDefaultMaxPages));
  decode->add_option("--dir-grefs", dir_grefs,
                     "Comma-separated grefs the directory pages were reached through; each "
                     "link is checked against them");
  decode->callback([] { run_decode(pages, dir_grefs); });

  CLI::App* inspect =
      dir->add_subcommand("inspect",
                          "Describe directory pages on stdin: each page's link and gref count, and "
                          "whether the chain is well formed");
  inspect->callback([] { run_inspect(); });
}

}  // namespace shbuf::cli
