// How values become text: Python's str() and repr() as jinja2 prints them, and json.dumps as the
// `tojson` filter of Hugging Face transformers calls it.
//
// Taint: the characters of a string keep (or, escaped, inherit) the taint of the bytes they came from; the
// punctuation of a container (brackets, separators, indentation, quotes around a key or string) is
// untrusted when the container (or, for quotes, any byte of the string) is; a number, bool or None prints
// with the taint of the value. All functions charge `budget` per value visited and fail with
// RESOURCE_EXHAUSTED once the text outgrows the budget's string limit.
#ifndef QRAG_SERVER_JINJA_PRINTER_H_
#define QRAG_SERVER_JINJA_PRINTER_H_

#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "server/jinja/budget.h"
#include "server/jinja/text.h"
#include "server/jinja/value.h"

namespace qrag::jinja {

// Python's repr(float): the shortest text that reads back to `f` ("1.0", "0.1", "1e-05", "1e+16", "inf").
std::string FloatRepr(double f);

// str(value): strings as they are, undefined as "", None/True/False, lists and dicts as their repr().
absl::StatusOr<Text> ToStr(const Value& value, Budget& budget);
// repr(value): strings quoted and escaped as Python does.
absl::StatusOr<Text> ToRepr(const Value& value, Budget& budget);

// json.dumps options (Python's defaults except ensure_ascii, as transformers calls it).
struct JsonOptions {
  bool ensure_ascii = false;
  std::optional<std::string> indent;  // nullopt: one line
  std::optional<std::string> item_separator;  // default ", " (one line) or "," (indented)
  std::string key_separator = ": ";
  bool sort_keys = false;
};

// json.dumps(value): dicts keep insertion order; INVALID_ARGUMENT for values JSON cannot hold (undefined,
// namespaces, macros, keys that are not str/int/float/bool/None).
absl::StatusOr<Text> ToJson(const Value& value, const JsonOptions& options, Budget& budget);

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_PRINTER_H_
