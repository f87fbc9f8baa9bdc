// Playing through our frontend as ALSA's period-driven playback does: the
// stream's buffer filled ahead of the position the backend reports in its
// CUR_POS events, a period at a time. snd-fe plays its tone through it;
// shbuf bench snd measures the backend's pacing with it.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <span>

#include "pv/snd/frontend.h"

namespace shbuf::snd {

struct PlaybackFormat {
  std::uint32_t rate = 48000;
  std::uint8_t format = kFormatS16LE;
  std::uint8_t channels = 2;
  std::uint32_t buffer_bytes = 16384;
  std::uint32_t period_bytes = 4096;  // a multiple of the frame size
};

// Writes into `out` the bytes of the played stream from byte `first` on.
using PlaybackFill = std::function<void(std::span<std::byte> out, std::uint64_t first)>;

struct Playback {
  std::uint64_t bytes = 0;          // written (whole periods)
  std::uint64_t last_position = 0;  // of the last event, in bytes
  std::uint64_t events = 0;         // position events received
  // From just before START was sent to the last event's arrival.
  std::chrono::steady_clock::duration elapsed{};
};

// OPEN, the buffer written ahead, START, then events awaited (each within
// the frontend's timeout), writing on, until the position reaches all that
// was written; STOP, CLOSE. `bytes` is rounded down to whole periods.
Result<Playback> play_paced(SndFrontend& fe, std::size_t stream, const PlaybackFormat& format,
                            std::uint64_t bytes, const PlaybackFill& fill);

}  // namespace shbuf::snd
