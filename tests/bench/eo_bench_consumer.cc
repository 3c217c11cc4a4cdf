// eo-bench-consumer: the minimal consumer of the exactly-once benchmark
// (scripts/bench-e2e). Built on the participant SDK
// (participant/include/once/participant.h) with its SqliteResource, journal
// synchronous=FULL, in one of the three delivery guarantees:
//
//   eo-bench-consumer --url ws://127.0.0.1:PORT/v1/ws --topic T --group G
//       --id c1 --db c1.db --mode exactly-once|idempotent|at-least-once
//       [--window 16] [--expect N] [--timeout_s 600] [--store sqlite|none]
//       [--ready_file PATH] [--read_ahead] [--max_group_frames 8]
//
// Its handler stages ONE statement per message,
//   INSERT INTO eo_bench (message_id, publish_ns) VALUES (?1, ?2),
// where publish_ns is the publish time the publisher wrote into the payload
// (the first 16 characters: hex nanoseconds of CLOCK_MONOTONIC, the format
// of once-load, tests/bench/load_stats.h; scripts/bench-e2e writes the
// same). eo_bench has no key, so a duplicate effect shows as a second row.
//
// What is measured. The SDK has no commit hook, but its Resource interface
// is public: a TimedResource wraps the SqliteResource and takes the time
// when Commit (exactly-once), ApplyOnce (idempotent) or Apply
// (at-least-once) returns OK, i.e. once the effect is durably committed
// in the consumer's store. Latency = that time - publish_ns, per message
// (CLOCK_MONOTONIC is one clock for every process of the machine).
//
// It stops on SIGINT/SIGTERM, when --expect messages were applied, or after
// --timeout_s, and prints one JSON line on stdout:
//   {"mode", "id", "applied", "start_ns", "first_commit_ns",
//    "last_commit_ns", "p50_ms", "p99_ms", "p999_ms", "max_ms", "samples",
//    "commits", "aborts", "votes_no", "acks", "nacks", "session_failures",
//    "last_error", "cpu_s", "phases_ms"}
// "phases_ms" splits an exactly-once message's latency where the consumer
// can see it, as {"p50", "p99", "n"} per phase (n: messages for the first,
// transactions for the others):
//   "publish_to_prepare"  publish_ns -> its PREPARE reaches Resource::Prepare
//                         (broker append, delivery, the wait for a window
//                         slot, the PREPARE's trip, the handler)
//   "prepare"             Resource::Prepare (in a group: no fsync)
//   "prepared_to_commit"  Prepare returned -> Commit called (the group's
//                         fsync, the vote's trip, the COMMIT record's
//                         durable write, the COMMIT's trip)
//   "commit"              Commit called -> the effect durable (with group
//                         commit: EndGroup returned)
// --store=none (at-least-once only) counts and times each message at the
// point its effect would be applied and applies nothing: the rate of Once's
// at-least-once delivery itself (deliver, ack), without a consumer's store.
// Exit status: 0, 1 on an error (printed on stderr), 2 for bad flags.
#include <signal.h>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "boost/json/object.hpp"
#include "boost/json/serialize.hpp"
#include "once/participant.h"
#include "once/sqlite_resource.h"
#include "tests/bench/load_payload.h"

ABSL_FLAG(std::string, url, "ws://127.0.0.1:8080/v1/ws", "the service's WebSocket URL");
ABSL_FLAG(std::string, topic, "", "topic to consume (required)");
ABSL_FLAG(std::string, group, "", "consumer group; its guarantee must match --mode (required)");
ABSL_FLAG(std::string, id, "eo-bench-1", "participant id");
ABSL_FLAG(std::string, db, "", "SQLite file of the consumer's store and journal (required)");
ABSL_FLAG(std::string, mode, "exactly-once", "exactly-once | idempotent | at-least-once");
ABSL_FLAG(int, window, 16, "transactions (exactly-once) or credits (streaming) in flight");
ABSL_FLAG(int64_t, expect, 0, "stop once this many messages were applied (0: run until a signal)");
ABSL_FLAG(double, timeout_s, 600, "stop after this long anyway");
ABSL_FLAG(std::string, ready_file, "",
          "created (empty) once the first session is open (welcome or subscribed received): a "
          "driver that measures latency starts publishing only then");
ABSL_FLAG(bool, read_ahead, false,
          "the SDK's network thread reads and decodes the next frames while its thread applies "
          "(ParticipantOptions::read_ahead)");
ABSL_FLAG(int, max_group_frames, 8,
          "exactly-once: a group (one fsync) ends after this many frames even while more come; "
          "0: at the end of each burst only (ParticipantOptions::max_group_frames)");
ABSL_FLAG(std::string, store, "sqlite",
          "sqlite: apply each effect durably; none (at-least-once only): apply nothing, count");

namespace {

using ::once::load::NowNanos;
using ::once::load::PayloadTime;

constexpr char kDdl[] =
    "CREATE TABLE IF NOT EXISTS eo_bench (message_id TEXT NOT NULL, publish_ns INTEGER NOT NULL)";
constexpr char kInsert[] = "INSERT INTO eo_bench (message_id, publish_ns) VALUES (?1, ?2)";

absl::Status StageInsert(const once::Message& message, once::Staging& staging) {
  absl::StatusOr<int64_t> published = PayloadTime(message.value);
  if (!published.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("message ", message.id, ": ", published.status().message()));
  }
  staging.Add(kInsert, {message.id, *published});
  return absl::OkStatus();
}

// The publish times of our INSERTs among `effects` (others are ignored).
void CollectPublishTimes(const std::vector<once::Effect>& effects, std::vector<int64_t>* out) {
  for (const once::Effect& e : effects) {
    if (e.command != kInsert || e.params.size() != 2) continue;
    if (const int64_t* t = std::get_if<int64_t>(&e.params[1])) out->push_back(*t);
  }
}

// A Resource that forwards to a SqliteResource and records, for every
// message whose effect it committed, the commit time minus the publish
// time. Thread-safe (the SDK calls it from its one thread; main reads the
// counters).
class TimedResource final : public once::Resource {
 public:
  // `apply_streamed`: false for --store=none (Apply records, applies nothing).
  TimedResource(once::SqliteResource* inner, bool apply_streamed)
      : inner_(inner), apply_streamed_(apply_streamed) {}

  absl::StatusOr<std::vector<std::string>> Recover() override { return inner_->Recover(); }
  absl::StatusOr<once::TxnStatus> Status(const std::string& txn) override {
    return inner_->Status(txn);
  }
  absl::StatusOr<bool> IsCommitted(const std::string& message_id) override {
    return inner_->IsCommitted(message_id);
  }

  absl::Status Prepare(const once::PreparedTxn& txn) override {
    const int64_t called = NowNanos();
    absl::Status s = inner_->Prepare(txn);
    if (!s.ok()) return s;
    const int64_t returned = NowNanos();
    Prepared p;
    for (const once::StagedMessage& m : txn.messages) CollectPublishTimes(m.effects, &p.times);
    p.returned_ns = returned;
    absl::MutexLock lock(&mu_);
    for (int64_t t : p.times) phases_[kPublishToPrepare].push_back(called - t);
    phases_[kPrepare].push_back(returned - called);
    prepared_[txn.txn] = std::move(p);
    return s;
  }

  absl::StatusOr<once::CommitResult> Commit(const std::string& txn) override {
    const int64_t called = NowNanos();
    absl::StatusOr<once::CommitResult> r = inner_->Commit(txn);
    const int64_t now = NowNanos();
    absl::MutexLock lock(&mu_);
    auto it = prepared_.find(txn);
    if (r.ok() && !r->already_committed && it != prepared_.end()) {
      phases_[kPreparedToCommit].push_back(called - it->second.returned_ns);
      // Messages skipped at commit (already committed) applied nothing:
      // count what was applied, time the staged ones. In a group the
      // effect is committed only when the group is: timed at EndGroup.
      if (in_group_) {
        grouped_.push_back({std::move(it->second.times), r->applied, called});
      } else {
        phases_[kCommit].push_back(now - called);
        Record(now, it->second.times, r->applied);
      }
    }
    if (it != prepared_.end()) prepared_.erase(it);
    return r;
  }

  absl::Status BeginGroup() override {
    absl::Status s = inner_->BeginGroup();
    absl::MutexLock lock(&mu_);
    in_group_ = s.ok();
    return s;
  }

  absl::Status EndGroup() override {
    absl::Status s = inner_->EndGroup();
    const int64_t now = NowNanos();
    absl::MutexLock lock(&mu_);
    if (s.ok()) {
      for (const Grouped& g : grouped_) {
        phases_[kCommit].push_back(now - g.commit_called_ns);
        Record(now, g.times, g.applied);
      }
    }
    grouped_.clear();
    in_group_ = false;
    return s;
  }

  void AbortGroup() override {
    inner_->AbortGroup();
    absl::MutexLock lock(&mu_);
    grouped_.clear();
    in_group_ = false;
  }

  absl::Status Abort(const std::string& txn) override {
    {
      absl::MutexLock lock(&mu_);
      prepared_.erase(txn);
    }
    return inner_->Abort(txn);
  }

  absl::StatusOr<bool> ApplyOnce(const std::string& message_id,
                                 const std::vector<once::Effect>& effects) override {
    absl::StatusOr<bool> r = inner_->ApplyOnce(message_id, effects);
    if (r.ok() && *r) RecordEffects(effects);
    return r;
  }

  absl::Status Apply(const std::vector<once::Effect>& effects) override {
    absl::Status s = apply_streamed_ ? inner_->Apply(effects) : absl::OkStatus();
    if (s.ok()) RecordEffects(effects);
    return s;
  }

  int64_t applied() const {
    absl::MutexLock lock(&mu_);
    return applied_;
  }

  // Adds the result fields to `out`; call after the participant stopped.
  void Report(boost::json::object* out) {
    absl::MutexLock lock(&mu_);
    (*out)["applied"] = applied_;
    (*out)["first_commit_ns"] = first_commit_ns_;
    (*out)["last_commit_ns"] = last_commit_ns_;
    std::sort(latencies_.begin(), latencies_.end());
    auto pct = [&](double p) { return Percentile(latencies_, p); };
    (*out)["p50_ms"] = pct(0.50);
    (*out)["p99_ms"] = pct(0.99);
    (*out)["p999_ms"] = pct(0.999);
    (*out)["max_ms"] = latencies_.empty() ? 0.0 : static_cast<double>(latencies_.back()) / 1e6;
    (*out)["samples"] = static_cast<int64_t>(latencies_.size());
    boost::json::object phases;
    for (int i = 0; i < kPhases; ++i) {
      std::vector<int64_t>& v = phases_[i];
      if (v.empty()) continue;
      std::sort(v.begin(), v.end());
      phases[kPhaseNames[i]] = {{"p50", Percentile(v, 0.50)},
                                {"p99", Percentile(v, 0.99)},
                                {"n", static_cast<int64_t>(v.size())}};
    }
    (*out)["phases_ms"] = std::move(phases);
  }

 private:
  enum Phase { kPublishToPrepare, kPrepare, kPreparedToCommit, kCommit, kPhases };
  static constexpr const char* kPhaseNames[kPhases] = {"publish_to_prepare", "prepare",
                                                       "prepared_to_commit", "commit"};
  struct Prepared {
    std::vector<int64_t> times;  // the messages' publish times
    int64_t returned_ns = 0;     // when Prepare returned
  };
  struct Grouped {
    std::vector<int64_t> times;
    int applied = 0;
    int64_t commit_called_ns = 0;
  };

  // The p-th percentile of sorted nanoseconds, in ms (0 when empty).
  static double Percentile(const std::vector<int64_t>& sorted, double p) {
    if (sorted.empty()) return 0.0;
    size_t i = static_cast<size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
    return static_cast<double>(sorted[std::min(i, sorted.size() - 1)]) / 1e6;
  }

  void RecordEffects(const std::vector<once::Effect>& effects) {
    const int64_t now = NowNanos();
    std::vector<int64_t> times;
    CollectPublishTimes(effects, &times);
    absl::MutexLock lock(&mu_);
    Record(now, times, 1);
  }

  void Record(int64_t now, const std::vector<int64_t>& publish_times, int applied)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (applied <= 0) return;
    if (first_commit_ns_ == 0) first_commit_ns_ = now;
    last_commit_ns_ = now;
    applied_ += applied;
    for (int64_t t : publish_times) latencies_.push_back(now - t);
  }

  once::SqliteResource* const inner_;
  const bool apply_streamed_;
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, Prepared> prepared_ ABSL_GUARDED_BY(mu_);
  // Inside a group: the commits to time once the group is durable.
  bool in_group_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<Grouped> grouped_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> latencies_ ABSL_GUARDED_BY(mu_);
  std::vector<int64_t> phases_[kPhases] ABSL_GUARDED_BY(mu_);
  int64_t applied_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t first_commit_ns_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_commit_ns_ ABSL_GUARDED_BY(mu_) = 0;
};

int Fail(int code, const absl::Status& status) {
  std::fprintf(stderr, "eo-bench-consumer: %s\n", status.ToString().c_str());
  return code;
}

absl::StatusOr<once::Mode> ParseMode(const std::string& mode) {
  if (mode == "exactly-once") return once::Mode::kExactlyOnce;
  if (mode == "idempotent") return once::Mode::kIdempotent;
  if (mode == "at-least-once") return once::Mode::kAtLeastOnce;
  return absl::InvalidArgumentError(
      absl::StrCat("--mode: \"", mode, "\" is not exactly-once, idempotent or at-least-once"));
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "the exactly-once benchmark's consumer: one durable INSERT per message, timed");
  absl::ParseCommandLine(argc, argv);

  once::ParticipantOptions options;
  options.url = absl::GetFlag(FLAGS_url);
  options.topic = absl::GetFlag(FLAGS_topic);
  options.group = absl::GetFlag(FLAGS_group);
  options.participant_id = absl::GetFlag(FLAGS_id);
  const std::string db = absl::GetFlag(FLAGS_db);
  const int window = absl::GetFlag(FLAGS_window);
  const int64_t expect = absl::GetFlag(FLAGS_expect);
  const double timeout_s = absl::GetFlag(FLAGS_timeout_s);
  absl::StatusOr<once::Mode> mode = ParseMode(absl::GetFlag(FLAGS_mode));
  if (!mode.ok()) return Fail(2, mode.status());
  options.mode = *mode;
  if (options.topic.empty() || options.group.empty() || db.empty()) {
    return Fail(2, absl::InvalidArgumentError("--topic, --group and --db are required"));
  }
  if (window < 1 || window > 1024) {
    return Fail(2, absl::InvalidArgumentError(
                       absl::StrCat("--window: ", window, " is out of range 1..1024")));
  }
  if (expect < 0 || !(timeout_s > 0)) {
    return Fail(2, absl::InvalidArgumentError("--expect must be >= 0 and --timeout_s > 0"));
  }
  options.window = static_cast<uint32_t>(window);
  options.read_ahead = absl::GetFlag(FLAGS_read_ahead);
  const int max_group_frames = absl::GetFlag(FLAGS_max_group_frames);
  if (max_group_frames < 0 || max_group_frames > 1'000'000) {
    return Fail(2, absl::InvalidArgumentError(absl::StrCat("--max_group_frames: ", max_group_frames,
                                                           " is out of range 0..1000000")));
  }
  options.max_group_frames = static_cast<uint32_t>(max_group_frames);
  const std::string store = absl::GetFlag(FLAGS_store);
  if (store != "sqlite" && store != "none") {
    return Fail(2, absl::InvalidArgumentError(
                       absl::StrCat("--store: \"", store, "\" is not sqlite or none")));
  }
  if (store == "none" && options.mode != once::Mode::kAtLeastOnce) {
    return Fail(2, absl::InvalidArgumentError("--store=none is for --mode=at-least-once only"));
  }

  // Block the stop signals before any thread starts; polled below.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  once::SqliteResourceOptions resource_options;
  resource_options.synchronous = once::sqlite::Synchronous::kFull;
  auto sqlite = once::SqliteResource::Open(db, resource_options);
  if (!sqlite.ok()) return Fail(1, sqlite.status());
  absl::Status ddl =
      (*sqlite)->WithDatabase([](once::sqlite::Database* d) { return d->Exec(kDdl); });
  if (!ddl.ok()) return Fail(1, ddl);
  TimedResource timed(sqlite->get(), /*apply_streamed=*/store == "sqlite");

  auto participant = once::Participant::Create(options, &timed, StageInsert);
  if (!participant.ok()) return Fail(2, participant.status());
  const int64_t start_ns = NowNanos();
  if (absl::Status s = (*participant)->Start(); !s.ok()) return Fail(1, s);

  // Poll every 10 ms for a signal, the expected count or the timeout.
  const int64_t deadline = start_ns + static_cast<int64_t>(timeout_s * 1e9);
  bool timed_out = false;
  std::string ready_file = absl::GetFlag(FLAGS_ready_file);
  for (;;) {
    const timespec step{0, 10'000'000};
    if (sigtimedwait(&signals, nullptr, &step) > 0) break;
    if (!ready_file.empty() && (*participant)->stats().connects > 0) {
      std::ofstream ready(ready_file);
      if (!ready)
        return Fail(1, absl::FailedPreconditionError("--ready_file: cannot create " + ready_file));
      ready_file.clear();
    }
    if (expect > 0 && timed.applied() >= expect) break;
    if (NowNanos() >= deadline) {
      timed_out = expect > 0;
      break;
    }
  }
  (*participant)->Stop();

  const once::ParticipantStats s = (*participant)->stats();
  boost::json::object result;
  result["mode"] = absl::GetFlag(FLAGS_mode);
  result["store"] = store;
  result["id"] = options.participant_id;
  result["start_ns"] = start_ns;
  timed.Report(&result);
  result["commits"] = s.commits;
  result["aborts"] = s.aborts;
  result["votes_no"] = s.votes_no;
  result["acks"] = s.acks;
  result["nacks"] = s.nacks;
  result["session_failures"] = s.session_failures;
  result["last_error"] = s.last_error;
  // The process's CPU time (user + system): where a run is CPU-bound.
  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  result["cpu_s"] = static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
                    static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  std::printf("%s\n", boost::json::serialize(result).c_str());
  std::fflush(stdout);
  if (timed_out) {
    return Fail(1, absl::DeadlineExceededError(
                       absl::StrCat("applied ", result["applied"].as_int64(), " of ", expect,
                                    " messages within --timeout_s=", timeout_s)));
  }
  return 0;
}
