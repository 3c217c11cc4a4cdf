// The group store's schema migration 2 (schema/groups.sql: the
// exactly-once batching settings), on a database written at version 1,
// and the settings' round trip and load-time checks.
#include <stdlib.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "broker/group_config.h"
#include "broker/group_store.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/groups_sql.h"
#include "schema/sqlite.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class GroupStoreMigrationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/once_group_store_migration_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string path() const { return dir_ + "/groups.db"; }

  // A database as the version-1 program left it: migration 1 only, a
  // token secret, a boot epoch, two groups (one exactly-once) and their
  // partitions, acked ranges and delivery counts.
  void WriteVersion1Database() {
    ONCE_ASSERT_OK_AND_ASSIGN(std::vector<sqlite::Migration> all,
                              sqlite::ParseMigrations(schema::GroupsSql(), "schema/groups.sql"));
    ASSERT_GE(all.size(), 2u);
    ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<sqlite::Database> db, sqlite::Database::Open(path()));
    ONCE_ASSERT_OK_AND_ASSIGN(int version, sqlite::Migrate(db.get(), {all.data(), 1}));
    ASSERT_EQ(version, 1);
    ONCE_ASSERT_OK(db->Exec(
        "INSERT INTO meta (key, value) VALUES ('token_secret', zeroblob(192)), "
        "('boot_epoch', 4);"
        "INSERT INTO groups (group_id, topic, name, mode, guarantee, ack_timeout_ms, "
        "max_deliveries, dead_letter_topic, prefetch, start_kind, start_value, "
        "session_timeout_ms, backoff_base_ms, backoff_max_ms, created_ms) VALUES "
        "(3, 'orders', 'billing', 1, 3, 45000, 7, '', 250, 1, 0, 30000, 0, 60000, 1700000000000),"
        "(5, 'orders', 'audit', 1, 1, 30000, 5, 'parked', 100, 3, 12, 30000, 1000, 60000, 17);"
        "INSERT INTO partitions VALUES (3, 0, 10, 20, 9, 1), (3, 1, 0, 4, 0, 0), "
        "(5, 0, 12, 12, 0, 0);"
        "INSERT INTO acked_ranges VALUES (3, 0, 12, 15);"
        "INSERT INTO delivery_counts VALUES (3, 0, 10, 3);"));
  }

  std::string dir_;
};

TEST_F(GroupStoreMigrationTest, Version1GroupsGetUnsetSettingsAndLoseNothing) {
  WriteVersion1Database();
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  EXPECT_EQ(store->boot_epoch(), 5u);
  EXPECT_EQ(store->token_secret(), std::string(192, '\0'));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredGroup> groups, store->LoadGroups());
  ASSERT_EQ(groups.size(), 2u);

  const StoredGroup& billing = groups[0];
  EXPECT_EQ(billing.group_id, 3);
  EXPECT_EQ(billing.topic, "orders");
  EXPECT_EQ(billing.name, "billing");
  EXPECT_EQ(billing.created_ms, 1700000000000);
  GroupConfig expected;
  expected.guarantee = Guarantee::kExactlyOnce;
  expected.ack_timeout_ms = 45000;
  expected.max_deliveries = 7;
  expected.prefetch = 250;
  expected.backoff_base_ms = 0;
  EXPECT_EQ(billing.config, expected);  // txn_batch_max, txn_linger_ms unset
  EXPECT_FALSE(billing.config.txn_batch_max.has_value());
  EXPECT_FALSE(billing.config.txn_linger_ms.has_value());

  const StoredGroup& audit = groups[1];
  EXPECT_EQ(audit.name, "audit");
  EXPECT_EQ(audit.config.guarantee, Guarantee::kAtLeastOnce);
  EXPECT_EQ(audit.config.dead_letter_topic, "parked");
  EXPECT_EQ(audit.config.start, Position::Offset(12));
  EXPECT_FALSE(audit.config.txn_batch_max.has_value());

  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredPartition> parts, store->LoadPartitions(3));
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_EQ(parts[0].done_floor, 10);
  EXPECT_EQ(parts[0].dispatched, 20);
  EXPECT_EQ(parts[0].acked, 9);
  EXPECT_EQ(parts[0].dead_lettered, 1);
  EXPECT_THAT(parts[0].ranges, ElementsAre(OffsetRange{12, 15}));
  ASSERT_EQ(parts[0].counts.size(), 1u);
  EXPECT_EQ(parts[0].counts[0].first, 10);
  EXPECT_EQ(parts[0].counts[0].second, 3);
  EXPECT_EQ(parts[1].dispatched, 4);

  // A new group's id never reuses an old one (AUTOINCREMENT survived).
  StoredGroup g;
  g.topic = "orders";
  g.name = "fresh";
  ONCE_ASSERT_OK_AND_ASSIGN(int64_t id, store->CreateGroup(g, {}));
  EXPECT_GT(id, 5);
}

TEST_F(GroupStoreMigrationTest, MigrationIsRecordedOnceAndReopensCleanly) {
  WriteVersion1Database();
  { ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path())); }
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path()));
    ONCE_ASSERT_OK_AND_ASSIGN(int64_t version, db->UserVersion());
    EXPECT_EQ(version, 2);
  }
  // A second open runs no migration again (ADD COLUMN twice would fail).
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  EXPECT_EQ(store->boot_epoch(), 6u);
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredGroup> groups, store->LoadGroups());
  EXPECT_EQ(groups.size(), 2u);
}

TEST_F(GroupStoreMigrationTest, SettingsRoundTripSetAndUnset) {
  {
    ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
    StoredGroup set;
    set.topic = "t";
    set.name = "set";
    set.config.guarantee = Guarantee::kExactlyOnce;
    set.config.txn_batch_max = 250;
    set.config.txn_linger_ms = 0;  // set to 0 differs from unset
    ONCE_ASSERT_OK(store->CreateGroup(set, {0}).status());
    StoredGroup linger_only = set;
    linger_only.name = "linger-only";
    linger_only.config.txn_batch_max.reset();
    linger_only.config.txn_linger_ms = 1000;
    ONCE_ASSERT_OK(store->CreateGroup(linger_only, {0}).status());
    StoredGroup unset;
    unset.topic = "t";
    unset.name = "unset";
    unset.config.guarantee = Guarantee::kExactlyOnce;
    ONCE_ASSERT_OK(store->CreateGroup(unset, {0}).status());
  }
  ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
  ONCE_ASSERT_OK_AND_ASSIGN(std::vector<StoredGroup> groups, store->LoadGroups());
  ASSERT_EQ(groups.size(), 3u);
  EXPECT_EQ(groups[0].config.txn_batch_max, std::optional<int>(250));
  EXPECT_EQ(groups[0].config.txn_linger_ms, std::optional<int64_t>(0));
  EXPECT_EQ(groups[1].config.txn_batch_max, std::nullopt);
  EXPECT_EQ(groups[1].config.txn_linger_ms, std::optional<int64_t>(1000));
  EXPECT_EQ(groups[2].config.txn_batch_max, std::nullopt);
  EXPECT_EQ(groups[2].config.txn_linger_ms, std::nullopt);
}

// Values only a damaged file or a hand edit can hold are refused at load,
// naming the group and the setting.
TEST_F(GroupStoreMigrationTest, BadStoredSettingsAreDataLoss) {
  struct Case {
    const char* update;
    const char* setting;
  };
  for (const Case& c : {
           Case{"UPDATE groups SET txn_batch_max = 0 WHERE name = 'billing'", "txn_batch_max"},
           Case{"UPDATE groups SET txn_batch_max = 99999999999 WHERE name = 'billing'",
                "txn_batch_max"},
           Case{"UPDATE groups SET txn_linger_ms = 1001 WHERE name = 'billing'", "txn_linger_ms"},
           Case{"UPDATE groups SET txn_batch_max = 10 WHERE name = 'audit'", "txn_batch_max"},
       }) {
    SCOPED_TRACE(c.update);
    for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(path() + suffix);
    WriteVersion1Database();
    { ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path())); }
    {
      ONCE_ASSERT_OK_AND_ASSIGN(auto db, sqlite::Database::Open(path()));
      ONCE_ASSERT_OK(db->Exec(c.update));
    }
    ONCE_ASSERT_OK_AND_ASSIGN(auto store, GroupStore::Open(path()));
    EXPECT_THAT(store->LoadGroups(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(c.setting)));
  }
}

}  // namespace
}  // namespace once::broker
