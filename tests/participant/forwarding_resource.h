// A Resource that forwards every call to a SqliteResource: the base of the
// tests' decorators, which override only what they observe or break.
#ifndef ONCE_TESTS_PARTICIPANT_FORWARDING_RESOURCE_H_
#define ONCE_TESTS_PARTICIPANT_FORWARDING_RESOURCE_H_

#include <string>
#include <vector>

#include "once/resource.h"
#include "once/sqlite_resource.h"

namespace once::testing {

class ForwardingResource : public Resource {
 public:
  explicit ForwardingResource(SqliteResource* inner) : inner_(inner) {}

  absl::StatusOr<std::vector<std::string>> Recover() override { return inner_->Recover(); }
  absl::StatusOr<TxnStatus> Status(const std::string& txn) override { return inner_->Status(txn); }
  absl::StatusOr<bool> IsCommitted(const std::string& id) override {
    return inner_->IsCommitted(id);
  }
  absl::Status Prepare(const PreparedTxn& txn) override { return inner_->Prepare(txn); }
  absl::StatusOr<CommitResult> Commit(const std::string& txn) override {
    return inner_->Commit(txn);
  }
  absl::Status Abort(const std::string& txn) override { return inner_->Abort(txn); }
  absl::StatusOr<bool> ApplyOnce(const std::string& id, const std::vector<Effect>& e) override {
    return inner_->ApplyOnce(id, e);
  }
  absl::Status Apply(const std::vector<Effect>& e) override { return inner_->Apply(e); }
  absl::Status BeginGroup() override { return inner_->BeginGroup(); }
  absl::Status EndGroup() override { return inner_->EndGroup(); }
  void AbortGroup() override { inner_->AbortGroup(); }

 protected:
  SqliteResource* inner() const { return inner_; }

 private:
  SqliteResource* const inner_;
};

}  // namespace once::testing

#endif  // ONCE_TESTS_PARTICIPANT_FORWARDING_RESOURCE_H_
