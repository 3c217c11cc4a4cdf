#include "coordinator/data_dir_lock.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

class DataDirLockTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/lock_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(root_); }
  std::string root_;
};

TEST_F(DataDirLockTest, CreatesTheDirectoryAndWritesThePid) {
  const std::string dir = root_ + "/a/b";
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DataDirLock> lock, DataDirLock::Acquire(dir));
  EXPECT_EQ(lock->path(), dir + "/LOCK");
  std::ifstream in(lock->path());
  std::string pid;
  in >> pid;
  EXPECT_EQ(pid, absl::StrCat(getpid()));
}

TEST_F(DataDirLockTest, ASecondHolderIsRefusedWithThePid) {
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DataDirLock> lock, DataDirLock::Acquire(root_));
  // flock locks are per open file description: a second Acquire in this
  // process conflicts just as another process would.
  absl::StatusOr<std::unique_ptr<DataDirLock>> second = DataDirLock::Acquire(root_);
  EXPECT_THAT(second, StatusIs(absl::StatusCode::kFailedPrecondition,
                               HasSubstr(absl::StrCat("pid ", getpid()))));
  EXPECT_THAT(second.status().message(), HasSubstr("in use by another onced"));
}

TEST_F(DataDirLockTest, ReleasedOnDestruction) {
  { ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DataDirLock> lock, DataDirLock::Acquire(root_)); }
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DataDirLock> again, DataDirLock::Acquire(root_));
}

TEST_F(DataDirLockTest, ADeadHoldersLockIsFree) {
  // A child takes the lock and dies without releasing it: the kernel does.
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    absl::StatusOr<std::unique_ptr<DataDirLock>> lock = DataDirLock::Acquire(root_);
    _exit(lock.ok() ? 0 : 1);  // no destructor runs
  }
  int status = 0;
  ASSERT_EQ(waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  ASSERT_EQ(WEXITSTATUS(status), 0);
  ONCE_ASSERT_OK_AND_ASSIGN(std::unique_ptr<DataDirLock> lock, DataDirLock::Acquire(root_));
}

TEST_F(DataDirLockTest, UncreatableDirectoryIsAnError) {
  const std::string file = root_ + "/file";
  std::ofstream(file) << "x";
  EXPECT_THAT(DataDirLock::Acquire(file + "/sub"),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr(file)));
}

}  // namespace
}  // namespace once::coordinator
