#include "collection/field_index.h"

#include <algorithm>
#include <cstring>
#include <nlohmann/json.hpp>

#include "core/hamming.h"
#include "core/prefetch.h"
#include "index/state_io.h"

namespace hamdb {

using nlohmann::json;

FieldValue FieldValue::Int(int64_t v) {
  FieldValue x;
  x.is_int = true;
  x.i = v;
  x.d = static_cast<double>(v);
  return x;
}

std::optional<FieldValue> FieldValue::FromJson(const json& v) {
  FieldValue x;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      x.d = static_cast<double>(v.get<uint64_t>());
    } else {
      x = Int(v.get<int64_t>());
    }
  } else if (v.is_number_float()) {
    x.d = v.get<double>();
  } else if (v.is_string()) {
    x.type = kString;
    x.s = v.get<std::string>();
  } else if (v.is_boolean()) {
    x.type = kBool;
    x.b = v.get<bool>();
  } else {
    return std::nullopt;
  }
  return x;
}

std::string FieldValue::Key() const {
  std::string k;
  switch (type) {
    case kNumber:
      k.push_back(is_int ? 'i' : 'd');
      if (is_int) {
        k.append(reinterpret_cast<const char*>(&i), sizeof(i));
      } else {
        k.append(reinterpret_cast<const char*>(&d), sizeof(d));
      }
      break;
    case kString:
      k.push_back('s');
      k += s;
      break;
    case kBool:
      k.push_back(b ? 'T' : 'F');
      break;
  }
  return k;
}

int CompareNumbers(const FieldValue& a, const FieldValue& b) {
  if (a.is_int && b.is_int) return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
  return a.d < b.d ? -1 : a.d > b.d ? 1 : 0;
}

bool Equal(const FieldValue& a, const FieldValue& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case FieldValue::kNumber: return CompareNumbers(a, b) == 0;
    case FieldValue::kString: return a.s == b.s;
    case FieldValue::kBool: return a.b == b.b;
  }
  return false;
}

Status FieldIndex::CheckFieldName(std::string_view name) {
  if (name == "label") return Status::OK();
  if (name.rfind("metadata.", 0) == 0 && name.size() > 9) return Status::OK();
  return Status::InvalidArgument("cannot index field '" + std::string(name) +
                                 "'; indexable fields are \"label\" and \"metadata.<key>\" (a "
                                 "top-level metadata field)");
}

FieldIndex::FieldIndex(std::vector<std::string> fields, size_t code_bytes, size_t block_items)
    : fields_(std::move(fields)),
      code_bytes_(code_bytes),
      block_items_(std::clamp<size_t>(block_items, 1, kMaxBlockItems)),
      rings_(static_cast<uint32_t>(code_bytes * 8 + 1)),
      by_field_(fields_.size()) {
  for (size_t f = 0; f < fields_.size(); ++f) {
    if (fields_[f] == "label") {
      label_field_ = static_cast<int>(f);
    } else {
      metadata_fields_.emplace_back(fields_[f].substr(9), static_cast<int>(f));
    }
  }
}

int FieldIndex::FieldNumber(std::string_view name) const {
  for (size_t f = 0; f < fields_.size(); ++f) {
    if (fields_[f] == name) return static_cast<int>(f);
  }
  return -1;
}

uint32_t FieldIndex::OrdinalFor(Field* fd, const FieldValue& v) {
  auto [it, added] = fd->ordinal.emplace(v.Key(), static_cast<uint32_t>(fd->values.size()));
  if (added) {
    try {
      fd->values.push_back(v);
      fd->postings.emplace_back();
    } catch (...) {
      fd->values.resize(it->second);
      fd->postings.resize(it->second);
      fd->ordinal.erase(it);
      throw;
    }
  }
  return it->second;
}

void FieldIndex::MeasureTailBall(Posting* p) const {
  const size_t begin = p->blocks * block_items_;
  p->radius = 0;
  if (begin == p->size()) return;
  const uint8_t* codes = p->codes.data();
  p->pivot.assign(codes + begin * code_bytes_, codes + (begin + 1) * code_bytes_);
  for (size_t i = begin + 1; i < p->size(); ++i) {
    p->radius = std::max(p->radius, HammingDistance(p->pivot.data(), codes + i * code_bytes_, code_bytes_));
  }
}

void FieldIndex::MoveEntry(Field* fd, Posting* p, size_t from, size_t to) {
  p->slots[to] = p->slots[from];
  std::memcpy(p->codes.data() + to * code_bytes_, p->codes.data() + from * code_bytes_, code_bytes_);
  p->scores[to] = p->scores[from];
  if (fd != nullptr) fd->pos[p->slots[to]] = static_cast<uint32_t>(to);
}

void FieldIndex::AppendToPosting(Field* fd, Posting* p, uint32_t slot, const uint8_t* code, uint16_t score) {
  const size_t tail = p->size() - p->blocks * block_items_;
  if (tail == 0) {
    p->pivot.assign(code, code + code_bytes_);
    p->radius = 0;
  } else {
    p->radius = std::max(p->radius, HammingDistance(p->pivot.data(), code, code_bytes_));
  }
  p->slots.push_back(slot);
  p->codes.insert(p->codes.end(), code, code + code_bytes_);
  p->scores.push_back(score);
  if (tail + 1 >= block_items_ + std::max<size_t>(1, block_items_ / 4)) SealBlock(fd, p);
}

void FieldIndex::SealBlock(Field* fd, Posting* p) {
  const size_t S = block_items_;
  const size_t nb = code_bytes_;
  const size_t begin = p->blocks * S;
  std::vector<uint32_t> slots;
  std::vector<uint8_t> codes;
  std::vector<uint16_t> scores;
  std::vector<uint32_t> ring, ones, next;
  try {
    slots.resize(S);
    codes.resize(S * nb);
    scores.resize(S);
    ring.resize(S);
    ones.resize(nb * 8);
    next.resize(rings_);
    p->block_pivots.resize((p->blocks + 1) * nb);
    p->block_starts.resize((p->blocks + 1) * (rings_ + 1));
  } catch (const std::bad_alloc&) {
    return;  // the tail stays longer; still a valid posting list
  }
  // Pivot: each bit set when more than half the block's codes set it.
  const uint8_t* in = p->codes.data() + begin * nb;
  uint8_t* pivot = p->block_pivots.data() + p->blocks * nb;
  for (size_t i = 0; i < S; ++i) {
    for (size_t j = 0; j < nb; ++j) {
      const uint8_t byte = in[i * nb + j];
      for (int bit = 0; bit < 8; ++bit) ones[j * 8 + bit] += (byte >> bit) & 1u;
    }
  }
  for (size_t j = 0; j < nb; ++j) {
    uint8_t byte = 0;
    for (int bit = 0; bit < 8; ++bit) {
      if (2 * ones[j * 8 + bit] > S) byte |= static_cast<uint8_t>(1u << bit);
    }
    pivot[j] = byte;
  }
  // Sorted by ring, stably (a counting sort).
  uint16_t* start = p->block_starts.data() + p->blocks * (rings_ + 1);
  std::fill(start, start + rings_ + 1, 0);
  for (size_t i = 0; i < S; ++i) {
    ring[i] = HammingDistance(pivot, in + i * nb, nb);
    ++start[ring[i] + 1];
  }
  for (uint32_t r = 1; r <= rings_; ++r) start[r] = static_cast<uint16_t>(start[r] + start[r - 1]);
  std::copy(start, start + rings_, next.begin());
  for (size_t i = 0; i < S; ++i) {
    const size_t to = next[ring[i]]++;
    slots[to] = p->slots[begin + i];
    std::memcpy(codes.data() + to * nb, in + i * nb, nb);
    scores[to] = p->scores[begin + i];
  }
  std::copy(slots.begin(), slots.end(), p->slots.begin() + static_cast<std::ptrdiff_t>(begin));
  std::copy(codes.begin(), codes.end(), p->codes.begin() + static_cast<std::ptrdiff_t>(begin * nb));
  std::copy(scores.begin(), scores.end(), p->scores.begin() + static_cast<std::ptrdiff_t>(begin));
  if (fd != nullptr) {
    for (size_t i = 0; i < S; ++i) fd->pos[slots[i]] = static_cast<uint32_t>(begin + i);
  }
  ++p->blocks;
  MeasureTailBall(p);
}

void FieldIndex::UnsealLastBlock(Posting* p) {
  --p->blocks;
  p->block_pivots.resize(p->blocks * code_bytes_);
  p->block_starts.resize(p->blocks * (rings_ + 1));
  MeasureTailBall(p);
}

void FieldIndex::RemoveFromPosting(Field* fd, Posting* p, size_t i) {
  const size_t S = block_items_;
  // With an empty tail, the last block becomes the tail (its order is no
  // longer needed), so that the item that fills a hole comes from the tail.
  if (p->blocks > 0 && p->size() == p->blocks * S) UnsealLastBlock(p);
  const size_t last = p->size() - 1;
  if (i >= p->blocks * S) {
    if (i != last) MoveEntry(fd, p, last, i);
  } else {
    const size_t base = i / S * S;
    uint16_t* start = p->block_starts.data() + i / S * (rings_ + 1);
    const uint8_t* pivot = p->block_pivots.data() + i / S * code_bytes_;
    // The hole moves to the block's end: each ring from the hole's own
    // outwards gives its last item to the hole and shrinks by one.
    size_t hole = i - base;
    uint32_t r = 0;
    while (start[r + 1] <= hole) ++r;
    for (;;) {
      const size_t end = start[r + 1] - 1u;
      if (end != hole) MoveEntry(fd, p, base + end, base + hole);
      hole = end;
      --start[r + 1];
      if (r + 1 == rings_) break;
      ++r;
    }
    // The tail's last item goes into its ring: each outer ring moves its
    // first item to the hole after it, which opens a hole before it.
    const uint32_t want = HammingDistance(pivot, p->codes.data() + last * code_bytes_, code_bytes_);
    start[rings_] = static_cast<uint16_t>(S);
    hole = S - 1;
    for (uint32_t q = rings_ - 1; q > want; --q) {
      const size_t first = start[q];
      if (first < hole) MoveEntry(fd, p, base + first, base + hole);
      hole = first;
      start[q] = static_cast<uint16_t>(first + 1);
    }
    MoveEntry(fd, p, last, base + hole);
  }
  p->slots.pop_back();
  p->codes.resize(p->codes.size() - code_bytes_);
  p->scores.pop_back();
}

std::vector<std::optional<FieldValue>> FieldIndex::ValuesOf(const std::optional<int64_t>& label,
                                                            std::string_view metadata_json) const {
  std::vector<std::optional<FieldValue>> values(fields_.size());
  if (label_field_ >= 0 && label) values[static_cast<size_t>(label_field_)] = FieldValue::Int(*label);
  if (!metadata_fields_.empty() && !metadata_json.empty()) {
    const json m = json::parse(metadata_json.begin(), metadata_json.end(), nullptr, false);
    if (m.is_object()) {
      for (const auto& [key, f] : metadata_fields_) {
        auto it = m.find(key);
        if (it != m.end()) values[static_cast<size_t>(f)] = FieldValue::FromJson(*it);
      }
    }
  }
  return values;
}

void FieldIndex::Set(uint64_t id, const uint8_t* code, uint16_t score,
                     const std::optional<int64_t>& label, std::string_view metadata_json) {
  const std::vector<std::optional<FieldValue>> values = ValuesOf(label, metadata_json);
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  SetLocked(id, code, score, values);
}

Status FieldIndex::Apply(const std::vector<Update>& updates, const std::function<Status()>& together) {
  std::vector<std::vector<std::optional<FieldValue>>> values(updates.size());
  for (size_t i = 0; i < updates.size(); ++i) {
    if (!updates[i].erase) values[i] = ValuesOf(updates[i].label, updates[i].metadata_json);
  }
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  for (size_t i = 0; i < updates.size(); ++i) {
    const Update& u = updates[i];
    if (u.erase) {
      const uint32_t slot = slot_of_.Find(u.id, ids_.data());
      if (slot != IdSlotMap::kNoSlot) EraseSlotLocked(slot);
    } else {
      SetLocked(u.id, u.code, u.score, values[i]);
    }
  }
  return together ? together() : Status::OK();
}

void FieldIndex::SetLocked(uint64_t id, const uint8_t* code, uint16_t score,
                           const std::vector<std::optional<FieldValue>>& values) {
  bool any = false;
  for (const auto& v : values) any = any || v.has_value();
  uint32_t slot = slot_of_.Find(id, ids_.data());
  if (slot != IdSlotMap::kNoSlot) EraseSlotLocked(slot);
  if (!any) return;
  // Room first, so that the appends below cannot fail half-way.
  slot = static_cast<uint32_t>(ids_.size());
  ReserveForAppend(&ids_, 1);
  slot_of_.Reserve(ids_.size() + 1, ids_.data());
  std::vector<uint32_t> ords(fields_.size(), kNone);
  for (size_t f = 0; f < fields_.size(); ++f) {
    Field& fd = by_field_[f];
    ReserveForAppend(&fd.ord, 1);
    ReserveForAppend(&fd.pos, 1);
    if (values[f]) {
      ords[f] = OrdinalFor(&fd, *values[f]);
      Posting& p = fd.postings[ords[f]];
      ReserveForAppend(&p.slots, 1);
      ReserveForAppend(&p.codes, code_bytes_);
      ReserveForAppend(&p.scores, 1);
      p.pivot.reserve(code_bytes_);
    }
  }
  ids_.push_back(id);
  slot_of_.Insert(id, slot, ids_.data());
  for (size_t f = 0; f < fields_.size(); ++f) {
    Field& fd = by_field_[f];
    fd.ord.push_back(ords[f]);
    if (ords[f] == kNone) {
      fd.pos.push_back(0);
    } else {
      fd.pos.push_back(static_cast<uint32_t>(fd.postings[ords[f]].size()));
      AppendToPosting(&fd, &fd.postings[ords[f]], slot, code, score);
    }
  }
}

void FieldIndex::Erase(uint64_t id) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  const uint32_t slot = slot_of_.Find(id, ids_.data());
  if (slot != IdSlotMap::kNoSlot) EraseSlotLocked(slot);
}

void FieldIndex::EraseSlotLocked(uint32_t slot) {
  const uint32_t last = static_cast<uint32_t>(ids_.size() - 1);
  for (Field& fd : by_field_) {
    // Out of its posting list: the list's last entry takes its place.
    if (fd.ord[slot] != kNone) RemoveFromPosting(&fd, &fd.postings[fd.ord[slot]], fd.pos[slot]);
    // The last slot moves into the hole.
    if (slot != last) {
      fd.ord[slot] = fd.ord[last];
      fd.pos[slot] = fd.pos[last];
      if (fd.ord[slot] != kNone) fd.postings[fd.ord[slot]].slots[fd.pos[slot]] = slot;
    }
    fd.ord.pop_back();
    fd.pos.pop_back();
  }
  slot_of_.Erase(ids_[slot], ids_.data());
  if (slot != last) {
    slot_of_.Move(ids_[last], last, slot, ids_.data());
    ids_[slot] = ids_[last];
  }
  ids_.pop_back();
}

size_t FieldIndex::size() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  return ids_.size();
}

size_t FieldIndex::memory_bytes() const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  size_t bytes = ids_.capacity() * sizeof(uint64_t) + slot_of_.memory_bytes();
  for (const Field& fd : by_field_) {
    bytes += (fd.ord.capacity() + fd.pos.capacity()) * sizeof(uint32_t);
    bytes += fd.values.capacity() * sizeof(FieldValue) + fd.postings.capacity() * sizeof(Posting);
    for (const Posting& p : fd.postings) {
      bytes += p.slots.capacity() * sizeof(uint32_t) + p.codes.capacity() +
               p.scores.capacity() * sizeof(uint16_t) + p.pivot.capacity() + p.block_pivots.capacity() +
               p.block_starts.capacity() * sizeof(uint16_t);
    }
    // The dictionary's nodes: key, ordinal and the node's own pointers.
    for (const auto& [key, o] : fd.ordinal) bytes += key.capacity() + 48;
    for (const FieldValue& v : fd.values) bytes += v.s.capacity();
  }
  return bytes;
}

void FieldIndex::Values(const uint64_t* ids, size_t n, uint32_t* ords) const {
  const size_t nf = fields_.size();
  // In chunks, each chunk's lookups and then its value reads overlapped.
  constexpr size_t kChunk = 64;
  uint32_t slots[kChunk];
  for (size_t begin = 0; begin < n; begin += kChunk) {
    const size_t len = std::min(kChunk, n - begin);
    slot_of_.FindMany(ids + begin, len, ids_.data(), slots);
    for (size_t i = 0; i < len; ++i) {
      if (slots[i] == IdSlotMap::kNoSlot) continue;
      for (size_t f = 0; f < nf; ++f) PrefetchLine(&by_field_[f].ord[slots[i]]);
    }
    for (size_t i = 0; i < len; ++i) {
      uint32_t* out = ords + (begin + i) * nf;
      for (size_t f = 0; f < nf; ++f) {
        out[f] = slots[i] == IdSlotMap::kNoSlot ? kNone : by_field_[f].ord[slots[i]];
      }
    }
  }
}

std::vector<FieldIndex::PostingBound> FieldIndex::Bounds(int f, const std::vector<uint8_t>& ok,
                                                         const uint8_t* query) const {
  const Field& fd = by_field_[static_cast<size_t>(f)];
  const size_t n = std::min(ok.size(), fd.postings.size());
  std::vector<PostingBound> out;
  for (size_t o = 0; o < n; ++o) {
    const Posting& p = fd.postings[o];
    if (!ok[o] || p.empty()) continue;
    const uint32_t ordinal = static_cast<uint32_t>(o);
    for (size_t b = 0; b < p.blocks; ++b) {
      const auto [lo, hi] = RingSpan(p, b);
      const uint32_t d = HammingDistance(query, p.block_pivots.data() + b * code_bytes_, code_bytes_);
      const uint32_t bound = d > hi ? d - hi : d < lo ? lo - d : 0;
      out.push_back({bound, ordinal, hi, block_items_, static_cast<uint32_t>(b), d});
    }
    const size_t tail = p.size() - p.blocks * block_items_;
    if (tail > 0) {
      const uint32_t d = HammingDistance(query, p.pivot.data(), code_bytes_);
      out.push_back({d > p.radius ? d - p.radius : 0, ordinal, p.radius, tail, kNone, d});
    }
  }
  std::sort(out.begin(), out.end(),
            [](const PostingBound& a, const PostingBound& b) { return a.bound < b.bound; });
  return out;
}

double FieldIndex::MeanRadius(int f, const std::vector<uint8_t>& ok) const {
  const Field& fd = by_field_[static_cast<size_t>(f)];
  const size_t n = std::min(ok.size(), fd.postings.size());
  double weighted = 0, items = 0;
  for (size_t o = 0; o < n; ++o) {
    const Posting& p = fd.postings[o];
    if (!ok[o] || p.empty()) continue;
    for (size_t b = 0; b < p.blocks; ++b) weighted += static_cast<double>(RingSpan(p, b).second) * block_items_;
    const size_t tail = p.size() - p.blocks * block_items_;
    weighted += static_cast<double>(p.radius) * static_cast<double>(tail);
    items += static_cast<double>(p.size());
  }
  return items > 0 ? weighted / items : 0;
}

std::pair<uint32_t, uint32_t> FieldIndex::RingSpan(const Posting& p, size_t b) const {
  const uint16_t* start = p.block_starts.data() + b * (rings_ + 1);
  uint32_t lo = 0;
  while (start[lo + 1] == 0) ++lo;
  uint32_t hi = rings_ - 1;
  while (start[hi] == start[rings_]) --hi;
  return {lo, hi};
}

void FieldIndex::AppendIds(int f, const std::vector<uint8_t>& ok, std::vector<uint64_t>* out) const {
  const Field& fd = by_field_[static_cast<size_t>(f)];
  const size_t n = std::min(ok.size(), fd.postings.size());
  for (size_t o = 0; o < n; ++o) {
    if (!ok[o]) continue;
    for (uint32_t slot : fd.postings[o].slots) out->push_back(ids_[slot]);
  }
}

// State layout: u32 field count, each field's name (u32 length, bytes);
// u64 code bytes; the ids (vector); the id map (IdSlotMap state); then per
// field its dictionary (u64 count, each value's Key as u32 length and
// bytes), its ordinal per slot (vector), and each ordinal's posting list
// (slots, codes, score keys: three vectors). Positions are rebuilt.
void FieldIndex::AppendState(std::string* out) const {
  std::shared_lock<WriterPriorityMutex> lock(mu_);
  state_io::Put<uint32_t>(out, static_cast<uint32_t>(fields_.size()));
  for (const std::string& name : fields_) {
    state_io::Put<uint32_t>(out, static_cast<uint32_t>(name.size()));
    out->append(name);
  }
  state_io::Put<uint64_t>(out, code_bytes_);
  state_io::PutVector(out, ids_);
  slot_of_.AppendState(out);
  for (const Field& fd : by_field_) {
    state_io::Put<uint64_t>(out, fd.values.size());
    for (const FieldValue& v : fd.values) {
      const std::string key = v.Key();
      state_io::Put<uint32_t>(out, static_cast<uint32_t>(key.size()));
      out->append(key);
    }
    state_io::PutVector(out, fd.ord);
    for (const Posting& p : fd.postings) {
      state_io::PutVector(out, p.slots);
      state_io::PutVector(out, p.codes);
      state_io::PutVector(out, p.scores);
    }
  }
}

namespace {

Status GetBytes(std::string_view* in, std::string* s) {
  uint32_t len = 0;
  HAMDB_RETURN_IF_ERROR(state_io::Get(in, &len));
  if (in->size() < len) return Status::Corruption("field index state is truncated");
  s->assign(in->data(), len);
  in->remove_prefix(len);
  return Status::OK();
}

// The value a FieldValue::Key was made from.
std::optional<FieldValue> FromKey(const std::string& k) {
  if (k.empty()) return std::nullopt;
  FieldValue v;
  const char* p = k.data() + 1;
  switch (k[0]) {
    case 'i':
      if (k.size() != 9) return std::nullopt;
      int64_t i;
      std::memcpy(&i, p, 8);
      return FieldValue::Int(i);
    case 'd':
      if (k.size() != 9) return std::nullopt;
      std::memcpy(&v.d, p, 8);
      return v;
    case 's':
      v.type = FieldValue::kString;
      v.s = k.substr(1);
      return v;
    case 'T':
    case 'F':
      if (k.size() != 1) return std::nullopt;
      v.type = FieldValue::kBool;
      v.b = k[0] == 'T';
      return v;
  }
  return std::nullopt;
}

}  // namespace

void FieldIndex::ClearLocked() {
  ids_.clear();
  slot_of_.Clear();
  for (Field& fd : by_field_) fd = Field();
}

Status FieldIndex::LoadState(std::string_view* in) {
  std::unique_lock<WriterPriorityMutex> lock(mu_);
  if (!ids_.empty()) return Status::FailedPrecondition("LoadState needs an empty field index");
  Status st = [&]() -> Status {
    uint32_t nf = 0;
    HAMDB_RETURN_IF_ERROR(state_io::Get(in, &nf));
    std::vector<std::string> names(nf);
    for (std::string& name : names) HAMDB_RETURN_IF_ERROR(GetBytes(in, &name));
    if (names != fields_) return Status::Corruption("the field index state is of other fields");
    uint64_t nb = 0;
    HAMDB_RETURN_IF_ERROR(state_io::Get(in, &nb));
    if (nb != code_bytes_) return Status::Corruption("the field index state is of other code lengths");
    HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &ids_));
    HAMDB_RETURN_IF_ERROR(slot_of_.LoadState(in, ids_.size()));
    for (Field& fd : by_field_) {
      uint64_t nv = 0;
      HAMDB_RETURN_IF_ERROR(state_io::Get(in, &nv));
      if (nv > in->size()) return Status::Corruption("field index dictionary is truncated");
      for (uint64_t o = 0; o < nv; ++o) {
        std::string key;
        HAMDB_RETURN_IF_ERROR(GetBytes(in, &key));
        std::optional<FieldValue> v = FromKey(key);
        if (!v || !fd.ordinal.emplace(key, static_cast<uint32_t>(o)).second) {
          return Status::Corruption("field index dictionary entry does not decode");
        }
        fd.values.push_back(std::move(*v));
      }
      fd.postings.resize(fd.values.size());
      HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &fd.ord));
      if (fd.ord.size() != ids_.size()) return Status::Corruption("field index ordinals do not match its ids");
      fd.pos.assign(ids_.size(), kNone);
      for (uint32_t o = 0; o < fd.postings.size(); ++o) {
        Posting& p = fd.postings[o];
        HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &p.slots));
        HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &p.codes));
        HAMDB_RETURN_IF_ERROR(state_io::GetVector(in, &p.scores));
        if (p.codes.size() != p.slots.size() * code_bytes_ || p.scores.size() != p.slots.size()) {
          return Status::Corruption("field index posting list does not decode");
        }
        // Blocks sealed while the tail holds a block's worth, then the
        // tail's ball.
        p.pivot.reserve(code_bytes_);
        while (p.size() - p.blocks * block_items_ >= block_items_) {
          const size_t blocks = p.blocks;
          SealBlock(nullptr, &p);
          if (p.blocks == blocks) return Status::ResourceExhausted("no memory for a field index block");
        }
        MeasureTailBall(&p);
        for (uint32_t i = 0; i < p.slots.size(); ++i) {
          const uint32_t slot = p.slots[i];
          if (slot >= ids_.size() || fd.ord[slot] != o || fd.pos[slot] != kNone) {
            return Status::Corruption("field index posting list does not match its ordinals");
          }
          fd.pos[slot] = i;
        }
      }
      for (uint32_t slot = 0; slot < fd.ord.size(); ++slot) {
        if (fd.ord[slot] != kNone && fd.pos[slot] == kNone) {
          return Status::Corruption("field index item missing from its posting list");
        }
        if (fd.ord[slot] == kNone) fd.pos[slot] = 0;
      }
    }
    return Status::OK();
  }();
  if (!st.ok()) ClearLocked();
  return st;
}

}  // namespace hamdb
