#include "index/binary_index.h"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>

#include "index/parallel.h"
#include "index/state_io.h"

namespace hamdb {

Status BinaryIndex::ExportItems(std::vector<uint64_t>*, std::vector<uint8_t>*,
                                std::vector<uint16_t>*) const {
  return Status::NotSupported("index " + spec() + " cannot export its items");
}

Status BinaryIndex::Lookup(const uint64_t*, size_t, uint8_t*, uint16_t*, uint8_t*) const {
  return Status::NotSupported("index " + spec() + " cannot look items up by id");
}

Status CheckTieBreakSupported(const std::string& spec, bool keeps_scores, TieBreak tie) {
  if (tie == TieBreak::kScore && !keeps_scores) {
    return Status::InvalidArgument("index " + spec +
                                   " does not keep scores, so it cannot order ties by score; "
                                   "use tie_break \"id\"");
  }
  return Status::OK();
}

Status CheckFilterSupported(const std::string& spec, bool filters, const IdFilter* filter) {
  if (filter != nullptr && !filters) {
    return Status::InvalidArgument("index " + spec +
                                   " cannot filter; filtered searches need a Flat, MIH, Bucket or IVF index");
  }
  return Status::OK();
}

Status BinaryIndex::CheckParamsSupported(const SearchParams& params) const {
  HAMDB_RETURN_IF_ERROR(CheckFilterSupported(spec(), /*filters=*/false, params.filter));
  return CheckTieBreakSupported(spec(), keeps_scores(), params.tie_break);
}

Status BinaryIndex::SaveState(std::string* out) const {
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scores;
  HAMDB_RETURN_IF_ERROR(ExportItems(&ids, &codes, &scores));
  AppendItemsState(ids, codes, scores, out);
  return Status::OK();
}

Status BinaryIndex::LoadState(std::string_view state) {
  std::vector<uint64_t> ids;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scores;
  HAMDB_RETURN_IF_ERROR(ParseItemsState(&state, code_bytes(), &ids, &codes, &scores));
  if (!state.empty()) return Status::Corruption("index state has trailing bytes");
  return Add(ids.data(), codes.data(), ids.size(), scores.empty() ? nullptr : scores.data());
}

void AppendItemsState(const std::vector<uint64_t>& ids, const std::vector<uint8_t>& codes,
                      const std::vector<uint16_t>& scores, std::string* out) {
  state_io::PutVector(out, ids);  // the count, then the ids
  out->append(reinterpret_cast<const char*>(codes.data()), codes.size());
  state_io::PutVector(out, scores);
}

Status ParseItemsState(std::string_view* state, size_t code_bytes, std::vector<uint64_t>* ids,
                       std::vector<uint8_t>* codes, std::vector<uint16_t>* scores) {
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(state, ids));
  if (code_bytes == 0 || ids->size() > state->size() / code_bytes) {
    return Status::Corruption("index state is truncated (" + std::to_string(ids->size()) + " codes)");
  }
  codes->assign(state->data(), state->data() + ids->size() * code_bytes);
  state->remove_prefix(ids->size() * code_bytes);
  HAMDB_RETURN_IF_ERROR(state_io::GetVector(state, scores));
  if (!scores->empty() && scores->size() != ids->size()) {
    return Status::Corruption("index state: scores do not match ids");
  }
  return Status::OK();
}

Status BinaryIndex::SearchBatch(const uint8_t* queries, size_t nq, size_t k,
                                const SearchParams& params,
                                std::vector<SearchResult>* out) const {
  if (out == nullptr) return Status::InvalidArgument("SearchBatch: out is null");
  if (k == 0) return Status::InvalidArgument("k must be at least 1");
  if (nq > 0 && queries == nullptr) return Status::InvalidArgument("queries is null");
  // A filter is checked by each Search: only some indexes take one.
  HAMDB_RETURN_IF_ERROR(CheckTieBreakSupported(spec(), keeps_scores(), params.tie_break));
  out->assign(nq, SearchResult{});
  ThreadPool& pool = ThreadPool::Default();
  const int threads = pool.Resolve(params.num_threads);
  // Split across queries; a batch smaller than the thread count lets each
  // query split its own work among the leftover threads.
  SearchParams one = params;
  one.num_threads =
      static_cast<int>(std::max<size_t>(1, static_cast<size_t>(threads) / std::max<size_t>(nq, 1)));
  std::mutex error_mu;
  Status first_error;
  Status st = pool.ParallelFor(nq, threads, [&](size_t i) {
    StatusOr<SearchResult> r = Search(queries + i * code_bytes(), k, one);
    if (r.ok()) {
      (*out)[i] = std::move(r).value();
    } else {
      std::lock_guard<std::mutex> lock(error_mu);
      if (first_error.ok()) first_error = r.status().WithContext("query " + std::to_string(i));
    }
  });
  HAMDB_RETURN_IF_ERROR(st);
  return first_error;
}

}  // namespace hamdb
