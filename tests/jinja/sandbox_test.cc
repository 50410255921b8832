// The sandbox: every limit gives an error status (never a crash or a hang), deep recursion stays within a
// small stack, and random templates never crash the engine.
#include <pthread.h>

#include <random>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/jinja/jinja_test_util.h"
#include "tests/test_util.h"

namespace qrag::jinja {
namespace {

using ::testing::HasSubstr;
using testing::RenderFull;
using Json = nlohmann::ordered_json;

absl::Status RenderStatus(std::string_view source, const RenderOptions& options = {}) {
  return RenderFull(source, Json::object(), Json::object(), options).status();
}

TEST(JinjaSandbox, OutputLimit) {
  RenderOptions options;
  options.limits.max_output_bytes = 1000;
  EXPECT_THAT(RenderStatus("{% for i in range(101) %}0123456789{% endfor %}", options),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("rendered output exceeds its limit of 1000 bytes")));
  EXPECT_TRUE(RenderStatus("{% for i in range(100) %}0123456789{% endfor %}", options).ok());
}

TEST(JinjaSandbox, StringLimitCoversEveryWayToBuildAString) {
  RenderOptions options;
  options.limits.max_string_bytes = 1000;
  for (const char* source : {
           "{% set ns = namespace(s='x') %}{% for i in range(20) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}",
           "{{ 'x' * 1001 }}",
           "{{ 'x' * 9223372036854775807 }}",
           "{{ [1] * 9223372036854775807 }}",
           "{{ '%2000d' % 1 }}",
           "{{ '{:>5000}'.format(1) }}",
           "{{ 'x'|indent(100000, first=true) }}",
           "{% set b %}{% for i in range(200) %}xxxxxxxxxx{% endfor %}{% endset %}",
           "{% macro m() %}{% for i in range(200) %}xxxxxxxxxx{% endfor %}{% endmacro %}{{ m() }}",
           "{{ range(500)|list|tojson }}",
           "{{ range(500)|join(',') }}",
       }) {
    SCOPED_TRACE(source);
    EXPECT_THAT(RenderStatus(source, options), StatusIsCode(absl::StatusCode::kResourceExhausted));
  }
}

TEST(JinjaSandbox, ContainerLimit) {
  RenderOptions options;
  options.limits.max_container_items = 1000;
  EXPECT_THAT(RenderStatus("{{ range(1001)|length }}", options),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("range()")));
  EXPECT_THAT(RenderStatus("{{ range(9223372036854775807)|length }}"), StatusIsCode(absl::StatusCode::kResourceExhausted));
  EXPECT_THAT(RenderStatus("{{ (range(600) + range(600))|length }}", options), StatusIsCode(absl::StatusCode::kResourceExhausted));
  EXPECT_EQ(RenderFull("{{ range(1000)|length }}", {}, {}, options)->text, "1000");
}

TEST(JinjaSandbox, LoopIterationLimit) {
  RenderOptions options;
  options.limits.max_loop_iterations = 10000;
  EXPECT_THAT(RenderStatus("{% for i in range(1000) %}{% for j in range(1000) %}{% endfor %}{% endfor %}", options),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("10000 iterations")));
  // The default limits stop a 10^15-iteration loop nest quickly.
  EXPECT_THAT(RenderStatus("{% for a in range(100000) %}{% for b in range(100000) %}{% for c in range(100000) %}"
                           "{% endfor %}{% endfor %}{% endfor %}"),
              StatusIsCode(absl::StatusCode::kResourceExhausted));
}

TEST(JinjaSandbox, WorkLimitBoundsSharedStructureBlowUp) {
  // Each step doubles the printed size while the value stays small: printing, comparing or serialising it
  // would take 2^60 steps.
  const std::string build =
      "{% set ns = namespace(l=[1], m=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}"
      "{% set ns.m = [ns.m, ns.m] %}{% endfor %}";
  RenderOptions small;
  small.limits.max_steps = 1'000'000;
  for (const char* use : {"{{ ns.l }}", "{{ ns.l|tojson }}", "{{ ns.l == [ns.l[0], ns.l[1]] }}", "{{ ns.l|string|length }}",
                          "{{ ns.l in [ns.m] }}"}) {
    SCOPED_TRACE(use);
    EXPECT_THAT(RenderStatus(build + use, small), StatusIsCode(absl::StatusCode::kResourceExhausted));
  }
  RenderOptions options;
  options.limits.max_steps = 1000;
  EXPECT_THAT(RenderStatus("{% for i in range(900) %}{{ i }}{% endfor %}", options),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("work limit")));
}

TEST(JinjaSandbox, ValueDepthLimit) {
  EXPECT_THAT(RenderStatus("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% set ns.l = [ns.l] %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested deeper than 128")));
  // A namespace that contains itself prints as an error, not an endless recursion.
  EXPECT_THAT(RenderStatus("{% set ns = namespace() %}{% set ns.me = ns %}{{ ns }}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested deeper")));
  // Loop objects count the depth of what they iterate: chaining them through lists is bounded too.
  EXPECT_THAT(RenderStatus("{% set ns = namespace(l=[]) %}{% for i in range(1000) %}{% for x in [ns.l] %}"
                           "{% set ns.l = [loop] %}{% endfor %}{% endfor %}"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("nested deeper")));
}

TEST(JinjaSandbox, MacroRecursionLimit) {
  EXPECT_THAT(RenderStatus("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}"),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("macro calls nested deeper than the limit of 64")));
  RenderOptions options;
  options.limits.max_macro_depth = 5;
  EXPECT_TRUE(RenderStatus("{% macro f(n) %}{% if n < 5 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(1) }}", options).ok());
  EXPECT_THAT(RenderStatus("{% macro f(n) %}{% if n < 6 %}{{ f(n + 1) }}{% endif %}{% endmacro %}{{ f(1) }}", options),
              StatusIsCode(absl::StatusCode::kResourceExhausted));
}

// A sanitizer's instrumentation (AddressSanitizer's redzones above all) makes every frame several times larger.
#if defined(QRAG_SANITIZED_BUILD)
constexpr size_t kStackScale = 16;
#else
constexpr size_t kStackScale = 1;
#endif

// Runs `fn` on a thread with a `stack_bytes` stack.
void RunWithStack(size_t stack_bytes, void (*fn)(void*), void* arg) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, stack_bytes);
  struct Call {
    void (*fn)(void*);
    void* arg;
  } call{fn, arg};
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, &attr,
                           [](void* p) -> void* {
                             auto* c = static_cast<Call*>(p);
                             c->fn(c->arg);
                             return nullptr;
                           },
                           &call),
            0);
  pthread_join(thread, nullptr);
  pthread_attr_destroy(&attr);
}

// The deepest recursion the limits allow (nested expressions and statements inside recursive macros, with
// the default limits) fits in a 1 MiB stack (in optimised builds without sanitizers).
TEST(JinjaSandbox, DeepestRecursionFitsASmallStack) {
  // The recursive call sits innermost, so every level holds the whole chain of frames on the stack.
  std::string expr = "f(n + 1)";
  for (int i = 0; i < 60; ++i) {
    expr = i % 3 == 0 ? "(" + expr + " ~ 'x')" : (i % 3 == 1 ? "(" + expr + ")|trim" : "[" + expr + "][0]");
  }
  std::string body = "{{ " + expr + " }}";
  for (int i = 0; i < 40; ++i) body = "{% if true %}" + body + "{% endif %}";
  const std::string source = "{% macro f(n) %}" + body + "{% endmacro %}{{ f(0) }}";
  struct Result {
    std::string source;
    absl::Status status;
  } result{source, absl::OkStatus()};
  RunWithStack(
      kStackScale << 20,
      [](void* p) {
        auto* r = static_cast<Result*>(p);
        r->status = RenderFull(r->source).status();
      },
      &result);
  EXPECT_THAT(result.status, StatusIsCode(absl::StatusCode::kResourceExhausted));
}

// Large but legitimate inputs fit the default limits: the caps are on what a template does, not on how
// long a conversation is.
TEST(JinjaSandbox, LargeConversationsFitTheDefaultLimits) {
  Json messages = Json::array();
  for (int i = 0; i < 2000; ++i) {
    messages.push_back({{"role", i % 2 ? "assistant" : "user"}, {"content", std::string(1000, 'a' + i % 26)}});
  }
  auto r = RenderFull(
      "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content|trim }}{{ m.content[1:][:-1]|length }}"
      "<|im_end|>\n{% endfor %}{{ messages|map(attribute='content')|join(',')|length }}",
      {{"messages", messages}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_GT(r->text.size(), 2000000u);
  // One input string longer than the string limit may still be read, indexed and measured.
  RenderOptions options;
  options.limits.max_string_bytes = 1 << 20;
  auto big = RenderFull("{{ s[-1] }}{{ s[0] }}{{ s|length }}{{ 'x' in s }}", {{"s", std::string(3 << 20, 'y')}},
                        Json::object(), options);
  ASSERT_TRUE(big.ok()) << big.status();
  EXPECT_EQ(big->text, "yy3145728False");
}

TEST(JinjaSandbox, IntegerOverflowAndDivisionAreErrors) {
  for (const char* source : {"{{ 9223372036854775807 + 1 }}", "{{ 2 ** 64 }}", "{{ -(-9223372036854775807 - 1) }}",
                             "{{ (-9223372036854775807 - 1) // -1 }}", "{{ 3 * 4611686018427387904 }}", "{{ 1 // 0 }}",
                             "{{ 1 % 0 }}", "{{ 1.0 / 0 }}", "{{ 0 ** -1 }}"}) {
    SCOPED_TRACE(source);
    EXPECT_THAT(RenderStatus(source), StatusIsCode(absl::StatusCode::kInvalidArgument));
  }
}

TEST(JinjaSandbox, NoAccessBeyondTheValues) {
  // No attribute of Python objects leaks: these are undefined, not introspection.
  EXPECT_EQ(testing::Render("[{{ ''.__class__ }}][{{ x.__dict__ }}][{{ range.__globals__ }}][{{ l.append }}]",
                            {{"x", Json::object()}, {"l", Json::array()}}),
            "[][][][]");
  EXPECT_THAT(RenderStatus("{{ [1].append(2) }}"), StatusIsCode(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(RenderStatus("{% set d = {} %}{{ d.update({'a': 1}) }}"), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

// Random token soup (fixed seed): parse and render must return, whatever they return.
TEST(JinjaSandbox, RandomTemplatesNeverCrash) {
  const std::vector<std::string> pieces = {
      "{{", "}}", "{%", "%}", "{#", "#}", "{%-", "-%}", " if ", " for ", " in ", " endfor", " endif", " else ",
      " set ", " x", " y", " ns", " = ", "(", ")", "[", "]", "{", "}", ",", ":", ".", "|", " trim", " tojson",
      " length", " + ", " ~ ", " * ", " ** ", " // ", " % ", " - ", "1", "0", "-1", "'s'", "\"q\"", " is ",
      " defined", " not ", " and ", " or ", " macro ", " endmacro", " namespace(a=1)", " range(3)", " loop",
      ".index", "\n", " raise_exception('e')", " messages", "[::-1]", "[1:]", "text", " break", " continue"};
  std::mt19937 rng(20250309);
  RenderOptions options;
  options.limits.max_steps = 200000;
  options.limits.max_output_bytes = 1 << 16;
  options.limits.max_string_bytes = 1 << 16;
  const Json vars = {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"x", {1, 2}}, {"y", "s"}};
  int parsed = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    std::string source;
    const int n = 1 + static_cast<int>(rng() % 40);
    for (int i = 0; i < n; ++i) source += pieces[rng() % pieces.size()];
    auto r = RenderFull(source, vars, Json::object(), options);
    if (r.ok() || r.status().message().find("syntax error") == std::string_view::npos) ++parsed;
  }
  EXPECT_GT(parsed, 50);  // some of the soup is valid and renders (or fails at run time)
}

}  // namespace
}  // namespace qrag::jinja
