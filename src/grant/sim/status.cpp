// `sim status`: collecting what an instance holds, under its lock.
#include "grant/sim/status.h"

#include <utility>
#include <vector>

namespace shbuf::sim {

namespace {

// One domain's counts and grants, each entry checked before it is read.
Status collect_domain(Instance& in, std::uint16_t di, std::vector<bool>& seen, SimStatus& s) {
  auto v = in.view(di);
  if (!v.ok()) return std::move(v).error();
  const DomId domid = (*v)->domid;
  if (seen[domid]) return in.damaged("two domain records claim " + dom_str(domid));
  seen[domid] = true;
  const DomainRec& d = in.dom(di);
  SimStatus::Domain dom;
  dom.domid = domid;
  dom.attached = d.attached;
  dom.alive = d.attached > 0;
  const GrantEntryV1* ent = (*v)->ent;
  const EntryAux* aux = (*v)->aux;
  const std::uint32_t hi = d.hiwater;
  for (std::uint32_t g = kReservedGrefs; g < hi; ++g) {
    SHBUF_TRY(in.check_entry(**v, g));
    const EntryAux& a = aux[g];
    if (a.state == kFree) continue;
    dom.frames_in_use++;
    if (a.state == kFreeing) continue;
    const bool pending = a.state == kPending;
    const bool ro = (ent[g].flags & GTF_readonly) != 0;
    if (pending) {
      dom.pending++;
    } else {
      dom.grants_in_use++;
      if (ro) dom.grants_read_only++;
      if (a.map_count > 0) dom.grants_mapped++;
    }
    s.grants.push_back({domid, g, ent[g].domid, ro, a.map_count, pending});
  }
  s.domains.push_back(dom);
  return {};
}

// What status() reports, read under the lock after a liveness sweep.
Result<SimStatus> collect(Instance& in) {
  SimStatus s;
  Header& h = in.hdr();
  s.path = in.dir();
  s.max_grant_frames = in.max_grant_frames();
  s.grants_per_domain = in.nr_entries();
  for (std::uint32_t i = 0; i < h.slot_hiwater; ++i) {
    const SlotRec& sr = in.slot(std::uint16_t(i));
    if (sr.used == 0) continue;
    s.attachments.push_back({sr.domid, sr.pid, in.slot_alive(std::uint16_t(i))});
  }
  std::vector<bool> seen(kDomIdFirstReserved);
  for (std::uint16_t di = 0; di < h.nr_domains; ++di) SHBUF_TRY(collect_domain(in, di, seen, s));
  for (std::uint32_t r = 0; r < h.rec_hiwater; ++r) {
    const MapRec& rec = in.rec(r);
    if (rec.used == 0) continue;
    SHBUF_TRY(in.check_rec(r));
    const SlotRec& sr = in.slot(rec.mapper);
    SimStatus::MappingInfo m;
    m.mapper = sr.domid;
    m.granter = in.dom(rec.granter).domid;
    m.gref = rec.gref;
    m.writable = rec.writable != 0;
    m.count = rec.count;
    m.pid = sr.pid;
    s.mappings.push_back(m);
  }
  return s;
}

}  // namespace

Result<SimStatus> read_status(Instance& in) {
  auto locked = in.hold();
  if (!locked.ok()) return std::move(locked).error();
  SHBUF_TRY(in.check_liveness(true));
  return collect(in);
}

}  // namespace shbuf::sim
