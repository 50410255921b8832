#include "client/ingest_files.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::client {
namespace {

using ::testing::HasSubstr;

absl::StatusOr<std::optional<qrag::v1::Document>> Parse(std::string_view line) {
  return ParseJsonlDocumentLine(line, "docs.jsonl:3", "p/", "docs.jsonl");
}

TEST(ParseJsonlDocumentLine, FullDocument) {
  auto doc = Parse(R"({"id": "a", "title": "T", "text": "body", "metadata": {"lang": "en", "year": 2024}})");
  ASSERT_TRUE(doc.ok()) << doc.status();
  ASSERT_TRUE(doc->has_value());
  const qrag::v1::Document& d = **doc;
  EXPECT_EQ(d.id(), "p/a");
  EXPECT_EQ(d.text(), "T body");
  EXPECT_EQ(d.metadata().at("lang"), "en");
  EXPECT_EQ(d.metadata().at("year"), "2024");
  EXPECT_EQ(d.metadata().at("source"), "docs.jsonl");
}

TEST(ParseJsonlDocumentLine, IntegerUnderscoreIdAndEmptyTitle) {
  auto doc = Parse(R"({"_id": 42, "title": "", "text": "x"})");
  ASSERT_TRUE(doc.ok()) << doc.status();
  EXPECT_EQ((*doc)->id(), "p/42");
  EXPECT_EQ((*doc)->text(), "x");
}

TEST(ParseJsonlDocumentLine, BlankLinesAreSkipped) {
  for (const char* line : {"", "   ", "\t\r", "\r"}) {
    auto doc = Parse(line);
    ASSERT_TRUE(doc.ok()) << doc.status();
    EXPECT_FALSE(doc->has_value()) << "'" << line << "'";
  }
}

TEST(ParseJsonlDocumentLine, Errors_NameTheLine) {
  struct Case {
    const char* line;
    const char* message;
  };
  for (const Case& c : {Case{"not json", "invalid JSON"}, Case{"[1, 2]", "not a JSON object"},
                        Case{"{\"text\": \"x\"}", "needs a string \"id\""},
                        Case{"{\"id\": 1.5, \"text\": \"x\"}", "needs a string \"id\""},
                        Case{"{\"id\": null, \"_id\": \"b\", \"text\": \"x\"}", "needs a string \"id\""},
                        Case{"{\"id\": \"a\"}", "needs a string \"text\""},
                        Case{"{\"id\": \"a\", \"text\": 3}", "needs a string \"text\""},
                        Case{"{\"id\": \"a\", \"text\": \"\xff\"}", "invalid JSON"},
                        Case{"{\"id\": \"a\", \"text\": \"x\"", "invalid JSON"}}) {
    auto doc = Parse(c.line);
    ASSERT_FALSE(doc.ok()) << c.line;
    EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument) << c.line;
    EXPECT_THAT(doc.status().message(), HasSubstr("docs.jsonl:3: ")) << c.line;
    EXPECT_THAT(doc.status().message(), HasSubstr(c.message)) << c.line;
  }
}

// Found by AddressSanitizer (stack overflow): nlohmann's parser is iterative, but the value's destructor and
// dump() recurse once per level, so 100,000 nested arrays in metadata crashed `qrag ingest`.
TEST(ParseJsonlDocumentLine, DeepNesting_IsAnErrorNotACrash) {
  for (int depth : {64, 65, 100000}) {
    std::string line = "{\"id\": \"a\", \"text\": \"x\", \"metadata\": {\"k\": ";
    line += std::string(depth - 2, '[') + std::string(depth - 2, ']') + "}}";
    auto doc = Parse(line);
    if (depth <= 64) {
      ASSERT_TRUE(doc.ok()) << depth << ": " << doc.status();
      EXPECT_EQ((*doc)->metadata().at("k").size(), static_cast<size_t>(2 * (depth - 2))) << depth;
    } else {
      ASSERT_FALSE(doc.ok()) << depth;
      EXPECT_EQ(doc.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_THAT(doc.status().message(), HasSubstr("docs.jsonl:3: invalid JSON: nested deeper than 64 levels"));
    }
  }
}

}  // namespace
}  // namespace qrag::client
