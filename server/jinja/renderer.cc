#include "server/jinja/renderer.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <string>

#include "server/jinja/absl_compat.h"
#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/jinja/compare.h"
#include "server/jinja/printer.h"
#include "server/jinja/template.h"
#include "server/jinja/unicode.h"

namespace qrag::jinja {
namespace {

constexpr char kLinePayload[] = "type.googleapis.com/qrag.jinja.ErrorLine";

Trust TrustOf(bool untrusted) { return untrusted ? Trust::kUntrusted : Trust::kTrusted; }

absl::Status TypeError(std::string_view message) { return absl::InvalidArgumentError(ToAbsl(message)); }

absl::Status OverflowError() {
  return absl::InvalidArgumentError("integer overflow (template integers are 64-bit)");
}

absl::Status ZeroDivision(std::string_view what = "division by zero") { return absl::InvalidArgumentError(ToAbsl(what)); }

// "'dict object' has no attribute 'x'" / "'list object' has no element 5": jinja2's undefined hints.
std::string NoAttributeHint(const Value& obj, std::string_view name) {
  return Cat("'", obj.TypeName(), " object' has no attribute '", name, "'");
}

Value BoundMethod(const Value& receiver, std::string_view name) {
  auto c = std::make_shared<CallableData>();
  c->type = CallableData::Type::kMethod;
  c->name = std::string(name);
  c->receiver = receiver;
  return Value::Callable(std::move(c));
}

// Python's float floor division and modulo (float_divmod in CPython's floatobject.c).
void FloatDivMod(double a, double b, double* floordiv, double* mod) {
  double m = std::fmod(a, b);
  double div = (a - m) / b;
  if (m != 0) {
    if ((b < 0) != (m < 0)) {
      m += b;
      div -= 1.0;
    }
  } else {
    m = std::copysign(0.0, b);
  }
  double fd;
  if (div != 0) {
    fd = std::floor(div);
    if (div - fd > 0.5) fd += 1.0;
  } else {
    fd = std::copysign(0.0, a / b);
  }
  *floordiv = fd;
  *mod = m;
}

// Python's slice index normalisation (PySlice_AdjustIndices): the first index and the bound.
void SliceBounds(int64_t length, std::optional<int64_t> start, std::optional<int64_t> stop, int64_t step,
                 int64_t* first, int64_t* bound) {
  const int64_t lower = step > 0 ? 0 : -1;
  const int64_t upper = step > 0 ? length : length - 1;
  auto adjust = [&](std::optional<int64_t> v, int64_t fallback) {
    if (!v) return fallback;
    int64_t x = *v;
    if (x < 0) {
      x += length;
      if (x < lower) x = lower;
    } else if (x > upper) {
      x = upper;
    }
    return x;
  };
  *first = adjust(start, step > 0 ? lower : upper);
  *bound = adjust(stop, step > 0 ? upper : lower);
}

// The indices a slice visits.
std::vector<int64_t> SliceIndices(int64_t length, std::optional<int64_t> start, std::optional<int64_t> stop,
                                  int64_t step) {
  int64_t b, e;
  SliceBounds(length, start, stop, step, &b, &e);
  std::vector<int64_t> out;
  if (step > 0) {
    for (int64_t i = b; i < e; i += step) out.push_back(i);
  } else {
    for (int64_t i = b; i > e; i += step) out.push_back(i);
  }
  return out;
}

}  // namespace

struct Renderer::Scope {
  Scope* parent = nullptr;
  std::vector<std::pair<std::string_view, Value>> vars;

  const Value* Find(std::string_view name) const {
    for (auto it = vars.rbegin(); it != vars.rend(); ++it) {
      if (it->first == name) return &it->second;
    }
    return nullptr;
  }
  void Set(std::string_view name, Value value) {
    for (auto& [k, v] : vars) {
      if (k == name) {
        v = std::move(value);
        return;
      }
    }
    vars.emplace_back(name, std::move(value));
  }
};

// Makes `scope` the current scope for its lifetime.
class Renderer::ScopeGuard {
 public:
  ScopeGuard(Renderer* r, Scope* scope) : r_(r), saved_(r->scope_) { r->scope_ = scope; }
  ~ScopeGuard() { r_->scope_ = saved_; }

 private:
  Renderer* r_;
  Scope* saved_;
};

Renderer::Renderer(const Body& root, const RenderOptions& options)
    : root_(root),
      options_(options),
      budget_(options.limits.max_steps, options.limits.max_string_bytes),
      globals_(std::make_unique<Scope>()) {}

Renderer::~Renderer() {
  for (auto& ns : namespaces_) ns->Clear();
}

absl::StatusOr<Text> Renderer::Render(const Value& context) {
  if (!context.is_dict()) return absl::InvalidArgumentError("the template context must be a dict");
  context_ = context;
  scope_ = globals_.get();
  Text out;
  out_ = &out;
  out_limit_ = options_.limits.max_output_bytes;
  QRAG_RETURN_IF_ERROR(ExecBody(root_));
  return out;
}

// ---- values the template builds ----

absl::Status Renderer::CheckItems(size_t n) {
  if (n > options_.limits.max_container_items) {
    return absl::ResourceExhaustedError(Cat("template built a list or dict of ", n,
                                                     " items, more than its limit of ",
                                                     options_.limits.max_container_items));
  }
  return budget_.Charge(static_cast<int64_t>(n));
}

absl::StatusOr<Value> Renderer::NewList(std::vector<Value> items, Trust trust) {
  QRAG_RETURN_IF_ERROR(CheckItems(items.size()));
  return Value::List(std::move(items), trust);
}

absl::StatusOr<Value> Renderer::NewTuple(std::vector<Value> items, Trust trust) {
  QRAG_RETURN_IF_ERROR(CheckItems(items.size()));
  return Value::Tuple(std::move(items), trust);
}

absl::StatusOr<Value> Renderer::NewDict(std::vector<std::pair<Value, Value>> entries, Trust trust) {
  QRAG_RETURN_IF_ERROR(CheckItems(entries.size()));
  return Value::Dict(std::move(entries), trust);
}

absl::StatusOr<Value> Renderer::NewString(Text text) {
  QRAG_RETURN_IF_ERROR(budget_.ChargeBytes(text.size()));
  return Value::String(std::move(text));
}

absl::StatusOr<Value> Renderer::NewNamespace(std::vector<std::pair<std::string, Value>> attrs) {
  QRAG_RETURN_IF_ERROR(CheckItems(attrs.size()));
  auto ns = std::make_shared<NamespaceData>();
  for (auto& [name, value] : attrs) ns->Set(std::move(name), std::move(value));
  namespaces_.push_back(ns);
  return Value::Namespace(std::move(ns));
}

absl::StatusOr<Text> Renderer::Str(const Value& v) { return ToStr(v, budget_); }

absl::StatusOr<std::vector<Value>> Renderer::Iterate(const Value& v) {
  switch (v.kind()) {
    case Value::Kind::kUndefined:
      return std::vector<Value>();
    case Value::Kind::kList:
      QRAG_RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(v.items().size())));
      return v.items();
    case Value::Kind::kDict: {
      QRAG_RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(v.dict().entries.size())));
      std::vector<Value> keys;
      keys.reserve(v.dict().entries.size());
      for (const auto& [key, value] : v.dict().entries) keys.push_back(key);
      return keys;
    }
    case Value::Kind::kString: {
      const std::vector<size_t> starts = CodePointStarts(v.text().view());
      QRAG_RETURN_IF_ERROR(budget_.Charge(static_cast<int64_t>(starts.size())));
      std::vector<Value> chars;
      chars.reserve(starts.size() - 1);
      for (size_t i = 0; i + 1 < starts.size(); ++i) chars.push_back(Value::String(v.text().Slice(starts[i], starts[i + 1])));
      return chars;
    }
    default:
      return TypeError(Cat("'", v.TypeName(), "' object is not iterable"));
  }
}

// ---- lookups ----

Value Renderer::Lookup(std::string_view name) const {
  for (const Scope* s = scope_; s != nullptr; s = s->parent) {
    if (const Value* v = s->Find(name)) return *v;
  }
  if (const Value* v = context_.dict().Find(name)) return *v;
  if (IsGlobalFunction(*this, name)) {
    auto c = std::make_shared<CallableData>();
    c->type = CallableData::Type::kBuiltin;
    c->name = std::string(name);
    return Value::Callable(std::move(c));
  }
  return Value::Undefined(Cat("'", name, "' is undefined"));
}

namespace {

absl::StatusOr<Value> LoopAttr(const Value& loop_value, std::string_view name) {
  const LoopData& loop = loop_value.loop();
  const auto n = static_cast<int64_t>(loop.items->items.size());
  const auto i = static_cast<int64_t>(loop.index0);
  const Trust t = TrustOf(loop.untrusted);
  if (name == "index") return Value::Int(i + 1, t);
  if (name == "index0") return Value::Int(i, t);
  if (name == "revindex") return Value::Int(n - i, t);
  if (name == "revindex0") return Value::Int(n - i - 1, t);
  if (name == "first") return Value::Bool(i == 0, t);
  if (name == "last") return Value::Bool(i == n - 1, t);
  if (name == "length") return Value::Int(n, t);
  if (name == "depth") return Value::Int(1);
  if (name == "depth0") return Value::Int(0);
  if (name == "previtem") {
    if (i > 0) return loop.items->items[static_cast<size_t>(i - 1)];
    return Value::Undefined("there is no previous item");
  }
  if (name == "nextitem") {
    if (i + 1 < n) return loop.items->items[static_cast<size_t>(i + 1)];
    return Value::Undefined("there is no next item");
  }
  if (name == "cycle") return BoundMethod(loop_value, name);
  return Value::Undefined(NoAttributeHint(loop_value, name));
}

}  // namespace

absl::StatusOr<Value> Renderer::GetAttr(const Value& obj, std::string_view name) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return UndefinedError(obj);
    case Value::Kind::kNamespace:
      if (const Value* v = obj.ns().Find(name)) return *v;
      return Value::Undefined(NoAttributeHint(obj, name));
    case Value::Kind::kLoop:
      return LoopAttr(obj, name);
    default:
      break;
  }
  if (HasMethod(obj, name)) return BoundMethod(obj, name);
  if (IsUnsafeMethod(obj, name)) {
    return Value::Undefined(
        Cat("access to attribute '", name, "' of '", obj.TypeName(), "' object is unsafe."));
  }
  if (obj.is_dict()) {
    if (const Value* v = obj.dict().Find(name)) return *v;
  }
  return Value::Undefined(NoAttributeHint(obj, name));
}

absl::StatusOr<Value> Renderer::GetItem(const Value& obj, const Value& key) {
  switch (obj.kind()) {
    case Value::Kind::kUndefined:
      return UndefinedError(obj);
    case Value::Kind::kDict:
      if (HashKey(key).ok()) {
        if (const Value* v = obj.dict().Find(key)) return *v;
      }
      break;
    case Value::Kind::kList:
    case Value::Kind::kString:
      if (key.is_int() || key.is_bool()) {
        const bool is_list = obj.is_list();
        const int64_t i = key.as_int();
        const Value missing = Value::Undefined(Cat("'", obj.TypeName(), " object' has no element ", i));
        if (is_list) {
          const auto n = static_cast<int64_t>(obj.items().size());
          if (i < -n || i >= n) return missing;
          return obj.items()[static_cast<size_t>(i < 0 ? i + n : i)];
        }
        // s[i] walks |i| code points from the nearer end: no length, no index table.
        const std::string_view v = obj.text().view();
        QRAG_RETURN_IF_ERROR(budget_.ChargeScan(
            std::min<uint64_t>(v.size(), i < 0 ? 0 - static_cast<uint64_t>(i) : static_cast<uint64_t>(i)) * 4));
        size_t begin;
        if (i >= 0) {
          begin = CodePointOffset(v, static_cast<size_t>(i));
          if (begin >= v.size()) return missing;
        } else {
          begin = v.size();
          for (int64_t k = 0; k < -i; ++k) {
            if (begin == 0) return missing;
            begin = PrevCodePointStart(v, begin);
          }
        }
        char32_t cp;
        return Value::String(obj.text().Slice(begin, begin + DecodeUtf8(v, begin, &cp)));
      }
      break;
    case Value::Kind::kNamespace:
    case Value::Kind::kLoop:
      if (key.is_string()) return GetAttr(obj, key.text().view());
      break;
    default:
      break;
  }
  if (key.is_string()) {
    // jinja2 falls back to the attribute for string keys: d['items'] of a dict without that key is the method.
    const std::string_view name = key.text().view();
    if (HasMethod(obj, name)) return BoundMethod(obj, name);
    if (IsUnsafeMethod(obj, name)) {
      return Value::Undefined(
          Cat("access to attribute '", name, "' of '", obj.TypeName(), "' object is unsafe."));
    }
    return Value::Undefined(NoAttributeHint(obj, name));
  }
  auto repr = ToRepr(key, budget_);
  return Value::Undefined(Cat("'", obj.TypeName(), " object' has no element ",
                                       repr.ok() ? repr->view() : std::string_view("?")));
}

// ---- calls ----

absl::StatusOr<Value> Renderer::CallValue(const Value& callee, const CallArgs& args) {
  if (callee.is_undefined()) return UndefinedError(callee);
  if (!callee.is_callable()) return TypeError(Cat("'", callee.TypeName(), "' object is not callable"));
  const CallableData& c = callee.callable();
  switch (c.type) {
    case CallableData::Type::kBuiltin:
      return CallGlobal(*this, c.name, args);
    case CallableData::Type::kMethod:
      return CallMethod(*this, c.receiver, c.name, args);
    case CallableData::Type::kMacro: {
      Value result;
      QRAG_RETURN_IF_ERROR(ExecMacroCall(*c.macro, args, &result));
      return result;
    }
  }
  return TypeError("not callable");
}

absl::Status Renderer::ExecMacroCall(const MacroStmt& m, const CallArgs& args, Value* result) {
  if (macro_depth_ >= options_.limits.max_macro_depth) {
    return absl::ResourceExhaustedError(Cat("macro calls nested deeper than the limit of ",
                                                     options_.limits.max_macro_depth));
  }
  ++macro_depth_;
  struct Decrement {
    int* d;
    ~Decrement() { --*d; }
  } decrement{&macro_depth_};
  if (args.positional.size() > m.params.size()) {
    return TypeError(Cat("macro '", m.name, "' takes not more than ", m.params.size(), " argument(s)"));
  }
  std::vector<const Value*> given(m.params.size(), nullptr);
  for (size_t i = 0; i < args.positional.size(); ++i) given[i] = &args.positional[i];
  for (const auto& [name, value] : args.keyword) {
    auto it = std::find(m.params.begin(), m.params.end(), name);
    if (it == m.params.end()) return TypeError(Cat("macro '", m.name, "' has no argument '", name, "'"));
    const size_t i = static_cast<size_t>(it - m.params.begin());
    if (given[i] != nullptr) {
      return TypeError(Cat("macro '", m.name, "' got multiple values for argument '", name, "'"));
    }
    given[i] = &value;
  }
  // Macros see the template's top-level variables and their own arguments (not a caller's locals).
  Scope frame;
  frame.parent = globals_.get();
  ScopeGuard guard(this, &frame);
  for (size_t i = 0; i < m.params.size(); ++i) {
    if (given[i] != nullptr) {
      frame.Set(m.params[i], *given[i]);
    } else if (m.defaults[i]) {
      QRAG_ASSIGN_OR_RETURN(Value v, Eval(*m.defaults[i]));
      frame.Set(m.params[i], std::move(v));
    } else {
      frame.Set(m.params[i], Value::Undefined(Cat("'", m.params[i], "' is undefined")));
    }
  }
  Text captured;
  QRAG_RETURN_IF_ERROR(Capture(m.body, &captured));
  flow_ = Flow::kNormal;
  QRAG_ASSIGN_OR_RETURN(*result, NewString(std::move(captured)));
  return absl::OkStatus();
}

absl::StatusOr<CallArgs> Renderer::EvalArgs(const Expr& e, size_t first_arg) {
  CallArgs args;
  args.positional.reserve(e.children.size() - first_arg);
  for (size_t i = first_arg; i < e.children.size(); ++i) {
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i]));
    args.positional.push_back(std::move(v));
  }
  for (const auto& [name, expr] : e.kwargs) {
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*expr));
    args.keyword.emplace_back(name, std::move(v));
  }
  return args;
}

absl::StatusOr<Value> Renderer::EvalCall(const Expr& e) {
  const Expr& callee = *e.children[0];
  if (callee.kind == Expr::Kind::kGetAttr) {
    QRAG_ASSIGN_OR_RETURN(Value obj, Eval(*callee.children[0]));
    if (!obj.is_namespace() && !obj.is_loop() && HasMethod(obj, callee.name)) {
      QRAG_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
      return CallMethod(*this, obj, callee.name, args);
    }
    QRAG_ASSIGN_OR_RETURN(Value fn, GetAttr(obj, callee.name));
    QRAG_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
    return CallValue(fn, args);
  }
  QRAG_ASSIGN_OR_RETURN(Value fn, Eval(callee));
  QRAG_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  return CallValue(fn, args);
}

absl::StatusOr<Value> Renderer::EvalFilter(const Expr& e) {
  Value input;
  if (e.children[0]) {
    QRAG_ASSIGN_OR_RETURN(input, Eval(*e.children[0]));
  } else if (block_input_ != nullptr) {  // the innermost filter of {% filter %} or {% set x | f %}
    input = *block_input_;
  }
  QRAG_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  return CallFilter(*this, e.name, input, args);
}

absl::StatusOr<Value> Renderer::EvalBlockFilter(const Expr& filter, const Value& input) {
  const Value* saved = block_input_;
  block_input_ = &input;
  absl::StatusOr<Value> result = Eval(filter);
  block_input_ = saved;
  return result;
}

// ---- operators ----

absl::StatusOr<Value> Renderer::Unary(Expr::Kind kind, const Value& v) {
  const Trust t = TrustOf(v.untrusted());
  if (v.is_undefined()) return UndefinedError(v);
  if (v.is_float()) return Value::Float(kind == Expr::Kind::kNeg ? -v.as_float() : v.as_float(), t);
  if (v.is_int() || v.is_bool()) {
    if (kind == Expr::Kind::kPos) return Value::Int(v.as_int(), t);
    if (v.as_int() == INT64_MIN) return OverflowError();
    return Value::Int(-v.as_int(), t);
  }
  return TypeError(Cat("bad operand type for unary ", kind == Expr::Kind::kNeg ? "-" : "+", ": '",
                                v.TypeName(), "'"));
}

absl::StatusOr<Value> Renderer::Binary(std::string_view op, const Value& a, const Value& b) {
  if (op == "%" && a.is_string()) return PercentFormat(*this, a, b);
  if (a.is_undefined()) return UndefinedError(a);
  if (b.is_undefined()) return UndefinedError(b);
  const Trust t = TrustOf(a.untrusted() || b.untrusted());
  if (a.is_number() && b.is_number()) {
    const bool ints = !a.is_float() && !b.is_float();
    const int64_t x = ints ? a.as_int() : 0;
    const int64_t y = ints ? b.as_int() : 0;
    const double fx = a.AsDouble();
    const double fy = b.AsDouble();
    int64_t r;
    if (op == "+") {
      if (!ints) return Value::Float(fx + fy, t);
      if (__builtin_add_overflow(x, y, &r)) return OverflowError();
      return Value::Int(r, t);
    }
    if (op == "-") {
      if (!ints) return Value::Float(fx - fy, t);
      if (__builtin_sub_overflow(x, y, &r)) return OverflowError();
      return Value::Int(r, t);
    }
    if (op == "*") {
      if (!ints) return Value::Float(fx * fy, t);
      if (__builtin_mul_overflow(x, y, &r)) return OverflowError();
      return Value::Int(r, t);
    }
    if (op == "/") {
      if (fy == 0) return ZeroDivision();
      return Value::Float(fx / fy, t);
    }
    if (op == "//" || op == "%") {
      if (ints) {
        if (y == 0) return ZeroDivision(op == "//" ? "integer division or modulo by zero" : "integer modulo by zero");
        if (x == INT64_MIN && y == -1) return op == "%" ? Value::Int(0, t) : absl::StatusOr<Value>(OverflowError());
        int64_t q = x / y, m = x % y;
        if (m != 0 && ((m < 0) != (y < 0))) {
          q -= 1;
          m += y;
        }
        return Value::Int(op == "//" ? q : m, t);
      }
      if (fy == 0) return ZeroDivision(op == "//" ? "float floor division by zero" : "float modulo");
      double fd, fm;
      FloatDivMod(fx, fy, &fd, &fm);
      return Value::Float(op == "//" ? fd : fm, t);
    }
    if (op == "**") {
      if (ints && y >= 0) {
        int64_t result = 1, base = x, e = y;
        while (e > 0) {
          if (e & 1) {
            if (__builtin_mul_overflow(result, base, &result)) return OverflowError();
          }
          e >>= 1;
          if (e > 0 && __builtin_mul_overflow(base, base, &base)) return OverflowError();
        }
        return Value::Int(result, t);
      }
      if (fx == 0 && fy < 0) return ZeroDivision("0.0 cannot be raised to a negative power");
      const double p = std::pow(fx, fy);
      if (std::isnan(p) && !std::isnan(fx) && !std::isnan(fy)) {
        return TypeError("complex results (a negative number to a fractional power) are not supported");
      }
      return Value::Float(p, t);
    }
  }
  if (op == "+") {
    if (a.is_string() && b.is_string()) {
      Text s = a.text();
      s.Append(b.text());
      return NewString(std::move(s));
    }
    if (a.is_list() && b.is_list() && a.is_tuple() == b.is_tuple()) {
      std::vector<Value> items = a.items();
      items.insert(items.end(), b.items().begin(), b.items().end());
      return a.is_tuple() ? NewTuple(std::move(items), t) : NewList(std::move(items), t);
    }
    if (a.is_string() || a.is_list()) {
      return TypeError(Cat("can only concatenate ", a.TypeName(), " (not \"", b.TypeName(), "\") to ",
                                    a.TypeName()));
    }
  }
  if (op == "*") {
    const Value* seq = nullptr;
    const Value* count = nullptr;
    if ((a.is_string() || a.is_list()) && (b.is_int() || b.is_bool())) seq = &a, count = &b;
    if ((b.is_string() || b.is_list()) && (a.is_int() || a.is_bool())) seq = &b, count = &a;
    if (seq != nullptr) {
      const int64_t n = std::max<int64_t>(0, count->as_int());
      const size_t unit = seq->is_string() ? seq->text().size() : seq->items().size();
      if (unit != 0 && static_cast<uint64_t>(n) > (seq->is_string() ? options_.limits.max_string_bytes
                                                                     : options_.limits.max_container_items) / unit) {
        return absl::ResourceExhaustedError("repetition result exceeds the template's size limit");
      }
      if (seq->is_string()) {
        Text s;
        s.Reserve(unit * static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) s.Append(seq->text());
        if (count->untrusted()) s.MarkUntrusted(0, s.size());
        return NewString(std::move(s));
      }
      std::vector<Value> items;
      items.reserve(unit * static_cast<size_t>(n));
      for (int64_t i = 0; i < n; ++i) items.insert(items.end(), seq->items().begin(), seq->items().end());
      return seq->is_tuple() ? NewTuple(std::move(items), t) : NewList(std::move(items), t);
    }
  }
  return TypeError(Cat("unsupported operand type(s) for ", op, ": '", a.TypeName(), "' and '",
                                b.TypeName(), "'"));
}

absl::StatusOr<Value> Renderer::EvalCompare(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
  for (size_t i = 0; i < e.ops.size(); ++i) {
    QRAG_ASSIGN_OR_RETURN(Value right, Eval(*e.children[i + 1]));
    const std::string& op = e.ops[i];
    bool result;
    if (op == "==" || op == "!=") {
      QRAG_ASSIGN_OR_RETURN(bool eq, Equals(left, right, budget_));
      result = (op == "==") == eq;
    } else if (op == "in" || op == "not in") {
      QRAG_ASSIGN_OR_RETURN(bool in, Contains(right, left, budget_));
      result = (op == "in") == in;
    } else {
      QRAG_ASSIGN_OR_RETURN(int c, Compare(left, right, op, budget_));
      if (c == 2) {
        result = false;  // NaN
      } else if (op == "<") {
        result = c < 0;
      } else if (op == "<=") {
        result = c <= 0;
      } else if (op == ">") {
        result = c > 0;
      } else {
        result = c >= 0;
      }
    }
    if (!result) return Value::Bool(false);
    left = std::move(right);
  }
  return Value::Bool(true);
}

absl::StatusOr<Value> Renderer::EvalSlice(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
  std::optional<int64_t> bounds[3];
  for (int k = 0; k < 3; ++k) {
    const ExprPtr& b = e.children[static_cast<size_t>(k) + 1];
    if (!b) continue;
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*b));
    if (v.is_none()) continue;
    if (!v.is_int() && !v.is_bool()) return TypeError("slice indices must be integers or None");
    bounds[k] = v.as_int();
  }
  const int64_t step = bounds[2].value_or(1);
  if (step == 0) return TypeError("slice step cannot be zero");
  if (obj.is_undefined()) return UndefinedError(obj);
  if (obj.is_list()) {
    const auto& items = obj.items();
    const std::vector<int64_t> idx = SliceIndices(static_cast<int64_t>(items.size()), bounds[0], bounds[1], step);
    std::vector<Value> out;
    out.reserve(idx.size());
    for (int64_t i : idx) out.push_back(items[static_cast<size_t>(i)]);
    const Trust t = TrustOf(obj.untrusted());
    return obj.is_tuple() ? NewTuple(std::move(out), t) : NewList(std::move(out), t);
  }
  if (obj.is_string()) {
    const Text& s = obj.text();
    QRAG_RETURN_IF_ERROR(budget_.ChargeScan(s.size()));
    const int64_t n = static_cast<int64_t>(CodePointCount(s.view()));
    if (step == 1) {  // the common case (content[1:], out[:-1]): one contiguous range, no index table
      int64_t b, e;
      SliceBounds(n, bounds[0], bounds[1], step, &b, &e);
      if (e <= b) return Value::String("");
      const size_t begin = CodePointOffset(s.view(), static_cast<size_t>(b));
      const size_t end = begin + CodePointOffset(s.view().substr(begin), static_cast<size_t>(e - b));
      return NewString(s.Slice(begin, end));
    }
    const std::vector<size_t> starts = CodePointStarts(s.view());
    Text out;
    for (int64_t i : SliceIndices(n, bounds[0], bounds[1], step)) {
      out.Append(s, starts[static_cast<size_t>(i)], starts[static_cast<size_t>(i) + 1]);
    }
    return NewString(std::move(out));
  }
  return TypeError(Cat("'", obj.TypeName(), "' object is not subscriptable"));
}

// ---- expressions ----

absl::Status Renderer::Annotate(absl::Status status, int line) const {
  if (status.ok() || status.GetPayload(kLinePayload).has_value() || IsRaiseException(status)) return status;
  absl::Status annotated(status.code(), Cat("template error at line ", line, ": ", status.message()));
  annotated.SetPayload(kLinePayload, absl::Cord(Cat(line)));
  return annotated;
}

absl::StatusOr<Value> Renderer::Eval(const Expr& e) {
  if (eval_depth_ >= options_.limits.max_eval_depth) {
    return Annotate(absl::ResourceExhaustedError(Cat("template evaluation nested deeper than the limit of ",
                                                              options_.limits.max_eval_depth)),
                    e.line);
  }
  ++eval_depth_;
  absl::Status charged = budget_.Charge(1);
  absl::StatusOr<Value> result = charged.ok() ? EvalNode(e) : absl::StatusOr<Value>(charged);
  --eval_depth_;
  if (!result.ok()) return Annotate(result.status(), e.line);
  return result;
}

// Each expression form has its own function, so that the frame of the dispatching EvalNode (which sits
// on the stack at every level of a nested expression) stays small.
absl::StatusOr<Value> Renderer::EvalNode(const Expr& e) {
  switch (e.kind) {
    case Expr::Kind::kLiteral:
      return e.literal;
    case Expr::Kind::kName:
      return Lookup(e.name);
    case Expr::Kind::kList:
    case Expr::Kind::kTuple:
      return EvalSequence(e);
    case Expr::Kind::kDict:
      return EvalDict(e);
    case Expr::Kind::kNeg:
    case Expr::Kind::kPos:
    case Expr::Kind::kNot:
      return EvalUnary(e);
    case Expr::Kind::kAnd:
    case Expr::Kind::kOr:
      return EvalLogic(e);
    case Expr::Kind::kBinary:
      return EvalBinary(e);
    case Expr::Kind::kCompare:
      return EvalCompare(e);
    case Expr::Kind::kConcat:
      return EvalConcat(e);
    case Expr::Kind::kCond:
      return EvalCond(e);
    case Expr::Kind::kGetAttr:
    case Expr::Kind::kGetItem:
      return EvalLookup(e);
    case Expr::Kind::kSlice:
      return EvalSlice(e);
    case Expr::Kind::kCall:
      return EvalCall(e);
    case Expr::Kind::kFilter:
      return EvalFilter(e);
    case Expr::Kind::kTest:
      return EvalTest(e);
  }
  return absl::InternalError("unknown expression kind");
}

absl::StatusOr<Value> Renderer::EvalSequence(const Expr& e) {
  std::vector<Value> items;
  items.reserve(e.children.size());
  for (const ExprPtr& c : e.children) {
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*c));
    items.push_back(std::move(v));
  }
  return e.kind == Expr::Kind::kList ? NewList(std::move(items)) : NewTuple(std::move(items));
}

absl::StatusOr<Value> Renderer::EvalDict(const Expr& e) {
  std::vector<std::pair<Value, Value>> entries;
  entries.reserve(e.children.size() / 2);
  for (size_t i = 0; i + 1 < e.children.size(); i += 2) {
    QRAG_ASSIGN_OR_RETURN(Value k, Eval(*e.children[i]));
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*e.children[i + 1]));
    entries.emplace_back(std::move(k), std::move(v));
  }
  return NewDict(std::move(entries));
}

absl::StatusOr<Value> Renderer::EvalUnary(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value v, Eval(*e.children[0]));
  if (e.kind == Expr::Kind::kNot) return Value::Bool(!v.Truthy());
  return Unary(e.kind, v);
}

absl::StatusOr<Value> Renderer::EvalLogic(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value left, Eval(*e.children[0]));
  if (left.Truthy() == (e.kind == Expr::Kind::kOr)) return left;
  return Eval(*e.children[1]);
}

absl::StatusOr<Value> Renderer::EvalBinary(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value a, Eval(*e.children[0]));
  QRAG_ASSIGN_OR_RETURN(Value b, Eval(*e.children[1]));
  return Binary(e.name, a, b);
}

absl::StatusOr<Value> Renderer::EvalConcat(const Expr& e) {
  Text out;
  size_t charged = 0;  // bytes of `out` already charged to the budget
  for (const ExprPtr& c : e.children) {
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*c));
    QRAG_ASSIGN_OR_RETURN(Text t, Str(v));
    out.Append(t);
    QRAG_RETURN_IF_ERROR(budget_.ChargeGrowth(out.size(), &charged));
  }
  return Value::String(std::move(out));
}

absl::StatusOr<Value> Renderer::EvalCond(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value cond, Eval(*e.children[0]));
  if (cond.Truthy()) return Eval(*e.children[1]);
  if (e.children[2]) return Eval(*e.children[2]);
  return Value::Undefined(Cat("the inline if-expression on line ", e.line,
                              " evaluated to false and no else section was defined."));
}

absl::StatusOr<Value> Renderer::EvalLookup(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value obj, Eval(*e.children[0]));
  if (e.kind == Expr::Kind::kGetAttr) return GetAttr(obj, e.name);
  QRAG_ASSIGN_OR_RETURN(Value key, Eval(*e.children[1]));
  return GetItem(obj, key);
}

absl::StatusOr<Value> Renderer::EvalTest(const Expr& e) {
  QRAG_ASSIGN_OR_RETURN(Value input, Eval(*e.children[0]));
  QRAG_ASSIGN_OR_RETURN(CallArgs args, EvalArgs(e, 1));
  QRAG_ASSIGN_OR_RETURN(bool r, CallTest(*this, e.name, input, args));
  return Value::Bool(r != e.negated);
}

// ---- statements ----

absl::Status Renderer::Emit(const Text& text) {
  if (out_->size() + text.size() > out_limit_) {
    return absl::ResourceExhaustedError(
        capture_depth_ == 0 ? Cat("rendered output exceeds its limit of ", out_limit_, " bytes")
                            : Cat("a macro's or block's output exceeds the string limit of ", out_limit_, " bytes"));
  }
  QRAG_RETURN_IF_ERROR(budget_.Charge(1 + static_cast<int64_t>(text.size() / 64)));
  out_->Append(text);
  return absl::OkStatus();
}

absl::Status Renderer::Capture(const Body& body, Text* out) {
  Text* saved_out = out_;
  const size_t saved_limit = out_limit_;
  out_ = out;
  out_limit_ = options_.limits.max_string_bytes;
  ++capture_depth_;
  absl::Status s = ExecBody(body);
  --capture_depth_;
  out_ = saved_out;
  out_limit_ = saved_limit;
  return s;
}

absl::Status Renderer::ExecBody(const Body& body) {
  for (const StmtPtr& s : body) {
    QRAG_RETURN_IF_ERROR(Exec(*s));
    if (flow_ != Flow::kNormal) return absl::OkStatus();
  }
  return absl::OkStatus();
}

absl::Status Renderer::Bind(const Target& target, const Value& value, Scope* scope) {
  if (!target.unpack) {
    scope->Set(target.names[0], value);
    return absl::OkStatus();
  }
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> parts, Iterate(value.is_undefined() ? Value::None() : value));
  if (parts.size() != target.names.size()) {
    return TypeError(parts.size() < target.names.size()
                         ? Cat("not enough values to unpack (expected ", target.names.size(), ", got ",
                                        parts.size(), ")")
                         : Cat("too many values to unpack (expected ", target.names.size(), ")"));
  }
  for (size_t i = 0; i < parts.size(); ++i) scope->Set(target.names[i], std::move(parts[i]));
  return absl::OkStatus();
}

absl::Status Renderer::Assign(const Target& target, const Value& value) {
  if (!target.attribute.empty()) {
    const Value ns = Lookup(target.names[0]);
    if (ns.is_undefined()) return UndefinedError(ns);
    if (!ns.is_namespace()) return TypeError("cannot assign attribute on non-namespace object");
    QRAG_RETURN_IF_ERROR(budget_.Charge(1));
    ns.ns().Set(target.attribute, value);
    return absl::OkStatus();
  }
  return Bind(target, value, scope_);
}

absl::Status Renderer::ExecSet(const SetStmt& s) {
  if (s.value) {
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*s.value));
    return Assign(s.target, v);
  }
  Text captured;
  QRAG_RETURN_IF_ERROR(Capture(s.body, &captured));
  QRAG_ASSIGN_OR_RETURN(Value v, NewString(std::move(captured)));
  if (s.filter) {
    QRAG_ASSIGN_OR_RETURN(v, EvalBlockFilter(*s.filter, v));
  }
  return Assign(s.target, v);
}

absl::Status Renderer::ExecFor(const ForStmt& s) {
  QRAG_ASSIGN_OR_RETURN(Value iterable, Eval(*s.iterable));
  QRAG_ASSIGN_OR_RETURN(std::vector<Value> items, Iterate(iterable));
  auto count_iteration = [&]() -> absl::Status {
    if (++loop_iterations_ > options_.limits.max_loop_iterations) {
      return absl::ResourceExhaustedError(Cat("template loops ran more than the limit of ",
                                                       options_.limits.max_loop_iterations, " iterations"));
    }
    return absl::OkStatus();
  };
  if (s.filter) {
    std::vector<Value> kept;
    for (Value& item : items) {
      QRAG_RETURN_IF_ERROR(count_iteration());
      Scope probe;
      probe.parent = scope_;
      ScopeGuard guard(this, &probe);
      QRAG_RETURN_IF_ERROR(Bind(s.target, item, &probe));
      QRAG_ASSIGN_OR_RETURN(Value keep, Eval(*s.filter));
      if (keep.Truthy()) kept.push_back(std::move(item));
    }
    items = std::move(kept);
  }
  if (items.empty()) {
    if (s.else_body.empty()) return absl::OkStatus();
    Scope scope;
    scope.parent = scope_;
    ScopeGuard guard(this, &scope);
    return ExecBody(s.else_body);
  }
  // The loop object holds the items, so it counts their depth (a list of loop objects stays bounded).
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.depth());
  if (depth + 2 > kMaxValueDepth) {
    return absl::InvalidArgumentError(Cat("loop over values nested deeper than ", kMaxValueDepth - 2, " levels"));
  }
  auto data = std::make_shared<ListData>();
  data->items = std::move(items);
  data->depth = depth + 1;
  const bool untrusted = iterable.untrusted();
  for (size_t i = 0; i < data->items.size(); ++i) {
    QRAG_RETURN_IF_ERROR(count_iteration());
    Scope scope;
    scope.parent = scope_;
    ScopeGuard guard(this, &scope);
    auto loop = std::make_shared<LoopData>();
    loop->items = data;
    loop->index0 = i;
    loop->untrusted = untrusted;
    scope.Set("loop", Value::Loop(std::move(loop)));
    QRAG_RETURN_IF_ERROR(Bind(s.target, data->items[i], &scope));
    QRAG_RETURN_IF_ERROR(ExecBody(s.body));
    if (flow_ == Flow::kBreak) {
      flow_ = Flow::kNormal;
      break;
    }
    flow_ = Flow::kNormal;
  }
  return absl::OkStatus();
}

absl::Status Renderer::Exec(const Stmt& s) {
  if (eval_depth_ >= options_.limits.max_eval_depth) {
    return Annotate(absl::ResourceExhaustedError(
                        Cat("template evaluation nested deeper than the limit of ", options_.limits.max_eval_depth)),
                    s.line);
  }
  ++eval_depth_;
  absl::Status charged = budget_.Charge(1);
  absl::Status status = charged.ok() ? ExecNode(s) : charged;
  --eval_depth_;
  return Annotate(std::move(status), s.line);
}

absl::Status Renderer::ExecNode(const Stmt& s) {
  switch (s.kind) {
    case Stmt::Kind::kText:
      return Emit(Text(static_cast<const TextStmt&>(s).text));
    case Stmt::Kind::kPrint: {
      QRAG_ASSIGN_OR_RETURN(Value v, Eval(*static_cast<const PrintStmt&>(s).expr));
      QRAG_ASSIGN_OR_RETURN(Text t, Str(v));
      return Emit(t);
    }
    case Stmt::Kind::kIf:
      return ExecIf(static_cast<const IfStmt&>(s));
    case Stmt::Kind::kFor:
      return ExecFor(static_cast<const ForStmt&>(s));
    case Stmt::Kind::kSet:
      return ExecSet(static_cast<const SetStmt&>(s));
    case Stmt::Kind::kMacro: {
      const auto& m = static_cast<const MacroStmt&>(s);
      auto c = std::make_shared<CallableData>();
      c->type = CallableData::Type::kMacro;
      c->name = m.name;
      c->macro = &m;
      scope_->Set(m.name, Value::Callable(std::move(c)));
      return absl::OkStatus();
    }
    case Stmt::Kind::kBreak:
      flow_ = Flow::kBreak;
      return absl::OkStatus();
    case Stmt::Kind::kContinue:
      flow_ = Flow::kContinue;
      return absl::OkStatus();
    case Stmt::Kind::kWith:
      return ExecWith(static_cast<const WithStmt&>(s));
    case Stmt::Kind::kFilterBlock: {
      const auto& f = static_cast<const FilterBlockStmt&>(s);
      Text captured;
      QRAG_RETURN_IF_ERROR(Capture(f.body, &captured));
      QRAG_ASSIGN_OR_RETURN(Value input, NewString(std::move(captured)));
      QRAG_ASSIGN_OR_RETURN(Value v, EvalBlockFilter(*f.filter, input));
      QRAG_ASSIGN_OR_RETURN(Text t, Str(v));
      return Emit(t);
    }
  }
  return absl::InternalError("unknown statement kind");
}

absl::Status Renderer::ExecIf(const IfStmt& s) {
  for (const auto& [cond, body] : s.branches) {
    QRAG_ASSIGN_OR_RETURN(Value c, Eval(*cond));
    if (c.Truthy()) return ExecBody(body);
  }
  return ExecBody(s.else_body);
}

absl::Status Renderer::ExecWith(const WithStmt& s) {
  Scope scope;
  scope.parent = scope_;
  for (const auto& [name, expr] : s.assignments) {  // evaluated in the enclosing scope
    QRAG_ASSIGN_OR_RETURN(Value v, Eval(*expr));
    scope.Set(name, std::move(v));
  }
  ScopeGuard guard(this, &scope);
  return ExecBody(s.body);
}

}  // namespace qrag::jinja
