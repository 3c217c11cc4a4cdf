// A fresh, empty directory for one test.
#ifndef ONCE_TESTS_TESTING_TEST_DIR_H_
#define ONCE_TESTS_TESTING_TEST_DIR_H_

#include <unistd.h>

#include <filesystem>
#include <string>

#include "gtest/gtest.h"

namespace once::testing {

// <temp dir>/<prefix>_<pid>_<name>, emptied and created; `name` defaults
// to the running test's name (a parameterized test passes its own). The
// pid keeps concurrent test binaries apart. The caller removes it.
inline std::filesystem::path FreshTestDir(const std::string& prefix, std::string name = "") {
  if (name.empty()) name = ::testing::UnitTest::GetInstance()->current_test_info()->name();
  const std::filesystem::path dir = std::filesystem::temp_directory_path() /
                                    (prefix + "_" + std::to_string(::getpid()) + "_" + name);
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  return dir;
}

}  // namespace once::testing

#endif  // ONCE_TESTS_TESTING_TEST_DIR_H_
