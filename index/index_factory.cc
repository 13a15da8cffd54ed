#include "index/index_factory.h"

#include <cctype>

#include "core/binary_code.h"
#include "index/bucket_index.h"
#include "index/faiss_ivf_index.h"
#include "index/flat_index.h"
#include "index/gpu/gpu_flat_index.h"
#include "index/gpu/gpu_list_index.h"
#include "index/mih_index.h"

namespace hamdb {
namespace {

using IndexPtr = std::unique_ptr<BinaryIndex>;

// A spec's parameters after its prefix; what each means is the row's.
struct SpecParams {
  int first = 0;   // MIH: m (0 = chosen); Bucket: nprobe; IVF: nlist
  int second = 1;  // IVF: nprobe
};

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

bool ParseNone(std::string_view rest, SpecParams*) { return rest.empty(); }

// "" or "<n>": MIH's m (m <= bits <= kMaxCodeBits: five digits suffice) and
// Bucket's nprobe.
bool ParseOptionalOne(std::string_view rest, SpecParams* p) {
  return rest.empty() || ParsePositive(rest, 7, &p->first);
}

// "<nlist>" or "<nlist>_<nprobe>".
bool ParseIvf(std::string_view rest, SpecParams* p) {
  const size_t sep = rest.find('_');
  return ParsePositive(rest.substr(0, sep), 7, &p->first) &&
         (sep == std::string_view::npos || ParsePositive(rest.substr(sep + 1), 7, &p->second));
}

template <typename T>
StatusOr<IndexPtr> Upcast(StatusOr<std::unique_ptr<T>> made) {
  if (!made.ok()) return made.status();
  return IndexPtr(std::move(made).value());
}

StatusOr<IndexPtr> MakeFlat(const SpecParams&, int bits, const IndexOptions&) {
  return IndexPtr(new FlatIndex(bits));
}
StatusOr<IndexPtr> MakeMih(const SpecParams& p, int bits, const IndexOptions&) {
  return Upcast(MihIndex::Create(bits, p.first));
}
StatusOr<IndexPtr> MakeBucket(const SpecParams& p, int bits, const IndexOptions& o) {
  return Upcast(ClassBucketIndex::Create(bits, o.codebook, p.first > 0 ? p.first : 1));
}
StatusOr<IndexPtr> MakeIvf(const SpecParams& p, int bits, const IndexOptions&) {
  return Upcast(FaissIvfIndex::Create(bits, p.first, p.second));
}
StatusOr<IndexPtr> MakeGpuFlat(const SpecParams&, int bits, const IndexOptions&) {
  return IndexPtr(new GpuFlatIndex(bits));
}
StatusOr<IndexPtr> OnGpu(StatusOr<IndexPtr> inner) {
  if (!inner.ok()) return inner.status();
  return Upcast(GpuListIndex::Create(std::move(inner).value()));
}
StatusOr<IndexPtr> MakeGpuBucket(const SpecParams& p, int bits, const IndexOptions& o) {
  return OnGpu(MakeBucket(p, bits, o));
}
StatusOr<IndexPtr> MakeGpuIvf(const SpecParams& p, int bits, const IndexOptions& o) {
  return OnGpu(MakeIvf(p, bits, o));
}

constexpr uint64_t kFaissMaxId = static_cast<uint64_t>(INT64_MAX);

struct SpecRow {
  std::string_view prefix;
  std::string_view syntax;   // for error messages
  std::string_view example;  // ExampleIndexSpecs
  std::string_view family;
  bool exact;
  bool exact_on_request;
  bool gpu;
  bool needs_codebook;
  bool keeps_scores;
  bool filters;
  uint64_t max_id;
  int bits_multiple;
  bool (*parse)(std::string_view rest, SpecParams* params);
  StatusOr<IndexPtr> (*make)(const SpecParams& params, int bits, const IndexOptions& options);
};

// Longer prefixes first, so that "GPUFlat" is never read as a "GPU..." row
// that does not exist, and each spec matches exactly one row.
// clang-format off
constexpr SpecRow kSpecTable[] = {
  // prefix      syntax                           example       family    exact  on-req gpu    book   scores filter max_id       bits%
  {"GPUFlat",   "GPUFlat",                        "GPUFlat",    "gpu",    true,  true,  true,  false, false, false, UINT64_MAX,  1, ParseNone,        MakeGpuFlat},
  {"GPUBucket", "GPUBucket or GPUBucket<nprobe>", "GPUBucket2", "bucket", false, true,  true,  true,  false, false, UINT64_MAX,  1, ParseOptionalOne, MakeGpuBucket},
  {"GPUIVF",    "GPUIVF<nlist>[_<nprobe>]",       "GPUIVF8_2",  "ivf",    false, false, true,  false, false, false, kFaissMaxId, 8, ParseIvf,         MakeGpuIvf},
  {"Flat",      "Flat",                           "Flat",       "exact",  true,  true,  false, false, true,  true,  UINT64_MAX,  1, ParseNone,        MakeFlat},
  {"MIH",       "MIH or MIH<m>",                  "MIH",        "exact",  true,  true,  false, false, true,  true,  UINT64_MAX,  1, ParseOptionalOne, MakeMih},
  {"Bucket",    "Bucket or Bucket<nprobe>",       "Bucket",     "bucket", false, true,  false, true,  true,  true,  UINT64_MAX,  1, ParseOptionalOne, MakeBucket},
  {"IVF",       "IVF<nlist>[_<nprobe>]",          "IVF8_2",     "ivf",    false, false, false, false, false, true,  kFaissMaxId, 8, ParseIvf,         MakeIvf},
};
// clang-format on

std::string AllSyntaxes() {
  std::string s;
  for (const SpecRow& row : kSpecTable) {
    if (!s.empty()) s += ", ";
    s += row.syntax;
  }
  return s;
}

// The row `spec` belongs to and its parameters.
StatusOr<const SpecRow*> FindRow(std::string_view spec, SpecParams* params) {
  for (const SpecRow& row : kSpecTable) {
    if (spec.substr(0, row.prefix.size()) != row.prefix) continue;
    if (!row.parse(spec.substr(row.prefix.size()), params)) {
      return Status::InvalidArgument("bad index spec '" + std::string(spec) + "': expected " +
                                     std::string(row.syntax) + " with positive integers");
    }
    return &row;
  }
  return Status::InvalidArgument("unknown index spec '" + std::string(spec) +
                                 "': expected one of " + AllSyntaxes());
}

Status CheckRow(const SpecRow& row, std::string_view spec, int bits, bool has_codebook) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (bits % row.bits_multiple != 0) {
    return Status::InvalidArgument("index '" + std::string(spec) + "' takes codes of a multiple of " +
                                   std::to_string(row.bits_multiple) + " bits, not " +
                                   std::to_string(bits));
  }
  if (row.needs_codebook && !has_codebook) {
    return Status::FailedPrecondition("index '" + std::string(spec) +
                                      "' needs the class codebook of an encoder, and there is none");
  }
  return Status::OK();
}

}  // namespace

StatusOr<IndexSpecInfo> DescribeIndexSpec(std::string_view spec) {
  SpecParams params;
  HAMDB_ASSIGN_OR_RETURN(const SpecRow* row, FindRow(spec, &params));
  IndexSpecInfo info;
  info.spec = std::string(spec);
  info.prefix = std::string(row->prefix);
  info.family = std::string(row->family);
  info.exact = row->exact;
  info.exact_on_request = row->exact_on_request;
  info.gpu = row->gpu;
  info.needs_codebook = row->needs_codebook;
  info.keeps_scores = row->keeps_scores;
  info.filters = row->filters;
  info.max_id = row->max_id;
  info.bits_multiple = row->bits_multiple;
  return info;
}

Status CheckIndexSpec(std::string_view spec, int bits, bool has_codebook) {
  SpecParams params;
  HAMDB_ASSIGN_OR_RETURN(const SpecRow* row, FindRow(spec, &params));
  return CheckRow(*row, spec, bits, has_codebook);
}

std::vector<std::string> ExampleIndexSpecs() {
  std::vector<std::string> out;
  for (const SpecRow& row : kSpecTable) out.emplace_back(row.example);
  return out;
}

StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits) {
  return MakeIndex(spec, bits, IndexOptions{});
}

StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits,
                                                 const IndexOptions& options) {
  SpecParams params;
  HAMDB_ASSIGN_OR_RETURN(const SpecRow* row, FindRow(spec, &params));
  HAMDB_RETURN_IF_ERROR(CheckRow(*row, spec, bits, !options.codebook.empty()));
  return row->make(params, bits, options);
}

}  // namespace hamdb
