// A Resource for group-commit tests: forwards everything to a
// SqliteResource, but while `fail_end` is set its EndGroup rolls the group
// back (as the contract demands of a failed EndGroup) and returns
// kUnavailable "disk gone", standing in for a COMMIT the disk refused.
#ifndef ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_
#define ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_

#include <atomic>
#include <string>
#include <vector>

#include "once/resource.h"
#include "once/sqlite_resource.h"

namespace once::testing {

class FailingEndResource final : public Resource {
 public:
  explicit FailingEndResource(SqliteResource* inner) : inner_(inner) {}

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
  absl::Status EndGroup() override {
    if (!fail_end.load()) return inner_->EndGroup();
    inner_->AbortGroup();
    return absl::UnavailableError("disk gone");
  }
  void AbortGroup() override { inner_->AbortGroup(); }

  // Read on the SDK's thread, set by the test's.
  std::atomic<bool> fail_end{false};

 private:
  SqliteResource* const inner_;
};

}  // namespace once::testing

#endif  // ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_
