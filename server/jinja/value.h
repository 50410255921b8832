// Value: the dynamic value of the Jinja engine (what jinja2 does with Python objects).
//
// Kinds: undefined, none, bool, int (64-bit), float, string (a taint-tracking Text), list (tuples are lists
// flagged as tuples), dict (insertion-ordered), callable (builtin function, bound method or macro),
// namespace (the one mutable kind, jinja2's namespace()) and loop (the `loop` variable).
//
// Strings, lists and dicts are immutable and shared: copying a Value is cheap. Every Value that is not a
// string carries an `untrusted` flag (set for everything built from request data); strings carry their
// taint per byte in their Text. Containers record their nesting depth, which is capped at kMaxValueDepth so
// that recursion over a value (printing, tojson, comparison, destruction) stays shallow.
//
// Values are not thread-safe to share while a render mutates a namespace inside them; values built by the
// caller (FromJson, Make*) hold no namespace and may be shared between concurrent renders.
#ifndef QRAG_SERVER_JINJA_VALUE_H_
#define QRAG_SERVER_JINJA_VALUE_H_

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "nlohmann/json_fwd.hpp"
#include "server/jinja/text.h"

namespace qrag::jinja {

// The deepest nesting of lists and dicts a Value may have (FromJson input included).
inline constexpr int kMaxValueDepth = 128;

class Value;
struct ListData;
struct DictData;
struct CallableData;
struct NamespaceData;
struct LoopData;

class Value {
 public:
  enum class Kind : uint8_t {
    kUndefined,
    kNone,
    kBool,
    kInt,
    kFloat,
    kString,
    kList,
    kDict,
    kCallable,
    kNamespace,
    kLoop,
  };

  Value() = default;  // undefined
  // An undefined value; `hint` says why (jinja2's message, e.g. "'foo' is undefined").
  static Value Undefined(std::string hint);
  static Value None(Trust trust = Trust::kTrusted);
  static Value Bool(bool b, Trust trust = Trust::kTrusted);
  static Value Int(int64_t i, Trust trust = Trust::kTrusted);
  static Value Float(double f, Trust trust = Trust::kTrusted);
  static Value String(Text text);
  static Value String(std::string bytes, Trust trust = Trust::kTrusted);
  // Lists and dicts fail only when nesting would exceed kMaxValueDepth.
  static absl::StatusOr<Value> List(std::vector<Value> items, Trust trust = Trust::kTrusted);
  static absl::StatusOr<Value> Tuple(std::vector<Value> items, Trust trust = Trust::kTrusted);
  // Later duplicates of a key replace the value but keep the first position (Python dict semantics). Keys
  // must be hashable: none, bool, int, float or string.
  static absl::StatusOr<Value> Dict(std::vector<std::pair<Value, Value>> entries, Trust trust = Trust::kTrusted);
  static absl::StatusOr<Value> Dict(std::vector<std::pair<std::string, Value>> entries,
                                    Trust trust = Trust::kTrusted);
  // Converts JSON: objects to dicts, arrays to lists, and so on. Every part of the result is marked
  // `trust`. Fails on nesting deeper than kMaxValueDepth. Dicts keep the key order of the JSON object:
  // parse request bodies as nlohmann::ordered_json to keep the client's order (as Python dicts do for
  // transformers; tojson prints keys in that order), nlohmann::json sorts them.
  static absl::StatusOr<Value> FromJson(const nlohmann::ordered_json& json, Trust trust);
  static absl::StatusOr<Value> FromJson(const nlohmann::json& json, Trust trust);

  // Internal kinds, built by the engine.
  static Value Callable(std::shared_ptr<const CallableData> callable);
  static Value Namespace(std::shared_ptr<NamespaceData> ns);
  static Value Loop(std::shared_ptr<const LoopData> loop);

  Kind kind() const { return kind_; }
  bool is_undefined() const { return kind_ == Kind::kUndefined; }
  bool is_none() const { return kind_ == Kind::kNone; }
  bool is_bool() const { return kind_ == Kind::kBool; }
  bool is_int() const { return kind_ == Kind::kInt; }
  bool is_float() const { return kind_ == Kind::kFloat; }
  // Python numbers: bool, int, float.
  bool is_number() const { return kind_ == Kind::kBool || kind_ == Kind::kInt || kind_ == Kind::kFloat; }
  bool is_string() const { return kind_ == Kind::kString; }
  bool is_list() const { return kind_ == Kind::kList; }  // lists and tuples
  bool is_tuple() const;
  bool is_dict() const { return kind_ == Kind::kDict; }
  bool is_callable() const { return kind_ == Kind::kCallable; }
  bool is_namespace() const { return kind_ == Kind::kNamespace; }
  bool is_loop() const { return kind_ == Kind::kLoop; }

  // Accessors; each requires the matching kind.
  bool as_bool() const { return scalar_.b; }
  int64_t as_int() const { return scalar_.i; }  // also for bool (0 or 1)
  double as_float() const { return scalar_.f; }
  // bool, int or float as a double.
  double AsDouble() const;
  const Text& text() const;
  const std::vector<Value>& items() const;  // list or tuple
  const DictData& dict() const;
  const CallableData& callable() const;
  NamespaceData& ns() const;
  const LoopData& loop() const;
  const std::string& undefined_hint() const;

  // The taint of a non-string value, or whether any byte of a string is untrusted.
  bool untrusted() const;
  // The same value marked untrusted (strings: every byte).
  Value MarkedUntrusted() const;
  // Nesting depth: 0 for scalars, 1 for a flat list or dict.
  int depth() const;

  // Python truthiness (undefined is false).
  bool Truthy() const;
  // Python's type name ("str", "dict", "NoneType", ...), for error messages.
  std::string_view TypeName() const;

 private:
  static Value Scalar(Kind kind, int64_t bits, Trust trust);
  static absl::StatusOr<Value> Sequence(std::vector<Value> items, bool is_tuple, Trust trust);

  Kind kind_ = Kind::kUndefined;
  bool untrusted_ = false;
  union Scalar {
    bool b;
    int64_t i;
    double f;
  } scalar_{.i = 0};
  // Text (string), ListData, DictData, CallableData, NamespaceData, LoopData, or std::string (undefined hint).
  std::shared_ptr<const void> ptr_;
};

struct ListData {
  std::vector<Value> items;
  bool is_tuple = false;
  int depth = 1;
};

// A hashable key's identity under Python equality (1 == 1.0 == True); see KeyCode().
using KeyCode = std::string;

struct DictData {
  std::vector<std::pair<Value, Value>> entries;  // insertion order
  // key code -> index into entries; built only for larger dicts (small ones are searched linearly).
  absl::flat_hash_map<KeyCode, size_t> index;
  int depth = 1;

  // The entry for `key`, or nullptr.
  const Value* Find(const Value& key) const;
  const Value* Find(std::string_view key) const;
};

// Internal kinds (built by the engine only). Their contents count in Value::depth(), except a namespace's,
// which the renderer releases itself (namespaces may refer to themselves).
struct MacroStmt;  // ast.h

struct CallableData {
  enum class Type : uint8_t { kBuiltin, kMethod, kMacro };
  Type type = Type::kBuiltin;
  std::string name;          // the global's, method's or macro's name
  Value receiver;            // kMethod: the object the method is bound to
  const MacroStmt* macro = nullptr;  // kMacro: owned by the Template, which outlives every render
};

struct NamespaceData {
  std::vector<std::pair<std::string, Value>> attrs;  // assignment order
  absl::flat_hash_map<std::string, size_t> index;    // name -> position in attrs
  const Value* Find(std::string_view name) const;
  void Set(std::string name, Value value);
  void Clear() {
    attrs.clear();
    index.clear();
  }
};

struct LoopData {
  std::shared_ptr<const ListData> items;  // what the loop iterates (after its `if` filter)
  size_t index0 = 0;
  bool untrusted = false;  // the iterated value was: index, length, first... carry its taint
};

// The key code of a hashable value (none, bool, int, float, string); error for others.
absl::StatusOr<KeyCode> HashKey(const Value& key);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_VALUE_H_
