#include "broker/topic_metadata.h"

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "broker/topic_config.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "schema/coding.h"
#include "schema/crc32c.h"
#include "tests/testing/status_matchers.h"

namespace once::broker {
namespace {

using ::once::testing::IsOk;
using ::once::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TopicMetadata Sample() {
  TopicMetadata m;
  m.name = "orders.v2";
  m.config.partitions = 12;
  m.config.backend = Backend::kDisk;
  m.config.fsync = FsyncPolicy::kInterval;
  m.config.fsync_interval_ms = 250;
  m.config.retention_ms = 3'600'000;
  m.config.retention_bytes = int64_t{5} << 30;
  m.config.max_message_bytes = 65536;
  m.config.dedup_window_ms = 0;
  m.config.dedup_max_entries = 42;
  m.config.segment_bytes = 1 << 20;
  m.created_ms = 1'700'000'000'123;
  return m;
}

// Builds file bytes around `payload` with a correct CRC, to reach the checks
// that come after it.
std::string Frame(const std::string& payload, uint32_t version = kTopicMetadataVersion) {
  std::string out;
  PutFixed32(&out, kTopicMetadataMagic);
  PutFixed32(&out, version);
  PutFixed32(&out, static_cast<uint32_t>(payload.size()));
  uint32_t crc = crc32c::Value(out.data(), out.size());
  crc = crc32c::Extend(crc, payload.data(), payload.size());
  PutFixed32(&out, crc);
  return out + payload;
}

std::string PayloadOf(const TopicMetadata& m) {
  return EncodeTopicMetadata(m).substr(kTopicMetadataHeaderSize);
}

class TopicMetadataFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = ::testing::TempDir() + "/topic_metadata_test.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string dir_;
};

TEST(TopicMetadataTest, EncodeDecodeRoundTrip) {
  const TopicMetadata m = Sample();
  ONCE_ASSERT_OK_AND_ASSIGN(TopicMetadata got, DecodeTopicMetadata(EncodeTopicMetadata(m), "f"));
  EXPECT_EQ(got, m);
}

TEST(TopicMetadataTest, HeaderLayoutIsAsDocumented) {
  const std::string bytes = EncodeTopicMetadata(Sample());
  ASSERT_GE(bytes.size(), kTopicMetadataHeaderSize);
  EXPECT_EQ(bytes.substr(0, 4), "OTMF");
  EXPECT_EQ(DecodeFixed32(bytes.data() + 4), 1u);
  EXPECT_EQ(DecodeFixed32(bytes.data() + 8), bytes.size() - kTopicMetadataHeaderSize);
  EXPECT_EQ(bytes[kTopicMetadataHeaderSize], '{');
  EXPECT_THAT(bytes, HasSubstr("\"partitioner\":\"xxh64-seed0-mod\""));
  EXPECT_THAT(bytes, HasSubstr("\"backend\":\"disk\""));
  EXPECT_THAT(bytes, HasSubstr("\"fsync\":\"interval\""));
}

TEST(TopicMetadataTest, EveryFlippedBitIsDataLoss) {
  const std::string good = EncodeTopicMetadata(Sample());
  for (size_t i = 0; i < good.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = good;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_THAT(DecodeTopicMetadata(bad, "/d/topic.meta"),
                  StatusIs(absl::StatusCode::kDataLoss, HasSubstr("/d/topic.meta")))
          << "byte " << i << " bit " << bit;
    }
  }
}

TEST(TopicMetadataTest, EveryTruncationIsDataLoss) {
  const std::string good = EncodeTopicMetadata(Sample());
  for (size_t n = 0; n < good.size(); ++n) {
    EXPECT_THAT(DecodeTopicMetadata(good.substr(0, n), "f"), StatusIs(absl::StatusCode::kDataLoss))
        << "length " << n;
  }
  EXPECT_THAT(DecodeTopicMetadata(good + "x", "f"), StatusIs(absl::StatusCode::kDataLoss));
}

TEST(TopicMetadataTest, NewerVersionIsRefusedAsSuch) {
  EXPECT_THAT(DecodeTopicMetadata(Frame(PayloadOf(Sample()), 2), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("format version 2")));
}

TEST(TopicMetadataTest, MissingFieldIsNamed) {
  const std::string payload =
      absl::StrReplaceAll(PayloadOf(Sample()), {{"\"segment_bytes\"", "\"segment_bytez\""}});
  EXPECT_THAT(DecodeTopicMetadata(Frame(payload), "f"),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("segment_bytes"), HasSubstr("missing"))));
}

TEST(TopicMetadataTest, WrongTypeIsNamed) {
  const std::string payload =
      absl::StrReplaceAll(PayloadOf(Sample()), {{"\"partitions\":12", "\"partitions\":\"12\""}});
  EXPECT_THAT(DecodeTopicMetadata(Frame(payload), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("\"partitions\" is not an integer")));
}

TEST(TopicMetadataTest, UnknownFieldsAreIgnored) {
  std::string payload = PayloadOf(Sample());
  payload.insert(1, "\"added_later\":[1,2],");
  ONCE_ASSERT_OK_AND_ASSIGN(TopicMetadata got, DecodeTopicMetadata(Frame(payload), "f"));
  EXPECT_EQ(got, Sample());
}

TEST(TopicMetadataTest, OtherPartitionerIsRefused) {
  const std::string payload =
      absl::StrReplaceAll(PayloadOf(Sample()), {{"xxh64-seed0-mod", "murmur2"}});
  EXPECT_THAT(DecodeTopicMetadata(Frame(payload), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("murmur2")));
}

TEST(TopicMetadataTest, InvalidConfigInsideIsDataLoss) {
  const std::string payload = absl::StrReplaceAll(
      PayloadOf(Sample()), {{"\"max_message_bytes\":65536", "\"max_message_bytes\":0"}});
  EXPECT_THAT(DecodeTopicMetadata(Frame(payload), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("max_message_bytes")));
  EXPECT_THAT(DecodeTopicMetadata(Frame("[1,2]"), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not a JSON object")));
  EXPECT_THAT(DecodeTopicMetadata(Frame("{\"name\":"), "f"),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("not JSON")));
}

TEST_F(TopicMetadataFileTest, WriteThenReadRoundTripsAndLeavesNoTempFile) {
  ONCE_ASSERT_OK(WriteTopicMetadata(dir_, Sample()));
  ONCE_ASSERT_OK_AND_ASSIGN(TopicMetadata got, ReadTopicMetadata(dir_));
  EXPECT_EQ(got, Sample());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/topic.meta.tmp"));

  TopicMetadata changed = Sample();
  changed.config.partitions = 3;
  ONCE_ASSERT_OK(WriteTopicMetadata(dir_, changed));  // replaces
  ONCE_ASSERT_OK_AND_ASSIGN(got, ReadTopicMetadata(dir_));
  EXPECT_EQ(got.config.partitions, 3);
}

TEST_F(TopicMetadataFileTest, MissingFileIsNotFound) {
  EXPECT_THAT(ReadTopicMetadata(dir_),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir_ + "/topic.meta")));
}

TEST_F(TopicMetadataFileTest, DamagedFileIsDataLossNamingIt) {
  ONCE_ASSERT_OK(WriteTopicMetadata(dir_, Sample()));
  const std::string path = dir_ + "/topic.meta";
  {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(30);
    f.put('#');
  }
  EXPECT_THAT(ReadTopicMetadata(dir_),
              StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr(path), HasSubstr("CRC"))));
  std::filesystem::resize_file(path, 0);
  EXPECT_THAT(ReadTopicMetadata(dir_), StatusIs(absl::StatusCode::kDataLoss, HasSubstr(path)));
}

TEST_F(TopicMetadataFileTest, WriteIntoMissingDirectoryFailsNamingIt) {
  EXPECT_THAT(WriteTopicMetadata(dir_ + "/nope", Sample()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr(dir_ + "/nope/topic.meta.tmp")));
}

}  // namespace
}  // namespace once::broker
