#include "encoder/collection_encoding.h"

#include <nlohmann/json.hpp>

#include "index/core/binary_code.h"

namespace hamdb {

using nlohmann::json;

std::string EncoderSettingsJson(const std::string& artifact_path, const Codebook& codebook) {
  json codes = json::array();
  for (size_t c = 0; c < codebook.num_classes(); ++c)
    codes.push_back(FormatHex(codebook.class_code(c), codebook.bits()));
  json settings = {
      {"encoder", artifact_path},
      {"codebook",
       {{"bits", codebook.bits()}, {"codes", codes}, {"class_names", codebook.class_names()}}}};
  return settings.dump();
}

namespace {

StatusOr<json> ParseSettings(std::string_view settings_json) {
  json j = json::parse(settings_json.begin(), settings_json.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return Status::InvalidArgument("collection settings are not a JSON object");
  return j;
}

}  // namespace

StatusOr<Codebook> CodebookFromSettingsJson(std::string_view settings_json) {
  HAMDB_ASSIGN_OR_RETURN(json j, ParseSettings(settings_json));
  auto it = j.find("codebook");
  if (it == j.end() || it->is_null()) return Status::NotFound("the collection has no codebook");
  const json& cb = *it;
  if (!cb.is_object() || !cb.contains("bits") || !cb["bits"].is_number_integer() ||
      !cb.contains("codes") || !cb["codes"].is_array())
    return Status::InvalidArgument("settings.codebook needs integer 'bits' and array 'codes'");
  const int bits = cb["bits"].get<int>();
  if (bits < 1 || bits > kMaxCodeBits) return Status::InvalidArgument("settings.codebook.bits out of range");
  std::vector<uint8_t> codes;
  for (const json& c : cb["codes"]) {
    if (!c.is_string()) return Status::InvalidArgument("settings.codebook.codes must be strings");
    HAMDB_ASSIGN_OR_RETURN(std::vector<uint8_t> code, ParseCode(c.get<std::string>(), bits));
    codes.insert(codes.end(), code.begin(), code.end());
  }
  std::vector<std::string> names;
  if (auto n = cb.find("class_names"); n != cb.end() && !n->is_null()) {
    if (!n->is_array()) return Status::InvalidArgument("settings.codebook.class_names must be an array");
    for (const json& s : *n) {
      if (!s.is_string()) return Status::InvalidArgument("class names must be strings");
      names.push_back(s.get<std::string>());
    }
  }
  return Codebook::Create(bits, std::move(codes), std::move(names));
}

StatusOr<std::string> EncoderPathFromSettingsJson(std::string_view settings_json) {
  HAMDB_ASSIGN_OR_RETURN(json j, ParseSettings(settings_json));
  auto it = j.find("encoder");
  if (it == j.end() || !it->is_string() || it->get<std::string>().empty())
    return Status::NotFound("the collection has no encoder");
  return it->get<std::string>();
}

StatusOr<ItemInput> MakeImageItem(const EncodedImage& encoded, const Codebook& codebook,
                                  std::optional<uint64_t> id, std::optional<int64_t> label,
                                  const std::string& source_path,
                                  std::string_view extra_metadata_json) {
  if (encoded.code.size() != code_bytes(codebook.bits()))
    return Status::InvalidArgument("encoded code length does not match the codebook");
  json meta = json::object();
  if (!extra_metadata_json.empty()) {
    meta = json::parse(extra_metadata_json.begin(), extra_metadata_json.end(), nullptr, false);
    if (meta.is_discarded() || !meta.is_object())
      return Status::InvalidArgument("extra metadata must be a JSON object");
  }
  const DecodeResult& d = encoded.decode;
  if (!source_path.empty()) meta["path"] = source_path;
  meta["class"] = d.class_index;
  if (d.class_index >= 0 && static_cast<size_t>(d.class_index) < codebook.class_names().size())
    meta["class_name"] = codebook.class_names()[d.class_index];
  meta["exact"] = d.exact;
  meta["distance"] = d.distance;
  meta["ood"] = d.out_of_distribution;
  meta["confidence"] = encoded.confidence;

  ItemInput item;
  item.id = id;
  item.code = encoded.code;
  item.label = label;
  if (d.class_index >= 0 && static_cast<size_t>(d.class_index) < codebook.num_classes()) {
    const uint8_t* cc = codebook.class_code(d.class_index);
    item.class_code = std::vector<uint8_t>(cc, cc + codebook.code_bytes());
  }
  item.metadata_json = meta.dump();
  return item;
}

}  // namespace hamdb
