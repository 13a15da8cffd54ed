// The filter language: what each condition and combinator matches, and the
// two kinds of error (not the grammar; an unknown operator, a wrong type or
// a field that cannot be filtered on), each naming the bad part.
#include "collection/filter.h"

#include <gtest/gtest.h>

#include <string>

namespace hamdb {
namespace {

Item MakeItem(std::optional<int64_t> label, const std::string& metadata) {
  Item item;
  item.label = label;
  item.metadata_json = metadata;
  return item;
}

bool Matches(const std::string& filter, uint64_t id, const Item* item) {
  ItemFilter::ErrorKind kind;
  auto f = ItemFilter::Parse(filter, &kind);
  EXPECT_TRUE(f.ok()) << filter << ": " << f.status().ToString();
  return f.ok() && f->Matches(id, item);
}

TEST(ItemFilter, ConditionsAndCombinators) {
  const Item bag = MakeItem(8, R"({"class_name": "bag", "path": "bag/00012.png", "confidence": 0.93, "exact": true, "n": 3})");
  const Item bare = MakeItem(std::nullopt, "");
  EXPECT_TRUE(Matches(R"({"field": "label", "eq": 8})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "label", "eq": 7})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "label", "eq": 8})", 1, &bare));  // no label: no match
  EXPECT_TRUE(Matches(R"({"not": {"field": "label", "eq": 8}})", 1, &bare));
  EXPECT_TRUE(Matches(R"({"field": "label", "in": [1, 8, 9]})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"field": "label", "gte": 8, "lt": 9})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "label", "gt": 8})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"field": "metadata.class_name", "eq": "bag"})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"field": "metadata.path", "prefix": "bag/"})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "metadata.path", "prefix": "coat/"})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"field": "metadata.confidence", "gt": 0.9, "lte": 0.93})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "metadata.confidence", "gt": 0.93})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"field": "metadata.n", "eq": 3.0})", 1, &bag));  // numbers by value
  EXPECT_FALSE(Matches(R"({"field": "metadata.n", "eq": "3"})", 1, &bag));  // not by type
  EXPECT_TRUE(Matches(R"({"field": "metadata.exact", "eq": true})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "metadata.class_name", "gt": 1})", 1, &bag));  // a string is no number
  EXPECT_FALSE(Matches(R"({"field": "metadata.missing", "eq": 1})", 1, &bag));
  EXPECT_TRUE(Matches(R"({"ids": [5, 1, 3]})", 1, nullptr));
  EXPECT_FALSE(Matches(R"({"ids": []})", 1, nullptr));
  EXPECT_TRUE(Matches(R"({"not": {"ids": [2]}})", 1, nullptr));
  EXPECT_TRUE(Matches(R"({"and": []})", 1, nullptr));
  EXPECT_FALSE(Matches(R"({"or": []})", 1, nullptr));
  EXPECT_TRUE(Matches(R"({"and": [{"field": "label", "eq": 8}, {"or": [{"ids": [9]},
      {"field": "metadata.class_name", "in": ["coat", "bag"]}]}]})", 1, &bag));
  EXPECT_FALSE(Matches(R"({"field": "label", "eq": 8})", 1, nullptr));  // not stored
  auto ids_only = ItemFilter::Parse(R"({"not": {"ids": [1]}})");
  ASSERT_TRUE(ids_only.ok());
  EXPECT_FALSE(ids_only->needs_item());
  EXPECT_TRUE(ItemFilter::Parse(R"({"or": [{"ids": [1]}, {"field": "label", "eq": 1}]})")->needs_item());
}

TEST(ItemFilter, ErrorsSayWhichKindAndWhere) {
  struct Case {
    const char* filter;
    ItemFilter::ErrorKind kind;
    const char* names;
  };
  const auto kSyntax = ItemFilter::ErrorKind::kSyntax, kInvalid = ItemFilter::ErrorKind::kInvalid;
  const Case cases[] = {
      {"{not json", kSyntax, "not valid JSON"},
      {"[1, 2]", kSyntax, "filter: must be an object"},
      {R"({"label": 8})", kSyntax, "must be one of"},
      {R"({"and": {"ids": [1]}})", kSyntax, "filter.and: must be an array"},
      {R"({"and": [{"ids": [1]}, 5]})", kSyntax, "filter.and[1]: must be an object"},
      {R"({"ids": [1], "not": {"ids": [2]}})", kSyntax, "more than one"},
      {R"({"not": {"ids": [1]}, "extra": 1})", kSyntax, "beside its combinator"},
      {R"({"field": "label"})", kSyntax, "needs an operator"},
      {R"({"ids": 5})", kSyntax, "filter.ids: must be an array"},
      {R"({"field": "label", "like": 8})", kInvalid, "filter.like: unknown operator 'like'"},
      {R"({"or": [{"field": "label", "gt": "a"}]})", kInvalid, "filter.or[0].gt: must be a number"},
      {R"({"field": "label", "eq": "bag"})", kInvalid, "\"label\" is an integer"},
      {R"({"field": "label", "prefix": "a"})", kInvalid, "needs a string field"},
      {R"({"field": "code", "eq": 1})", kInvalid, "cannot filter on 'code'"},
      {R"({"field": "metadata.", "eq": 1})", kInvalid, "cannot filter on"},
      {R"({"field": 3, "eq": 1})", kInvalid, "filter.field: must be a string"},
      {R"({"field": "metadata.a", "in": 1})", kInvalid, "filter.in: must be an array"},
      {R"({"field": "metadata.a", "eq": [1]})", kInvalid, "filter.eq: must be a number"},
      {R"({"ids": [1, -2]})", kInvalid, "filter.ids[1]"},
  };
  for (const Case& c : cases) {
    ItemFilter::ErrorKind kind = ItemFilter::ErrorKind::kNone;
    auto f = ItemFilter::Parse(c.filter, &kind);
    ASSERT_FALSE(f.ok()) << c.filter;
    EXPECT_EQ(kind, c.kind) << c.filter << ": " << f.status().message();
    EXPECT_NE(f.status().message().find(c.names), std::string::npos) << c.filter << ": " << f.status().message();
  }
  std::string deep = R"({"ids": [1]})";
  for (int i = 0; i < 40; ++i) deep = R"({"not": )" + deep + "}";
  ItemFilter::ErrorKind kind;
  EXPECT_FALSE(ItemFilter::Parse(deep, &kind).ok());
  EXPECT_EQ(kind, ItemFilter::ErrorKind::kSyntax);
}

}  // namespace
}  // namespace hamdb
