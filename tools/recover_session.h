// What once-recover works on: the data directory locked for the whole run
// (coordinator/data_dir_lock.h, the lock onced holds), its coordinator
// store, and, for the commands that need it, the broker's topics and
// consumer groups opened as onced opens them (coordinator/service.cc).
#ifndef ONCE_TOOLS_RECOVER_SESSION_H_
#define ONCE_TOOLS_RECOVER_SESSION_H_

#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "broker/broker.h"
#include "broker/group_registry.h"
#include "coordinator/data_dir_lock.h"
#include "coordinator/txn_store.h"

namespace once::recover {

class Session {
 public:
  // Checks that `data_dir` is an existing directory (never creates it) and
  // takes its lock: kFailedPrecondition "...locked by a running onced..."
  // (see IsLockedError) when onced holds it. Opens DIR/coordinator.db when
  // it exists; store() is nullptr when it does not (no exactly-once txn
  // was ever decided there) and when its schema is newer than this program
  // knows (schema_too_new(): refused by every command but verify, which
  // reports it). Errors name the path (kDataLoss for a damaged file).
  static absl::StatusOr<std::unique_ptr<Session>> Open(const std::string& data_dir);

  // True for Open's refusal because another process holds the lock.
  static bool IsLockedError(const absl::Status& status);

  // Opens the broker and its consumer groups (once; later calls return OK).
  absl::Status OpenBroker();

  // PRAGMA user_version of coordinator.db as found (0 when there is none).
  int64_t schema_version() const { return schema_version_; }
  bool schema_too_new() const {
    return schema_version_ > coordinator::TxnStore::LatestSchemaVersion();
  }
  // kFailedPrecondition when schema_too_new(), naming both versions.
  absl::Status SchemaError() const;

  const std::string& data_dir() const { return data_dir_; }
  const std::string& db_path() const { return db_path_; }
  coordinator::TxnStore* store() const { return store_.get(); }
  broker::Broker* broker() const { return broker_.get(); }
  broker::GroupRegistry* groups() const { return groups_.get(); }

  // Closes the store, the groups and the broker (in that order), then
  // releases the lock.
  ~Session();

 private:
  Session() = default;

  std::string data_dir_;
  std::string db_path_;
  int64_t schema_version_ = 0;
  std::unique_ptr<coordinator::DataDirLock> lock_;
  std::unique_ptr<coordinator::TxnStore> store_;
  std::unique_ptr<broker::Broker> broker_;
  std::unique_ptr<broker::GroupRegistry> groups_;
};

}  // namespace once::recover

#endif  // ONCE_TOOLS_RECOVER_SESSION_H_
