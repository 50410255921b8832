// The public API: Template, Value, Text, RenderedText, the error contract, strftime_now's injected clock,
// Python number printing, and concurrent renders of one Template.
#include <cmath>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/jinja/budget.h"
#include "server/jinja/printer.h"
#include "server/jinja/template.h"
#include "tests/jinja/jinja_test_util.h"
#include "tests/test_util.h"

namespace qrag::jinja {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(JinjaText, AppendMergesAndSlicesKeepTaint) {
  Text t("ab", Trust::kTrusted);
  t.Append("cd", Trust::kUntrusted);
  t.Append("ef", Trust::kUntrusted);  // touching spans merge
  t.Append("g", Trust::kTrusted);
  EXPECT_EQ(t.bytes(), "abcdefg");
  EXPECT_THAT(t.untrusted(), ElementsAre(Span{2, 6}));
  EXPECT_TRUE(t.AnyUntrustedIn(1, 3));
  EXPECT_FALSE(t.AnyUntrustedIn(0, 2));
  EXPECT_FALSE(t.AnyUntrustedIn(6, 7));
  const Text s = t.Slice(1, 4);
  EXPECT_EQ(s.bytes(), "bcd");
  EXPECT_THAT(s.untrusted(), ElementsAre(Span{1, 3}));
  Text u("0123456789");
  u.MarkUntrusted(6, 8);
  u.MarkUntrusted(1, 3);
  u.MarkUntrusted(2, 7);
  EXPECT_THAT(u.untrusted(), ElementsAre(Span{1, 8}));
}

TEST(JinjaRenderedText, TrustedSpansAreTheComplement) {
  RenderedText r;
  r.text = "0123456789";
  r.untrusted = {{2, 4}, {6, 7}};
  EXPECT_THAT(r.TrustedSpans(), ElementsAre(Span{0, 2}, Span{4, 6}, Span{7, 10}));
  EXPECT_TRUE(r.AnyUntrustedIn(3, 5));
  EXPECT_FALSE(r.AnyUntrustedIn(4, 6));
}

TEST(JinjaValue, FromJsonKeepsKindsOrderAndTrust) {
  const auto json = nlohmann::ordered_json::parse(R"({"z": 1, "a": [true, null, 2.5, "s"], "m": {}})");
  auto v = Value::FromJson(json, Trust::kUntrusted);
  ASSERT_TRUE(v.ok());
  ASSERT_TRUE(v->is_dict());
  const auto& entries = v->dict().entries;
  ASSERT_EQ(entries.size(), 3u);
  EXPECT_EQ(entries[0].first.text().bytes(), "z");
  EXPECT_TRUE(entries[0].first.untrusted());
  EXPECT_TRUE(entries[0].second.is_int());
  EXPECT_TRUE(entries[0].second.untrusted());
  const Value& list = entries[1].second;
  ASSERT_TRUE(list.is_list());
  EXPECT_TRUE(list.items()[0].is_bool());
  EXPECT_TRUE(list.items()[1].is_none());
  EXPECT_TRUE(list.items()[2].is_float());
  EXPECT_TRUE(list.items()[3].text().AnyUntrusted());
  EXPECT_EQ(v->depth(), 2);
  auto trusted = Value::FromJson(json, Trust::kTrusted);
  EXPECT_FALSE(trusted->dict().entries[1].second.items()[3].untrusted());
}

TEST(JinjaValue, FromJsonRefusesDeepNesting) {
  std::string deep;
  for (int i = 0; i < 5000; ++i) deep += "[";
  for (int i = 0; i < 5000; ++i) deep += "]";
  auto v = Value::FromJson(nlohmann::json::parse(deep), Trust::kUntrusted);
  EXPECT_THAT(v, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested deeper than 128")));
  std::string ok;
  for (int i = 0; i < kMaxValueDepth; ++i) ok += "[";
  for (int i = 0; i < kMaxValueDepth; ++i) ok += "]";
  EXPECT_TRUE(Value::FromJson(nlohmann::json::parse(ok), Trust::kUntrusted).ok());
}

TEST(JinjaValue, DictsFollowPythonKeyEquality) {
  auto d = Value::Dict({{Value::Int(1), Value::String("a")}, {Value::Bool(true), Value::String("b")},
                        {Value::Float(2.0), Value::String("c")}});
  ASSERT_TRUE(d.ok());
  ASSERT_EQ(d->dict().entries.size(), 2u);  // 1 and True are the same key; the first key stays
  EXPECT_EQ(d->dict().Find(Value::Float(1.0))->text().bytes(), "b");
  EXPECT_EQ(d->dict().Find(Value::Int(2))->text().bytes(), "c");
  auto unhashable = Value::Dict({{*Value::List({}), Value::Int(1)}});
  EXPECT_THAT(unhashable, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unhashable type: 'list'")));
  // Large dicts use a hash index; lookups agree.
  std::vector<std::pair<std::string, Value>> many;
  for (int i = 0; i < 100; ++i) many.emplace_back("k" + std::to_string(i), Value::Int(i));
  auto big = Value::Dict(std::move(many));
  EXPECT_EQ(big->dict().Find("k42")->as_int(), 42);
  EXPECT_EQ(big->dict().Find(Value::String("k99"))->as_int(), 99);
  EXPECT_EQ(big->dict().Find("nope"), nullptr);
}

TEST(JinjaValue, TruthinessAndTypeNames) {
  EXPECT_FALSE(Value().Truthy());
  EXPECT_FALSE(Value::None().Truthy());
  EXPECT_FALSE(Value::Int(0).Truthy());
  EXPECT_FALSE(Value::Float(0.0).Truthy());
  EXPECT_FALSE(Value::String("").Truthy());
  EXPECT_FALSE(Value::List({})->Truthy());
  EXPECT_TRUE(Value::String(" ").Truthy());
  EXPECT_EQ(Value::None().TypeName(), "NoneType");
  EXPECT_EQ(Value::Tuple({})->TypeName(), "tuple");
  EXPECT_EQ(Value().TypeName(), "Undefined");
}

TEST(JinjaPrinter, FloatReprMatchesPython) {
  EXPECT_EQ(FloatRepr(1.0), "1.0");
  EXPECT_EQ(FloatRepr(0.1), "0.1");
  EXPECT_EQ(FloatRepr(-2.5), "-2.5");
  EXPECT_EQ(FloatRepr(1e15), "1000000000000000.0");
  EXPECT_EQ(FloatRepr(1e16), "1e+16");
  EXPECT_EQ(FloatRepr(0.0001), "0.0001");
  EXPECT_EQ(FloatRepr(0.00001), "1e-05");
  EXPECT_EQ(FloatRepr(1.5e-7), "1.5e-07");
  EXPECT_EQ(FloatRepr(123456789.123), "123456789.123");
  EXPECT_EQ(FloatRepr(1.7976931348623157e308), "1.7976931348623157e+308");
  EXPECT_EQ(FloatRepr(5e-324), "5e-324");
  EXPECT_EQ(FloatRepr(-0.0), "-0.0");
  EXPECT_EQ(FloatRepr(std::numeric_limits<double>::infinity()), "inf");
  EXPECT_EQ(FloatRepr(std::nan("")), "nan");
}

TEST(JinjaPrinter, JsonLikePythonJsonDumps) {
  Budget budget(1000000, 1 << 20);
  auto v = Value::FromJson(nlohmann::ordered_json::parse(R"({"a": "\u0001\u007f\u00e9", "b": [1e100, -0.5]})"),
                           Trust::kTrusted);
  auto compact = ToJson(*v, JsonOptions{}, budget);
  ASSERT_TRUE(compact.ok());
  EXPECT_EQ(compact->bytes(), "{\"a\": \"\\u0001\x7f\xc3\xa9\", \"b\": [1e+100, -0.5]}");
  JsonOptions ascii;
  ascii.ensure_ascii = true;
  EXPECT_EQ(ToJson(*v, ascii, budget)->bytes(), "{\"a\": \"\\u0001\x7f\\u00e9\", \"b\": [1e+100, -0.5]}");
  JsonOptions nan;
  EXPECT_EQ(ToJson(Value::Float(std::nan("")), nan, budget)->bytes(), "NaN");
  EXPECT_THAT(ToJson(Value(), JsonOptions{}, budget),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("Object of type Undefined is not JSON serializable")));
}

TEST(JinjaErrors, RaiseExceptionIsDistinguishableAndExact) {
  auto r = testing::RenderFull("text {{ raise_exception('Only user and assistant roles are supported!') }}");
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(IsRaiseException(r.status()));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "Only user and assistant roles are supported!");
  // Inside a macro, a loop and a filter argument: still the exact message.
  auto nested = testing::RenderFull(
      "{% macro m(x) %}{% for i in [1] %}{{ x|default(raise_exception('deep ' ~ i)) }}{% endfor %}{% endmacro %}"
      "{{ m(u) }}");
  ASSERT_FALSE(nested.ok());
  EXPECT_TRUE(IsRaiseException(nested.status()));
  EXPECT_EQ(nested.status().message(), "deep 1");
}

TEST(JinjaErrors, RuntimeErrorsNameTheLine) {
  auto r = testing::RenderFull("first\nsecond\n{{ messages[0].content.x.y }}", {{"messages", {{{"content", "c"}}}}});
  ASSERT_FALSE(r.ok());
  EXPECT_FALSE(IsRaiseException(r.status()));
  EXPECT_THAT(r.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                   HasSubstr("template error at line 3: 'str object' has no attribute 'x'")));
  EXPECT_THAT(testing::RenderFull("{{ 1 / 0 }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("division by zero")));
  EXPECT_THAT(testing::RenderFull("{{ none + 1 }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unsupported operand type(s) for +: 'NoneType' and 'int'")));
  EXPECT_THAT(testing::RenderFull("{{ 'a' + 1 }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("can only concatenate str (not \"int\") to str")));
  EXPECT_THAT(testing::RenderFull("{{ x|nosuch }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no filter named 'nosuch'")));
  EXPECT_THAT(testing::RenderFull("{{ x is nosuch }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no test named 'nosuch'")));
  EXPECT_THAT(testing::RenderFull("{{ 9223372036854775807 + 1 }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("integer overflow")));
}

TEST(JinjaErrors, ContextMustBeADict) {
  auto tmpl = Template::Parse("x");
  ASSERT_TRUE(tmpl.ok());
  EXPECT_THAT(tmpl->Render(Value::Int(1)), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

TEST(JinjaUndefined, Jinja2DefaultUndefinedSemantics) {
  EXPECT_EQ(testing::Render("[{{ nope }}][{{ nope|length }}][{% for x in nope %}x{% endfor %}][{{ 'a' in nope }}]"),
            "[][0][][False]");
  EXPECT_EQ(testing::Render("{{ d.missing is defined }} {{ d['missing'] is undefined }}", {{"d", nlohmann::ordered_json::object()}}),
            "False True");
  EXPECT_THAT(testing::RenderFull("{{ nope.attr }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'nope' is undefined")));
  EXPECT_THAT(testing::RenderFull("{{ d.a.b }}", {{"d", nlohmann::ordered_json::object()}}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'dict object' has no attribute 'a'")));
}

TEST(JinjaClock, StrftimeNowUsesTheInjectedClockOnly) {
  RenderOptions options;
  options.now = absl::CivilSecond(2024, 12, 31, 23, 59, 58);
  auto r = testing::RenderFull("{{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %-d %j %U %W %w %u') }}", {}, {}, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->text, "2024-12-31 23:59:58 Tue Dec 31 366 52 53 2 2");
  // Without a clock the function does not exist, as `strftime_now is defined` checks in Llama 3.2.
  EXPECT_EQ(testing::Render("{{ strftime_now is defined }}"), "False");
  EXPECT_THAT(testing::RenderFull("{{ strftime_now('%Y') }}").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("'strftime_now' is undefined")));
}

TEST(JinjaScoping, LoopsMacrosAndNamespaces) {
  // A set inside a loop is local to the iteration; a namespace carries state out.
  EXPECT_EQ(testing::Render("{% set x = 0 %}{% for i in [1, 2] %}{% set x = i %}{% endfor %}{{ x }}"), "0");
  EXPECT_EQ(testing::Render("{% set ns = namespace(x=0) %}{% for i in [1, 2] %}{% set ns.x = ns.x + i %}{% endfor %}{{ ns.x }}"),
            "3");
  // Macros see their arguments and the top level, not the caller's locals.
  EXPECT_EQ(testing::Render("{% macro m() %}[{{ i }}|{{ g }}]{% endmacro %}{% set g = 'G' %}{% for i in [1] %}{{ m() }}{% endfor %}"),
            "[|G]");
  // The context is read-only: a set shadows it for the rest of the render.
  EXPECT_EQ(testing::Render("{{ v }}{% set v = v ~ '!' %}{{ v }}", {{"v", "a"}}), "aa!");
}

TEST(JinjaConcurrency, OneTemplateRendersFromManyThreads) {
  auto tmpl = Template::Parse(
      "{% for m in messages %}<{{ m.role }}>{{ m.content|trim }}{% endfor %}{{ namespace(a=n).a * 2 }}");
  ASSERT_TRUE(tmpl.ok());
  std::vector<std::thread> threads;
  std::vector<std::string> results(8);
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 200; ++i) {
        auto ctx = Value::FromJson(
            nlohmann::ordered_json{{"messages", {{{"role", "user"}, {"content", " hi "}}}}, {"n", t}}, Trust::kUntrusted);
        auto r = tmpl->Render(*ctx);
        results[static_cast<size_t>(t)] = r.ok() ? r->text : r.status().ToString();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 8; ++t) EXPECT_EQ(results[static_cast<size_t>(t)], "<user>hi" + std::to_string(2 * t));
}

}  // namespace
}  // namespace qrag::jinja
