// Little helpers for index snapshot states (BinaryIndex::SaveState): plain
// values and vectors of trivially copyable elements, appended in host
// (little-endian) byte order, each vector after its u64 length. Readers
// consume from the front of a string_view and fail with Corruption when it
// runs short.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "core/status.h"

namespace hamdb::state_io {

template <typename T>
void Put(std::string* out, const T& v) {
  static_assert(std::is_trivially_copyable_v<T>);
  out->append(reinterpret_cast<const char*>(&v), sizeof(T));
}

template <typename T>
void PutVector(std::string* out, const T* data, size_t n) {
  static_assert(std::is_trivially_copyable_v<T>);
  Put<uint64_t>(out, n);
  out->append(reinterpret_cast<const char*>(data), n * sizeof(T));
}

template <typename T, typename A>
void PutVector(std::string* out, const std::vector<T, A>& v) {
  PutVector(out, v.data(), v.size());
}

template <typename T>
Status Get(std::string_view* in, T* v) {
  static_assert(std::is_trivially_copyable_v<T>);
  if (in->size() < sizeof(T)) return Status::Corruption("index state is truncated");
  std::memcpy(v, in->data(), sizeof(T));
  in->remove_prefix(sizeof(T));
  return Status::OK();
}

template <typename T, typename A>
Status GetVector(std::string_view* in, std::vector<T, A>* v) {
  uint64_t n = 0;
  HAMDB_RETURN_IF_ERROR(Get(in, &n));
  if (n > in->size() / sizeof(T)) return Status::Corruption("index state is truncated (array)");
  v->resize(n);
  std::memcpy(v->data(), in->data(), n * sizeof(T));
  in->remove_prefix(n * sizeof(T));
  return Status::OK();
}

}  // namespace hamdb::state_io
