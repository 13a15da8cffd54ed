// MakeImageItem: the item a collection stores for one encoded image. Used by
// `hamdb ingest` and the HTTP service. Torch-free.
//
// An item made from an image (ItemInput):
//   code        the instance code;
//   class_code  the code of the decoded (MHD) class;
//   label       the caller's label when known (for example a class folder);
//   metadata    {"path": "<source path>", "class": <MHD class index>,
//                "class_name": "...", "exact": <ED succeeded>,
//                "distance": <to the class code>, "ood": <bool>,
//                "confidence": <EncodedImage::confidence>, ...caller fields}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "db/code_store.h"
#include "encoder/codebook.h"
#include "encoder/encoder.h"
#include "core/status.h"

namespace hamdb {

// Builds the item for one encoded image. extra_metadata_json: empty or a JSON
// object whose fields are merged in (they never override the fields above).
StatusOr<ItemInput> MakeImageItem(const EncodedImage& encoded, const Codebook& codebook,
                                  std::optional<uint64_t> id, std::optional<int64_t> label,
                                  const std::string& source_path,
                                  std::string_view extra_metadata_json = {});

}  // namespace hamdb
