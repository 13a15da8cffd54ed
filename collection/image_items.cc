#include "collection/image_items.h"

#include <nlohmann/json.hpp>

#include "core/binary_code.h"

namespace hamdb {

using nlohmann::json;

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
  item.score = encoded.score;
  if (d.class_index >= 0 && static_cast<size_t>(d.class_index) < codebook.num_classes()) {
    const uint8_t* cc = codebook.class_code(d.class_index);
    item.class_code = std::vector<uint8_t>(cc, cc + codebook.code_bytes());
  }
  item.metadata_json = meta.dump();
  return item;
}

}  // namespace hamdb
