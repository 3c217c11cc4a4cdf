#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "once/participant.h"
#include "participant/src/ws_client.h"
#include "tests/testing/status_matchers.h"

namespace once {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

absl::Status Noop(const Message&, Staging&) { return absl::OkStatus(); }

ParticipantOptions Valid() {
  ParticipantOptions o;
  o.topic = "t";
  o.group = "g";
  o.participant_id = "p";
  o.journal_path = ":memory:";
  return o;
}

TEST(WsUrlTest, ParsesHostPortAndTarget) {
  ONCE_ASSERT_OK_AND_ASSIGN(participant::WsUrl u,
                            participant::ParseWsUrl("ws://127.0.0.1:8080/v1/ws"));
  EXPECT_EQ(u.host, "127.0.0.1");
  EXPECT_EQ(u.port, "8080");
  EXPECT_EQ(u.target, "/v1/ws");
  ONCE_ASSERT_OK_AND_ASSIGN(u, participant::ParseWsUrl("ws://example"));
  EXPECT_EQ(u.port, "80");
  EXPECT_EQ(u.target, "/");
}

TEST(WsUrlTest, RefusesWhatItCannotSpeak) {
  EXPECT_THAT(participant::ParseWsUrl("wss://h/v1/ws"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ws://")));
  EXPECT_THAT(participant::ParseWsUrl("http://h/"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(participant::ParseWsUrl("ws://h:0/"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(participant::ParseWsUrl("ws://h:99999/"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("port")));
  EXPECT_THAT(participant::ParseWsUrl("ws://h:x/"), StatusIs(absl::StatusCode::kInvalidArgument));
  EXPECT_THAT(participant::ParseWsUrl("ws://:80/"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("no host")));
}

TEST(ParticipantOptionsTest, ValidOptionsCreateAndStopWithoutStart) {
  ONCE_ASSERT_OK_AND_ASSIGN(auto p, Participant::Create(Valid(), nullptr, Noop));
  p->Stop();  // never started: nothing to do
}

TEST(ParticipantOptionsTest, StartTwiceIsRefused) {
  ParticipantOptions o = Valid();
  o.url = "ws://127.0.0.1:1/v1/ws";  // nothing listens: it keeps retrying
  ONCE_ASSERT_OK_AND_ASSIGN(auto p, Participant::Create(o, nullptr, Noop));
  ONCE_ASSERT_OK(p->Start());
  EXPECT_THAT(p->Start(), StatusIs(absl::StatusCode::kFailedPrecondition));
  p->Stop();
  p->Stop();
}

TEST(ParticipantOptionsTest, InvalidOptionsAreRefusedWithTheirName) {
  struct Bad {
    void (*mutate)(ParticipantOptions&);
    const char* mentions;
  };
  const Bad cases[] = {
      {[](ParticipantOptions& o) { o.topic.clear(); }, "topic"},
      {[](ParticipantOptions& o) { o.participant_id.clear(); }, "participant_id"},
      {[](ParticipantOptions& o) { o.participant_id = std::string(256, 'x'); }, "participant_id"},
      {[](ParticipantOptions& o) { o.window = 0; }, "window"},
      {[](ParticipantOptions& o) { o.window = 1025; }, "window"},
      {[](ParticipantOptions& o) { o.backoff_min_ms = 0; }, "backoff"},
      {[](ParticipantOptions& o) { o.backoff_max_ms = 1; }, "backoff"},
      {[](ParticipantOptions& o) { o.backoff_jitter = 1.5; }, "jitter"},
      {[](ParticipantOptions& o) { o.reask_interval_ms = 0; }, "reask"},
      {[](ParticipantOptions& o) { o.url = "tcp://x"; }, "ws://"},
      {[](ParticipantOptions& o) { o.journal_path.clear(); }, "journal_path"},
  };
  for (const Bad& bad : cases) {
    ParticipantOptions o = Valid();
    bad.mutate(o);
    EXPECT_THAT(Participant::Create(o, nullptr, Noop).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(bad.mentions)))
        << bad.mentions;
  }
  EXPECT_THAT(Participant::Create(Valid(), nullptr, nullptr).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("handler")));
}

}  // namespace
}  // namespace once
