// Helpers shared by the fuzz targets of tests/fuzz/ (docs/reliability.md "Fuzzing").
//
// Each target defines LLVMFuzzerTestOneInput. Built with -DQRAG_FUZZ=ON (clang) it links libFuzzer; in every
// other build it links replay_main.cc, which runs the committed seeds and regression inputs through it, so the
// normal test suite replays them too (ctest fuzz_<target>_replay).
#ifndef QRAG_TESTS_FUZZ_FUZZ_UTIL_H_
#define QRAG_TESTS_FUZZ_FUZZ_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"

namespace qrag::fuzz {

// The input as text.
inline std::string_view AsText(const uint8_t* data, size_t size) {
  return std::string_view(reinterpret_cast<const char*>(data), size);
}

// The input cut at NUL bytes into at most `parts` pieces (the last piece keeps any further NULs); missing
// pieces are empty. Lets one input carry several fields (a template and its context, a file and a text).
std::vector<std::string_view> SplitParts(std::string_view input, size_t parts);

// Writes `bytes` to this process's scratch file (under $TMPDIR, default /tmp) and returns its path, for
// parsers that take a path. The same path is reused by every call of the process.
const std::string& WriteScratchFile(std::string_view bytes, std::string_view suffix = "");

// A finding: prints `what` and aborts (libFuzzer then saves the input as a crash).
[[noreturn]] void Fail(std::string_view what);

// Every error a parser of untrusted input may return: a caller's mistake or a bad file, never INTERNAL
// (reserved for bugs) or UNKNOWN. Fails otherwise.
void CheckInputError(const absl::Status& status, std::string_view where);

}  // namespace qrag::fuzz

#endif  // QRAG_TESTS_FUZZ_FUZZ_UTIL_H_
