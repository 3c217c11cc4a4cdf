#include "tools/recover_session.h"

#include <filesystem>
#include <system_error>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "schema/sqlite.h"

namespace once::recover {

absl::StatusOr<std::unique_ptr<Session>> Session::Open(const std::string& data_dir) {
  std::error_code ec;
  const auto status = std::filesystem::status(data_dir, ec);
  if (ec || !std::filesystem::exists(status)) {
    return absl::NotFoundError(absl::StrCat("data directory ", data_dir, " does not exist"));
  }
  if (!std::filesystem::is_directory(status)) {
    return absl::FailedPreconditionError(
        absl::StrCat("data directory ", data_dir, " is not a directory"));
  }
  std::unique_ptr<Session> session(new Session());
  session->data_dir_ = data_dir;
  session->db_path_ = (std::filesystem::path(data_dir) / "coordinator.db").string();
  absl::StatusOr<std::unique_ptr<coordinator::DataDirLock>> lock =
      coordinator::DataDirLock::Acquire(data_dir);
  if (!lock.ok()) {
    if (lock.status().code() == absl::StatusCode::kFailedPrecondition &&
        absl::StrContains(lock.status().message(), "in use")) {
      return absl::FailedPreconditionError(absl::StrCat(
          "refusing to work on ", data_dir, ": it is locked by a running onced; stop it first (",
          lock.status().message(), ")"));
    }
    return lock.status();
  }
  session->lock_ = std::move(*lock);
  if (std::filesystem::exists(session->db_path_, ec)) {
    // Read the version first, without migrating: verify reports a schema
    // from a newer program instead of failing on it.
    sqlite::DatabaseOptions read_only;
    read_only.read_only = true;
    absl::StatusOr<std::unique_ptr<sqlite::Database>> db =
        sqlite::Database::Open(session->db_path_, read_only);
    if (!db.ok()) return db.status();
    absl::StatusOr<int64_t> version = (*db)->UserVersion();
    if (!version.ok()) return version.status();
    session->schema_version_ = *version;
    db->reset();
    if (session->schema_too_new()) return session;
    coordinator::TxnStoreOptions options;
    options.create_if_missing = false;
    absl::StatusOr<std::unique_ptr<coordinator::TxnStore>> store =
        coordinator::TxnStore::Open(session->db_path_, options);
    if (!store.ok()) return store.status();
    session->store_ = std::move(*store);
  }
  return session;
}

absl::Status Session::SchemaError() const {
  if (!schema_too_new()) return absl::OkStatus();
  return absl::FailedPreconditionError(absl::StrCat(
      db_path_, ": schema version ", schema_version_, " is newer than this once-recover knows (",
      coordinator::TxnStore::LatestSchemaVersion(), "); use the once-recover of that onced"));
}

bool Session::IsLockedError(const absl::Status& status) {
  return status.code() == absl::StatusCode::kFailedPrecondition &&
         absl::StrContains(status.message(), "locked by a running onced");
}

absl::Status Session::OpenBroker() {
  if (groups_ != nullptr) return absl::OkStatus();
  broker::BrokerOptions options;
  options.data_dir = data_dir_;
  absl::StatusOr<std::unique_ptr<broker::Broker>> broker = broker::Broker::Open(options);
  if (!broker.ok()) {
    return absl::Status(broker.status().code(), absl::StrCat("opening the broker in ", data_dir_,
                                                             ": ", broker.status().message()));
  }
  absl::StatusOr<std::unique_ptr<broker::GroupRegistry>> groups =
      broker::GroupRegistry::Open(broker->get(), broker::GroupRegistryOptions());
  if (!groups.ok()) {
    return absl::Status(groups.status().code(),
                        absl::StrCat("opening the consumer groups in ", data_dir_, ": ",
                                     groups.status().message()));
  }
  broker_ = std::move(*broker);
  groups_ = std::move(*groups);
  return absl::OkStatus();
}

Session::~Session() {
  if (store_ != nullptr) store_->Close();
  store_.reset();
  groups_.reset();
  broker_.reset();
  lock_.reset();
}

}  // namespace once::recover
