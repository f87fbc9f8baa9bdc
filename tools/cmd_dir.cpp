// shbuf dir encode|decode|inspect: the page directory codec on stdin/stdout.
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "cli.h"
#include "shbuf/core/page_directory.h"

namespace shbuf::cli {
namespace {

// Stdin is read as a stream, at most kMaxInput bytes: each chunk goes to
// `take`; returns whether input stopped at the cap with more to come.
inline constexpr std::uint64_t kMaxInput = std::uint64_t{1} << 30;

template <typename Take>
bool read_stdin_chunks(Take take) {
  char chunk[65536];
  std::uint64_t consumed = 0;
  while (consumed < kMaxInput) {
    const ssize_t got = ::read(STDIN_FILENO, chunk, sizeof chunk);
    if (got < 0) {
      if (errno == EINTR) continue;
      fail(kExitFailure, errno_error("cannot read stdin").message);
    }
    if (got == 0) return false;
    take(std::string_view(chunk, static_cast<std::size_t>(got)));
    consumed += static_cast<std::uint64_t>(got);
  }
  return true;
}

// All of stdin, but never more than `limit` bytes held: `total` counts what
// arrived, so a too-long input is reported with its real size.
struct StdinBytes {
  std::string data;
  std::uint64_t total = 0;
  bool truncated = false;  // stopped after kMaxInput bytes

  std::string size() const {
    return truncated ? fmt::format("more than {}", total) : std::to_string(total);
  }
};

StdinBytes read_stdin(std::size_t limit) {
  StdinBytes in;
  in.truncated = read_stdin_chunks([&](std::string_view chunk) {
    if (in.data.size() < limit) in.data.append(chunk.substr(0, limit - in.data.size()));
    in.total += chunk.size();
  });
  return in;
}

void write_stdout(const void* data, std::size_t size) {
  const auto* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t put = ::write(STDOUT_FILENO, p, size);
    if (put < 0) {
      if (errno == EINTR) continue;
      fail(kExitFailure, errno_error("cannot write stdout").message);
    }
    p += put;
    size -= static_cast<std::size_t>(put);
  }
}

Gref parse_gref(std::string_view token, const std::string& what) {
  auto value = parse_decimal(token, 0, UINT32_MAX);
  if (!value.ok()) {
    fail(kExitFailure, fmt::format("{} '{}' is not a decimal gref (0..4294967295)", what, token));
  }
  return static_cast<Gref>(*value);
}

// Whitespace-separated decimal grefs on stdin: at most `keep` are kept, every
// word is checked and counted, so the count in an error is what really
// arrived.
struct GrefInput {
  std::vector<Gref> grefs;
  std::uint64_t total = 0;
  bool truncated = false;  // stopped after kMaxInput bytes
};

// "4294967295" is the longest word a gref can be.
inline constexpr std::size_t kMaxGrefWord = 10;

GrefInput read_grefs(std::size_t keep) {
  GrefInput in;
  std::string word;
  auto finish_word = [&] {
    if (word.empty()) return;
    const Gref g = parse_gref(word, fmt::format("input word {}", in.total + 1));
    if (in.grefs.size() < keep) in.grefs.push_back(g);
    ++in.total;
    word.clear();
  };
  in.truncated = read_stdin_chunks([&](std::string_view chunk) {
    for (const char c : chunk) {
      if (std::isspace(static_cast<unsigned char>(c))) {
        finish_word();
      } else if (word.size() > kMaxGrefWord) {
        fail(kExitFailure, fmt::format("input word {} '{}...' is not a decimal gref "
                                       "(0..4294967295)",
                                       in.total + 1, word));
      } else {
        word += c;
      }
    }
  });
  finish_word();
  return in;
}

void run_encode(std::size_t n, bool backend_alloc) {
  const std::size_t d = dir_pages(n);
  const std::size_t want = backend_alloc ? d : d + n;
  const GrefInput in = read_grefs(want);
  if (in.total != want) {
    const std::string got =
        in.truncated
            ? fmt::format("at least {} (stopped reading after {} bytes)", in.total, kMaxInput)
            : std::to_string(in.total);
    fail(kExitFailure,
         backend_alloc
             ? fmt::format("expected {} directory grefs on stdin for {} pages, got {}", d, n, got)
             : fmt::format("expected {} grefs on stdin ({} directory + {} buffer) for {} pages, "
                           "got {}",
                           want, d, n, n, got));
  }
  const std::vector<Gref>& grefs = in.grefs;
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
  const StdinBytes in = read_stdin(d * kPageSize);
  if (in.total != d * kPageSize) {
    fail(kExitFailure, fmt::format("a buffer of {} pages has {} directory pages ({} bytes), got {} "
                                   "bytes on stdin",
                                   n, d, d * kPageSize, in.size()));
  }
  const std::string& data = in.data;
  DecodeOptions options;
  options.dir_grefs = dir_grefs;
  auto grefs = take(decode_page_directory(
      std::span(reinterpret_cast<const std::byte*>(data.data()), data.size()), n, options));
  std::string out;
  out.reserve(grefs.size() * 8);
  for (Gref g : grefs) fmt::format_to(std::back_inserter(out), "{}\n", g);
  write_stdout(out.data(), out.size());
}

// The directory pages on stdin: at least one, whole pages only, and no more
// than the directory of the largest buffer shbuf accepts.
std::string read_directory_pages() {
  const std::size_t max_bytes = dir_pages(kDefaultMaxPages) * kPageSize;
  StdinBytes in = read_stdin(max_bytes);
  if (in.total > max_bytes) {
    fail(kExitFailure, fmt::format("input of {} bytes is larger than a directory of the most "
                                   "pages shbuf accepts ({} bytes)",
                                   in.size(), max_bytes));
  }
  if (in.data.empty()) fail(kExitFailure, "no directory pages on stdin");
  if (in.data.size() % kPageSize != 0) {
    fail(kExitFailure, fmt::format("input is {} bytes, not a whole number of {}-byte pages",
                                   in.data.size(), kPageSize));
  }
  return std::move(in.data);
}

// The chain as inspect walks it: the first problem found (empty while none),
// the grefs carried so far, whether the end was reached, and the grefs of
// the pages seen so far, as far as they are known.
struct Chain {
  std::string problem;
  std::size_t total = 0;
  bool ended = false;
  std::vector<Gref> links;
};

// Describes page i and judges it against the pages before it.
void inspect_page(std::size_t i, const std::byte* page, Chain& chain) {
  Gref words[1 + kGrefsPerDirPage];
  copy_grefs_from_shared(words, page, 1 + kGrefsPerDirPage);
  std::size_t carried = 0;
  while (carried < kGrefsPerDirPage && words[1 + carried] != kDirListEnd) ++carried;
  std::size_t stray = 0;
  for (std::size_t k = carried; k < kGrefsPerDirPage; ++k) stray += words[1 + k] != 0;
  fmt::print("page {}: link {}, {} grefs{}\n", i, words[0], carried,
             stray ? fmt::format(" (and {} more after a 0 slot)", stray) : "");
  chain.total += carried;
  if (!chain.problem.empty()) return;
  if (chain.ended) {
    chain.problem = fmt::format("page {} follows the end of the chain", i);
  } else if (stray != 0) {
    chain.problem = fmt::format("page {} has a 0 gref before other grefs", i);
  } else if (words[0] == kDirListEnd) {
    chain.ended = true;
  } else if (carried != kGrefsPerDirPage) {
    chain.problem = fmt::format("page {} links on but carries only {} grefs", i, carried);
  } else if (std::find(chain.links.begin(), chain.links.end(), words[0]) != chain.links.end()) {
    chain.problem = fmt::format(
        "page {} links to gref {}, the gref of an earlier page: the chain "
        "loops",
        i, words[0]);
  }
  chain.links.push_back(words[0]);
}

// Once every one of the d pages is seen: what is wrong with the chain as a
// whole, if nothing was wrong with a page.
void judge_chain(std::size_t d, Chain& chain) {
  if (chain.problem.empty() && !chain.ended) {
    chain.problem =
        fmt::format("the last page links to gref {}: the chain does not end", chain.links.back());
  }
  if (chain.problem.empty() && chain.total == 0) chain.problem = "the directory carries no grefs";
  if (chain.problem.empty() && dir_pages(chain.total) != d) {
    chain.problem = fmt::format("{} grefs need {} directory pages, got {}", chain.total,
                                dir_pages(chain.total), d);
  }
}

// Describes whatever pages arrive, well formed or not, and judges the chain.
// first_gref (0: not given) is the gref page 0 was reached through, so that a
// link back to page 0 is caught as a loop too.
void run_inspect(Gref first_gref) {
  const std::string data = read_directory_pages();
  const std::size_t d = data.size() / kPageSize;
  const auto* bytes = reinterpret_cast<const std::byte*>(data.data());
  Chain chain;
  if (first_gref != kDirListEnd) chain.links.push_back(first_gref);
  for (std::size_t i = 0; i < d; ++i) inspect_page(i, bytes + i * kPageSize, chain);
  judge_chain(d, chain);
  if (!chain.problem.empty()) {
    fmt::print("chain: broken: {}\n", chain.problem);
    std::fflush(stdout);
    fail(kExitFailure, "directory chain is not well formed: " + chain.problem);
  }
  fmt::print("chain: well formed, {} directory pages, {} buffer grefs{}\n", d, chain.total,
             first_gref == kDirListEnd
                 ? " (links back to page 0 not checked: give --first-gref to check them)"
                 : "");
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
  static Gref first_gref = kDirListEnd;
  inspect
      ->add_option("--first-gref", first_gref,
                   "The gref page 0 was reached through (the protocol's gref_directory), so "
                   "that a link back to page 0 is caught as a loop")
      ->check(decimal_in(1, UINT32_MAX));
  inspect->callback([] { run_inspect(first_gref); });
}

}  // namespace shbuf::cli
