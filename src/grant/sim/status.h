// `sim status`: what an instance holds, as SimStatus.
#pragma once

#include "shbuf/grant/sim.h"
#include "grant/sim/instance.h"

namespace shbuf::sim {

// Takes the lock, reaps dead attachments, and reads the instance's state;
// each record and entry it shows is checked first. Refuses what the lock
// refuses (ESTALE, ETIMEDOUT, EUCLEAN) and damaged state (EUCLEAN).
Result<SimStatus> read_status(Instance& in);

}  // namespace shbuf::sim
