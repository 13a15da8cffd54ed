// Labelled image collections for training and evaluating encoders. Torch-free.
//
//  - Fashion-MNIST: the gzipped IDX files of the Debian package
//    dataset-fashion-mnist (/usr/share/datasets/fashion-mnist by default):
//    train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz and t10k-*.
//    60,000 train / 10,000 test 28x28 grayscale images, 10 classes.
//  - An image folder: DIR/<class-name>/<file>.{png,jpg,jpeg}, one sub-folder
//    per class; classes are the sub-folder names in byte order, files are
//    read in name order. Files that fail to decode are skipped and counted.
//
// Errors: NotFound for a missing file or folder, Corruption for malformed
// IDX data, InvalidArgument for an empty image folder.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "encoder/image.h"
#include "core/status.h"

namespace hamdb {

struct LabeledImages {
  std::vector<Image> images;
  std::vector<int> labels;  // one per image, in [0, class_names.size())
  std::vector<std::string> class_names;
  std::vector<std::string> paths;  // source file per image (image folders only)
  size_t skipped = 0;              // undecodable files (image folders only)

  size_t size() const { return images.size(); }
};

// The Fashion-MNIST class names, index = label.
const std::vector<std::string>& FashionMnistClassNames();

inline const char* kDefaultFashionMnistDir = "/usr/share/datasets/fashion-mnist";

// split: "train" or "test". limit: 0 = all, else the first `limit` images.
StatusOr<LabeledImages> LoadFashionMnist(const std::string& dir, const std::string& split,
                                         size_t limit = 0);

// scikit-learn's bundled digits (python3-sklearn's digits.csv.gz: 1,797 rows
// of 64 values 0..16 and a label), as 8-bit gray images of side `size`
// (bilinear upscale from 8x8, values scaled by 255/16). Classes "0".."9".
// Used as out-of-distribution data for Fashion-MNIST encoders.
inline const char* kDefaultSklearnDigitsPath =
    "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz";
StatusOr<LabeledImages> LoadSklearnDigits(const std::string& path, int size = 28, size_t limit = 0);

// Reads an image folder as described above. limit_per_class: 0 = all.
StatusOr<LabeledImages> LoadImageFolder(const std::string& dir, size_t limit_per_class = 0);

// Lists the image files of a folder tree as LoadImageFolder would read them,
// without decoding: (path, class index) pairs plus the class names.
struct ImageFolderListing {
  std::vector<std::string> paths;
  std::vector<int> labels;
  std::vector<std::string> class_names;
};
StatusOr<ImageFolderListing> ListImageFolder(const std::string& dir, size_t limit_per_class = 0);

}  // namespace hamdb
