// MakeIndex: the one place index spec strings are parsed.
#include <cctype>
#include <memory>
#include <string>

#include "index/binary_index.h"
#include "index/core/binary_code.h"
#include "index/flat_index.h"
#include "index/mih_index.h"

namespace hamdb {

StatusOr<std::unique_ptr<BinaryIndex>> MakeIndex(std::string_view spec, int bits) {
  HAMDB_RETURN_IF_ERROR(ValidateCodeBits(bits));
  if (spec == "Flat") return std::unique_ptr<BinaryIndex>(new FlatIndex(bits));
  if (spec.substr(0, 3) == "MIH") {
    const std::string_view digits = spec.substr(3);
    int m = 0;
    if (!digits.empty()) {
      // A positive decimal without sign or leading zero, small enough to
      // parse without overflow (m <= bits <= kMaxCodeBits).
      if (digits.size() > 5 || digits[0] == '0') {
        return Status::InvalidArgument("bad index spec '" + std::string(spec) +
                                       "': MIH<m> needs a positive number of substrings");
      }
      for (char c : digits) {
        if (!std::isdigit(static_cast<unsigned char>(c))) {
          return Status::InvalidArgument("bad index spec '" + std::string(spec) +
                                         "': expected MIH or MIH<m>, e.g. MIH4");
        }
        m = m * 10 + (c - '0');
      }
    }
    StatusOr<std::unique_ptr<MihIndex>> mih = MihIndex::Create(bits, m);
    if (!mih.ok()) return mih.status();
    return std::unique_ptr<BinaryIndex>(std::move(mih).value());
  }
  return Status::InvalidArgument("unknown index spec '" + std::string(spec) +
                                 "': expected Flat, MIH or MIH<m> (e.g. MIH4)");
}

}  // namespace hamdb
