// PNG encoding through libpng, and whole-file writes.
#include "pv/displ/png.h"

#include <fcntl.h>
#include <png.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <new>

#include "core/unique_fd.h"

namespace shbuf::displ {
namespace {

// libpng reports failures through a callback that must not return: it
// records the message and longjmps back to encode_png.
struct PngSink {
  std::vector<std::uint8_t> bytes;
  std::string error;
  const BetweenRows* between_rows = nullptr;
};

extern "C" void png_sink_write(png_structp png, png_bytep data, png_size_t size) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool stored = true;
  try {
    sink->bytes.insert(sink->bytes.end(), data, data + size);
  } catch (const std::bad_alloc&) {
    stored = false;
  }
  if (!stored) png_error(png, "out of memory");
}

extern "C" void png_sink_flush(png_structp) {}

extern "C" void png_sink_row_done(png_structp png, png_uint_32, int) {
  auto* sink = static_cast<PngSink*>(png_get_io_ptr(png));
  bool ok = true;
  try {
    (*sink->between_rows)();
  } catch (...) {
    ok = false;
  }
  if (!ok) png_error(png, "the between-rows call failed");
}

extern "C" void png_sink_error(png_structp png, png_const_charp message) {
  static_cast<PngSink*>(png_get_error_ptr(png))->error = message;
  png_longjmp(png, 1);
}

extern "C" void png_sink_warning(png_structp, png_const_charp) {}

// The part that runs under libpng's setjmp: no object with a destructor may
// live in this frame.
bool write_png(png_structp png, png_infop info, const RgbImage& image,
               std::vector<png_bytep>& rows) {
  if (setjmp(png_jmpbuf(png)) != 0) return false;
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_rows(png, info, rows.data());
  png_write_png(png, info, PNG_TRANSFORM_IDENTITY, nullptr);
  return true;
}

}  // namespace

// No filtering: it costs more time than it saves bytes on what displays show.
Result<std::vector<std::uint8_t>> encode_png(const RgbImage& image, int level,
                                             const BetweenRows& between_rows) {
  if (level < 0 || level > 9) {
    return make_error(EINVAL, "PNG compression level " + std::to_string(level) + " is not 0..9");
  }
  if (image.width == 0 || image.height == 0 || image.width > kMaxImageDimension ||
      image.height > kMaxImageDimension) {
    return make_error(EINVAL, "cannot encode a " + std::to_string(image.width) + "x" +
                                  std::to_string(image.height) + " image (1.." +
                                  std::to_string(kMaxImageDimension) + " each)");
  }
  const std::size_t row = std::size_t{image.width} * 3;
  if (image.rgb.size() != row * image.height) {
    return make_error(EINVAL, "image data holds " + std::to_string(image.rgb.size()) + " bytes, " +
                                  std::to_string(row * image.height) + " expected");
  }
  PngSink sink;
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, &sink, png_sink_error, png_sink_warning);
  if (png == nullptr) return make_error(ENOMEM, "libpng could not start an image");
  png_infop info = png_create_info_struct(png);
  if (info == nullptr) {
    png_destroy_write_struct(&png, nullptr);
    return make_error(ENOMEM, "libpng could not start an image");
  }
  png_set_write_fn(png, &sink, png_sink_write, png_sink_flush);
  if (between_rows) {
    sink.between_rows = &between_rows;
    png_set_write_status_fn(png, png_sink_row_done);
  }
  png_set_compression_level(png, level);
  png_set_filter(png, PNG_FILTER_TYPE_BASE, PNG_FILTER_NONE);
  std::vector<png_bytep> rows(image.height);
  for (std::uint32_t y = 0; y < image.height; ++y) {
    rows[y] = const_cast<png_bytep>(&image.rgb[y * row]);
  }
  const bool written = write_png(png, info, image, rows);
  png_destroy_write_struct(&png, &info);
  if (!written) return make_error(EIO, "libpng could not encode the image: " + sink.error);
  return std::move(sink.bytes);
}

// A reader polling for frames must never pick up half of one.
Status write_file_atomically(const std::string& path, std::span<const std::uint8_t> bytes) {
  const std::string tmp = path + ".tmp";
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return errno_error("cannot create " + tmp);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::write(fd.get(), bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Error e = errno_error(n < 0 ? errno : EIO, "cannot write " + tmp);
      fd.reset();
      ::unlink(tmp.c_str());
      return e;
    }
    done += static_cast<std::size_t>(n);
  }
  if (const int e = fd.close(); e != 0) {
    ::unlink(tmp.c_str());
    return errno_error(e, "cannot close " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    Error e = errno_error("cannot rename " + tmp + " to " + path);
    ::unlink(tmp.c_str());
    return e;
  }
  return {};
}

}  // namespace shbuf::displ
