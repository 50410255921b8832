// Renderer: runs a parsed template against a context, with jinja2's semantics and the sandbox limits of
// RenderOptions. One Renderer per render; not thread-safe (concurrent renders use their own Renderers over
// the same read-only syntax tree). Internal to qrag_jinja: the API is template.h.
#ifndef QRAG_SERVER_JINJA_RENDERER_H_
#define QRAG_SERVER_JINJA_RENDERER_H_

#include <memory>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "server/jinja/ast.h"
#include "server/jinja/budget.h"
#include "server/jinja/builtins.h"
#include "server/jinja/options.h"
#include "server/jinja/text.h"
#include "server/jinja/value.h"

namespace qrag::jinja {

class Renderer {
 public:
  Renderer(const Body& root, const RenderOptions& options);
  ~Renderer();
  Renderer(const Renderer&) = delete;
  Renderer& operator=(const Renderer&) = delete;

  // Renders the template; `context` must be a dict (its keys are the template's variables).
  absl::StatusOr<Text> Render(const Value& context);

  // ---- for the builtins ----
  Budget& budget() { return budget_; }
  const RenderOptions& options() const { return options_; }

  // Containers and strings built by the template: the size limits are checked and the work charged.
  absl::StatusOr<Value> NewList(std::vector<Value> items, Trust trust = Trust::kTrusted);
  absl::StatusOr<Value> NewTuple(std::vector<Value> items, Trust trust = Trust::kTrusted);
  absl::StatusOr<Value> NewDict(std::vector<std::pair<Value, Value>> entries, Trust trust = Trust::kTrusted);
  absl::StatusOr<Value> NewString(Text text);
  absl::StatusOr<Value> NewNamespace(std::vector<std::pair<std::string, Value>> attrs);
  absl::Status CheckItems(size_t n);

  // jinja2's sandboxed attribute lookup `obj.name` (attribute, then item) and item lookup `obj[key]`
  // (item, then attribute). Missing ones give undefined; any lookup on undefined is an error.
  absl::StatusOr<Value> GetAttr(const Value& obj, std::string_view name);
  absl::StatusOr<Value> GetItem(const Value& obj, const Value& key);
  // Calls a callable value (global function, bound method, macro).
  absl::StatusOr<Value> CallValue(const Value& callee, const CallArgs& args);
  // The elements a for loop over `v` visits: list items, dict keys, string characters; none for undefined.
  absl::StatusOr<std::vector<Value>> Iterate(const Value& v);
  // str(v), with taint.
  absl::StatusOr<Text> Str(const Value& v);

 private:
  struct Scope;
  class ScopeGuard;
  enum class Flow { kNormal, kBreak, kContinue };

  absl::Status ExecBody(const Body& body);
  absl::Status Exec(const Stmt& s);
  absl::Status ExecNode(const Stmt& s);
  absl::Status ExecIf(const IfStmt& s);
  absl::Status ExecWith(const WithStmt& s);
  absl::Status ExecFor(const ForStmt& s);
  absl::Status ExecSet(const SetStmt& s);
  absl::Status ExecMacroCall(const MacroStmt& m, const CallArgs& args, Value* result);
  absl::Status Assign(const Target& target, const Value& value);
  absl::Status Bind(const Target& target, const Value& value, Scope* scope);
  // Runs `body` with output captured into *out.
  absl::Status Capture(const Body& body, Text* out);
  absl::Status Emit(const Text& text);

  absl::StatusOr<Value> Eval(const Expr& e);
  absl::StatusOr<Value> EvalNode(const Expr& e);
  // One per expression form (see EvalNode).
  absl::StatusOr<Value> EvalSequence(const Expr& e);
  absl::StatusOr<Value> EvalDict(const Expr& e);
  absl::StatusOr<Value> EvalUnary(const Expr& e);
  absl::StatusOr<Value> EvalLogic(const Expr& e);
  absl::StatusOr<Value> EvalBinary(const Expr& e);
  absl::StatusOr<Value> EvalConcat(const Expr& e);
  absl::StatusOr<Value> EvalCond(const Expr& e);
  absl::StatusOr<Value> EvalLookup(const Expr& e);
  absl::StatusOr<Value> EvalTest(const Expr& e);
  absl::StatusOr<Value> EvalCall(const Expr& e);
  absl::StatusOr<Value> EvalFilter(const Expr& e);
  // Evaluates a filter chain whose innermost operand is `input` (block filters).
  absl::StatusOr<Value> EvalBlockFilter(const Expr& filter, const Value& input);
  absl::StatusOr<CallArgs> EvalArgs(const Expr& e, size_t first_arg);
  absl::StatusOr<Value> EvalCompare(const Expr& e);
  absl::StatusOr<Value> EvalSlice(const Expr& e);
  absl::StatusOr<Value> Binary(std::string_view op, const Value& a, const Value& b);
  absl::StatusOr<Value> Unary(Expr::Kind kind, const Value& v);
  Value Lookup(std::string_view name) const;
  absl::Status Annotate(absl::Status status, int line) const;

  const Body& root_;
  const RenderOptions& options_;
  Budget budget_;
  Value context_;
  std::unique_ptr<Scope> globals_;  // the template's top level
  Scope* scope_ = nullptr;
  Text* out_ = nullptr;
  size_t out_limit_ = 0;
  int capture_depth_ = 0;  // > 0 while a macro's or block's output is being captured
  Flow flow_ = Flow::kNormal;
  const Value* block_input_ = nullptr;
  int eval_depth_ = 0;
  int macro_depth_ = 0;
  int64_t loop_iterations_ = 0;
  // Every namespace the render creates; cleared at the end to break reference cycles (ns.self = ns).
  std::vector<std::shared_ptr<NamespaceData>> namespaces_;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_RENDERER_H_
