// Global functions: range, namespace, dict, raise_exception, strftime_now.
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/time/civil_time.h"
#include "server/jinja/absl_compat.h"
#include "server/common/status.h"
#include "server/jinja/builtins.h"
#include "server/jinja/renderer.h"
#include "server/jinja/template.h"

namespace qrag::jinja {
namespace {

absl::StatusOr<int64_t> IntArg(const Value& v, std::string_view function) {
  if (v.is_int() || v.is_bool()) return v.as_int();
  return absl::InvalidArgumentError(
      Cat(function, "(): '", v.TypeName(), "' object cannot be interpreted as an integer"));
}

absl::StatusOr<Value> Range(Renderer& r, const CallArgs& args) {
  if (!args.keyword.empty()) return absl::InvalidArgumentError("range() takes no keyword arguments");
  const size_t n = args.positional.size();
  if (n < 1 || n > 3) return absl::InvalidArgumentError(Cat("range expected 1 to 3 arguments, got ", n));
  int64_t start = 0, stop = 0, step = 1;
  if (n == 1) {
    QRAG_ASSIGN_OR_RETURN(stop, IntArg(args.positional[0], "range"));
  } else {
    QRAG_ASSIGN_OR_RETURN(start, IntArg(args.positional[0], "range"));
    QRAG_ASSIGN_OR_RETURN(stop, IntArg(args.positional[1], "range"));
    if (n == 3) {
      QRAG_ASSIGN_OR_RETURN(step, IntArg(args.positional[2], "range"));
    }
  }
  if (step == 0) return absl::InvalidArgumentError("range() arg 3 must not be zero");
  // The length, computed without overflow, before anything is allocated.
  unsigned __int128 count = 0;
  if (step > 0 && start < stop) {
    count = (static_cast<unsigned __int128>(static_cast<__int128>(stop) - start) - 1) / static_cast<uint64_t>(step) + 1;
  } else if (step < 0 && start > stop) {
    count = (static_cast<unsigned __int128>(static_cast<__int128>(start) - stop) - 1) /
                static_cast<unsigned __int128>(-static_cast<__int128>(step)) + 1;
  }
  if (count > r.options().limits.max_container_items) {
    return absl::ResourceExhaustedError(Cat("range() of more than ", r.options().limits.max_container_items,
                                                     " items exceeds the template's limit"));
  }
  bool untrusted = false;
  for (const Value& v : args.positional) untrusted = untrusted || v.untrusted();
  const Trust t = untrusted ? Trust::kUntrusted : Trust::kTrusted;
  std::vector<Value> items;
  items.reserve(static_cast<size_t>(count));
  for (size_t i = 0; i < static_cast<size_t>(count); ++i) {
    items.push_back(Value::Int(static_cast<int64_t>(start + static_cast<__int128>(i) * step), t));
  }
  return r.NewList(std::move(items), t);
}

// The (key, value) pairs of an optional positional mapping (or iterable of pairs) plus keyword arguments,
// as dict() and namespace() take them.
absl::StatusOr<std::vector<std::pair<Value, Value>>> MappingArgs(Renderer& r, const CallArgs& args,
                                                                 std::string_view function) {
  std::vector<std::pair<Value, Value>> entries;
  if (args.positional.size() > 1) {
    return absl::InvalidArgumentError(Cat(function, "() takes at most 1 positional argument"));
  }
  if (args.positional.size() == 1) {
    const Value& src = args.positional[0];
    if (src.is_dict()) {
      entries = src.dict().entries;
    } else {
      QRAG_ASSIGN_OR_RETURN(std::vector<Value> pairs, r.Iterate(src));
      for (const Value& p : pairs) {
        if (!p.is_list() || p.items().size() != 2) {
          return absl::InvalidArgumentError(Cat(function, "(): sequence elements must be pairs"));
        }
        entries.emplace_back(p.items()[0], p.items()[1]);
      }
    }
  }
  for (const auto& [name, value] : args.keyword) entries.emplace_back(Value::String(name), value);
  return entries;
}

absl::StatusOr<Value> Namespace(Renderer& r, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(auto entries, MappingArgs(r, args, "namespace"));
  std::vector<std::pair<std::string, Value>> attrs;
  for (auto& [key, value] : entries) {
    if (!key.is_string()) return absl::InvalidArgumentError("namespace(): attribute names must be strings");
    attrs.emplace_back(std::string(key.text().view()), std::move(value));
  }
  return r.NewNamespace(std::move(attrs));
}

absl::StatusOr<Value> Dict(Renderer& r, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(auto entries, MappingArgs(r, args, "dict"));
  return r.NewDict(std::move(entries));
}

absl::StatusOr<Value> RaiseException(Renderer& r, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("raise_exception", args, {"message"}));
  QRAG_ASSIGN_OR_RETURN(Text message, r.Str(a.Get(0, Value())));
  absl::Status status = absl::InvalidArgumentError(ToAbsl(message.view()));
  status.SetPayload(kRaiseExceptionPayload, absl::Cord("1"));
  return status;
}

constexpr std::string_view kWeekdays[] = {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday",
                                          "Sunday"};
constexpr std::string_view kMonths[] = {"January", "February", "March",     "April",   "May",      "June",
                                        "July",    "August",   "September", "October", "November", "December"};

void AppendNumber(int64_t value, int width, char pad, std::string* out) {
  std::string digits = Cat(value);
  if (pad != 0 && static_cast<int>(digits.size()) < width) out->append(static_cast<size_t>(width) - digits.size(), pad);
  out->append(digits);
}

// C-locale strftime as glibc implements it (what Python's datetime.strftime calls), including the glibc
// flags '-' (no padding) and '_' (space padding). Naive time: %Z and %z are empty.
std::string Strftime(std::string_view format, absl::CivilSecond t) {
  const absl::CivilDay day(t);
  const int weekday_mon0 = static_cast<int>(absl::GetWeekday(day));  // Monday = 0
  const int weekday_sun0 = (weekday_mon0 + 1) % 7;
  const int yday = absl::GetYearDay(day);  // 1-based
  const int hour12 = t.hour() % 12 == 0 ? 12 : t.hour() % 12;
  std::string out;
  for (size_t i = 0; i < format.size(); ++i) {
    if (format[i] != '%' || i + 1 >= format.size()) {
      out.push_back(format[i]);
      continue;
    }
    size_t j = i + 1;
    char pad_override = 0;
    bool has_flag = false;
    if (format[j] == '-' || format[j] == '_' || format[j] == '0') {
      has_flag = true;
      pad_override = format[j] == '-' ? '\0' : (format[j] == '_' ? ' ' : '0');
      if (++j >= format.size()) {
        out.append(format.substr(i));
        break;
      }
    }
    auto number = [&](int64_t v, int width, char default_pad) {
      AppendNumber(v, width, has_flag ? pad_override : default_pad, &out);
    };
    switch (format[j]) {
      case 'a': out.append(kWeekdays[weekday_mon0].substr(0, 3)); break;
      case 'A': out.append(kWeekdays[weekday_mon0]); break;
      case 'b':
      case 'h': out.append(kMonths[t.month() - 1].substr(0, 3)); break;
      case 'B': out.append(kMonths[t.month() - 1]); break;
      case 'c':
        out.append(Strftime("%a %b %e %H:%M:%S %Y", t));
        break;
      case 'C': number(t.year() / 100, 2, '0'); break;
      case 'd': number(t.day(), 2, '0'); break;
      case 'D': out.append(Strftime("%m/%d/%y", t)); break;
      case 'e': number(t.day(), 2, ' '); break;
      case 'F': out.append(Strftime("%Y-%m-%d", t)); break;
      case 'H': number(t.hour(), 2, '0'); break;
      case 'I': number(hour12, 2, '0'); break;
      case 'j': number(yday, 3, '0'); break;
      case 'k': number(t.hour(), 2, ' '); break;
      case 'l': number(hour12, 2, ' '); break;
      case 'm': number(t.month(), 2, '0'); break;
      case 'M': number(t.minute(), 2, '0'); break;
      case 'n': out.push_back('\n'); break;
      case 'p': out.append(t.hour() < 12 ? "AM" : "PM"); break;
      case 'P': out.append(t.hour() < 12 ? "am" : "pm"); break;
      case 'r': out.append(Strftime("%I:%M:%S %p", t)); break;
      case 'R': out.append(Strftime("%H:%M", t)); break;
      case 'S': number(t.second(), 2, '0'); break;
      case 't': out.push_back('\t'); break;
      case 'T': out.append(Strftime("%H:%M:%S", t)); break;
      case 'u': number(weekday_mon0 + 1, 1, '0'); break;
      case 'U': number((yday - 1 + 7 - weekday_sun0) / 7, 2, '0'); break;
      case 'w': number(weekday_sun0, 1, '0'); break;
      case 'W': number((yday - 1 + 7 - weekday_mon0) / 7, 2, '0'); break;
      case 'x': out.append(Strftime("%m/%d/%y", t)); break;
      case 'X': out.append(Strftime("%H:%M:%S", t)); break;
      case 'y': number(t.year() % 100, 2, '0'); break;
      case 'Y': number(t.year(), 1, '0'); break;
      case 'z':
      case 'Z': break;
      case '%': out.push_back('%'); break;
      default:  // glibc copies unknown conversions
        out.append(format.substr(i, j + 1 - i));
        break;
    }
    i = j;
  }
  return out;
}

absl::StatusOr<Value> StrftimeNow(Renderer& r, const CallArgs& args) {
  QRAG_ASSIGN_OR_RETURN(BoundArgs a, BoundArgs::Bind("strftime_now", args, {"format"}));
  const Value& format = a.Get(0, Value());
  if (!format.is_string()) return absl::InvalidArgumentError("strftime_now() needs a format string");
  if (!r.options().now.has_value()) return absl::InvalidArgumentError("strftime_now() has no clock");
  if (format.text().size() > 1024) return absl::InvalidArgumentError("strftime_now(): format string too long");
  return r.NewString(Text(Strftime(format.text().view(), *r.options().now),
                          format.untrusted() ? Trust::kUntrusted : Trust::kTrusted));
}

}  // namespace

bool IsGlobalFunction(const Renderer& r, std::string_view name) {
  if (name == "strftime_now") return r.options().now.has_value();
  return name == "range" || name == "namespace" || name == "dict" || name == "raise_exception";
}

absl::StatusOr<Value> CallGlobal(Renderer& r, std::string_view name, const CallArgs& args) {
  QRAG_RETURN_IF_ERROR(r.budget().Charge(1));
  if (name == "range") return Range(r, args);
  if (name == "namespace") return Namespace(r, args);
  if (name == "dict") return Dict(r, args);
  if (name == "raise_exception") return RaiseException(r, args);
  if (name == "strftime_now") return StrftimeNow(r, args);
  return absl::InvalidArgumentError(Cat("'", name, "' is not callable"));
}

}  // namespace qrag::jinja
