#include "coordinator/txn_state.h"

#include <map>
#include <string>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/testing/status_matchers.h"

namespace once::coordinator {
namespace {

using ::once::testing::StatusIs;
using ::testing::HasSubstr;

const std::vector<TxnState>& AllStates() {
  static const auto* states =
      new std::vector<TxnState>{TxnState::kPreparing, TxnState::kVotedYes, TxnState::kCommitted,
                                TxnState::kDone, TxnState::kAborted};
  return *states;
}

const std::vector<TxnEvent>& AllEvents() {
  static const auto* events = new std::vector<TxnEvent>{TxnEvent::kVoteYes,
                                                        TxnEvent::kVoteNo,
                                                        TxnEvent::kTimeout,
                                                        TxnEvent::kDisconnect,
                                                        TxnEvent::kHelloPresumedAbort,
                                                        TxnEvent::kDecideCommit,
                                                        TxnEvent::kPinRefused,
                                                        TxnEvent::kDone,
                                                        TxnEvent::kForceCommit,
                                                        TxnEvent::kForceAbort};
  return *events;
}

// The legal pairs, written out from the contract (shared2pc, DESIGN.md §2)
// independently of the implementation's switch.
const std::map<std::pair<TxnState, TxnEvent>, TxnState>& Legal() {
  using S = TxnState;
  using E = TxnEvent;
  static const auto* legal = new std::map<std::pair<TxnState, TxnEvent>, TxnState>{
      {{S::kPreparing, E::kVoteYes}, S::kVotedYes},
      {{S::kPreparing, E::kVoteNo}, S::kAborted},
      {{S::kPreparing, E::kTimeout}, S::kAborted},
      {{S::kPreparing, E::kDisconnect}, S::kAborted},
      {{S::kPreparing, E::kHelloPresumedAbort}, S::kAborted},
      {{S::kPreparing, E::kForceAbort}, S::kAborted},
      {{S::kVotedYes, E::kDecideCommit}, S::kCommitted},
      {{S::kVotedYes, E::kForceCommit}, S::kCommitted},
      {{S::kVotedYes, E::kPinRefused}, S::kAborted},
      {{S::kVotedYes, E::kTimeout}, S::kAborted},
      {{S::kVotedYes, E::kDisconnect}, S::kAborted},
      {{S::kVotedYes, E::kHelloPresumedAbort}, S::kAborted},
      {{S::kVotedYes, E::kForceAbort}, S::kAborted},
      {{S::kCommitted, E::kDone}, S::kDone},
  };
  return *legal;
}

TEST(TxnStateTest, EveryStateEventPair) {
  int legal = 0;
  int illegal = 0;
  for (TxnState from : AllStates()) {
    for (TxnEvent event : AllEvents()) {
      SCOPED_TRACE(std::string(TxnStateName(from)) + " x " + std::string(TxnEventName(event)));
      absl::StatusOr<TxnState> to = Transition(from, event);
      auto it = Legal().find({from, event});
      if (it != Legal().end()) {
        ASSERT_TRUE(to.ok()) << to.status();
        EXPECT_EQ(*to, it->second);
        ++legal;
      } else {
        EXPECT_THAT(to.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr(std::string(TxnEventName(event)))));
        EXPECT_THAT(std::string(to.status().message()), HasSubstr(std::string(TxnStateName(from))));
        ++illegal;
      }
    }
  }
  EXPECT_EQ(legal, 14);
  EXPECT_EQ(illegal, 5 * 10 - 14);
}

TEST(TxnStateTest, NothingAbortsAfterTheCommitPoint) {
  for (TxnEvent event :
       {TxnEvent::kForceAbort, TxnEvent::kVoteNo, TxnEvent::kTimeout, TxnEvent::kDisconnect,
        TxnEvent::kHelloPresumedAbort, TxnEvent::kPinRefused}) {
    EXPECT_THAT(Transition(TxnState::kCommitted, event).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition,
                         HasSubstr("the outcome can only be commit")));
  }
}

TEST(TxnStateTest, TerminalStatesRefuseEverything) {
  for (TxnState from : {TxnState::kDone, TxnState::kAborted}) {
    for (TxnEvent event : AllEvents()) {
      EXPECT_THAT(Transition(from, event).status(),
                  StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("terminal")));
    }
  }
}

TEST(TxnStateTest, StoredNumbersNeverChange) {
  EXPECT_EQ(static_cast<int>(TxnState::kPreparing), 1);
  EXPECT_EQ(static_cast<int>(TxnState::kVotedYes), 2);
  EXPECT_EQ(static_cast<int>(TxnState::kCommitted), 3);
  EXPECT_EQ(static_cast<int>(TxnState::kDone), 4);
  EXPECT_EQ(static_cast<int>(TxnState::kAborted), 5);
  for (TxnState s : AllStates()) {
    EXPECT_EQ(TxnStateFromNumber(static_cast<int64_t>(s)), s);
  }
  EXPECT_EQ(TxnStateFromNumber(0), std::nullopt);
  EXPECT_EQ(TxnStateFromNumber(6), std::nullopt);
  EXPECT_EQ(TxnStateFromNumber(-3), std::nullopt);
}

TEST(TxnStateTest, NamesRoundTrip) {
  const std::vector<std::string> names = {"preparing", "voted_yes", "committed", "done", "aborted"};
  for (size_t i = 0; i < AllStates().size(); ++i) {
    EXPECT_EQ(TxnStateName(AllStates()[i]), names[i]);
    EXPECT_EQ(ParseTxnState(names[i]), AllStates()[i]);
  }
  EXPECT_EQ(ParseTxnState(""), std::nullopt);
  EXPECT_EQ(ParseTxnState("Committed"), std::nullopt);
  EXPECT_EQ(ParseTxnState("commit"), std::nullopt);
  EXPECT_EQ(TxnStateName(static_cast<TxnState>(9)), "unknown");
}

TEST(TxnStateTest, OnlyCommittedAndDoneAreDurable) {
  for (TxnState s : AllStates()) {
    EXPECT_EQ(IsDurable(s), s == TxnState::kCommitted || s == TxnState::kDone) << TxnStateName(s);
  }
}

}  // namespace
}  // namespace once::coordinator
