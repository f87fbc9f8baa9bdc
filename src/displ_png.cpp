// PNG encoding over zlib, and whole-file writes.
#include "shbuf/displ_png.h"

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include <cerrno>
#include <cstring>

namespace shbuf::displ {
namespace {

// PNG stores every integer big-endian.
void put_be32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  out.push_back(static_cast<std::uint8_t>(v >> 24));
  out.push_back(static_cast<std::uint8_t>(v >> 16));
  out.push_back(static_cast<std::uint8_t>(v >> 8));
  out.push_back(static_cast<std::uint8_t>(v));
}

// A chunk: length, type, data, CRC over type and data.
void put_chunk(std::vector<std::uint8_t>& out, const char type[4], const std::uint8_t* data,
               std::size_t size) {
  put_be32(out, static_cast<std::uint32_t>(size));
  const std::size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  if (size != 0) out.insert(out.end(), data, data + size);
  uLong crc = crc32(0L, Z_NULL, 0);
  crc = crc32_z(crc, out.data() + type_at, 4 + size);
  put_be32(out, static_cast<std::uint32_t>(crc));
}

// errno as the Error this library returns, naming the file.
Error file_error(const std::string& what, const std::string& path) {
  const int code = errno;
  return make_error(code, what + " " + path + ": " + std::strerror(code));
}

}  // namespace

// Fast compression: frames are written while the frontend waits for the
// flip to complete.
Result<std::vector<std::uint8_t>> encode_png(const RgbImage& image) {
  if (image.width == 0 || image.height == 0 || image.width > kMaxImageDimension ||
      image.height > kMaxImageDimension) {
    return make_error(EINVAL, "cannot encode a " + std::to_string(image.width) + "x" +
                                  std::to_string(image.height) + " image (1.." +
                                  std::to_string(kMaxImageDimension) + " each)");
  }
  const std::size_t row = std::size_t{image.width} * 3;
  if (image.rgb.size() != row * image.height) {
    return make_error(EINVAL, "image data holds " + std::to_string(image.rgb.size()) +
                                  " bytes, " + std::to_string(row * image.height) +
                                  " expected");
  }
  std::vector<std::uint8_t> raw((row + 1) * image.height);
  for (std::uint32_t y = 0; y < image.height; ++y) {
    raw[y * (row + 1)] = 0;  // filter: none
    std::memcpy(&raw[y * (row + 1) + 1], &image.rgb[y * row], row);
  }
  uLongf zsize = compressBound(static_cast<uLong>(raw.size()));
  std::vector<std::uint8_t> z(zsize);
  const int rc = compress2(z.data(), &zsize, raw.data(), static_cast<uLong>(raw.size()), 1);
  if (rc != Z_OK) {
    return make_error(rc == Z_MEM_ERROR ? ENOMEM : EIO,
                      "zlib could not compress the image (" + std::to_string(rc) + ")");
  }
  std::vector<std::uint8_t> out = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  std::vector<std::uint8_t> ihdr;
  put_be32(ihdr, image.width);
  put_be32(ihdr, image.height);
  ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});  // 8-bit, truecolour, deflate, filter 0, no interlace
  put_chunk(out, "IHDR", ihdr.data(), ihdr.size());
  put_chunk(out, "IDAT", z.data(), zsize);
  put_chunk(out, "IEND", nullptr, 0);
  return out;
}

// A reader polling for frames must never pick up half of one.
Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return file_error("cannot create", tmp);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Error e = file_error("cannot write", tmp);
      ::close(fd);
      ::unlink(tmp.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::close(fd) != 0) {
    Error e = file_error("cannot close", tmp);
    ::unlink(tmp.c_str());
    return e;
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = file_error("cannot rename " + tmp + " to", path);
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

}  // namespace shbuf::displ
