// PNG encoding: the file is checked with a CRC written here (not zlib's) and
// inflated back to the exact pixels; bad images and unwritable paths are
// refused with errno-style errors; files appear whole.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <stdexcept>

#include "pv/displ/png.h"

namespace shbuf::displ {
namespace {

// The CRC-32 of PNG's specification, bit by bit.
std::uint32_t reference_crc(const std::uint8_t* p, std::size_t n) {
  std::uint32_t c = 0xffffffffu;
  for (std::size_t i = 0; i < n; ++i) {
    c ^= p[i];
    for (int k = 0; k < 8; ++k) c = (c & 1) != 0 ? 0xedb88320u ^ (c >> 1) : c >> 1;
  }
  return c ^ 0xffffffffu;
}

std::uint32_t be32(const std::uint8_t* p) {
  return std::uint32_t{p[0]} << 24 | std::uint32_t{p[1]} << 16 | std::uint32_t{p[2]} << 8 | p[3];
}

RgbImage test_image(std::uint32_t w, std::uint32_t h) {
  RgbImage img{w, h, {}};
  for (std::uint32_t y = 0; y < h; ++y) {
    for (std::uint32_t x = 0; x < w; ++x) {
      img.rgb.push_back(static_cast<std::uint8_t>(x * 7 + y));
      img.rgb.push_back(static_cast<std::uint8_t>(y * 3));
      img.rgb.push_back(static_cast<std::uint8_t>(x ^ y));
    }
  }
  return img;
}

TEST(DisplPng, EncodesChunksWithCorrectCrcsAndTheExactPixels) {
  for (auto [w, h] : {std::pair{1u, 1u}, std::pair{3u, 2u}, std::pair{640u, 480u}}) {
    const RgbImage img = test_image(w, h);
    auto png = encode_png(img);
    ASSERT_TRUE(png.ok()) << png.error().describe();
    const std::vector<std::uint8_t>& f = *png;
    const std::uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    ASSERT_GE(f.size(), 8u + 3 * 12);
    ASSERT_EQ(std::memcmp(f.data(), sig, 8), 0);
    std::vector<std::string> types;
    std::vector<std::uint8_t> idat;
    std::size_t at = 8;
    while (at < f.size()) {
      ASSERT_LE(at + 12, f.size());
      const std::uint32_t len = be32(&f[at]);
      ASSERT_LE(at + 12 + len, f.size());
      const std::string type(reinterpret_cast<const char*>(&f[at + 4]), 4);
      EXPECT_EQ(be32(&f[at + 8 + len]), reference_crc(&f[at + 4], len + 4)) << type;
      types.push_back(type);
      if (type == "IHDR") {
        ASSERT_EQ(len, 13u);
        EXPECT_EQ(be32(&f[at + 8]), w);
        EXPECT_EQ(be32(&f[at + 12]), h);
        EXPECT_EQ(f[at + 16], 8);  // bit depth
        EXPECT_EQ(f[at + 17], 2);  // truecolour
      }
      if (type == "IDAT") idat.insert(idat.end(), &f[at + 8], &f[at + 8 + len]);
      at += 12 + len;
    }
    EXPECT_EQ(at, f.size());
    // IHDR, then the image data in one or more IDAT chunks (libpng splits
    // it), then IEND; nothing else.
    ASSERT_GE(types.size(), 3u);
    EXPECT_EQ(types.front(), "IHDR");
    EXPECT_EQ(types.back(), "IEND");
    for (std::size_t i = 1; i + 1 < types.size(); ++i) EXPECT_EQ(types[i], "IDAT") << i;
    std::vector<std::uint8_t> raw((w * 3 + 1) * h);
    uLongf size = raw.size();
    ASSERT_EQ(uncompress(raw.data(), &size, idat.data(), idat.size()), Z_OK);
    ASSERT_EQ(size, raw.size());
    for (std::uint32_t y = 0; y < h; ++y) {
      EXPECT_EQ(raw[y * (w * 3 + 1)], 0) << "filter of row " << y;
      EXPECT_EQ(std::memcmp(&raw[y * (w * 3 + 1) + 1], &img.rgb[y * w * 3], w * 3), 0) << y;
    }
  }
}

// The concatenated IDAT data of a PNG that encode_png wrote.
std::vector<std::uint8_t> idat_of(const std::vector<std::uint8_t>& f) {
  std::vector<std::uint8_t> idat;
  for (std::size_t at = 8; at + 12 <= f.size();) {
    const std::uint32_t len = be32(&f[at]);
    if (at + 12 + len > f.size()) break;
    if (std::memcmp(&f[at + 4], "IDAT", 4) == 0) {
      idat.insert(idat.end(), &f[at + 8], &f[at + 8 + len]);
    }
    at += 12 + len;
  }
  return idat;
}

// --png-level: zlib's level, in the zlib header and in the size; every
// level gives back the same pixels.
TEST(DisplPng, EncodesAtTheCompressionLevelAsked) {
  const RgbImage img = test_image(640, 480);
  const std::size_t raw_size = (640 * 3 + 1) * 480;
  std::vector<std::size_t> sizes;
  for (int level : {0, 1, 9}) {
    auto png = encode_png(img, level);
    ASSERT_TRUE(png.ok()) << png.error().describe();
    const std::vector<std::uint8_t> idat = idat_of(*png);
    ASSERT_GE(idat.size(), 2u);
    // FLEVEL, the top two bits of the header's second byte: 0 for levels
    // 0 and 1, 3 for 7..9.
    EXPECT_EQ(idat[1] >> 6, level == 9 ? 3 : 0) << level;
    std::vector<std::uint8_t> raw(raw_size);
    uLongf size = raw.size();
    ASSERT_EQ(uncompress(raw.data(), &size, idat.data(), idat.size()), Z_OK) << level;
    ASSERT_EQ(size, raw_size);
    for (std::uint32_t y = 0; y < 480; ++y) {
      ASSERT_EQ(std::memcmp(&raw[y * (640 * 3 + 1) + 1], &img.rgb[y * 640 * 3], 640 * 3), 0);
    }
    sizes.push_back(png->size());
  }
  EXPECT_GT(sizes[0], raw_size);  // level 0 stores
  EXPECT_LT(sizes[1], sizes[0]);
  EXPECT_LE(sizes[2], sizes[1]);
  EXPECT_EQ(encode_png(img, -1).error().code, EINVAL);
  EXPECT_EQ(encode_png(img, 10).error().code, EINVAL);
  EXPECT_EQ(encode_png(img, kDefaultPngLevel).value(), encode_png(img).value());
}

TEST(DisplPng, RefusesImagesItCannotEncode) {
  EXPECT_EQ(encode_png(RgbImage{0, 10, {}}).error().code, EINVAL);
  EXPECT_EQ(encode_png(RgbImage{10, 0, {}}).error().code, EINVAL);
  EXPECT_EQ(encode_png(RgbImage{kMaxImageDimension + 1, 1, {}}).error().code, EINVAL);
  RgbImage short_data = test_image(4, 4);
  short_data.rgb.pop_back();
  auto e = encode_png(short_data);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().code, EINVAL);
  EXPECT_NE(e.error().message.find("47 bytes"), std::string::npos) << e.error().message;
}

TEST(DisplPng, WritesWholeFilesOrReportsWhy) {
  const auto dir =
      std::filesystem::temp_directory_path() / ("shbuf-png-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto png = encode_png(test_image(5, 5));
  ASSERT_TRUE(png.ok());
  const std::string path = (dir / "a.png").string();
  ASSERT_TRUE(write_file_atomically(path, *png).ok());
  std::ifstream in(path, std::ios::binary);
  std::vector<std::uint8_t> back((std::istreambuf_iterator<char>(in)), {});
  EXPECT_EQ(back, *png);
  EXPECT_FALSE(std::filesystem::exists(path + ".tmp"));
  // Overwriting replaces the file.
  auto small = encode_png(test_image(1, 1));
  ASSERT_TRUE(write_file_atomically(path, *small).ok());
  EXPECT_EQ(std::filesystem::file_size(path), small->size());

  auto missing = write_file_atomically((dir / "no" / "such" / "x.png").string(), *png);
  ASSERT_FALSE(missing.ok());
  EXPECT_EQ(missing.error().code, ENOENT);
  EXPECT_NE(missing.error().message.find("no/such"), std::string::npos);
  std::filesystem::remove_all(dir);
}

// `between_rows` is called after each row and changes nothing in the file;
// one that throws fails the encoding with an error, not a crash.
TEST(DisplPng, CallsBetweenRowsAfterEachRow) {
  const RgbImage img = test_image(33, 17);
  int rows = 0;
  auto png = encode_png(img, kDefaultPngLevel, [&rows] { ++rows; });
  ASSERT_TRUE(png.ok()) << png.error().describe();
  EXPECT_EQ(rows, 17);
  EXPECT_EQ(*png, encode_png(img).value());
  auto failed = encode_png(img, kDefaultPngLevel, [] { throw std::runtime_error("no"); });
  ASSERT_FALSE(failed.ok());
  EXPECT_EQ(failed.error().code, EIO);
}
}  // namespace
}  // namespace shbuf::displ
