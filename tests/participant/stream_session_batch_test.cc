// The streaming session's ack batching, driven frame by frame without a
// network: acks are held back until Flush() (the end of a burst) or until
// half the window is held; credits and nacks go out at once; nothing is
// sent before the subscription is open.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "boost/json/parse.hpp"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "participant/src/stream_session.h"
#include "tests/participant/ledger_testing.h"
#include "tests/testing/status_matchers.h"
#include "tests/testing/test_dir.h"

namespace once::participant {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::Pair;

// A delivery of `offset` under delivery tag `tag` (default: offset + 1,
// as a first pass over the partition numbers them).
std::string MessageFrame(uint64_t offset, const std::string& value, uint64_t tag = 0) {
  return absl::StrCat(R"({"type":"message","subscription":1,"id":"payments/0/)", offset,
                      R"(","partition":0,"offset":)", offset, R"(,"value":")", value,
                      R"(","delivery_tag":)", tag == 0 ? offset + 1 : tag,
                      R"(,"delivery_count":1})");
}

class StreamSessionBatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::FreshTestDir("once_stream_batch");
    ONCE_ASSERT_OK_AND_ASSIGN(resource_, testing::OpenLedger((dir_ / "ledger.db").string()));
  }
  void TearDown() override {
    session_.reset();
    resource_.reset();
    std::filesystem::remove_all(dir_);
  }

  // An open session (subscribe sent, subscribed received) of `window`.
  void Open(uint32_t window, Mode mode = Mode::kIdempotent) {
    options_.topic = "payments";
    options_.group = "ledger";
    options_.participant_id = "worker-1";
    options_.mode = mode;
    options_.window = window;
    SessionEnv env;
    env.options = &options_;
    env.resource = resource_.get();
    env.handler = &handler_;
    env.stats = &stats_;
    env.send = [this](std::string frame) { sent_.push_back(json::parse(frame).as_object()); };
    session_ = std::make_unique<StreamSession>(std::move(env));
    ONCE_ASSERT_OK(session_->Start());
    ONCE_ASSERT_OK(session_->OnFrame(R"({"type":"subscribed","subscription":1})", true));
    sent_.clear();  // the subscribe
  }

  // The frames of `type` sent so far.
  std::vector<json::object> Sent(absl::string_view type) {
    std::vector<json::object> out;
    for (const json::object& o : sent_) {
      if (o.at("type").as_string() == std::string_view(type.data(), type.size())) {
        out.push_back(o);
      }
    }
    return out;
  }
  // An ack's "up_to" (every tag held back up to it).
  static int64_t UpTo(const json::object& ack) {
    EXPECT_FALSE(ack.contains("tokens"));
    EXPECT_FALSE(ack.contains("delivery_tags"));
    return ack.at("up_to").to_number<int64_t>();
  }
  static std::vector<int64_t> Tags(const json::object& nack) {
    std::vector<int64_t> out;
    for (const json::value& t : nack.at("delivery_tags").as_array()) {
      out.push_back(t.to_number<int64_t>());
    }
    return out;
  }

  std::filesystem::path dir_;
  std::unique_ptr<SqliteResource> resource_;
  ParticipantOptions options_;
  Handler handler_ = testing::LedgerHandler;
  StatsBox stats_;
  std::unique_ptr<StreamSession> session_;
  std::vector<json::object> sent_;
};

TEST_F(StreamSessionBatchTest, ABurstIsAckedByOneFrameAtFlush) {
  Open(/*window=*/64);
  for (uint64_t i = 0; i < 5; ++i) {
    ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(i, "alice:1"), true));
  }
  // Applied (durably), credited one by one, but not acked yet.
  EXPECT_TRUE(Sent("ack").empty());
  ASSERT_EQ(Sent("credit").size(), 5u);
  for (const json::object& c : Sent("credit")) {
    EXPECT_EQ(c.at("credits").to_number<int64_t>(), 1);
  }
  EXPECT_TRUE(session_->pending());
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("alice", 5)));
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_FALSE(session_->pending());
  ASSERT_EQ(Sent("ack").size(), 1u);
  EXPECT_EQ(Sent("ack")[0].at("subscription").to_number<int64_t>(), 1);
  EXPECT_EQ(UpTo(Sent("ack")[0]), 5);  // tags 1..5
  // Nothing more to send.
  const size_t frames = sent_.size();
  ONCE_ASSERT_OK(session_->Flush());
  EXPECT_EQ(sent_.size(), frames);
  EXPECT_EQ(stats_.Get().acks, 5u);
}

TEST_F(StreamSessionBatchTest, HalfTheWindowHeldBackFlushesWithoutWaiting) {
  Open(/*window=*/4);  // at most 2 held back
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "bob:1"), true));
  EXPECT_TRUE(Sent("ack").empty());
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(1, "bob:1"), true));
  ASSERT_EQ(Sent("ack").size(), 1u);
  EXPECT_EQ(UpTo(Sent("ack")[0]), 2);
  EXPECT_EQ(Sent("credit").size(), 2u);
  EXPECT_FALSE(session_->pending());
}

TEST_F(StreamSessionBatchTest, AWindowOfOneAcksEveryMessage) {
  Open(/*window=*/1);
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "bob:1"), true));
  ASSERT_EQ(Sent("ack").size(), 1u);
  ASSERT_EQ(Sent("credit").size(), 1u);
  EXPECT_FALSE(session_->pending());
}

TEST_F(StreamSessionBatchTest, NacksAndCreditsGoAtOnce) {
  Open(/*window=*/64, Mode::kAtLeastOnce);
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "carol:1"), true));
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(1, "fail"), true));
  ASSERT_EQ(Sent("nack").size(), 1u);
  EXPECT_THAT(Tags(Sent("nack")[0]), ElementsAre(2));
  EXPECT_TRUE(Sent("nack")[0].at("requeue").as_bool());
  EXPECT_EQ(Sent("credit").size(), 2u);
  EXPECT_TRUE(Sent("ack").empty());
  ONCE_ASSERT_OK(session_->Flush());
  ASSERT_EQ(Sent("ack").size(), 1u);
  // Up to the last held back tag: 1 (the nacked 2 is not held back).
  EXPECT_EQ(UpTo(Sent("ack")[0]), 1);
}

// A nacked tag between held-back ones: "up_to" the highest covers them
// and not the nacked one, which the nack already took off the server's
// list.
TEST_F(StreamSessionBatchTest, UpToSpansANackedTag) {
  Open(/*window=*/64, Mode::kAtLeastOnce);
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "carol:1"), true));
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(1, "fail"), true));
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(2, "carol:1"), true));
  ONCE_ASSERT_OK(session_->Flush());
  ASSERT_EQ(Sent("nack").size(), 1u);
  ASSERT_EQ(Sent("ack").size(), 1u);
  // The nack was sent before the ack: the server settles it first.
  size_t nack_at = 0, ack_at = 0;
  for (size_t i = 0; i < sent_.size(); ++i) {
    if (sent_[i].at("type").as_string() == "nack") nack_at = i;
    if (sent_[i].at("type").as_string() == "ack") ack_at = i;
  }
  EXPECT_LT(nack_at, ack_at);
  EXPECT_EQ(UpTo(Sent("ack")[0]), 3);
  EXPECT_EQ(stats_.Get().acks, 2u);
}

TEST_F(StreamSessionBatchTest, AppliedDuplicatesAreAckedInTheBatchToo) {
  Open(/*window=*/64);
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "dave:3"), true));
  // The same message again (redelivered): skipped, but acked.
  ONCE_ASSERT_OK(session_->OnFrame(MessageFrame(0, "dave:3", /*tag=*/9), true));
  ONCE_ASSERT_OK(session_->Flush());
  ASSERT_EQ(Sent("ack").size(), 1u);
  EXPECT_EQ(UpTo(Sent("ack")[0]), 9);
  EXPECT_EQ(stats_.Get().acks, 2u);
  EXPECT_THAT(*testing::Balances(resource_.get()), ElementsAre(Pair("dave", 3)));
}

TEST_F(StreamSessionBatchTest, FlushBeforeSubscribedSendsNothing) {
  options_.topic = "payments";
  options_.group = "ledger";
  options_.participant_id = "worker-1";
  options_.mode = Mode::kIdempotent;
  SessionEnv env;
  env.options = &options_;
  env.resource = resource_.get();
  env.handler = &handler_;
  env.stats = &stats_;
  env.send = [this](std::string frame) { sent_.push_back(json::parse(frame).as_object()); };
  StreamSession s(std::move(env));
  ONCE_ASSERT_OK(s.Start());
  sent_.clear();
  ONCE_ASSERT_OK(s.Flush());
  EXPECT_TRUE(sent_.empty());
  EXPECT_FALSE(s.pending());
}

}  // namespace
}  // namespace once::participant
