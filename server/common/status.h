// Error-handling macros shared by every layer (STYLE.md "Errors").
//
// Anything a client or a file on disk can cause is reported as an absl::Status; CHECK is kept for
// invariants only a bug can break.
#ifndef QRAG_SERVER_COMMON_STATUS_H_
#define QRAG_SERVER_COMMON_STATUS_H_

#include <cstdio>
#include <cstdlib>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define QRAG_STATUS_CONCAT_INNER_(a, b) a##b
#define QRAG_STATUS_CONCAT_(a, b) QRAG_STATUS_CONCAT_INNER_(a, b)

// Returns from the enclosing function when `expr` (an absl::Status) is not OK.
#define QRAG_RETURN_IF_ERROR(expr)                    \
  do {                                                \
    ::absl::Status qrag_status_ = (expr);             \
    if (!qrag_status_.ok()) return qrag_status_;      \
  } while (0)

// `lhs = value of rexpr` (an absl::StatusOr<T>), or returns its error status.
#define QRAG_ASSIGN_OR_RETURN(lhs, rexpr) \
  QRAG_ASSIGN_OR_RETURN_IMPL_(QRAG_STATUS_CONCAT_(qrag_statusor_, __LINE__), lhs, rexpr)
#define QRAG_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, rexpr) \
  auto statusor = (rexpr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

// Aborts with a message when an internal invariant is broken. Never used for input validation.
#define QRAG_CHECK(cond)                                                              \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      std::fprintf(stderr, "%s:%d: QRAG_CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                   \
    }                                                                                 \
  } while (0)

#endif  // QRAG_SERVER_COMMON_STATUS_H_
