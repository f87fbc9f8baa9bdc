// What a toolstack (libxl, for `xl create` and `xl destroy`) writes to
// xenstore for a domain and its PV devices, so that a backend and a frontend
// can meet on the simulator exactly as on Xen. Works on any Xenstore the
// toolstack's domain (dom0) may write.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pv/xenstore.h"

namespace shbuf::pv {

// Key/value pairs, keys relative to a device directory ("0/resolution").
using Entries = std::vector<std::pair<std::string, std::string>>;

struct DeviceSpec {
  std::string kind;  // "vdispl", "vsnd", ...
  DomId frontend = 1;
  DomId backend = 0;
  std::uint32_t devid = 0;
  Entries back;      // the backend's directory (besides frontend, frontend-id, online, state)
  Entries front;     // the frontend's directory, which the frontend may change
  Entries ro_front;  // the frontend's directory, read-only for the frontend
};

// /local/domain/<backend>/backend/<kind>/<frontend>/<devid>
std::string backend_path(const std::string& kind, DomId backend, DomId frontend,
                         std::uint32_t devid);
// /local/domain/<frontend>/device/<kind>/<devid>
std::string frontend_path(const std::string& kind, DomId frontend, std::uint32_t devid);

// Makes the domain's home as libxl does (the domain reads it; its `device`,
// `data` and `drivers` folders are its own), unless it exists. Fires
// @introduceDomain.
Status introduce_domain(Xenstore& xs, DomId domid);
// Removes the domain's home (fires @releaseDomain), as xl destroy does once
// the domain is gone.
Status release_domain(Xenstore& xs, DomId domid);

// Writes both directories in one transaction (with libxl's permissions:
// each end reads the other's, the frontend writes only its own directory's
// `front` entries), both states Initialising. EEXIST when the device exists.
Status add_device(Xenstore& xs, const DeviceSpec& spec);

// Tears the device down as xl destroy does: a Connected backend's state
// becomes Closing and the frontend's directory goes; then, once the backend
// says Closed (or after `wait`), its directory goes too. A backend in any
// other state is not waited for. ENOENT when there is no such device;
// ETIMEDOUT (everything removed all the same) when the backend did not
// close in time.
Status remove_device(Xenstore& xs, const std::string& kind, DomId backend, DomId frontend,
                     std::uint32_t devid, std::chrono::milliseconds wait);

// The devices of `kind` that `frontend` has from `backend` (their devids).
Result<std::vector<std::uint32_t>> list_devices(Xenstore& xs, const std::string& kind,
                                                DomId backend, DomId frontend);

}  // namespace shbuf::pv
