// Period-driven playback through our sndif frontend.
#include "pv/snd/playback.h"

namespace shbuf::snd {

Result<Playback> play_paced(SndFrontend& fe, std::size_t stream, const PlaybackFormat& f,
                            std::uint64_t bytes, const PlaybackFill& fill) {
  if (f.period_bytes == 0 || f.buffer_bytes < f.period_bytes) {
    return make_error(EINVAL, "the period must be non-zero and fit the buffer");
  }
  SHBUF_TRY(fe.open(stream, f.rate, f.format, f.channels, f.buffer_bytes, f.period_bytes));
  Playback p;
  const std::uint64_t total = bytes / f.period_bytes * f.period_bytes;
  auto write_ahead = [&]() -> Status {
    while (p.bytes < total && p.bytes + f.period_bytes <= p.last_position + f.buffer_bytes) {
      const std::uint32_t off = std::uint32_t(p.bytes % f.buffer_bytes);
      fill(fe.buffer(stream).subspan(off, f.period_bytes), p.bytes);
      SHBUF_TRY(fe.write(stream, off, f.period_bytes));
      p.bytes += f.period_bytes;
    }
    return {};
  };
  SHBUF_TRY(write_ahead());
  const auto started = std::chrono::steady_clock::now();
  SHBUF_TRY(fe.trigger(stream, kTriggerStart));
  while (p.last_position < p.bytes) {
    auto e = fe.next_event(stream);
    if (!e.ok()) return e.error();
    p.elapsed = std::chrono::steady_clock::now() - started;
    p.last_position = e->position;
    ++p.events;
    SHBUF_TRY(write_ahead());
  }
  SHBUF_TRY(fe.trigger(stream, kTriggerStop));
  SHBUF_TRY(fe.close_stream(stream));
  return p;
}

}  // namespace shbuf::snd
