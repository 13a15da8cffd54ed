// MakeIndex: the one place index spec strings are parsed.
#include <cctype>
#include <memory>
#include <string>

#include "index/binary_index.h"
#include "index/bucket_index.h"
#include "index/core/binary_code.h"
#include "index/faiss_ivf_index.h"
#include "index/flat_index.h"
#include "index/gpu/gpu_flat_index.h"
#include "index/gpu/gpu_list_index.h"
#include "index/mih_index.h"

namespace hamdb {
namespace {

// Parses a positive decimal without sign or leading zero, at most
// `max_digits` digits (so it cannot overflow). False when malformed.
bool ParsePositive(std::string_view digits, size_t max_digits, int* out) {
  if (digits.empty() || digits.size() > max_digits || digits[0] == '0') return false;
  int v = 0;
  for (char c : digits) {
    if (!std::isdigit(static_cast<unsigned char>(c))) return false;
    v = v * 10 + (c - '0');
  }
  *out = v;
  return true;
}

Status BadSpec(std::string_view spec, const char* why) {
  return Status::InvalidArgument("bad index spec '" + std::string(spec) + "': " + why);
}

}  // namespace

StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits) {
  return MakeIndex(spec, bits, IndexOptions{});
}

StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits,
                                                 const IndexOptions& options) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (spec == "Flat") return std::unique_ptr<BinaryIndex>(new FlatIndex(bits));
  if (spec == "GPUFlat") return std::unique_ptr<BinaryIndex>(new GpuFlatIndex(bits));
  if (spec.substr(0, 9) == "GPUBucket" || spec.substr(0, 6) == "GPUIVF") {
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<BinaryIndex> inner,
                           MakeIndex(spec.substr(3), bits, options));
    StatusOr<std::unique_ptr<GpuListIndex>> gpu = GpuListIndex::Create(std::move(inner));
    if (!gpu.ok()) return gpu.status();
    return std::unique_ptr<BinaryIndex>(std::move(gpu).value());
  }
  if (spec.substr(0, 3) == "MIH") {
    const std::string_view digits = spec.substr(3);
    int m = 0;
    // m <= bits <= kMaxCodeBits: five digits suffice.
    if (!digits.empty() && !ParsePositive(digits, 5, &m)) {
      return BadSpec(spec, "expected MIH or MIH<m> with a positive m, e.g. MIH4");
    }
    StatusOr<std::unique_ptr<MihIndex>> mih = MihIndex::Create(bits, m);
    if (!mih.ok()) return mih.status();
    return std::unique_ptr<BinaryIndex>(std::move(mih).value());
  }
  if (spec.substr(0, 6) == "Bucket") {
    const std::string_view digits = spec.substr(6);
    int nprobe = 1;
    if (!digits.empty() && !ParsePositive(digits, 7, &nprobe)) {
      return BadSpec(spec, "expected Bucket or Bucket<nprobe>, e.g. Bucket4");
    }
    StatusOr<std::unique_ptr<ClassBucketIndex>> b =
        ClassBucketIndex::Create(bits, options.codebook, nprobe);
    if (!b.ok()) return b.status();
    return std::unique_ptr<BinaryIndex>(std::move(b).value());
  }
  if (spec.substr(0, 3) == "IVF") {
    const std::string_view rest = spec.substr(3);
    const size_t sep = rest.find('_');
    int nlist = 0, nprobe = 1;
    if (!ParsePositive(rest.substr(0, sep), 7, &nlist) ||
        (sep != std::string_view::npos && !ParsePositive(rest.substr(sep + 1), 7, &nprobe))) {
      return BadSpec(spec, "expected IVF<nlist> or IVF<nlist>_<nprobe>, e.g. IVF1024 or IVF1024_8");
    }
    StatusOr<std::unique_ptr<FaissIvfIndex>> ivf = FaissIvfIndex::Create(bits, nlist, nprobe);
    if (!ivf.ok()) return ivf.status();
    return std::unique_ptr<BinaryIndex>(std::move(ivf).value());
  }
  return Status::InvalidArgument(
      "unknown index spec '" + std::string(spec) +
      "': expected Flat, MIH, MIH<m> (e.g. MIH4), Bucket, Bucket<nprobe>, IVF<nlist>, "
      "IVF<nlist>_<nprobe>, GPUFlat, GPUBucket[<nprobe>] or GPUIVF<nlist>[_<nprobe>]");
}

}  // namespace hamdb
