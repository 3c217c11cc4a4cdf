#include "schema/command_line.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace once {
namespace {

std::vector<std::string> Normalize(std::vector<std::string> args) {
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  NormalizeFlagDashes(static_cast<int>(argv.size()), argv.data());
  std::vector<std::string> out;
  for (char* a : argv) out.emplace_back(a);
  return out;
}

TEST(CommandLineTest, DashesInFlagNamesBecomeUnderscores) {
  EXPECT_EQ(Normalize({"prog", "--data-dir=/a-b", "-max-count", "x-y"}),
            (std::vector<std::string>{"prog", "--data_dir=/a-b", "-max_count", "x-y"}));
}

TEST(CommandLineTest, StopsAtDoubleDash) {
  EXPECT_EQ(Normalize({"prog", "--a-b", "--", "--c-d"}),
            (std::vector<std::string>{"prog", "--a_b", "--", "--c-d"}));
}

TEST(CommandLineTest, ValuesAfterSpaceAreLeftAlone) {
  EXPECT_EQ(Normalize({"prog", "--key", "some-key"}),
            (std::vector<std::string>{"prog", "--key", "some-key"}));
}

}  // namespace
}  // namespace once
