// A Resource for group-commit tests: forwards everything to a
// SqliteResource, but while `fail_end` is set its EndGroup rolls the group
// back (as the contract demands of a failed EndGroup) and returns
// kUnavailable "disk gone", standing in for a COMMIT the disk refused.
#ifndef ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_
#define ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_

#include <atomic>

#include "tests/participant/forwarding_resource.h"

namespace once::testing {

class FailingEndResource final : public ForwardingResource {
 public:
  using ForwardingResource::ForwardingResource;

  absl::Status EndGroup() override {
    if (!fail_end.load()) return inner()->EndGroup();
    inner()->AbortGroup();
    return absl::UnavailableError("disk gone");
  }

  // Read on the SDK's thread, set by the test's.
  std::atomic<bool> fail_end{false};
};

}  // namespace once::testing

#endif  // ONCE_TESTS_PARTICIPANT_FAILING_END_RESOURCE_H_
