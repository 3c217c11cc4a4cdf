// The participant-session glue without a network: frames in (text), frames
// out (text through the hooks), the engine behind it; and the engine's
// metrics text.
#include "coordinator/participant_session.h"

#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "boost/json/parse.hpp"
#include "coordinator/txn_coordinator.h"
#include "coordinator/txn_metrics.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace once::coordinator {
namespace {

using ::testing::HasSubstr;

class ParticipantSessionTest : public ::testing::Test {
 protected:
  // Work queued by the session runs when the test says so (Drain).
  ParticipantSession::Hooks Hooks() {
    ParticipantSession::Hooks h;
    h.send = [this](std::string text) { sent_.push_back(std::move(text)); };
    h.close = [this](std::string text) {
      sent_.push_back(std::move(text));
      ++closes_;
    };
    h.run = [this](std::function<void()> work) { work_.push_back(std::move(work)); };
    return h;
  }
  void Drain() {
    for (int i = 0; i < 100 && !work_.empty(); ++i) {
      auto w = std::move(work_.front());
      work_.pop_front();
      w();
    }
    ASSERT_TRUE(work_.empty());
  }
  std::string Code(size_t i) {
    return std::string(boost::json::parse(sent_.at(i)).at("code").as_string());
  }

  std::vector<std::string> sent_;
  int closes_ = 0;
  std::deque<std::function<void()>> work_;
};

TEST_F(ParticipantSessionTest, WithoutAnEngineEveryFrameIsNotReady) {
  auto s = std::make_shared<ParticipantSession>(nullptr, Hooks());
  s->HandleFrame(R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[]})");
  Drain();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(Code(0), "not_ready");
}

class EngineSessionTest : public ParticipantSessionTest {
 protected:
  EngineSessionTest()
      : engine_(
            nullptr,
            [](absl::string_view,
               absl::string_view) -> absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> {
              return absl::NotFoundError("no topic \"t\"");
            },
            [](std::function<void()> w) { w(); }, TxnCoordinatorOptions()) {}
  TxnCoordinator engine_;
};

TEST_F(EngineSessionTest, MalformedAndMisdirectedFramesAreAnsweredInOrder) {
  auto s = std::make_shared<ParticipantSession>(&engine_, Hooks());
  s->HandleFrame("{not json");
  s->HandleFrame(R"({"type":"vote","txn":"1.1","epoch":1,"generation":1,"vote":"maybe"})");
  s->HandleFrame(R"({"type":"commit","txn":"1.1","epoch":1,"generation":1})");
  s->HandleFrame(R"({"type":"done","txn":"1.1","epoch":1,"generation":1})");
  EXPECT_TRUE(sent_.empty());  // all behind the first on the worker pool, the done too
  Drain();
  ASSERT_EQ(sent_.size(), 4u);
  EXPECT_EQ(Code(0), "invalid_field");
  EXPECT_EQ(Code(1), "invalid_field");
  EXPECT_EQ(Code(2), "unexpected_frame");
  EXPECT_EQ(Code(3), "hello_required");
  EXPECT_EQ(closes_, 0);
}

TEST_F(EngineSessionTest, VotesAndDonesAreHandledAtOnceWhenNothingIsQueued) {
  auto s = std::make_shared<ParticipantSession>(&engine_, Hooks());
  s->HandleFrame(R"({"type":"vote","txn":"1.1","epoch":1,"generation":1,"vote":"yes"})");
  s->HandleFrame(R"({"type":"done","txn":"1.1","epoch":1,"generation":1})");
  EXPECT_TRUE(work_.empty());  // no hand-off to a worker
  ASSERT_EQ(sent_.size(), 2u);
  EXPECT_EQ(Code(0), "hello_required");
  EXPECT_EQ(Code(1), "hello_required");
}

TEST_F(EngineSessionTest, VotesAndDonesWaitBehindTheFramesQueuedBeforeThem) {
  auto s = std::make_shared<ParticipantSession>(&engine_, Hooks());
  s->HandleFrame(R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[],)");
  s->HandleFrame(R"({"type":"vote","txn":"1.1","epoch":1,"generation":1,"vote":"yes"})");
  s->HandleFrame(R"({"type":"done","txn":"1.1","epoch":1,"generation":1})");
  EXPECT_TRUE(sent_.empty());  // the malformed hello went to the worker pool first
  Drain();
  ASSERT_EQ(sent_.size(), 3u);
  EXPECT_EQ(Code(0), "invalid_field");
  EXPECT_EQ(Code(1), "hello_required");
  EXPECT_EQ(Code(2), "hello_required");
  // Idle again: the next done is answered at once.
  s->HandleFrame(R"({"type":"done","txn":"1.2","epoch":1,"generation":1})");
  EXPECT_TRUE(work_.empty());
  EXPECT_EQ(sent_.size(), 4u);
}

TEST_F(EngineSessionTest, RefusedHelloClosesAndLaterSendsAreDropped) {
  auto s = std::make_shared<ParticipantSession>(&engine_, Hooks());
  s->HandleFrame(R"({"type":"hello","participant":"p","topic":"t","group":"g","in_doubt":[]})");
  Drain();
  ASSERT_EQ(sent_.size(), 1u);
  EXPECT_EQ(Code(0), "group_not_found");
  EXPECT_EQ(boost::json::parse(sent_[0]).at("status").as_int64(), 404);
  EXPECT_EQ(closes_, 1);
  s->Disconnected();
  Drain();
  s->Send(protocol::Commit{"1.1", 1, 1});
  EXPECT_EQ(sent_.size(), 1u);
}

TEST(TxnMetricsTest, RendersEveryFamily) {
  TxnMetrics m;
  m.ObservePrepare(0.002);
  m.ObserveCommit(0.004);
  m.CountAbort("vote_no");
  m.CountAbort("vote_no");
  m.CountCommitted();
  m.CountDone();
  std::string out;
  m.Render(TxnGauges{1, 2, 3, 5}, TxnStoreCounters{4, 10}, &out);
  EXPECT_THAT(out, HasSubstr("once_txn_state{state=\"preparing\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_state{state=\"voted_yes\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_state{state=\"committed\"} 3\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_in_doubt 5\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_decisions_per_commit 2.5\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_aborts_total{reason=\"vote_no\"} 2\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_prepare_seconds_count 1\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_commit_seconds_bucket{le=\"0.005\"} 1\n"));
  EXPECT_THAT(out, HasSubstr("once_txn_done_total 1\n"));
  EXPECT_EQ(m.aborts("vote_no"), 2);
  EXPECT_EQ(m.aborts("hello"), 0);
}

}  // namespace
}  // namespace once::coordinator
