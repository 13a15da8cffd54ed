#include "collection/filter.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "collection/live_collection.h"
#include "core/hamming.h"
#include "index/scan.h"

namespace hamdb {

using nlohmann::json;

namespace {

using Scalar = FieldValue;

struct FilterError {
  ItemFilter::ErrorKind kind;
  std::string message;
};

[[noreturn]] void Syntax(const std::string& where, const std::string& what) {
  throw FilterError{ItemFilter::ErrorKind::kSyntax, where + ": " + what};
}
[[noreturn]] void Invalid(const std::string& where, const std::string& what) {
  throw FilterError{ItemFilter::ErrorKind::kInvalid, where + ": " + what};
}

}  // namespace

namespace {

// What one evaluation knows of the item: its field-index ordinals, and the
// stored item, read and its metadata parsed only when a condition on an
// unindexed field first asks.
class ItemView {
 public:
  // item: known already (or null: not stored); read: how to fetch it.
  ItemView(uint64_t id, const Item* item, const uint32_t* ords, const ItemReader* read)
      : id_(id), item_(item), loaded_(read == nullptr), ords_(ords), read_(read) {}

  uint64_t id() const { return id_; }
  // The ordinal of field f's value (FieldIndex::kNone when none).
  uint32_t ordinal(int f) const { return ords_[f]; }
  // Null when the item is not stored or cannot be read.
  const Item* item() {
    if (!loaded_) {
      loaded_ = true;
      StatusOr<Item> got = (*read_)(id_);
      if (got.ok()) {
        owned_ = std::move(got).value();
        item_ = &*owned_;
      }
    }
    return item_;
  }
  // Null when the item has no metadata or it is not a JSON object.
  const json* metadata() {
    if (!parsed_) {
      parsed_ = true;
      const Item* it = item();
      if (it != nullptr && !it->metadata_json.empty()) {
        metadata_ = json::parse(it->metadata_json, nullptr, false);
      }
    }
    return metadata_.is_object() ? &metadata_ : nullptr;
  }

 private:
  uint64_t id_;
  const Item* item_;
  bool loaded_;
  const uint32_t* ords_;
  const ItemReader* read_;
  std::optional<Item> owned_;
  bool parsed_ = false;
  json metadata_;
};

}  // namespace

// How a filter's nodes are answered from a field index: per node, the field
// a condition is on (-1: not indexed, answered from the item) with its
// passing ordinals and their item count, and an upper bound of the items
// the node allows.
struct StoreFilter::Plan {
  int field = -1;
  std::vector<uint8_t> ok;  // by ordinal
  uint64_t bound = UINT64_MAX;  // UINT64_MAX: unknown (any item may match)
  std::vector<Plan> children;
};

struct ItemFilter::Node {
  enum Kind { kAnd, kOr, kNot, kIds, kCondition } kind = kAnd;
  std::vector<Node> children;
  std::vector<uint64_t> ids;  // sorted
  // A condition on a field.
  bool is_label = false;
  std::string key;  // metadata key
  std::vector<Scalar> in;  // eq is an "in" of one
  bool has_in = false;
  std::optional<Scalar> gt, gte, lt, lte;
  std::optional<std::string> prefix;

  bool NeedsItem() const {
    if (kind == kCondition) return true;
    return std::any_of(children.begin(), children.end(), [](const Node& c) { return c.NeedsItem(); });
  }

  std::string FieldName() const { return is_label ? "label" : "metadata." + key; }

  bool HoldsFor(const Scalar& v) const {
    if (has_in && std::none_of(in.begin(), in.end(), [&](const Scalar& x) { return Equal(x, v); })) {
      return false;
    }
    if (gt || gte || lt || lte) {
      if (v.type != Scalar::kNumber) return false;
      if (gt && CompareNumbers(v, *gt) <= 0) return false;
      if (gte && CompareNumbers(v, *gte) < 0) return false;
      if (lt && CompareNumbers(v, *lt) >= 0) return false;
      if (lte && CompareNumbers(v, *lte) > 0) return false;
    }
    if (prefix && (v.type != Scalar::kString || v.s.compare(0, prefix->size(), *prefix) != 0)) {
      return false;
    }
    return true;
  }

  // plan: this node's plan, or null (no field index).
  bool Matches(ItemView* item, const StoreFilter::Plan* plan) const {
    auto child_plan = [&](size_t i) { return plan != nullptr ? &plan->children[i] : nullptr; };
    switch (kind) {
      case kAnd:
        for (size_t i = 0; i < children.size(); ++i) {
          if (!children[i].Matches(item, child_plan(i))) return false;
        }
        return true;
      case kOr:
        for (size_t i = 0; i < children.size(); ++i) {
          if (children[i].Matches(item, child_plan(i))) return true;
        }
        return false;
      case kNot:
        return !children[0].Matches(item, child_plan(0));
      case kIds:
        return std::binary_search(ids.begin(), ids.end(), item->id());
      case kCondition: {
        if (plan != nullptr && plan->field >= 0) {
          const uint32_t o = item->ordinal(plan->field);
          return o < plan->ok.size() && plan->ok[o] != 0;
        }
        const Item* it = item->item();
        if (it == nullptr) return false;
        if (is_label) return it->label && HoldsFor(FieldValue::Int(*it->label));
        const json* m = item->metadata();
        if (m == nullptr) return false;
        auto f = m->find(key);
        if (f == m->end()) return false;
        const std::optional<Scalar> v = FieldValue::FromJson(*f);
        return v && HoldsFor(*v);
      }
    }
    return false;
  }

  // The plan of this node over `fields` (see StoreFilter::Plan).
  StoreFilter::Plan MakePlan(const FieldIndex& fields) const {
    StoreFilter::Plan p;
    for (const Node& c : children) p.children.push_back(c.MakePlan(fields));
    auto add = [](uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; };
    switch (kind) {
      case kAnd:
        for (const StoreFilter::Plan& c : p.children) p.bound = std::min(p.bound, c.bound);
        break;
      case kOr:
        p.bound = 0;
        for (const StoreFilter::Plan& c : p.children) p.bound = add(p.bound, c.bound);
        break;
      case kNot:
        break;
      case kIds:
        p.bound = ids.size();
        break;
      case kCondition:
        p.field = fields.FieldNumber(FieldName());
        if (p.field >= 0) {
          fields.Evaluate(p.field, [&](const FieldValue& v) { return HoldsFor(v); }, &p.ok, &p.bound);
        }
        break;
    }
    return p;
  }

  // Appends a superset of the ids this node allows; plan.bound is known.
  // Returns whether it may have appended an id twice.
  bool Enumerate(const FieldIndex& fields, const StoreFilter::Plan& plan,
                 std::vector<uint64_t>* out) const {
    switch (kind) {
      case kAnd: {
        if (children.empty()) return false;  // bound unknown: never reached
        size_t best = 0;
        for (size_t i = 1; i < children.size(); ++i) {
          if (plan.children[i].bound < plan.children[best].bound) best = i;
        }
        return children[best].Enumerate(fields, plan.children[best], out);
      }
      case kOr: {
        bool twice = children.size() > 1;
        for (size_t i = 0; i < children.size(); ++i) {
          twice = children[i].Enumerate(fields, plan.children[i], out) || twice;
        }
        return twice;
      }
      case kIds:
        out->insert(out->end(), ids.begin(), ids.end());
        return false;  // distinct since parsing
      case kCondition:
        fields.AppendIds(plan.field, plan.ok, out);  // one value per item
        return false;
      case kNot:
        return false;  // never: its bound is unknown
    }
    return false;
  }
};

namespace {

using Node = ItemFilter::Node;

Node ParseNode(const json& j, const std::string& where, int depth);

std::vector<Node> ParseList(const json& v, const std::string& where, int depth) {
  if (!v.is_array()) Syntax(where, "must be an array of filters");
  std::vector<Node> out;
  for (size_t i = 0; i < v.size(); ++i) out.push_back(ParseNode(v[i], where + "[" + std::to_string(i) + "]", depth + 1));
  return out;
}

Scalar ParseScalar(const json& v, const std::string& where) {
  std::optional<Scalar> x = FieldValue::FromJson(v);
  if (!x) Invalid(where, "must be a number, a string or a boolean, not " + v.dump());
  return *x;
}

Node ParseCondition(const json& j, const std::string& where) {
  Node n;
  n.kind = Node::kCondition;
  const json& f = j["field"];
  if (!f.is_string()) Invalid(where + ".field", "must be a string: \"label\" or \"metadata.<key>\"");
  const std::string name = f.get<std::string>();
  if (name == "label") {
    n.is_label = true;
  } else if (name.rfind("metadata.", 0) == 0 && name.size() > 9) {
    n.key = name.substr(9);
  } else {
    Invalid(where + ".field", "cannot filter on '" + name +
                                  "'; filterable fields are \"label\" and \"metadata.<key>\" (a "
                                  "top-level metadata field)");
  }
  int ops = 0;
  for (const auto& [op, v] : j.items()) {
    if (op == "field") continue;
    ++ops;
    const std::string at = where + "." + op;
    if (op == "eq") {
      n.in.push_back(ParseScalar(v, at));
      n.has_in = true;
    } else if (op == "in") {
      if (!v.is_array()) Invalid(at, "must be an array of numbers, strings or booleans");
      for (size_t i = 0; i < v.size(); ++i) n.in.push_back(ParseScalar(v[i], at + "[" + std::to_string(i) + "]"));
      n.has_in = true;
    } else if (op == "gt" || op == "gte" || op == "lt" || op == "lte") {
      if (!v.is_number()) Invalid(at, "must be a number, not " + v.dump());
      Scalar x = ParseScalar(v, at);
      (op == "gt" ? n.gt : op == "gte" ? n.gte : op == "lt" ? n.lt : n.lte) = x;
    } else if (op == "prefix") {
      if (!v.is_string()) Invalid(at, "must be a string, not " + v.dump());
      if (n.is_label) Invalid(at, "'prefix' needs a string field; \"label\" is an integer");
      n.prefix = v.get<std::string>();
    } else {
      Invalid(at, "unknown operator '" + op + "'; the operators are eq, in, gt, gte, lt, lte, prefix");
    }
  }
  if (ops == 0) Syntax(where, "a condition needs an operator (eq, in, gt, gte, lt, lte or prefix)");
  if (n.is_label) {
    for (const Scalar& x : n.in) {
      if (x.type != Scalar::kNumber || !x.is_int) {
        Invalid(where, "\"label\" is an integer; it cannot equal " +
                           (x.type == Scalar::kString ? "\"" + x.s + "\"" : std::string("a non-integer")));
      }
    }
  }
  return n;
}

Node ParseNode(const json& j, const std::string& where, int depth) {
  if (depth > 32) Syntax(where, "filters nest at most 32 deep");
  if (!j.is_object()) Syntax(where, "must be an object");
  const bool condition = j.contains("field");
  int shapes = condition ? 1 : 0;
  for (const char* k : {"and", "or", "not", "ids"}) shapes += j.contains(k) ? 1 : 0;
  if (shapes != 1) {
    Syntax(where, shapes == 0 ? "must be one of {\"and\": [...]}, {\"or\": [...]}, {\"not\": {...}}, "
                                "{\"ids\": [...]} or {\"field\": ..., <operator>: ...}"
                              : "has more than one of \"and\", \"or\", \"not\", \"ids\" and \"field\"");
  }
  if (condition) return ParseCondition(j, where);
  if (j.size() != 1) Syntax(where, "holds keys beside its combinator: " + j.dump());
  Node n;
  if (auto a = j.find("and"); a != j.end()) {
    n.kind = Node::kAnd;
    n.children = ParseList(*a, where + ".and", depth);
  } else if (auto o = j.find("or"); o != j.end()) {
    n.kind = Node::kOr;
    n.children = ParseList(*o, where + ".or", depth);
  } else if (auto x = j.find("not"); x != j.end()) {
    n.kind = Node::kNot;
    n.children.push_back(ParseNode(*x, where + ".not", depth + 1));
  } else {
    const json& ids = j["ids"];
    n.kind = Node::kIds;
    if (!ids.is_array()) Syntax(where + ".ids", "must be an array of item ids");
    for (size_t i = 0; i < ids.size(); ++i) {
      if (!ids[i].is_number_unsigned()) {
        Invalid(where + ".ids[" + std::to_string(i) + "]", "must be an unsigned integer, not " + ids[i].dump());
      }
      n.ids.push_back(ids[i].get<uint64_t>());
    }
    std::sort(n.ids.begin(), n.ids.end());
    n.ids.erase(std::unique(n.ids.begin(), n.ids.end()), n.ids.end());
  }
  return n;
}

}  // namespace

ItemFilter::ItemFilter(std::unique_ptr<Node> root) : root_(std::move(root)) {}
ItemFilter::ItemFilter(ItemFilter&&) noexcept = default;
ItemFilter& ItemFilter::operator=(ItemFilter&&) noexcept = default;
ItemFilter::~ItemFilter() = default;

StatusOr<ItemFilter> ItemFilter::Parse(std::string_view json_text, ErrorKind* kind) {
  if (kind) *kind = ErrorKind::kNone;
  const json j = json::parse(json_text.begin(), json_text.end(), nullptr, false);
  if (j.is_discarded()) {
    if (kind) *kind = ErrorKind::kSyntax;
    return Status::InvalidArgument("filter: not valid JSON");
  }
  return FromJson(j, kind);
}

StatusOr<ItemFilter> ItemFilter::FromJson(const json& j, ErrorKind* kind) {
  if (kind) *kind = ErrorKind::kNone;
  try {
    return ItemFilter(std::make_unique<Node>(ParseNode(j, "filter", 0)));
  } catch (const FilterError& e) {
    if (kind) *kind = e.kind;
    return Status::InvalidArgument(e.message);
  }
}

bool ItemFilter::needs_item() const { return root_->NeedsItem(); }

bool ItemFilter::Matches(uint64_t id, const Item* item) const {
  ItemView view(id, item, nullptr, nullptr);
  return root_->Matches(&view, nullptr);
}

namespace {
const FieldIndex& NoFields() {
  static const FieldIndex none({}, 0);
  return none;
}
}  // namespace

StoreFilter::StoreFilter(const ItemFilter* filter, std::shared_ptr<const FieldIndex> fields,
                         ItemReader read)
    : filter_(filter), fields_(std::move(fields)), read_(std::move(read)) {
  if (fields_ != nullptr && fields_->fields().empty()) fields_.reset();
  if (fields_ != nullptr) read_lock_ = fields_->ReadLock();
  needs_item_ = filter_->needs_item();
  plan_ = std::make_unique<Plan>(filter_->root_->MakePlan(fields_ ? *fields_ : NoFields()));
}

StoreFilter::StoreFilter(const LiveCollection* live, const ItemFilter* filter)
    : StoreFilter(filter, live->field_index(), [live](uint64_t id) { return live->Get(id); }) {}

StoreFilter::StoreFilter(StoreFilter&&) noexcept = default;
StoreFilter::~StoreFilter() = default;

uint64_t StoreFilter::MatchBound() const { return plan_->bound; }

bool StoreFilter::Allows(uint64_t id) const {
  if (fields_ == nullptr || !needs_item_) {
    ItemView view(id, nullptr, nullptr, &read_);
    return filter_->root_->Matches(&view, plan_.get());
  }
  uint32_t small[8];
  std::vector<uint32_t> large;
  const size_t nf = fields_->fields().size();
  uint32_t* ords = small;
  if (nf > 8) {
    large.resize(nf);
    ords = large.data();
  }
  fields_->Values(&id, 1, ords);
  ItemView view(id, nullptr, ords, &read_);
  return filter_->root_->Matches(&view, plan_.get());
}

void StoreFilter::AllowsMany(const uint64_t* ids, size_t n, uint8_t* allowed) const {
  if (fields_ == nullptr || !needs_item_) {
    IdFilter::AllowsMany(ids, n, allowed);
    return;
  }
  const size_t nf = fields_->fields().size();
  std::vector<uint32_t> ords(n * nf);
  fields_->Values(ids, n, ords.data());
  for (size_t i = 0; i < n; ++i) {
    ItemView view(ids[i], nullptr, ords.data() + i * nf, &read_);
    allowed[i] = filter_->root_->Matches(&view, plan_.get());
  }
}

std::optional<StatusOr<SearchResult>> StoreFilter::SearchPostings(const BinaryIndex& index,
                                                                  const uint8_t* query, size_t k,
                                                                  uint32_t radius, bool is_range,
                                                                  const SearchParams& p,
                                                                  bool only_if_tight) const {
  if (fields_ == nullptr || fields_->code_bytes() != index.code_bytes()) return std::nullopt;
  // The node that lists the candidates: down the most selective child of
  // each "and" to a condition on an indexed field.
  const ItemFilter::Node* node = filter_->root_.get();
  const Plan* plan = plan_.get();
  while (node->kind == ItemFilter::Node::kAnd) {
    // The most selective child that is, or may lead to, such a condition.
    const ItemFilter::Node* next = nullptr;
    const Plan* next_plan = nullptr;
    for (size_t i = 0; i < node->children.size(); ++i) {
      const ItemFilter::Node& c = node->children[i];
      const bool indexed = c.kind == ItemFilter::Node::kCondition && plan->children[i].field >= 0;
      if ((indexed || c.kind == ItemFilter::Node::kAnd) &&
          (next == nullptr || plan->children[i].bound < next_plan->bound)) {
        next = &c;
        next_plan = &plan->children[i];
      }
    }
    if (next == nullptr) return std::nullopt;
    node = next;
    plan = next_plan;
  }
  if (node->kind != ItemFilter::Node::kCondition || plan->field < 0) return std::nullopt;
  if (only_if_tight && fields_->MeanRadius(plan->field, plan->ok) > index.bits() / 4.0) return std::nullopt;
  const std::vector<FieldIndex::PostingBound> lists = fields_->Bounds(plan->field, plan->ok, query);
  // The listed items are exactly the allowed ones when that condition is the
  // whole filter; otherwise each item close enough is asked.
  const bool whole = node == filter_->root_.get();
  const int bits = index.bits();
  Status args = is_range ? CheckRangeArgs(query, bits) : CheckSearchArgs(query, k, bits);
  if (args.ok()) args = CheckTieBreakSupported(index.spec(), index.keeps_scores(), p.tie_break);
  if (!args.ok()) return StatusOr<SearchResult>(args);
  const size_t nb = index.code_bytes();
  const bool scores = index.keeps_scores();
  const HammingKernel kernel = SelectHammingKernel(nb);
  ExactScanResult result(k, radius, is_range, bits, p.tie_break);
  std::vector<uint16_t> dist;
  std::vector<uint32_t> ords(fields_->fields().size());
  auto allowed = [&](uint64_t id) {
    if (whole) return true;
    fields_->Values(&id, 1, ords.data());
    ItemView view(id, nullptr, ords.data(), &read_);
    return filter_->root_->Matches(&view, plan_.get());
  };
  auto visit = [&](const uint32_t* slots, const uint8_t* codes, const uint16_t* keys, size_t n) {
    dist.resize(n);
    kernel.distances(query, codes, n, nb, dist.data());
    for (size_t i = 0; i < n; ++i) {
      if (dist[i] > result.limit()) continue;
      const uint64_t id = fields_->id_of_slot(slots[i]);
      if (allowed(id)) result.Offer(dist[i], id, scores ? keys[i] : kNoScore);
    }
  };
  // Nearest runs first; a run whose bound is past the k-th distance (or the
  // radius) holds nothing that can enter, nor do the runs after it.
  for (const FieldIndex::PostingBound& b : lists) {
    if (b.bound > result.limit()) break;
    fields_->ScanPosting(plan->field, b, [&result] { return result.limit(); }, visit);
  }
  return StatusOr<SearchResult>(result.Finish());
}

bool StoreFilter::Candidates(size_t limit, std::vector<uint64_t>* ids) const {
  ids->clear();
  if (plan_->bound > limit) return false;
  if (filter_->root_->Enumerate(fields_ ? *fields_ : NoFields(), *plan_, ids)) {
    std::sort(ids->begin(), ids->end());
    ids->erase(std::unique(ids->begin(), ids->end()), ids->end());
  }
  return true;
}

const char* FilterPathName(FilterPath path) {
  switch (path) {
    case FilterPath::kNone: return "no filter";
    case FilterPath::kIndex: return "index filters";
    case FilterPath::kPostings: return "posting scan";
    case FilterPath::kOverfetch: return "over-fetch";
    case FilterPath::kLookup: return "id lookup";
  }
  return "?";
}

StatusOr<SearchResult> SearchFiltered(const BinaryIndex& index, const uint8_t* query, size_t k,
                                      uint32_t radius, bool is_range, const SearchParams& p,
                                      const FilterPlanning& planning, FilterPath* path) {
  FilterPath unused;
  if (path == nullptr) path = &unused;
  auto by_index = [&]() -> StatusOr<SearchResult> {
    return is_range ? index.RangeSearch(query, radius, p) : index.Search(query, k, p);
  };
  *path = p.filter == nullptr ? FilterPath::kNone : FilterPath::kIndex;
  if (p.filter == nullptr || !planning.plan) return by_index();
  const double items = static_cast<double>(index.size());
  const auto* sf = dynamic_cast<const StoreFilter*>(p.filter);
  if (sf != nullptr && static_cast<double>(sf->MatchBound()) < items) {
    const double matches = std::max<double>(1, static_cast<double>(sf->MatchBound()));
    bool scan = matches <= planning.posting_fraction * items;
    if (!scan) {
      // Many matches, in tight balls: the bounds will prune the scan.
      if (std::optional<StatusOr<SearchResult>> r =
              sf->SearchPostings(index, query, k, radius, is_range, p, /*only_if_tight=*/true)) {
        *path = FilterPath::kPostings;
        return std::move(*r);
      }
    }
    if (!scan && planning.overfetch > 0 && !is_range && CheckSearchArgs(query, k, index.bits()).ok()) {
      // The first K items of the unfiltered order: the first k of them that
      // pass are the first k that pass of all items.
      const double want = planning.overfetch * static_cast<double>(k) * items / matches;
      const size_t fetch = static_cast<size_t>(std::min<double>(
          std::max<double>(want, static_cast<double>(k)),
          static_cast<double>(std::max(planning.max_overfetch, k))));
      SearchParams unfiltered = p;
      unfiltered.filter = nullptr;
      HAMDB_ASSIGN_OR_RETURN(SearchResult r, index.Search(query, fetch, unfiltered));
      // Checked in chunks, each about what k passing items should take.
      std::vector<Neighbor> passing;
      const size_t chunk = static_cast<size_t>(std::clamp(
          static_cast<double>(k) * items / matches, 16.0, 1024.0));
      std::vector<uint64_t> ids;
      std::vector<uint8_t> allowed;
      for (size_t begin = 0; begin < r.neighbors.size() && passing.size() < k; begin += chunk) {
        const size_t len = std::min(chunk, r.neighbors.size() - begin);
        ids.resize(len);
        allowed.resize(len);
        for (size_t i = 0; i < len; ++i) ids[i] = r.neighbors[begin + i].id;
        p.filter->AllowsMany(ids.data(), len, allowed.data());
        for (size_t i = 0; i < len && passing.size() < k; ++i) {
          if (allowed[i]) passing.push_back(r.neighbors[begin + i]);
        }
      }
      // Fewer than asked came back: that was every item.
      if (r.exact && (passing.size() == k || r.neighbors.size() < fetch)) {
        *path = FilterPath::kOverfetch;
        r.neighbors = std::move(passing);
        r.visited_buckets.clear();
        return r;
      }
      scan = true;
    }
    if (scan) {
      if (std::optional<StatusOr<SearchResult>> r = sf->SearchPostings(index, query, k, radius, is_range, p)) {
        *path = FilterPath::kPostings;
        return std::move(*r);
      }
    }
  }
  if (planning.lookup_fraction > 0) {
    const size_t limit = std::max<size_t>(planning.lookup_min_items,
                                          static_cast<size_t>(planning.lookup_fraction * items));
    std::vector<uint64_t> ids;
    if (p.filter->Candidates(limit, &ids)) {
      StatusOr<SearchResult> r = ScanListed(index, ids, query, k, radius, is_range, p);
      if (r.ok() || r.status().code() != Status::Code::kNotSupported) {
        *path = FilterPath::kLookup;
        return r;
      }
    }
  }
  return by_index();
}

}  // namespace hamdb
