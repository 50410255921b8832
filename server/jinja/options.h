// Options and sandbox limits of the Jinja engine (see template.h for the API they configure).
#ifndef QRAG_SERVER_JINJA_OPTIONS_H_
#define QRAG_SERVER_JINJA_OPTIONS_H_

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/time/civil_time.h"

namespace qrag::jinja {

struct ParseOptions {
  // Sources longer than this are rejected (INVALID_ARGUMENT).
  size_t max_source_bytes = 1 << 20;
  // Deepest nesting the parser accepts: expression tree height, nested brackets and calls, and nested
  // block tags ({% if %} inside {% for %} ...). Bounds the parser's and the evaluator's recursion.
  int max_nesting_depth = 128;
  // As transformers' apply_chat_template configures jinja2.
  bool trim_blocks = true;
  bool lstrip_blocks = true;
};

// Caps on one render; exceeding any gives RESOURCE_EXHAUSTED, never a crash or a hang.
struct RenderLimits {
  // The rendered text.
  size_t max_output_bytes = 4 << 20;
  // Any string the template builds (concatenation, filters, a macro's or block set's output, tojson...).
  size_t max_string_bytes = 4 << 20;
  // Any list or dict the template builds (range(), list concatenation, filters...).
  size_t max_container_items = 1 << 20;
  // Loop iterations, all loops of the render together.
  int64_t max_loop_iterations = 1'000'000;
  // Total work: expressions evaluated, statements run, elements copied, compared or printed, and 64-byte
  // units of strings built or scanned. Bounds the render's time whatever the template does (about a second
  // at this default on one core for the most expensive steps; real chat templates use thousands).
  int64_t max_steps = 10'000'000;
  // Nested macro calls (recursion).
  int max_macro_depth = 64;
  // Depth of the evaluator's recursion (statements and expressions, across macro calls); bounds the C++
  // stack a render uses (under 1 MiB at this default; tests/jinja/sandbox_test.cc checks it).
  int max_eval_depth = 1000;
};

struct RenderOptions {
  RenderLimits limits;
  // The wall-clock time strftime_now() formats (local, naive, as transformers' datetime.now()). Unset:
  // strftime_now is not defined in the template. Injected so renders are reproducible and testable.
  std::optional<absl::CivilSecond> now;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_OPTIONS_H_
