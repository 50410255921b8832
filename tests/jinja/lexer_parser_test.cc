// Lexer and parser: syntax errors name line and column, unsupported tags are refused, and nesting is
// bounded (deep input is an error, never a stack overflow).
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/jinja/lexer.h"
#include "server/jinja/template.h"
#include "tests/jinja/jinja_test_util.h"
#include "tests/test_util.h"

namespace qrag::jinja {
namespace {

using ::testing::HasSubstr;

absl::Status ParseStatus(std::string_view source, const ParseOptions& options = {}) {
  return Template::Parse(source, options).status();
}

std::string Repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) out += s;
  return out;
}

TEST(JinjaLexer, TokensCarryLineAndByteColumn) {
  auto tokens = Tokenize("ab\n  {{ x.y }}", LexOptions{});
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  ASSERT_GE(tokens->size(), 6u);
  EXPECT_EQ((*tokens)[0].type, TokenType::kText);
  EXPECT_EQ((*tokens)[0].value, "ab\n  ");
  EXPECT_EQ((*tokens)[1].type, TokenType::kVarBegin);
  EXPECT_EQ((*tokens)[1].line, 2);
  EXPECT_EQ((*tokens)[1].column, 3);
  EXPECT_EQ((*tokens)[2].value, "x");
  EXPECT_EQ((*tokens)[2].column, 6);
  EXPECT_EQ((*tokens)[3].value, ".");
  EXPECT_EQ(tokens->back().type, TokenType::kEnd);
}

TEST(JinjaLexer, NormalizesNewlinesAndDropsOneTrailingNewline) {
  EXPECT_EQ(NormalizeNewlines("a\r\nb\rc\n"), "a\nb\nc");
  EXPECT_EQ(NormalizeNewlines("a\n\n"), "a\n");
  EXPECT_EQ(testing::Render("x\r\n{{ 'y' }}\r\n"), "x\ny");
}

TEST(JinjaLexer, BracesInsideATagDoNotCloseIt) {
  EXPECT_EQ(testing::Render("{{ {'a': {'b': 1}}['a'] }}"), "{'b': 1}");
  EXPECT_EQ(testing::Render("{{ '}}' ~ \"%}\" }}"), "}}%}");
}

TEST(JinjaLexer, StringLiteralsSpanLinesAndUnescape) {
  EXPECT_EQ(testing::Render("{{ 'a\nb' }}|{{ \"\\u00e9\\x41\\n\" }}"), "a\nb|\xc3\xa9" "A\n");
}

TEST(JinjaParseError, NamesLineAndColumn) {
  const absl::Status s = ParseStatus("line one\n{{ 1 + }}");
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2, column 8")));
  EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected end of print statement")));
}

TEST(JinjaParseError, UnclosedConstructs) {
  EXPECT_THAT(ParseStatus("ok\n  {{ x"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 2, column 3: unexpected end of template")));
  EXPECT_THAT(ParseStatus("{% if x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected end of tag")));
  EXPECT_THAT(ParseStatus("a {# never closed"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("line 1, column 3: Missing end of comment tag")));
  EXPECT_THAT(ParseStatus("{% raw %}x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Missing end of raw")));
  EXPECT_THAT(ParseStatus("{{ 'abc }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unclosed quote")));
  EXPECT_THAT(ParseStatus("{% for x in y %}body"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("needs {% endfor %}")));
  EXPECT_THAT(ParseStatus("{% if a %}{% for x in y %}{% endif %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected '{% endif %}'")));
  EXPECT_THAT(ParseStatus("{% macro m() %}x"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("endmacro")));
}

TEST(JinjaParseError, UnbalancedBrackets) {
  EXPECT_THAT(ParseStatus("{{ (1 }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected ')'")));
  EXPECT_THAT(ParseStatus("{{ 1) }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected ')'")));
  EXPECT_THAT(ParseStatus("{{ [1) }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected ']'")));
}

TEST(JinjaParseError, BadTokens) {
  EXPECT_THAT(ParseStatus("{{ $x }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unexpected char '$'")));
  EXPECT_THAT(ParseStatus("{{ 99999999999999999999 }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("integer literal too large")));
  EXPECT_THAT(ParseStatus("{{ '\\xZZ' }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("truncated \\x")));
  EXPECT_THAT(ParseStatus("{{ }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected an expression")));
  EXPECT_THAT(ParseStatus("{% %}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("tag name expected")));
  EXPECT_THAT(ParseStatus("{{ x is }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("expected a name")));
  EXPECT_THAT(ParseStatus("{{ f(a=1, 2) }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("positional argument follows keyword")));
  EXPECT_THAT(ParseStatus("{% macro m(a=1, b) %}{% endmacro %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("non-default argument follows default")));
  EXPECT_THAT(ParseStatus("{% set true = 1 %}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("cannot assign")));
}

TEST(JinjaParseError, UnknownAndUnsupportedTags) {
  EXPECT_THAT(ParseStatus("{% frobnicate %}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown tag 'frobnicate'")));
  for (const char* tag : {"include 'x'", "import 'x' as y", "extends 'base'", "block body", "call m()", "do x"}) {
    SCOPED_TRACE(tag);
    EXPECT_THAT(ParseStatus(std::string("{% ") + tag + " %}"),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("is not supported")));
  }
  EXPECT_THAT(ParseStatus("{% for x in y recursive %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("recursive loops are not supported")));
  EXPECT_THAT(ParseStatus("{{ f(*args) }}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not supported")));
}

TEST(JinjaParseError, LoopControlsOnlyInsideLoops) {
  EXPECT_THAT(ParseStatus("{% break %}"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'break' outside of a loop")));
  EXPECT_THAT(ParseStatus("{% for x in y %}{% macro m() %}{% continue %}{% endmacro %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'continue' outside of a loop")));
  EXPECT_TRUE(ParseStatus("{% for x in y %}{% if x %}{% break %}{% endif %}{% endfor %}").ok());
}

TEST(JinjaParseError, SourceSizeLimit) {
  ParseOptions options;
  options.max_source_bytes = 10;
  EXPECT_THAT(ParseStatus("01234567890", options), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ParseStatus("0123456789", options).ok());
}

// Deeply nested input of every recursive form is refused with an error (the default limit is 128).
TEST(JinjaNesting, DeepInputIsAnErrorNotAStackOverflow) {
  const int n = 20000;
  const std::string cases[] = {
      "{{ " + Repeat("(", n) + "1" + Repeat(")", n) + " }}",
      "{{ " + Repeat("[", n) + Repeat("]", n) + " }}",
      "{{ " + Repeat("{'a': ", n) + "1" + Repeat("}", n) + " }}",
      "{{ " + Repeat("not ", n) + "x }}",
      "{{ " + Repeat("- ", n) + "1 }}",
      "{{ 1" + Repeat(" + 1", n) + " }}",
      "{{ x" + Repeat("|trim", n) + " }}",
      "{{ x" + Repeat(".a", n) + " }}",
      "{{ x" + Repeat("[0]", n) + " }}",
      "{{ f" + Repeat("()", n) + " }}",
      "{{ 1" + Repeat(" if x else 1", n) + " }}",
      "{{ 1" + Repeat(" < 1", n) + " }}",
      Repeat("{% if x %}", n) + Repeat("{% endif %}", n),
      Repeat("{% for x in y %}", n) + Repeat("{% endfor %}", n),
      Repeat("{% macro m() %}", n) + Repeat("{% endmacro %}", n),
  };
  ParseOptions options;
  options.max_source_bytes = 16 << 20;  // this test is about nesting, not size
  for (const std::string& source : cases) {
    SCOPED_TRACE(source.substr(0, 40));
    const absl::Status s = ParseStatus(source, options);
    if (source.find("< 1") != std::string::npos) {
      EXPECT_TRUE(s.ok()) << s;  // a comparison chain is one flat node
      continue;
    }
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested too deeply")));
  }
}

TEST(JinjaNesting, LimitIsConfigurableAndExact) {
  ParseOptions options;
  options.max_nesting_depth = 8;
  EXPECT_TRUE(ParseStatus("{{ 1 + 1 + 1 + 1 + 1 + 1 }}", options).ok());
  EXPECT_THAT(ParseStatus("{{ 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 + 1 }}", options), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_TRUE(ParseStatus(Repeat("{% if x %}", 6) + Repeat("{% endif %}", 6), options).ok());
  EXPECT_THAT(ParseStatus(Repeat("{% if x %}", 9) + Repeat("{% endif %}", 9), options),
              StatusIsCode(absl::StatusCode::kInvalidArgument));
}

TEST(JinjaParser, OperatorPrecedenceAsJinja2) {
  EXPECT_EQ(testing::Render("{{ 2 ** 3 ** 2 }}"), "64");  // left-associative in jinja2
  EXPECT_EQ(testing::Render("{{ -2 ** 2 }}"), "4");
  EXPECT_EQ(testing::Render("{{ -x|abs }}", {{"x", 3}}), "3");  // the filter applies to -x
  EXPECT_EQ(testing::Render("{{ 'a' ~ 1 * 2 }}"), "a2");
  EXPECT_EQ(testing::Render("{{ not x is defined }}"), "True");
  EXPECT_EQ(testing::Render("{{ x is divisibleby 3 and true }}", {{"x", 9}}), "True");
}

}  // namespace
}  // namespace qrag::jinja
