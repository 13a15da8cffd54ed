#include "collection/filter.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "collection/live_collection.h"

namespace hamdb {

using nlohmann::json;

namespace {

// A scalar of a condition or of a field: a number, a string or a boolean.
struct Scalar {
  enum Type { kNumber, kString, kBool } type = kNumber;
  bool is_int = false;
  int64_t i = 0;
  double d = 0;
  std::string s;
  bool b = false;
};

std::optional<Scalar> ScalarOf(const json& v) {
  Scalar x;
  if (v.is_number_integer()) {
    if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(INT64_MAX)) {
      x.d = static_cast<double>(v.get<uint64_t>());
    } else {
      x.is_int = true;
      x.i = v.get<int64_t>();
      x.d = static_cast<double>(x.i);
    }
  } else if (v.is_number_float()) {
    x.d = v.get<double>();
  } else if (v.is_string()) {
    x.type = Scalar::kString;
    x.s = v.get<std::string>();
  } else if (v.is_boolean()) {
    x.type = Scalar::kBool;
    x.b = v.get<bool>();
  } else {
    return std::nullopt;
  }
  return x;
}

// -1, 0, 1 for numbers; integers compare exactly.
int CompareNumbers(const Scalar& a, const Scalar& b) {
  if (a.is_int && b.is_int) return a.i < b.i ? -1 : a.i > b.i ? 1 : 0;
  return a.d < b.d ? -1 : a.d > b.d ? 1 : 0;
}

bool Equal(const Scalar& a, const Scalar& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case Scalar::kNumber: return CompareNumbers(a, b) == 0;
    case Scalar::kString: return a.s == b.s;
    case Scalar::kBool: return a.b == b.b;
  }
  return false;
}

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

// An item's metadata object, parsed once, when a condition first asks.
class LazyMetadata {
 public:
  // Null when the item has no metadata or it is not a JSON object.
  const json* Get(const Item* item) {
    if (!parsed_) {
      parsed_ = true;
      if (item != nullptr && !item->metadata_json.empty()) {
        value_ = json::parse(item->metadata_json, nullptr, false);
      }
    }
    return value_.is_object() ? &value_ : nullptr;
  }

 private:
  bool parsed_ = false;
  json value_;
};

}  // namespace

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

  // metadata: the item's metadata, parsed on first use (a label or ids
  // filter never parses it).
  bool Matches(uint64_t id, const Item* item, LazyMetadata* metadata) const {
    switch (kind) {
      case kAnd:
        for (const Node& c : children) {
          if (!c.Matches(id, item, metadata)) return false;
        }
        return true;
      case kOr:
        for (const Node& c : children) {
          if (c.Matches(id, item, metadata)) return true;
        }
        return false;
      case kNot:
        return !children[0].Matches(id, item, metadata);
      case kIds:
        return std::binary_search(ids.begin(), ids.end(), id);
      case kCondition: {
        if (item == nullptr) return false;
        if (is_label) {
          if (!item->label) return false;
          Scalar v;
          v.is_int = true;
          v.i = *item->label;
          v.d = static_cast<double>(v.i);
          return HoldsFor(v);
        }
        const json* m = metadata->Get(item);
        if (m == nullptr) return false;
        auto f = m->find(key);
        if (f == m->end()) return false;
        const std::optional<Scalar> v = ScalarOf(*f);
        return v && HoldsFor(*v);
      }
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
  std::optional<Scalar> x = ScalarOf(v);
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
  try {
    return ItemFilter(std::make_unique<Node>(ParseNode(j, "filter", 0)));
  } catch (const FilterError& e) {
    if (kind) *kind = e.kind;
    return Status::InvalidArgument(e.message);
  }
}

bool ItemFilter::needs_item() const { return root_->NeedsItem(); }

bool ItemFilter::Matches(uint64_t id, const Item* item) const {
  LazyMetadata metadata;
  return root_->Matches(id, item, &metadata);
}

bool StoreFilter::Allows(uint64_t id) const {
  if (!filter_->needs_item()) return filter_->Matches(id, nullptr);
  StatusOr<Item> item = live_->Get(id);
  return filter_->Matches(id, item.ok() ? &*item : nullptr);
}

}  // namespace hamdb
