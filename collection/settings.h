// CollectionSettings: what a collection keeps beside its codes in the
// store's free-form settings JSON (CollectionInfo::settings_json), and the
// one reader and the one writer of that JSON (docs/storage.md).
//
// Layout, a JSON object; every field is optional:
//   {"encoder": "<artifact path>",
//    "encoder_checksum": "xxh3-128:<32 hex digits>",
//    "codebook": {"bits": K, "codes": ["<hex>", ...], "class_names": [...]},
//    "tie_break": "id" | "score",
//    "indexed_fields": ["label", "metadata.<key>", ...]}
// The codebook is copied from the encoder into the settings so that a
// collection can still be decoded and bucketed when the artifact is moved or
// lost. Fields this build does not know are ignored by the reader.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/score.h"
#include "core/status.h"
#include "encoder/codebook.h"

namespace hamdb {

struct CollectionSettings {
  std::string encoder_path;          // empty: the collection has no encoder
  // ArtifactChecksum of the encoder artifact the collection's codes come
  // from; empty when unknown (the artifact was missing when it was opened).
  // Writers that encode on their side name it, and a different one is
  // refused.
  std::string encoder_checksum;
  std::optional<Codebook> codebook;  // the encoder's class codes, when known
  // The default order of ties for searches that do not name one. Unset:
  // "score" for a collection with an encoder whose index keeps scores, "id"
  // otherwise (LiveCollection::default_tie_break).
  std::optional<TieBreak> tie_break;
  // Fields kept in the collection's in-memory FieldIndex, so that filters on
  // them need no store reads (collection/field_index.h). Fixed at create.
  std::vector<std::string> indexed_fields;
};

inline constexpr size_t kMaxIndexedFields = 16;

// InvalidArgument unless every name is "label" or "metadata.<key>", none
// twice, and there are at most kMaxIndexedFields.
Status CheckIndexedFields(const std::vector<std::string>& fields);

// Reads the settings of a collection of `bits`-bit codes. InvalidArgument
// when the JSON is not an object or a field is malformed: a codebook whose
// bits differ from `bits`, an empty or bad code list, non-string names, an
// encoder path that is not a non-empty string.
StatusOr<CollectionSettings> ParseCollectionSettings(std::string_view settings_json, int bits);

// The settings JSON for `settings` (the layout above).
std::string CollectionSettingsJson(const CollectionSettings& settings);

// The checksum that identifies an encoder artifact: "xxh3-128:" and the
// 32 lower-case hex digits of XXH3-128 over the file's bytes. It tells
// artifacts apart (a retrained or replaced encoder); it is not a defence
// against a forger.
std::string ArtifactChecksum(const void* data, size_t n);
// The same over a file; IOError when it cannot be read.
StatusOr<std::string> ArtifactFileChecksum(const std::string& path);

// The codebook's class codes packed back to back, class i at offset
// i * code_bytes (IndexOptions::codebook).
std::vector<uint8_t> PackedClassCodes(const Codebook& codebook);

}  // namespace hamdb
