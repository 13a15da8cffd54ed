// Test helpers for the db module: temporary directories and random codes.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <random>
#include <string>
#include <vector>

#include "core/binary_code.h"

namespace hamdb::testing_util {

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("hamdb_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }
  std::string sub(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

inline std::vector<uint8_t> RandomCode(std::mt19937_64& rng, int bits) {
  std::vector<uint8_t> c(code_bytes(bits), 0);
  for (int i = 0; i < bits; ++i) SetBit(c.data(), i, rng() & 1);
  return c;
}

}  // namespace hamdb::testing_util
