// The participant sessions (hello, vote, disconnect) of the 2PC engine.
// The commit point and DONE are in txn_commit.cc; the delivery loops,
// timers and recovery in txn_delivery.cc; the operators' calls in
// txn_operator.cc.
#include "coordinator/txn_coordinator.h"

#include <algorithm>
#include <utility>

#include "absl/strings/str_cat.h"
#include "broker/group_config.h"
#include "coordinator/api_error.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace {

constexpr size_t kMaxInDoubt = 100'000;

protocol::Error ErrorFrame(absl::string_view code, std::string message, int status) {
  protocol::Error e;
  e.code = std::string(code);
  e.message = std::move(message);
  e.status = status;
  return e;
}

bool Undecided(TxnState s) { return s == TxnState::kPreparing || s == TxnState::kVotedYes; }

}  // namespace

absl::Status ValidateTxnCoordinatorOptions(const TxnCoordinatorOptions& o) {
  auto bad = [](absl::string_view what) {
    return absl::InvalidArgumentError(absl::StrCat("transaction coordinator: ", what));
  };
  if (o.batch_max < 1 || o.batch_max > broker::kMaxFetch) {
    return bad(absl::StrCat("batch_max ", o.batch_max, " is out of range 1..", broker::kMaxFetch));
  }
  if (o.linger_ms < 0 || o.linger_ms > broker::kMaxTxnLingerMs) {
    return bad(
        absl::StrCat("linger_ms ", o.linger_ms, " is out of range 0..", broker::kMaxTxnLingerMs));
  }
  if (o.vote_timeout_ms < 1 || o.vote_timeout_ms > broker::kMaxGroupTimeoutMs) {
    return bad(absl::StrCat("vote_timeout_ms ", o.vote_timeout_ms, " is out of range 1..",
                            broker::kMaxGroupTimeoutMs));
  }
  if (o.commit_retry_initial_ms < 1 || o.commit_retry_max_ms < o.commit_retry_initial_ms) {
    return bad("commit retry: need 1 <= commit_retry_initial_ms <= commit_retry_max_ms");
  }
  if (o.commit_write_retry_ms < 1) return bad("commit_write_retry_ms must be >= 1");
  if (o.max_window < 1 || o.max_window > 10'000) {
    return bad(absl::StrCat("max_window ", o.max_window, " is out of range 1..10000"));
  }
  if (o.hello_wait_ms < 0) return bad("hello_wait_ms must be >= 0");
  if (o.finish_delay_ms < 0 || o.finish_delay_ms > 1'000) {
    return bad(absl::StrCat("finish_delay_ms ", o.finish_delay_ms, " is out of range 0..1000"));
  }
  if (o.clock == nullptr) return bad("clock is null");
  return absl::OkStatus();
}

TxnCoordinator::TxnCoordinator(TxnStore* store, GroupLookup groups, Executor executor,
                               TxnCoordinatorOptions options, TxnMetrics* metrics)
    : store_(store),
      groups_(std::move(groups)),
      executor_(std::move(executor)),
      options_(options),
      metrics_(metrics),
      clock_(options.clock != nullptr ? options.clock : SystemClock()),
      life_(std::make_shared<Life>()) {
  absl::MutexLock lock(&life_->mu);
  life_->engine = this;
}

TxnCoordinator::~TxnCoordinator() {
  Shutdown();
  {
    // A listener that runs from now on finds no engine; wait for those
    // that are running.
    absl::MutexLock lock(&life_->mu);
    life_->engine = nullptr;
    life_->mu.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &life_->running));
  }
  absl::MutexLock lock(&mu_);
  for (auto& [key, loop] : loops_) loop->group->notifier().RemoveListener(loop->listener);
}

void TxnCoordinator::Shutdown() {
  absl::MutexLock lock(&mu_);
  shutdown_ = true;
}

uint64_t TxnCoordinator::epoch() const {
  absl::MutexLock lock(&mu_);
  return epoch_;
}

// ---- helpers

bool TxnCoordinator::Apply(Txn& txn, TxnEvent event) {
  absl::StatusOr<TxnState> next = Transition(txn.record.state, event);
  if (!next.ok()) {
    spdlog::error("txn {}: {}", txn.record.txn, next.status().ToString());
    return false;
  }
  txn.record.state = *next;
  return true;
}

TxnCoordinator::Connection* TxnCoordinator::CurrentLocked(const ParticipantKey& key) {
  auto it = connections_.find(key);
  return it == connections_.end() ? nullptr : &it->second;
}

bool TxnCoordinator::NoCommitInProgressLocked(const ParticipantKey& key) const {
  for (const auto& [id, t] : txns_) {
    if (t.committing && t.key == key) return false;
  }
  return true;
}

void TxnCoordinator::EraseLocked(const std::string& txn) { txns_.erase(txn); }

bool TxnCoordinator::OwnedByLocked(const Txn& txn, ParticipantChannel* channel) {
  if (txn.key == channels_.at(channel)) return true;
  channel->Send(ErrorFrame("wrong_participant",
                           absl::StrCat("txn ", txn.record.txn, " belongs to participant \"",
                                        std::get<2>(txn.key), "\""),
                           409));
  return false;
}

void TxnCoordinator::ReleaseInflightLocked(Txn& txn, Aftermath* after) {
  if (txn.prepared_generation == 0) return;
  Connection* c = CurrentLocked(txn.key);
  if (c != nullptr && c->generation == txn.prepared_generation) {
    --c->inflight;
    after->wake.push_back(c->loop);
  }
  txn.prepared_generation = 0;
}

void TxnCoordinator::Abort(Txn& txn, TxnEvent event, absl::string_view label,
                           absl::string_view message, bool send_frame, bool release,
                           Aftermath* after) {
  if (!Apply(txn, event)) return;
  if (send_frame) {
    Connection* c = CurrentLocked(txn.key);
    if (c != nullptr && c->generation == txn.prepared_generation) {
      protocol::Abort a;
      a.txn = txn.record.txn;
      a.epoch = epoch_;
      a.generation = c->generation;
      a.reason = std::string(message);
      c->channel->Send(std::move(a));
    }
  }
  if (release && txn.group != nullptr && !txn.handles.empty()) {
    after->nacks.emplace_back(txn.group, std::move(txn.handles));
  }
  if (metrics_ != nullptr) metrics_->CountAbort(label);
  spdlog::debug("txn {} aborted: {} ({})", txn.record.txn, std::string(label),
                std::string(message));
  ReleaseInflightLocked(txn, after);
  EraseLocked(txn.record.txn);
}

void TxnCoordinator::Run(Aftermath after) {
  for (auto& [group, handles] : after.nacks) {
    // Released only once durable: a release may dead-letter, and the group
    // store must hold nothing about records a crash could take away.
    AfterDurable(*group, handles, [group, handles](absl::Status s) {
      if (!s.ok()) {
        spdlog::warn("releasing {} lease(s) of group \"{}\" whose records are not durable: {}",
                     handles.size(), group->name(), s.ToString());
      }
      absl::StatusOr<broker::AckResult> r =
          group->NackHandles(handles, broker::NackAction::kRequeue);
      if (!r.ok()) {
        spdlog::warn("releasing {} lease(s) of group \"{}\": {}", handles.size(), group->name(),
                     r.status().ToString());
      } else if (!r->refused.empty()) {
        // Expired meanwhile (redelivered already) or pinned: nothing to do.
        spdlog::debug("releasing leases of group \"{}\": {}", group->name(),
                      r->ToStatus().ToString());
      }
    });
  }
  for (const std::string& txn : after.attempts) {
    if (absl::Status s = store_->RecordAttempt(txn); !s.ok()) {
      spdlog::debug("txn {}: counting a COMMIT attempt: {}", txn, s.ToString());
    }
  }
  for (const std::string& txn : after.commits) DecideCommit(txn);
  std::sort(after.wake.begin(), after.wake.end());
  after.wake.erase(std::unique(after.wake.begin(), after.wake.end()), after.wake.end());
  for (const auto& loop : after.wake) {
    if (loop != nullptr) Wake(loop);
  }
}

void TxnCoordinator::RunSoon(Aftermath after) {
  if (after.nacks.empty()) {
    Run(std::move(after));
    return;
  }
  executor_([this, after = std::move(after)]() mutable { Run(std::move(after)); });
}

TxnCoordinator::Connection* TxnCoordinator::CheckFrameLocked(ParticipantChannel* channel,
                                                             uint64_t epoch, uint64_t generation) {
  auto it = channels_.find(channel);
  if (it == channels_.end()) {
    channel->Send(ErrorFrame("hello_required",
                             "no participant session on this connection: send hello first", 400));
    return nullptr;
  }
  Connection* c = CurrentLocked(it->second);
  if (c == nullptr || c->channel.get() != channel || epoch != epoch_ ||
      generation != c->generation) {
    channel->Send(ErrorFrame(
        "stale_generation",
        absl::StrCat("frame of epoch ", epoch, " generation ", generation,
                     " refused: the coordinator's epoch is ", epoch_,
                     c != nullptr && c->channel.get() == channel
                         ? absl::StrCat(" and this connection's generation ", c->generation)
                         : std::string(" and this connection was fenced by a newer one")),
        409));
    return nullptr;
  }
  return c;
}

// ---- hello

void TxnCoordinator::OnHello(std::shared_ptr<ParticipantChannel> channel,
                             const protocol::Hello& hello) {
  if (hello.version != protocol::kTxnProtocolVersion) {
    channel->Close("unsupported_version",
                   absl::StrCat("hello: protocol version ", hello.version,
                                " is not supported; this coordinator speaks version ",
                                protocol::kTxnProtocolVersion));
    return;
  }
  if (absl::Status s = broker::ValidateConsumerId(hello.participant); !s.ok()) {
    channel->Close(kInvalidField, absl::StrCat("hello: participant: ", s.message()));
    return;
  }
  if (hello.window == 0) {
    channel->Close(kInvalidField, "hello: window must be at least 1");
    return;
  }
  if (hello.in_doubt.size() > kMaxInDoubt) {
    channel->Close(kInvalidField, absl::StrCat("hello: in_doubt lists ", hello.in_doubt.size(),
                                               " transactions; at most ", kMaxInDoubt));
    return;
  }
  absl::StatusOr<std::shared_ptr<broker::ConsumerGroup>> group = groups_(hello.topic, hello.group);
  if (!group.ok()) {
    // The registry's kNotFound names the topic or the group that is missing.
    channel->Close(absl::IsNotFound(group.status()) ? "group_not_found" : ApiCodeOf(group.status()),
                   absl::StrCat("hello: ", group.status().message()));
    return;
  }
  if ((*group)->config().guarantee != broker::Guarantee::kExactlyOnce) {
    channel->Close("not_exactly_once",
                   absl::StrCat("hello: group \"", hello.group, "\" of topic \"", hello.topic,
                                "\" is ", broker::GuaranteeName((*group)->config().guarantee),
                                "; participant sessions serve exactly-once groups only (use "
                                "subscribe for the others)"));
    return;
  }
  if ((*group)->config().mode == broker::GroupMode::kOrdered) {
    // Refused at group creation too (json_codec.cc): an ordered group's
    // rebalance rewinds deliveries pinned under a COMMIT record.
    channel->Close("not_supported",
                   absl::StrCat("hello: group \"", hello.group, "\" of topic \"", hello.topic,
                                "\" is ordered; exactly-once delivery is served for shared groups "
                                "only"));
    return;
  }
  const ParticipantKey key{hello.topic, hello.group, hello.participant};
  Aftermath after;
  // Per in-doubt id: the outcome decided under the lock, or nullopt when
  // the txn is not open (its record, if any, is looked up afterwards).
  std::vector<std::optional<protocol::Outcome>> outcomes(hello.in_doubt.size());
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_) {
      channel->Close("shutting_down", "the coordinator is shutting down");
      return;
    }
    if (channels_.contains(channel.get())) {
      channel->Send(ErrorFrame("hello_repeated", "hello was already sent on this connection", 409));
      return;
    }
    // Rule 2 of the model: every undecided txn of this participant must
    // be aborted in this step. One whose commit point is being written
    // (pin + group commit) cannot be taken back: wait until it is durable
    // (then it is answered commit).
    auto no_commit = [this, &key]()
                         ABSL_NO_THREAD_SAFETY_ANALYSIS { return NoCommitInProgressLocked(key); };
    if (!mu_.AwaitWithTimeout(absl::Condition(&no_commit),
                              absl::Milliseconds(options_.hello_wait_ms))) {
      channel->Close("unavailable",
                     absl::StrCat("hello: a commit decision of participant \"", hello.participant,
                                  "\" is still being written; say hello again later"));
      return;
    }
    if (Connection* old = CurrentLocked(key); old != nullptr) {
      old->channel->Close("fenced", absl::StrCat("participant \"", hello.participant,
                                                 "\" said hello on a newer connection"));
      // Its undecided txns go below; it stays in channels_ until it
      // disconnects, so that its late frames are answered stale_generation.
      ReleaseLingeringLocked(*old, &after);
      connections_.erase(key);
    }
    std::vector<std::string> undecided;
    for (const auto& [id, t] : txns_) {
      if (t.key == key && Undecided(t.record.state)) undecided.push_back(id);
    }
    for (const std::string& id : undecided) {
      Abort(txns_.at(id), TxnEvent::kHelloPresumedAbort, "hello",
            "the participant reconnected before the decision", /*send_frame=*/false,
            /*release=*/true, &after);
    }
    for (size_t i = 0; i < hello.in_doubt.size(); ++i) {
      auto it = txns_.find(hello.in_doubt[i]);
      if (it == txns_.end()) continue;  // closed (or never open): its record decides
      outcomes[i] = it->second.record.state == TxnState::kCommitted ? protocol::Outcome::kCommit
                                                                    : protocol::Outcome::kAbort;
    }
    Connection& c = connections_[key];
    c.channel = channel;
    c.generation = ++generations_[key];
    c.ordered = (*group)->config().mode == broker::GroupMode::kOrdered;
    c.window = c.ordered ? 1 : std::min(hello.window, options_.max_window);
    c.loop = LoopForLocked({hello.topic, hello.group}, *group);
    channels_[channel.get()] = key;
  }
  // A closed txn stays closed: its record (committed or done) or its
  // absence (presumed abort) cannot change any more.
  for (size_t i = 0; i < hello.in_doubt.size(); ++i) {
    if (outcomes[i].has_value()) continue;
    absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(hello.in_doubt[i]);
    if (!r.ok()) {
      spdlog::error("hello of \"{}\": looking up txn {}: {}", hello.participant, hello.in_doubt[i],
                    r.status().ToString());
      channel->Close("unavailable", "hello: the coordinator's store failed; say hello again later");
      Run(std::move(after));
      return;
    }
    const bool committed =
        r->has_value() && ((*r)->state == TxnState::kCommitted || (*r)->state == TxnState::kDone);
    outcomes[i] = committed ? protocol::Outcome::kCommit : protocol::Outcome::kAbort;
  }
  {
    absl::MutexLock lock(&mu_);
    Connection* c = CurrentLocked(key);
    if (c != nullptr && c->channel == channel) {
      protocol::Welcome w;
      w.epoch = epoch_;
      w.generation = c->generation;
      absl::flat_hash_map<std::string, bool> listed;
      for (size_t i = 0; i < hello.in_doubt.size(); ++i) {
        w.resolutions.push_back({hello.in_doubt[i], *outcomes[i]});
        listed[hello.in_doubt[i]] = true;
      }
      channel->Send(std::move(w));
      c->welcomed = true;
      // Committed txns of this participant: the listed ones were answered
      // in the welcome (COMMIT is re-sent on the timer until DONE); the
      // others get their COMMIT now.
      const int64_t now = clock_->NowMs();
      for (auto& [id, t] : txns_) {
        if (t.key != key || t.record.state != TxnState::kCommitted || t.finishing) continue;
        t.backoff_ms = options_.commit_retry_initial_ms;
        if (listed.contains(id)) {
          t.next_send_ms = now + t.backoff_ms;
        } else {
          SendCommitLocked(t, &after);
        }
      }
      after.wake.push_back(c->loop);
    }
  }
  Run(std::move(after));
}

// ---- votes

void TxnCoordinator::AnswerClosedTxn(ParticipantChannel* channel, const std::string& txn,
                                     uint64_t generation) {
  absl::StatusOr<std::optional<TxnRecord>> r = store_->Find(txn);
  if (!r.ok()) {
    spdlog::error("looking up txn {}: {}", txn, r.status().ToString());
    channel->Send(ErrorFrame("unavailable",
                             absl::StrCat("the outcome of txn ", txn, " could not be read: ",
                                          r.status().message(), "; ask again"),
                             503));
    return;
  }
  const uint64_t epoch = this->epoch();
  if (r->has_value() && ((*r)->state == TxnState::kCommitted || (*r)->state == TxnState::kDone)) {
    channel->Send(protocol::Commit{txn, epoch, generation});
  } else {
    channel->Send(protocol::Abort{txn, epoch, generation,
                                  "no open transaction and no COMMIT record (presumed abort)"});
  }
}

void TxnCoordinator::OnVote(ParticipantChannel* channel, const protocol::Vote& vote) {
  Aftermath after;
  bool commit = false;
  bool closed = false;
  uint64_t generation = 0;
  std::shared_ptr<ParticipantChannel> reply_to;  // `channel`, kept alive for a later answer
  {
    absl::MutexLock lock(&mu_);
    Connection* c = CheckFrameLocked(channel, vote.epoch, vote.generation);
    if (c == nullptr) return;
    generation = c->generation;
    reply_to = c->channel;
    auto it = txns_.find(vote.txn);
    closed = it == txns_.end();
    if (!closed) {
      Txn& t = it->second;
      if (!OwnedByLocked(t, channel)) return;
      switch (t.record.state) {
        case TxnState::kCommitted:
          // A re-ask (the participant is in doubt): the outcome again.
          SendCommitLocked(t, &after);
          break;
        case TxnState::kVotedYes:
          break;  // the decision is being written; its frame follows
        case TxnState::kPreparing:
          if (metrics_ != nullptr) {
            metrics_->ObservePrepare(SecondsSince(t.prepare_sent));
          }
          if (vote.yes) {
            if (!Apply(t, TxnEvent::kVoteYes)) return;
            t.committing = true;
            t.voted = std::chrono::steady_clock::now();
            commit = true;
          } else {
            Abort(t, TxnEvent::kVoteNo, "vote_no",
                  vote.reason.empty() ? "vote no" : absl::StrCat("vote no: ", vote.reason),
                  /*send_frame=*/true, /*release=*/true, &after);
          }
          break;
        default:
          break;
      }
    }
  }
  if (closed) {
    // Not open: answered with its outcome (model rule 5: the re-ask), which
    // the store holds.
    executor_([this, reply_to = std::move(reply_to), txn = vote.txn, generation] {
      AnswerClosedTxn(reply_to.get(), txn, generation);
    });
    return;
  }
  RunSoon(std::move(after));
  if (commit) DecideCommit(vote.txn);
}

// ---- disconnect

void TxnCoordinator::OnDisconnect(ParticipantChannel* channel) {
  Aftermath after;
  {
    absl::MutexLock lock(&mu_);
    auto it = channels_.find(channel);
    if (it == channels_.end()) return;
    const ParticipantKey key = it->second;
    channels_.erase(it);
    Connection* c = CurrentLocked(key);
    if (c == nullptr || c->channel.get() != channel) return;  // fenced before
    std::vector<std::string> undecided;
    for (const auto& [id, t] : txns_) {
      // A txn whose commit point is being written goes on: it is
      // committed and its COMMIT re-sent when the participant is back.
      if (t.key == key && Undecided(t.record.state) && !t.committing) undecided.push_back(id);
    }
    for (const std::string& id : undecided) {
      Abort(txns_.at(id), TxnEvent::kDisconnect, "disconnect",
            "the participant disconnected before the decision", /*send_frame=*/false,
            /*release=*/true, &after);
    }
    ReleaseLingeringLocked(*c, &after);
    connections_.erase(key);
  }
  Run(std::move(after));
}

}  // namespace once::coordinator
