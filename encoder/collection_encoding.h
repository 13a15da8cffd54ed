// How an encoder's output is stored in a collection: the one place that
// fixes the settings JSON of an encoder-backed collection and the fields of
// an item made from an image. Used by `hamdb ingest`, the HTTP service and
// the class-bucket index wiring. Torch-free.
//
// Collection settings (CollectionSpec::settings_json) of an encoder-backed
// collection:
//   {"encoder": "<artifact path>",
//    "codebook": {"bits": K, "codes": ["<hex>", ...], "class_names": [...]}}
// The codebook is copied into the settings so that a collection can still be
// decoded and bucketed when the artifact file is moved or lost.
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
#include "index/core/status.h"

namespace hamdb {

// The settings JSON above for `codebook`, naming `artifact_path`.
std::string EncoderSettingsJson(const std::string& artifact_path, const Codebook& codebook);

// Reads the codebook back from a collection's settings JSON. NotFound when
// the collection has no codebook; InvalidArgument when it is malformed.
StatusOr<Codebook> CodebookFromSettingsJson(std::string_view settings_json);

// The artifact path from the settings, or NotFound.
StatusOr<std::string> EncoderPathFromSettingsJson(std::string_view settings_json);

// Builds the item for one encoded image. extra_metadata_json: empty or a JSON
// object whose fields are merged in (they never override the fields above).
StatusOr<ItemInput> MakeImageItem(const EncodedImage& encoded, const Codebook& codebook,
                                  std::optional<uint64_t> id, std::optional<int64_t> label,
                                  const std::string& source_path,
                                  std::string_view extra_metadata_json = {});

}  // namespace hamdb
