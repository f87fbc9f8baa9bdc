// The simulator against damage to its own shared files: every field of the
// state's header, a slot, a domain, mapping records, a grant entry and its
// bookkeeping, set in turn to hostile values; then every operation must
// succeed or fail with the damage error (EUCLEAN, naming the reset), never
// crash, hang or read out of bounds. Also a truncated page file, a lock held
// by a live stuck process, and another layout version.
#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "grant/sim/instance.h"
#include "grant/sim/layout.h"
#include "run_process.h"
#include "shbuf/grant/sim.h"
#include "test_sim_util.h"

namespace shbuf::simtest {
namespace {

using ::testing::HasSubstr;
namespace L = ::shbuf::sim;

constexpr std::uint32_t kFrames = 1;  // 512 entries: quick scans and repairs
constexpr std::uint32_t kEntries = kFrames * L::kEntriesPerFrame;
constexpr std::uint64_t kAllOnes = ~std::uint64_t{0};

// One field of a shared file and the hostile values it is set to.
struct Field {
  std::string name;
  std::string file;  // "state", "dom0.gnt", ...
  std::size_t offset;
  std::size_t size;  // 1, 2, 4 or 8 bytes
  std::vector<std::uint64_t> values;
  bool guest_entry = false;  // a grant entry: map and copy may refuse it as Xen would
};

// Where each structure starts in its file.
constexpr std::size_t header() {
  return 0;
}
constexpr std::size_t slot(std::uint32_t s) {
  return L::kSlotsOffset + s * sizeof(L::SlotRec);
}
constexpr std::size_t domain(std::uint32_t di) {
  return L::kDomainsOffset + di * sizeof(L::DomainRec);
}
constexpr std::size_t record(std::uint32_t r) {
  return L::kRecordsOffset + r * sizeof(L::MapRec);
}
constexpr std::size_t entry(std::uint32_t g) {
  return g * sizeof(L::GrantEntryV1);
}
constexpr std::size_t aux(std::uint32_t g) {
  return kEntries * sizeof(L::GrantEntryV1) + g * sizeof(L::EntryAux);
}

// A field of a structure at `base`: its offset in the file and its size.
#define F(base, type, field) (base) + offsetof(L::type, field), sizeof(L::type::field)

// The scenario below leaves: slots 0 (domain 0) and 1 (domain 1); domain
// indices 0 and 1; domain 0's grefs 8..11 granted to 1 and mapped as records
// 0 (8-9) and 1 (11), 12..13 pending and mapped as record 2, record 3 free;
// domain 0's free run 14..511.
std::vector<Field> fields() {
  const std::uint64_t nil = L::kNil;
  std::vector<Field> f = {
      {"Header.magic", "state", F(header(), Header, magic), {0, 0x2121656761676d61}},
      {"Header.version", "state", F(header(), Header, version), {0, 1, L::kVersion + 1, kAllOnes}},
      {"Header.page_size", "state", F(header(), Header, page_size), {0, 8192, kAllOnes}},
      {"Header.max_grant_frames",
       "state",
       F(header(), Header, max_grant_frames),
       {0, 2, L::kMaxGrantFramesLimit + 1, kAllOnes}},
      {"Header.nr_entries", "state", F(header(), Header, nr_entries), {0, 511, 1024, kAllOnes}},
      {"Header.max_slots",
       "state",
       F(header(), Header, max_slots),
       {0, L::kMaxSlots + 1, kAllOnes}},
      {"Header.max_domains",
       "state",
       F(header(), Header, max_domains),
       {0, L::kMaxDomains + 1, kAllOnes}},
      {"Header.max_records",
       "state",
       F(header(), Header, max_records),
       {0, L::kMaxRecords + 1, kAllOnes}},
      {"Header.reset", "state", F(header(), Header, reset), {1, kAllOnes}},
      {"Header.instance_id", "state", F(header(), Header, instance_id), {0, kAllOnes}},
      {"Header.next_check_ns", "state", F(header(), Header, next_check_ns), {0, kAllOnes}},
      {"Header.slot_hiwater",
       "state",
       F(header(), Header, slot_hiwater),
       {0, 1, L::kMaxSlots + 1, kAllOnes}},
      {"Header.nr_domains",
       "state",
       F(header(), Header, nr_domains),
       {0, 1, L::kMaxDomains + 1, kAllOnes}},
      {"Header.rec_free_head",
       "state",
       F(header(), Header, rec_free_head),
       {0, 2, 4, nil - 1, nil}},
      {"Header.rec_hiwater",
       "state",
       F(header(), Header, rec_hiwater),
       {0, 1, 3, L::kMaxRecords + 1, kAllOnes}},
      {"Header.rec_in_use",
       "state",
       F(header(), Header, rec_in_use),
       {0, 4, L::kMaxRecords + 1, kAllOnes}},
      {"Header.holder", "state", F(header(), Header, holder), {0, kAllOnes, 1}},
  };
  for (std::uint32_t s : {0u, 1u}) {
    const std::string n = "SlotRec[" + std::to_string(s) + "].";
    std::vector<Field> more = {
        {n + "used", "state", F(slot(s), SlotRec, used), {0, 2, kAllOnes}},
        {n + "gen", "state", F(slot(s), SlotRec, gen), {0, kAllOnes}},
        {n + "pid", "state", F(slot(s), SlotRec, pid), {0, 1, kAllOnes}},
        {n + "domid", "state", F(slot(s), SlotRec, domid), {5, kDomIdFirstReserved, 0xffff}},
        {n + "dom_index",
         "state",
         F(slot(s), SlotRec, dom_index),
         {1 - s, 2, L::kMaxDomains, 0xffff}},
        {n + "pending", "state", F(slot(s), SlotRec, pending), {0, kEntries + 1, kAllOnes}},
    };
    f.insert(f.end(), more.begin(), more.end());
  }
  for (std::uint32_t di : {0u, 1u}) {
    const std::string n = "DomainRec[" + std::to_string(di) + "].";
    std::vector<Field> more = {
        {n + "domid",
         "state",
         F(domain(di), DomainRec, domid),
         {1 - di, 5, kDomIdFirstReserved, 0xffff}},
        {n + "ready", "state", F(domain(di), DomainRec, ready), {0, 2, 0xff}},
        {n + "attached",
         "state",
         F(domain(di), DomainRec, attached),
         {0, L::kMaxSlots + 1, kAllOnes}},
        {n + "free_head",
         "state",
         F(domain(di), DomainRec, free_head),
         {0, 7, 8, 13, 15, kEntries, nil - 1, nil}},
        {n + "free_count",
         "state",
         F(domain(di), DomainRec, free_count),
         {0, 1, kEntries - 8 + 1, kAllOnes}},
        {n + "hiwater", "state", F(domain(di), DomainRec, hiwater), {0, 7, kEntries + 1, kAllOnes}},
    };
    f.insert(f.end(), more.begin(), more.end());
  }
  for (std::uint32_t r : {0u, 1u, 3u}) {
    const std::string n = "MapRec[" + std::to_string(r) + "].";
    std::vector<Field> more = {
        {n + "gref",
         "state",
         F(record(r), MapRec, gref),
         {0, 7, 10, kEntries - 1, kEntries, kAllOnes}},
        {n + "count",
         "state",
         F(record(r), MapRec, count),
         {0, 3, kEntries - 8, kEntries + 1, kAllOnes}},
        {n + "next", "state", F(record(r), MapRec, next), {r, 1, 2, 3, 4, nil - 1, nil}},
        {n + "gen", "state", F(record(r), MapRec, gen), {0, kAllOnes}},
        {n + "granter", "state", F(record(r), MapRec, granter), {1, 2, L::kMaxDomains, 0xffff}},
        {n + "mapper", "state", F(record(r), MapRec, mapper), {0, 2, L::kMaxSlots, 0xffff}},
        {n + "used", "state", F(record(r), MapRec, used), {0, 1, 0xff}},
        {n + "writable", "state", F(record(r), MapRec, writable), {0, 1, 0xff}},
    };
    f.insert(f.end(), more.begin(), more.end());
  }
  // Grefs 8 (granted, mapped), 12 (pending), 14 (head of the free run), 511
  // (its tail).
  for (std::uint32_t g : {8u, 12u, 14u, kEntries - 1}) {
    const std::string n = "dom0.gnt[" + std::to_string(g) + "].";
    std::vector<Field> more = {
        {n + "flags",
         "dom0.gnt",
         F(entry(g), GrantEntryV1, flags),
         {0, L::GTF_permit_access, 0xffff},
         true},
        {n + "domid", "dom0.gnt", F(entry(g), GrantEntryV1, domid), {0, 5, 0xffff}, true},
        {n + "frame", "dom0.gnt", F(entry(g), GrantEntryV1, frame), {0, kAllOnes}, true},
        {n + "map_count",
         "dom0.gnt",
         F(aux(g), EntryAux, map_count),
         {0, 1, L::kMaxMapCount + 1, kAllOnes}},
        {n + "wmap_count", "dom0.gnt", F(aux(g), EntryAux, wmap_count), {0, 2, kAllOnes}},
        {n + "owner",
         "dom0.gnt",
         F(aux(g), EntryAux, owner),
         {0, 1, 5, L::kMaxSlots, 0xfffe, 0xffff}},
        {n + "state", "dom0.gnt", F(aux(g), EntryAux, state), {0, 1, 2, 3, 4, 0xffff}},
        {n + "run_len",
         "dom0.gnt",
         F(aux(g), EntryAux, run_len),
         {0, 1, kEntries - 14 + 1, kAllOnes}},
        {n + "run_next",
         "dom0.gnt",
         F(aux(g), EntryAux, run_next),
         {g, 8, 12, kEntries, nil - 1, nil}},
        {n + "run_prev", "dom0.gnt", F(aux(g), EntryAux, run_prev), {g, 8, kEntries, nil - 1, nil}},
        {n + "run_tail",
         "dom0.gnt",
         F(aux(g), EntryAux, run_tail),
         {0, 9, g + 1, kEntries + 1, kAllOnes}},
    };
    f.insert(f.end(), more.begin(), more.end());
  }
  return f;
}

#undef F

struct Outcome {
  std::string op;
  int code = 0;  // 0: success
  std::string message;
};

class SimDamage : public SimTest {
 protected:
  // Builds the scenario, damages one field and runs every operation; each
  // outcome goes to `out`. Runs in a child: a crash is the child's, not the
  // test's.
  static int run_case(const std::string& path, const Field& f, std::uint64_t value, int out_fd) {
    auto open_as = [&](DomId d) {
      SimOptions o;
      o.path = path;
      o.domid = d;
      o.max_grant_frames = kFrames;
      return SimProvider::open(o);
    };
    auto d0 = open_as(0);
    auto d1 = open_as(1);
    if (!d0.ok() || !d1.ok()) return 90;
    auto share = (*d0)->share(1, 4, Access::kReadWrite);
    auto share2 = (*d0)->share(1, 2, Access::kReadOnly);
    if (!share.ok() || !share2.ok()) return 91;
    const std::vector<Gref> g = {share->grefs().begin(), share->grefs().end()};
    const std::vector<Gref> scattered = {g[0], g[1], g[3]};
    auto map = (*d1)->map(0, scattered, Access::kReadWrite);
    auto map2 = (*d1)->map(0, share2->grefs(), Access::kReadOnly);
    const std::vector<Gref> one = {g[2]};
    auto tmp = (*d1)->map(0, one, Access::kReadOnly);
    if (!map.ok() || !map2.ok() || !tmp.ok() || !tmp->unmap().ok()) return 92;
    if (g[0] != 8 || share2->grefs()[0] != 12) return 94;
    if (share2->end().code() != EBUSY) return 93;

    const int fd = ::open((path + "/" + f.file).c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0 || pwrite(fd, &value, f.size, off_t(f.offset)) != ssize_t(f.size)) return 95;
    close(fd);

    std::string report;
    auto note = [&](const char* op, int code, const std::string& msg) {
      report += std::string(op) + "\t" + std::to_string(code) + "\t" + msg + "\n";
    };
    auto note_status = [&](const char* op, const Status& st) {
      note(op, st.code(), st.ok() ? "" : st.error().message);
    };
    {
      auto s = SimProvider::status(path);
      note("status", s.ok() ? 0 : s.error().code, s.ok() ? "" : s.error().message);
    }
    {
      auto s = (*d1)->status();
      note("status-attached", s.ok() ? 0 : s.error().code, s.ok() ? "" : s.error().message);
    }
    auto fresh = (*d0)->share(1, 3, Access::kReadWrite);
    note("share", fresh.ok() ? 0 : fresh.error().code, fresh.ok() ? "" : fresh.error().message);
    auto again = (*d1)->map(0, g, Access::kReadOnly);
    note("map", again.ok() ? 0 : again.error().code, again.ok() ? "" : again.error().message);
    std::array<std::byte, 16> buf{};
    note_status("copy", (*d1)->copy_from(0, g[1], 8, buf));
    if (again.ok()) note_status("unmap-new", again->unmap());
    note_status("unmap", map->unmap());
    note_status("end", share->end());
    auto d2 = open_as(2);
    note("attach", d2.ok() ? 0 : d2.error().code, d2.ok() ? "" : d2.error().message);
    (*d1)->sweep();
    (void)(*d0)->pending_pages();
    if (fresh.ok()) note_status("end-new", fresh->end());
    note_status("unmap-pending", map2->unmap());
    // The destructors detach through the damage too.
    d2 = Error{};
    d1 = Error{};
    d0 = Error{};
    (void)SimProvider::reset(path);
    for (std::size_t done = 0; done < report.size();) {
      const ssize_t put = write(out_fd, report.data() + done, report.size() - done);
      if (put <= 0) return 96;
      done += std::size_t(put);
    }
    return 0;
  }
};

// Which outcomes are acceptable: success, or the damage error naming the
// reset (EBUSY counts as success for end()). A grant entry is the granter's to write on Xen, so map
// and copy may refuse a damaged one as Xen would (EINVAL); a set `reset` field means the instance
// was reset (ESTALE, or EAGAIN for a new open that keeps seeing it).
bool acceptable(const Field& f, const Outcome& o, const std::string& path) {
  if (o.code == 0) return true;
  if (o.code == EUCLEAN) {
    return o.message.find("is damaged") != std::string::npos &&
           o.message.find("run 'shbuf sim reset --sim " + path + "'") != std::string::npos;
  }
  if (f.name == "Header.reset") return o.code == ESTALE || o.code == EAGAIN;
  // An unmap refused for damage leaves the pages mapped: ending the grants
  // then keeps them, as documented.
  if (o.op == "end") return o.code == EBUSY;
  if (f.guest_entry && (o.op == "map" || o.op == "copy")) return o.code == EINVAL;
  return false;
}

TEST_F(SimDamage, EveryFieldSetToHostileValuesIsSurvivedAndReported) {
  const std::vector<Field> all = fields();
  std::size_t kinds = 0;
  std::size_t ops = 0;
  std::size_t damage_errors = 0;
  std::size_t bad = 0;
  std::map<std::string, std::size_t> by_code;
  for (const Field& f : all) {
    for (const std::uint64_t value : f.values) {
      ++kinds;
      const std::string what = f.name + " = " + std::to_string(value);
      SCOPED_TRACE(what);
      std::filesystem::remove_all(path);
      int fds[2];
      ASSERT_EQ(pipe(fds), 0);
      const pid_t pid = fork();
      ASSERT_GE(pid, 0);
      if (pid == 0) {
        close(fds[0]);
        alarm(30);  // a hang fails the case, not the suite
        setenv(kSimLockTimeoutEnv, "3000", 1);
        _exit(run_case(path, f, value, fds[1]));
      }
      close(fds[1]);
      std::string report;
      char chunk[4096];
      for (ssize_t got; (got = read(fds[0], chunk, sizeof chunk)) != 0;) {
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) break;
        report.append(chunk, std::size_t(got));
      }
      close(fds[0]);
      const int st = wait_for(pid);
      if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        ++bad;
        ADD_FAILURE() << what << ": the operations after the damage ended with "
                      << describe_wait(st);
        continue;
      }
      std::size_t at = 0;
      while (at < report.size()) {
        const std::size_t end = report.find('\n', at);
        const std::string line = report.substr(at, end - at);
        at = end + 1;
        Outcome o;
        const std::size_t t1 = line.find('\t');
        const std::size_t t2 = line.find('\t', t1 + 1);
        o.op = line.substr(0, t1);
        o.code = std::stoi(line.substr(t1 + 1, t2 - t1 - 1));
        o.message = line.substr(t2 + 1);
        ++ops;
        by_code[o.code == 0 ? "ok" : errno_name(o.code)]++;
        if (o.code == EUCLEAN) ++damage_errors;
        if (!acceptable(f, o, path)) {
          ++bad;
          ADD_FAILURE() << what << ": " << o.op << " failed with " << errno_name(o.code) << ": "
                        << o.message;
        }
      }
    }
  }
  std::string codes;
  for (const auto& [code, count] : by_code) codes += " " + code + "=" + std::to_string(count);
  std::printf("damaged %zu fields with %zu values; %zu operations ran:%s\n", all.size(), kinds, ops,
              codes.c_str());
  RecordProperty("fields", int(all.size()));
  RecordProperty("damage_kinds", int(kinds));
  RecordProperty("operations", int(ops));
  RecordProperty("damage_errors", int(damage_errors));
  EXPECT_EQ(bad, 0u);
}

// A page file cut short would fault (SIGBUS) on first access of a mapping of
// its lost pages: map() and share() refuse it before handing out any such
// mapping (madvise refuses to populate the lost pages, or the file's size is
// checked first), naming the file.
TEST_F(SimDamage, TruncatedPageFileIsRefusedBeforeMapping) {
  auto d0 = open(0, kFrames);
  auto d1 = open(1, kFrames);
  ASSERT_TRUE(d0 && d1);
  auto share = d0->share(1, 4, Access::kReadWrite);
  ASSERT_TRUE(share.ok());
  ASSERT_EQ(truncate((path + "/dom0.mem").c_str(), 4 * 4096), 0);
  auto map = d1->map(0, share->grefs(), Access::kReadOnly);
  ASSERT_FALSE(map.ok());
  EXPECT_EQ(map.error().code, EUCLEAN);
  EXPECT_THAT(map.error().message, HasSubstr(path + "/dom0.mem is 16384 bytes, expected 2097152"));
  EXPECT_THAT(map.error().message, HasSubstr("run 'shbuf sim reset --sim " + path + "'"));
  auto more = d0->share(1, 1, Access::kReadWrite);
  ASSERT_FALSE(more.ok());
  EXPECT_EQ(more.error().code, EUCLEAN);
  // A process looking at the domain afresh refuses it too.
  auto s = SimProvider::status(path);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, EUCLEAN);
  EXPECT_THAT(s.error().message, HasSubstr("dom0.mem is 16384 bytes"));
}

TEST_F(SimDamage, AnotherLayoutVersionIsRefusedWithTheResetHint) {
  {
    auto d0 = open(0, kFrames);
    ASSERT_TRUE(d0);
  }
  const std::uint32_t other = L::kVersion + 1;
  const int fd = ::open((path + "/state").c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(pwrite(fd, &other, sizeof other, offsetof(L::Header, version)), 4);
  close(fd);
  for (auto code : {SimProvider::status(path).error().code,
                    SimProvider::open({path, 0, kFrames, "", true}).error().code}) {
    EXPECT_EQ(code, EUCLEAN);
  }
  EXPECT_THAT(
      SimProvider::status(path).error().message,
      HasSubstr("layout version " + std::to_string(other) + " and this shbuf reads " + "version " +
                std::to_string(L::kVersion) + "; run 'shbuf sim reset --sim " + path + "'"));
  ASSERT_TRUE(SimProvider::reset(path).ok());
  EXPECT_FALSE(std::filesystem::exists(path + "/state"));
  EXPECT_TRUE(open(0, kFrames));

  // A state cut short is refused the same way.
  ASSERT_EQ(truncate((path + "/state").c_str(), 4096), 0);
  auto st = SimProvider::status(path);
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, EUCLEAN);
  EXPECT_THAT(st.error().message, HasSubstr("state is 4096 bytes"));
}

// A live process that holds the lock and never lets go: every waiter gives
// up after the timeout, naming the holder, instead of hanging.
TEST_F(SimDamage, LockHeldByALiveStuckProcessTimesOut) {
  ASSERT_EQ(setenv(kSimLockTimeoutEnv, "300", 1), 0);
  auto d0 = open(0, kFrames);
  ASSERT_TRUE(d0);
  int up[2];
  ASSERT_EQ(pipe(up), 0);
  const pid_t pid = spawn([&] {
    auto in = sim::Instance::open(path, false, 0);
    if (!in.ok() || !(*in)->lock().ok()) return 91;
    if (write(up[1], "l", 1) != 1) return 92;
    pause();
    return 0;
  });
  char c;
  ASSERT_EQ(read(up[0], &c, 1), 1);
  const auto t0 = std::chrono::steady_clock::now();
  auto s = SimProvider::status(path);
  const auto waited = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.error().code, ETIMEDOUT);
  EXPECT_THAT(s.error().message,
              HasSubstr("waited 300 ms for the lock of the simulator instance at " + path +
                        " (the mutex in " + path + "/state); process " + std::to_string(pid) +
                        " holds it"));
  EXPECT_LT(waited, std::chrono::seconds(3));
  auto share = d0->share(1, 1, Access::kReadWrite);
  ASSERT_FALSE(share.ok());
  EXPECT_EQ(share.error().code, ETIMEDOUT);
  auto r = shbuf::testing::run_process({SHBUF_BIN, "sim", "status", "--sim", path}, "",
                                       {std::string(kSimLockTimeoutEnv) + "=300"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.err, HasSubstr("shbuf: error: waited 300 ms for the lock"));
  EXPECT_EQ(shbuf::testing::count_lines(r.err), 1u);

  kill(pid, SIGKILL);
  wait_for(pid);
  close(up[0]);
  close(up[1]);
  // The holder's death frees the lock; the state is repaired.
  EXPECT_TRUE(d0->share(1, 1, Access::kReadWrite).ok());
  EXPECT_TRUE(SimProvider::status(path).ok());
  unsetenv(kSimLockTimeoutEnv);
}

TEST_F(SimDamage, MalformedLockTimeoutIsRefused) {
  ASSERT_EQ(setenv(kSimLockTimeoutEnv, "soon", 1), 0);
  SimOptions o;
  o.path = path;
  auto p = SimProvider::open(o);
  unsetenv(kSimLockTimeoutEnv);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.error().code, EINVAL);
  EXPECT_THAT(p.error().message, HasSubstr("SHBUF_SIM_LOCK_TIMEOUT_MS: 'soon'"));
}

}  // namespace
}  // namespace shbuf::simtest
