// The packets of displif and sndif: 64-byte requests, responses and events
// with the same header (id, operation or event type, and a response's
// status) and little-endian fields at fixed offsets after it. Read and
// written one field at a time from a private copy of the ring's slot.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace shbuf::pv {

inline constexpr std::size_t kPacketSize = 64;
using Packet = std::array<std::byte, kPacketSize>;

// The fields, for the protocols' encoders and decoders to take in with
// `using namespace pv::packet`.
namespace packet {

// Field offsets of the header (xen/io/displif.h and sndif.h: id, operation
// or event type, a response's status), and where the body starts.
inline constexpr std::size_t kOffId = 0;
inline constexpr std::size_t kOffOperation = 2;
inline constexpr std::size_t kOffStatus = 4;
inline constexpr std::size_t kOffBody = 8;

// Little-endian reads and writes at fixed offsets of a packet.
inline std::uint8_t get8(const Packet& p, std::size_t off) {
  return std::to_integer<std::uint8_t>(p[off]);
}
inline std::uint16_t get16(const Packet& p, std::size_t off) {
  return static_cast<std::uint16_t>(std::to_integer<unsigned>(p[off]) |
                                    std::to_integer<unsigned>(p[off + 1]) << 8);
}
inline std::uint32_t get32(const Packet& p, std::size_t off) {
  std::uint32_t v = 0;
  for (std::size_t i = 0; i < 4; ++i) v |= std::to_integer<std::uint32_t>(p[off + i]) << (8 * i);
  return v;
}
inline std::uint64_t get64(const Packet& p, std::size_t off) {
  return get32(p, off) | static_cast<std::uint64_t>(get32(p, off + 4)) << 32;
}
inline void put8(Packet& p, std::size_t off, std::uint8_t v) {
  p[off] = static_cast<std::byte>(v);
}
inline void put16(Packet& p, std::size_t off, std::uint16_t v) {
  p[off] = static_cast<std::byte>(v);
  p[off + 1] = static_cast<std::byte>(v >> 8);
}
inline void put32(Packet& p, std::size_t off, std::uint32_t v) {
  for (std::size_t i = 0; i < 4; ++i) p[off + i] = static_cast<std::byte>(v >> (8 * i));
}
inline void put64(Packet& p, std::size_t off, std::uint64_t v) {
  put32(p, off, static_cast<std::uint32_t>(v));
  put32(p, off + 4, static_cast<std::uint32_t>(v >> 32));
}

}  // namespace packet
}  // namespace shbuf::pv
