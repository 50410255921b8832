// Budget: the work and size caps of one render, shared by the evaluator and the builtins.
//
// Every evaluation step, container element copied, compared or printed, and every 64 bytes copied into a
// new string is charged. Values share structure, so a small template can build a value whose printed
// form or deep comparison is exponentially large; charging the work (not only loop iterations) is what
// bounds the time of any render. Not thread-safe: one Budget per render.
#ifndef QRAG_SERVER_JINJA_BUDGET_H_
#define QRAG_SERVER_JINJA_BUDGET_H_

#include <cstddef>
#include <cstdint>
#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace qrag::jinja {

class Budget {
 public:
  Budget(int64_t max_steps, size_t max_string_bytes)
      : steps_left_(max_steps), max_steps_(max_steps), max_string_bytes_(max_string_bytes) {}

  // Charges `steps`; RESOURCE_EXHAUSTED once the render's step limit is spent.
  absl::Status Charge(int64_t steps) {
    steps_left_ -= steps;
    if (steps_left_ < 0) {
      return absl::ResourceExhaustedError(
          absl::StrCat("template exceeded its work limit (", max_steps_, " steps)"));
    }
    return absl::OkStatus();
  }
  // Charges for copying `bytes` bytes into a new string and checks the string size limit.
  absl::Status ChargeBytes(size_t bytes) {
    if (bytes > max_string_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("template built a string longer than its limit of ", max_string_bytes_, " bytes"));
    }
    return Charge(1 + static_cast<int64_t>(bytes / 64));
  }
  // For a string built piece by piece: checks its size so far against the string limit and charges the
  // bytes added since the previous call (*charged holds the size already charged).
  absl::Status ChargeGrowth(size_t size, size_t* charged) {
    if (size > max_string_bytes_) {
      return absl::ResourceExhaustedError(
          absl::StrCat("template built a string longer than its limit of ", max_string_bytes_, " bytes"));
    }
    const size_t added = size - std::min(size, *charged);
    *charged = size;
    return Charge(1 + static_cast<int64_t>(added / 64));
  }
  // Charges for reading `bytes` bytes of an existing string (no size limit: inputs may be long).
  absl::Status ChargeScan(size_t bytes) { return Charge(1 + static_cast<int64_t>(bytes / 64)); }
  size_t max_string_bytes() const { return max_string_bytes_; }

 private:
  int64_t steps_left_;
  int64_t max_steps_;
  size_t max_string_bytes_;
};

}  // namespace qrag::jinja

#endif  // QRAG_SERVER_JINJA_BUDGET_H_
