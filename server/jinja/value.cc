#include "server/jinja/value.h"

#include <algorithm>
#include <cmath>
#include <cstring>

#include "server/jinja/absl_compat.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"

namespace qrag::jinja {
namespace {

// Dicts at most this large are searched linearly; larger ones get a hash index.
constexpr size_t kLinearDictMax = 8;

bool NumericKey(const Value& v) { return v.is_bool() || v.is_int() || v.is_float(); }

// Python equality restricted to hashable keys.
bool KeyEquals(const Value& a, const Value& b) {
  if (a.is_string() && b.is_string()) return a.text().bytes() == b.text().bytes();
  if (NumericKey(a) && NumericKey(b)) {
    if (a.is_float() || b.is_float()) return a.AsDouble() == b.AsDouble();
    return a.as_int() == b.as_int();
  }
  if (a.is_none() && b.is_none()) return true;
  if (a.is_undefined() && b.is_undefined()) return true;
  return false;
}

template <typename Json>
absl::StatusOr<Value> FromJsonAt(const Json& json, Trust trust, int depth) {
  switch (json.type()) {
    case Json::value_t::null:
      return Value::None(trust);
    case Json::value_t::boolean:
      return Value::Bool(json.template get<bool>(), trust);
    case Json::value_t::number_integer:
      return Value::Int(json.template get<int64_t>(), trust);
    case Json::value_t::number_unsigned: {
      const uint64_t u = json.template get<uint64_t>();
      if (u <= static_cast<uint64_t>(INT64_MAX)) return Value::Int(static_cast<int64_t>(u), trust);
      return Value::Float(static_cast<double>(u), trust);
    }
    case Json::value_t::number_float:
      return Value::Float(json.template get<double>(), trust);
    case Json::value_t::string:
      return Value::String(Text(json.template get_ref<const std::string&>(), trust));
    case Json::value_t::array:
    case Json::value_t::object: {
      if (depth >= kMaxValueDepth) {
        return absl::InvalidArgumentError(
            Cat("JSON nested deeper than ", kMaxValueDepth, " levels"));
      }
      if (json.is_array()) {
        std::vector<Value> items;
        items.reserve(json.size());
        for (const auto& item : json) {
          auto v = FromJsonAt(item, trust, depth + 1);
          if (!v.ok()) return v.status();
          items.push_back(*std::move(v));
        }
        return Value::List(std::move(items), trust);
      }
      std::vector<std::pair<Value, Value>> entries;
      entries.reserve(json.size());
      for (auto it = json.begin(); it != json.end(); ++it) {
        auto v = FromJsonAt(it.value(), trust, depth + 1);
        if (!v.ok()) return v.status();
        entries.emplace_back(Value::String(Text(it.key(), trust)), *std::move(v));
      }
      return Value::Dict(std::move(entries), trust);
    }
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  return absl::InvalidArgumentError("unsupported JSON value (binary or discarded)");
}

}  // namespace

Value Value::Undefined(std::string hint) {
  Value v;
  if (!hint.empty()) v.ptr_ = std::make_shared<const std::string>(std::move(hint));
  return v;
}

Value Value::Scalar(Kind kind, int64_t bits, Trust trust) {
  Value v;
  v.kind_ = kind;
  v.untrusted_ = trust == Trust::kUntrusted;
  v.scalar_.i = bits;
  return v;
}

Value Value::None(Trust trust) { return Scalar(Kind::kNone, 0, trust); }

Value Value::Bool(bool b, Trust trust) { return Scalar(Kind::kBool, b ? 1 : 0, trust); }

Value Value::Int(int64_t i, Trust trust) { return Scalar(Kind::kInt, i, trust); }

Value Value::Float(double f, Trust trust) {
  Value v = Scalar(Kind::kFloat, 0, trust);
  v.scalar_.f = f;
  return v;
}

Value Value::String(Text text) {
  Value v;
  v.kind_ = Kind::kString;
  v.ptr_ = std::make_shared<const Text>(std::move(text));
  return v;
}

Value Value::String(std::string bytes, Trust trust) { return String(Text(std::move(bytes), trust)); }

absl::StatusOr<Value> Value::Sequence(std::vector<Value> items, bool is_tuple, Trust trust) {
  int depth = 0;
  for (const Value& item : items) depth = std::max(depth, item.depth());
  if (depth >= kMaxValueDepth) {
    return absl::InvalidArgumentError(Cat("value nested deeper than ", kMaxValueDepth, " levels"));
  }
  auto data = std::make_shared<ListData>();
  data->items = std::move(items);
  data->is_tuple = is_tuple;
  data->depth = depth + 1;
  Value v;
  v.kind_ = Kind::kList;
  v.untrusted_ = trust == Trust::kUntrusted;
  v.ptr_ = std::move(data);
  return v;
}

absl::StatusOr<Value> Value::List(std::vector<Value> items, Trust trust) {
  return Sequence(std::move(items), /*is_tuple=*/false, trust);
}

absl::StatusOr<Value> Value::Tuple(std::vector<Value> items, Trust trust) {
  return Sequence(std::move(items), /*is_tuple=*/true, trust);
}

absl::StatusOr<Value> Value::Dict(std::vector<std::pair<Value, Value>> entries, Trust trust) {
  auto data = std::make_shared<DictData>();
  int depth = 0;
  data->entries.reserve(entries.size());
  const bool indexed = entries.size() > kLinearDictMax;
  for (auto& [key, value] : entries) {
    auto code = HashKey(key);
    if (!code.ok()) return code.status();
    depth = std::max(depth, value.depth());
    if (indexed) {
      auto [it, inserted] = data->index.try_emplace(*code, data->entries.size());
      if (!inserted) {
        data->entries[it->second].second = std::move(value);
        continue;
      }
    } else {
      const Value& k = key;  // (clang before 16 cannot capture a structured binding)
      auto it = std::find_if(data->entries.begin(), data->entries.end(),
                             [&](const auto& e) { return KeyEquals(e.first, k); });
      if (it != data->entries.end()) {
        it->second = std::move(value);
        continue;
      }
    }
    data->entries.emplace_back(std::move(key), std::move(value));
  }
  if (depth >= kMaxValueDepth) {
    return absl::InvalidArgumentError(Cat("value nested deeper than ", kMaxValueDepth, " levels"));
  }
  data->depth = depth + 1;
  Value v;
  v.kind_ = Kind::kDict;
  v.untrusted_ = trust == Trust::kUntrusted;
  v.ptr_ = std::move(data);
  return v;
}

absl::StatusOr<Value> Value::Dict(std::vector<std::pair<std::string, Value>> entries, Trust trust) {
  std::vector<std::pair<Value, Value>> converted;
  converted.reserve(entries.size());
  for (auto& [key, value] : entries) converted.emplace_back(Value::String(std::move(key), trust), std::move(value));
  return Dict(std::move(converted), trust);
}

absl::StatusOr<Value> Value::FromJson(const nlohmann::ordered_json& json, Trust trust) {
  return FromJsonAt(json, trust, 0);
}

absl::StatusOr<Value> Value::FromJson(const nlohmann::json& json, Trust trust) { return FromJsonAt(json, trust, 0); }

Value Value::Callable(std::shared_ptr<const CallableData> callable) {
  Value v;
  v.kind_ = Kind::kCallable;
  v.ptr_ = std::move(callable);
  return v;
}

Value Value::Namespace(std::shared_ptr<NamespaceData> ns) {
  Value v;
  v.kind_ = Kind::kNamespace;
  v.ptr_ = std::move(ns);
  return v;
}

Value Value::Loop(std::shared_ptr<const LoopData> loop) {
  Value v;
  v.kind_ = Kind::kLoop;
  v.ptr_ = std::move(loop);
  return v;
}

bool Value::is_tuple() const { return kind_ == Kind::kList && static_cast<const ListData*>(ptr_.get())->is_tuple; }

double Value::AsDouble() const { return kind_ == Kind::kFloat ? scalar_.f : static_cast<double>(scalar_.i); }

const Text& Value::text() const { return *static_cast<const Text*>(ptr_.get()); }

const std::vector<Value>& Value::items() const { return static_cast<const ListData*>(ptr_.get())->items; }

const DictData& Value::dict() const { return *static_cast<const DictData*>(ptr_.get()); }

const CallableData& Value::callable() const { return *static_cast<const CallableData*>(ptr_.get()); }

NamespaceData& Value::ns() const {
  // Namespaces are the one mutable kind; they are always created non-const (Value::Namespace).
  return *const_cast<NamespaceData*>(static_cast<const NamespaceData*>(ptr_.get()));
}

const LoopData& Value::loop() const { return *static_cast<const LoopData*>(ptr_.get()); }

const std::string& Value::undefined_hint() const {
  static const std::string* const kEmpty = new std::string();
  return ptr_ ? *static_cast<const std::string*>(ptr_.get()) : *kEmpty;
}

bool Value::untrusted() const { return kind_ == Kind::kString ? text().AnyUntrusted() : untrusted_; }

Value Value::MarkedUntrusted() const {
  if (kind_ == Kind::kString) {
    if (text().empty()) return *this;
    Text t = text();
    t.MarkUntrusted(0, t.size());
    return String(std::move(t));
  }
  Value v = *this;
  v.untrusted_ = true;
  return v;
}

int Value::depth() const {
  switch (kind_) {
    case Kind::kList:
      return static_cast<const ListData*>(ptr_.get())->depth;
    case Kind::kDict:
      return dict().depth;
    case Kind::kCallable:
      return ptr_ ? callable().receiver.depth() + 1 : 1;
    case Kind::kNamespace:
      return 1;  // its contents are released by the renderer, not by recursive destruction
    case Kind::kLoop:
      return loop().items->depth + 1;
    default:
      return 0;
  }
}

bool Value::Truthy() const {
  switch (kind_) {
    case Kind::kUndefined:
    case Kind::kNone:
      return false;
    case Kind::kBool:
    case Kind::kInt:
      return scalar_.i != 0;
    case Kind::kFloat:
      return scalar_.f != 0.0;
    case Kind::kString:
      return !text().empty();
    case Kind::kList:
      return !items().empty();
    case Kind::kDict:
      return !dict().entries.empty();
    case Kind::kCallable:
    case Kind::kNamespace:
    case Kind::kLoop:
      return true;
  }
  return false;
}

std::string_view Value::TypeName() const {
  switch (kind_) {
    case Kind::kUndefined:
      return "Undefined";
    case Kind::kNone:
      return "NoneType";
    case Kind::kBool:
      return "bool";
    case Kind::kInt:
      return "int";
    case Kind::kFloat:
      return "float";
    case Kind::kString:
      return "str";
    case Kind::kList:
      return is_tuple() ? "tuple" : "list";
    case Kind::kDict:
      return "dict";
    case Kind::kCallable:
      return callable().type == CallableData::Type::kMacro ? "Macro" : "builtin_function_or_method";
    case Kind::kNamespace:
      return "Namespace";
    case Kind::kLoop:
      return "LoopContext";
  }
  return "object";
}

absl::StatusOr<KeyCode> HashKey(const Value& key) {
  switch (key.kind()) {
    case Value::Kind::kNone:
      return KeyCode("n");
    case Value::Kind::kUndefined:
      return KeyCode("u");
    case Value::Kind::kBool:
    case Value::Kind::kInt:
      return Cat("i", key.as_int());
    case Value::Kind::kFloat: {
      const double f = key.as_float();
      if (std::isfinite(f) && f == std::floor(f) && std::fabs(f) < 9.2e18) {
        return Cat("i", static_cast<int64_t>(f));
      }
      uint64_t bits;
      std::memcpy(&bits, &f, sizeof bits);
      return Cat("f", bits);
    }
    case Value::Kind::kString:
      return Cat("s", key.text().view());
    default:
      return absl::InvalidArgumentError(Cat("unhashable type: '", key.TypeName(), "'"));
  }
}

const Value* DictData::Find(const Value& key) const {
  if (!index.empty()) {
    auto code = HashKey(key);
    if (!code.ok()) return nullptr;
    auto it = index.find(*code);
    return it == index.end() ? nullptr : &entries[it->second].second;
  }
  for (const auto& [k, v] : entries) {
    if (KeyEquals(k, key)) return &v;
  }
  return nullptr;
}

const Value* DictData::Find(std::string_view key) const {
  if (!index.empty()) {
    auto it = index.find(Cat("s", key));
    return it == index.end() ? nullptr : &entries[it->second].second;
  }
  for (const auto& [k, v] : entries) {
    if (k.is_string() && k.text().view() == key) return &v;
  }
  return nullptr;
}

const Value* NamespaceData::Find(std::string_view name) const {
  auto it = index.find(ToAbsl(name));
  return it == index.end() ? nullptr : &attrs[it->second].second;
}

void NamespaceData::Set(std::string name, Value value) {
  auto [it, inserted] = index.try_emplace(name, attrs.size());
  if (!inserted) {
    attrs[it->second].second = std::move(value);
    return;
  }
  attrs.emplace_back(std::move(name), std::move(value));
}

}  // namespace qrag::jinja
