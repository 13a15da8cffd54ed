// The on-disk encoding of a CodeStore (docs/storage.md is the prose version).
// Kept in one header so the store, its tests and any offline tool agree.
//
// Column families:
//   "default"  store metadata and the collection registry:
//                "hamdb/format_version"     -> decimal text, e.g. "1"
//                "hamdb/next_collection_id" -> u32 little-endian
//                "collection/<name>"        -> JSON {"id","bits","index","settings"}
//                "next_id/" + u32 BE cid    -> u64 little-endian
//                "change_seq/" + u32 BE cid -> u64 LE: the collection's last change
//                "change_trimmed/" + u32 BE cid -> u64 LE: changes up to it trimmed
//   "codes"    item key -> code value: the packed code (code_bytes(bits)
//              bytes), then the item's score as f32 LE if it has one
//   "items"    item key -> item record (only for items with a label, class code
//              or metadata)
//   "thumbnails" item key -> a small PNG or JPEG of the item's image (at most
//              kMaxThumbnailBytes; only for items that have one)
//   "changes"  u32 BE cid + u64 BE change seq -> the ids that change touched:
//              [u8 0][u64 LE id]... or [u8 1][u64 LE first][u64 LE count] (a range)
// Files beside RocksDB's: "snapshots/c<cid>.hidx", one index snapshot per
// collection (collection/index_snapshot.h).
// Item key: 4-byte big-endian collection id + 8-byte big-endian item id, so a
// collection is one contiguous key range and iterates in id order.
// Item record: [u8 version=1][u8 flags][i64 LE label if flags&1]
//              [class code, code_bytes, if flags&2][metadata JSON text if flags&4]
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace hamdb::store_format {

inline constexpr char kCodesCf[] = "codes";
inline constexpr char kItemsCf[] = "items";
inline constexpr char kChangesCf[] = "changes";
inline constexpr char kThumbnailsCf[] = "thumbnails";
inline constexpr char kSnapshotDir[] = "snapshots";
inline constexpr char kChangeSeqPrefix[] = "change_seq/";
inline constexpr char kChangeTrimmedPrefix[] = "change_trimmed/";
inline constexpr uint8_t kChangeIdList = 0;
inline constexpr uint8_t kChangeIdRange = 1;
inline constexpr char kVersionKey[] = "hamdb/format_version";
inline constexpr char kNextCollectionIdKey[] = "hamdb/next_collection_id";
inline constexpr char kCollectionPrefix[] = "collection/";
inline constexpr char kNextIdPrefix[] = "next_id/";

inline constexpr uint8_t kItemRecordVersion = 1;
inline constexpr uint8_t kHasLabel = 1;
inline constexpr uint8_t kHasClassCode = 2;
inline constexpr uint8_t kHasMetadata = 4;
inline constexpr size_t kItemKeySize = 12;
inline constexpr size_t kScoreSize = 4;
inline constexpr size_t kMaxThumbnailBytes = 64u << 10;

// Whether `bytes` starts like a PNG or a JPEG file (a thumbnail's formats).
inline bool IsThumbnailFormat(std::string_view bytes) {
  return bytes.substr(0, 8) == std::string_view("\x89PNG\r\n\x1a\n", 8) ||
         bytes.substr(0, 3) == std::string_view("\xff\xd8\xff", 3);
}

inline void PutBigEndian32(char* p, uint32_t v) {
  for (int i = 3; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}
inline void PutBigEndian64(char* p, uint64_t v) {
  for (int i = 7; i >= 0; --i, v >>= 8) p[i] = static_cast<char>(v & 0xff);
}
inline uint64_t GetBigEndian64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
inline uint32_t GetBigEndian32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}

inline std::string CollectionPrefix(uint32_t cid) {
  std::string s(4, '\0');
  PutBigEndian32(s.data(), cid);
  return s;
}

inline std::string ItemKey(uint32_t cid, uint64_t id) {
  std::string s(kItemKeySize, '\0');
  PutBigEndian32(s.data(), cid);
  PutBigEndian64(s.data() + 4, id);
  return s;
}

inline std::string NextIdKey(uint32_t cid) { return kNextIdPrefix + CollectionPrefix(cid); }
inline std::string ChangeSeqKey(uint32_t cid) { return kChangeSeqPrefix + CollectionPrefix(cid); }
inline std::string ChangeTrimmedKey(uint32_t cid) {
  return kChangeTrimmedPrefix + CollectionPrefix(cid);
}
// Same layout as an item key: a collection's changes are one key range.
inline std::string ChangeKey(uint32_t cid, uint64_t seq) { return ItemKey(cid, seq); }
inline std::string SnapshotFileName(uint32_t cid) { return "c" + std::to_string(cid) + ".hidx"; }

// A code value (see above); score null: none.
inline std::string CodeValue(const uint8_t* code, size_t code_bytes, const float* score) {
  std::string s(reinterpret_cast<const char*>(code), code_bytes);
  if (score != nullptr) s.append(reinterpret_cast<const char*>(score), kScoreSize);
  return s;
}
// Whether `size` is the size of a code value for codes of code_bytes bytes.
inline bool IsCodeValueSize(size_t size, size_t code_bytes) {
  return size == code_bytes || size == code_bytes + kScoreSize;
}
// The score of a code value of a valid size; false when it has none.
inline bool CodeValueScore(const char* value, size_t size, size_t code_bytes, float* score) {
  if (size != code_bytes + kScoreSize) return false;
  std::memcpy(score, value + code_bytes, kScoreSize);  // little-endian hosts
  return true;
}

inline std::string EncodeFixed64(uint64_t v) {
  std::string s(8, '\0');
  std::memcpy(s.data(), &v, 8);  // little-endian hosts only (x86-64, arm64)
  return s;
}
inline std::string EncodeFixed32(uint32_t v) {
  std::string s(4, '\0');
  std::memcpy(s.data(), &v, 4);
  return s;
}

}  // namespace hamdb::store_format
