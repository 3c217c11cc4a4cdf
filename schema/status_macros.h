// Early-return helpers for absl::Status, which Abseil 20220623 does not ship.
#ifndef ONCE_SCHEMA_STATUS_MACROS_H_
#define ONCE_SCHEMA_STATUS_MACROS_H_

#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

#define ONCE_STATUS_CONCAT_INNER_(a, b) a##b
#define ONCE_STATUS_CONCAT_(a, b) ONCE_STATUS_CONCAT_INNER_(a, b)

// Evaluates `expr` (an absl::Status) once; returns it from the enclosing
// function when it is not OK.
#define ONCE_RETURN_IF_ERROR(expr)                         \
  do {                                                     \
    ::absl::Status once_status_ = (expr);                  \
    if (!once_status_.ok()) return once_status_;           \
  } while (false)

// `ONCE_ASSIGN_OR_RETURN(auto x, Foo());` evaluates Foo() (an absl::StatusOr)
// once; returns its status when not OK, else moves its value into `x`.
#define ONCE_ASSIGN_OR_RETURN(lhs, expr) \
  ONCE_ASSIGN_OR_RETURN_IMPL_(ONCE_STATUS_CONCAT_(once_statusor_, __LINE__), lhs, expr)

#define ONCE_ASSIGN_OR_RETURN_IMPL_(statusor, lhs, expr) \
  auto statusor = (expr);                                \
  if (!statusor.ok()) return std::move(statusor).status(); \
  lhs = std::move(statusor).value()

#endif  // ONCE_SCHEMA_STATUS_MACROS_H_
