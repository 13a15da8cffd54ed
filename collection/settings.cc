#include "collection/settings.h"

#include <algorithm>

// Header-only use of Debian's xxHash (libxxhash-dev).
#define XXH_INLINE_ALL
#include <xxhash.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "collection/field_index.h"
#include "core/binary_code.h"

namespace hamdb {

using nlohmann::json;

namespace {

StatusOr<Codebook> ParseCodebook(const json& cb, int bits) {
  if (!cb.is_object()) return Status::InvalidArgument("settings.codebook is not an object");
  auto k = cb.find("bits");
  if (k == cb.end() || !k->is_number_integer() || k->get<int64_t>() != bits) {
    return Status::InvalidArgument("settings.codebook.bits must equal the collection's " +
                                   std::to_string(bits) + " bits");
  }
  auto codes = cb.find("codes");
  if (codes == cb.end() || !codes->is_array() || codes->empty()) {
    return Status::InvalidArgument("settings.codebook.codes must be a non-empty array of codes");
  }
  std::vector<uint8_t> packed;
  packed.reserve(codes->size() * code_bytes(bits));
  for (size_t i = 0; i < codes->size(); ++i) {
    const json& c = (*codes)[i];
    const std::string where = "settings.codebook.codes[" + std::to_string(i) + "]";
    if (!c.is_string()) return Status::InvalidArgument(where + " is not a string");
    StatusOr<std::vector<uint8_t>> code = ParseCode(c.get_ref<const std::string&>(), bits);
    if (!code.ok()) return code.status().WithContext(where);
    packed.insert(packed.end(), code->begin(), code->end());
  }
  std::vector<std::string> names;
  if (auto n = cb.find("class_names"); n != cb.end() && !n->is_null()) {
    if (!n->is_array()) {
      return Status::InvalidArgument("settings.codebook.class_names must be an array");
    }
    for (const json& s : *n) {
      if (!s.is_string()) {
        return Status::InvalidArgument("settings.codebook.class_names must hold strings");
      }
      names.push_back(s.get<std::string>());
    }
  }
  return Codebook::Create(bits, std::move(packed), std::move(names));
}

std::string ChecksumText(XXH128_hash_t h) {
  char hex[33];
  std::snprintf(hex, sizeof(hex), "%016llx%016llx", static_cast<unsigned long long>(h.high64),
                static_cast<unsigned long long>(h.low64));
  return std::string("xxh3-128:") + hex;
}

}  // namespace

StatusOr<CollectionSettings> ParseCollectionSettings(std::string_view settings_json, int bits) {
  const json j = json::parse(settings_json.begin(), settings_json.end(), nullptr,
                             /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return Status::InvalidArgument("collection settings are not a JSON object");
  }
  CollectionSettings settings;
  if (auto it = j.find("encoder"); it != j.end() && !it->is_null()) {
    if (!it->is_string() || it->get_ref<const std::string&>().empty()) {
      return Status::InvalidArgument("settings.encoder must be a non-empty path");
    }
    settings.encoder_path = it->get<std::string>();
  }
  if (auto it = j.find("encoder_checksum"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Status::InvalidArgument("settings.encoder_checksum must be a string");
    settings.encoder_checksum = it->get<std::string>();
  }
  if (auto it = j.find("codebook"); it != j.end() && !it->is_null()) {
    HAMDB_ASSIGN_OR_RETURN(Codebook codebook, ParseCodebook(*it, bits));
    settings.codebook = std::move(codebook);
  }
  if (auto it = j.find("tie_break"); it != j.end() && !it->is_null()) {
    if (!it->is_string()) return Status::InvalidArgument("settings.tie_break must be \"id\" or \"score\"");
    HAMDB_ASSIGN_OR_RETURN(TieBreak tie, ParseTieBreak(it->get_ref<const std::string&>()));
    settings.tie_break = tie;
  }
  if (auto it = j.find("indexed_fields"); it != j.end() && !it->is_null()) {
    if (!it->is_array()) {
      return Status::InvalidArgument("settings.indexed_fields must be an array of field names");
    }
    for (const json& f : *it) {
      if (!f.is_string()) {
        return Status::InvalidArgument("settings.indexed_fields must be an array of field names, not " +
                                       it->dump());
      }
      settings.indexed_fields.push_back(f.get<std::string>());
    }
    HAMDB_RETURN_IF_ERROR(CheckIndexedFields(settings.indexed_fields));
  }
  return settings;
}

Status CheckIndexedFields(const std::vector<std::string>& fields) {
  if (fields.size() > kMaxIndexedFields) {
    return Status::InvalidArgument("settings.indexed_fields: at most " +
                                   std::to_string(kMaxIndexedFields) + " fields");
  }
  for (size_t i = 0; i < fields.size(); ++i) {
    HAMDB_RETURN_IF_ERROR(FieldIndex::CheckFieldName(fields[i]).WithContext("settings.indexed_fields"));
    if (std::find(fields.begin(), fields.begin() + static_cast<std::ptrdiff_t>(i), fields[i]) !=
        fields.begin() + static_cast<std::ptrdiff_t>(i)) {
      return Status::InvalidArgument("settings.indexed_fields names '" + fields[i] + "' twice");
    }
  }
  return Status::OK();
}

std::string CollectionSettingsJson(const CollectionSettings& settings) {
  json j = json::object();
  if (!settings.encoder_path.empty()) j["encoder"] = settings.encoder_path;
  if (!settings.encoder_checksum.empty()) j["encoder_checksum"] = settings.encoder_checksum;
  if (settings.codebook) {
    const Codebook& cb = *settings.codebook;
    json codes = json::array();
    for (size_t c = 0; c < cb.num_classes(); ++c) {
      codes.push_back(FormatHex(cb.class_code(c), cb.bits()));
    }
    j["codebook"] = {{"bits", cb.bits()}, {"codes", codes}, {"class_names", cb.class_names()}};
  }
  if (settings.tie_break) j["tie_break"] = TieBreakName(*settings.tie_break);
  if (!settings.indexed_fields.empty()) j["indexed_fields"] = settings.indexed_fields;
  return j.dump();
}

std::string ArtifactChecksum(const void* data, size_t n) {
  return ChecksumText(XXH3_128bits(data, n));
}

StatusOr<std::string> ArtifactFileChecksum(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!f) return Status::IOError("cannot open encoder artifact '" + path + "'");
  std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> state(XXH3_createState(),
                                                                         &XXH3_freeState);
  XXH3_128bits_reset(state.get());
  std::vector<char> buf(1 << 20);
  size_t got = 0;
  while ((got = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) {
    XXH3_128bits_update(state.get(), buf.data(), got);
  }
  if (std::ferror(f.get())) return Status::IOError("cannot read encoder artifact '" + path + "'");
  return ChecksumText(XXH3_128bits_digest(state.get()));
}

std::vector<uint8_t> PackedClassCodes(const Codebook& codebook) {
  const uint8_t* first = codebook.class_code(0);
  return std::vector<uint8_t>(first, first + codebook.num_classes() * codebook.code_bytes());
}

}  // namespace hamdb
