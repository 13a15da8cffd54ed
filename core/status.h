// Status and StatusOr: errors as values for every fallible call in hamdb.
//
// A Status is either OK or carries a code and a human-readable message. It is
// cheap to copy when OK. StatusOr<T> holds either a value or a non-OK Status.
// Both are [[nodiscard]]: ignoring an error is a compile warning.
//
// Thread safety: distinct objects may be used from different threads; a single
// object is not synchronised.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hamdb {

class [[nodiscard]] Status {
 public:
  enum class Code {
    kOk = 0,
    kInvalidArgument,     // bad input from the caller (malformed code, bad name)
    kNotFound,            // missing collection or item
    kAlreadyExists,       // create of something that exists
    kCorruption,          // stored bytes that do not decode
    kIOError,             // the file system failed (disk full, permissions)
    kNotSupported,        // valid request this build or store cannot serve
    kFailedPrecondition,  // state does not allow the call (e.g. no codebook)
    kResourceExhausted,   // out of memory / device memory
    kInternal,            // a bug or an unexpected exception
  };

  Status() = default;  // OK
  static Status OK() { return Status(); }
  static Status InvalidArgument(std::string_view msg) { return Status(Code::kInvalidArgument, msg); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status AlreadyExists(std::string_view msg) { return Status(Code::kAlreadyExists, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status NotSupported(std::string_view msg) { return Status(Code::kNotSupported, msg); }
  static Status FailedPrecondition(std::string_view msg) { return Status(Code::kFailedPrecondition, msg); }
  static Status ResourceExhausted(std::string_view msg) { return Status(Code::kResourceExhausted, msg); }
  static Status Internal(std::string_view msg) { return Status(Code::kInternal, msg); }

  bool ok() const { return code_ == Code::kOk; }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }

  // "OK", or "<CodeName>: <message>".
  std::string ToString() const;
  static const char* CodeName(Code code);

  // Returns a copy whose message is prefixed by `context: `.
  Status WithContext(std::string_view context) const;

  bool operator==(const Status& o) const { return code_ == o.code_ && message_ == o.message_; }

 private:
  Status(Code code, std::string_view msg) : code_(code), message_(msg) {}
  Code code_ = Code::kOk;
  std::string message_;
};

// Holds a T on success or a non-OK Status. Accessing value() of an error is a
// programming bug (asserted), never a user error.
template <typename T>
class [[nodiscard]] StatusOr {
 public:
  StatusOr(Status status) : v_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(v_).ok() && "StatusOr built from an OK Status");
  }
  StatusOr(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design

  bool ok() const { return std::holds_alternative<T>(v_); }
  Status status() const { return ok() ? Status::OK() : std::get<Status>(v_); }

  T& value() & { assert(ok()); return std::get<T>(v_); }
  const T& value() const& { assert(ok()); return std::get<T>(v_); }
  T&& value() && { assert(ok()); return std::get<T>(std::move(v_)); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  std::variant<Status, T> v_;
};

}  // namespace hamdb

// Returns early from the enclosing function when `expr` is not OK.
#define HAMDB_RETURN_IF_ERROR(expr)        \
  do {                                     \
    ::hamdb::Status _st = (expr);          \
    if (!_st.ok()) return _st;             \
  } while (0)

#define HAMDB_CONCAT_INNER_(a, b) a##b
#define HAMDB_CONCAT_(a, b) HAMDB_CONCAT_INNER_(a, b)
// Declares `lhs` from a StatusOr expression, returning the error if any.
#define HAMDB_ASSIGN_OR_RETURN(lhs, expr) \
  HAMDB_ASSIGN_OR_RETURN_IMPL_(HAMDB_CONCAT_(_sor_, __LINE__), lhs, expr)
#define HAMDB_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                 \
  if (!tmp.ok()) return tmp.status();                \
  lhs = std::move(tmp).value()
