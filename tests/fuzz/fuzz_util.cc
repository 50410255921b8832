#include "tests/fuzz/fuzz_util.h"

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace qrag::fuzz {

std::vector<std::string_view> SplitParts(std::string_view input, size_t parts) {
  std::vector<std::string_view> out;
  while (out.size() + 1 < parts) {
    const size_t nul = input.find('\0');
    if (nul == std::string_view::npos) break;
    out.push_back(input.substr(0, nul));
    input.remove_prefix(nul + 1);
  }
  out.push_back(input);
  out.resize(parts);
  return out;
}

const std::string& WriteScratchFile(std::string_view bytes, std::string_view suffix) {
  static std::string path;
  const char* tmp = std::getenv("TMPDIR");
  std::string wanted =
      absl::StrCat(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp", "/qrag-fuzz-", getpid(), std::string(suffix));
  if (path != wanted) {
    if (!path.empty()) std::remove(path.c_str());
    path = std::move(wanted);
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) Fail(absl::StrCat("cannot write the scratch file ", path));
  return path;
}

void Fail(std::string_view what) {
  std::fprintf(stderr, "qrag fuzz finding: %.*s\n", static_cast<int>(what.size()), what.data());
  std::fflush(stderr);
  std::abort();
}

void CheckInputError(const absl::Status& status, std::string_view where) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnimplemented:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kResourceExhausted:
      return;
    default:
      Fail(absl::StrCat(std::string(where), ": unexpected status ", status.ToString()));
  }
}

}  // namespace qrag::fuzz
