// The Participant: the SDK's thread running an io_context (the Session,
// the handler, the resource, the timers and the reconnect loop), one
// WsClient and one Session at a time. With read_ahead the WsClient runs on
// a network thread of its own, which reads and decodes the next frames and
// writes the answers while the SDK's thread applies; its callbacks and the
// SDK's sends cross between the two io_contexts by post, in order.
#include "once/participant.h"

#include <algorithm>
#include <chrono>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "absl/functional/function_ref.h"
#include "absl/strings/str_cat.h"
#include "boost/asio/executor_work_guard.hpp"
#include "boost/asio/io_context.hpp"
#include "boost/asio/post.hpp"
#include "boost/asio/steady_timer.hpp"
#include "once/sqlite_resource.h"
#include "participant/src/session.h"
#include "participant/src/ws_client.h"
#include "schema/status_macros.h"
#include "schema/txn_protocol.h"
#include "spdlog/spdlog.h"

namespace once {

namespace net = boost::asio;
using participant::Session;
using participant::WsClient;

class Participant::Impl {
 public:
  Impl(ParticipantOptions options, participant::WsUrl url, Resource* resource,
       std::unique_ptr<SqliteResource> owned, Handler handler)
      : options_(std::move(options)),
        url_(std::move(url)),
        owned_(std::move(owned)),
        resource_(resource != nullptr ? resource : owned_.get()),
        handler_(std::move(handler)),
        read_ahead_(options_.read_ahead),
        reconnect_timer_(ioc_),
        tick_timer_(ioc_),
        backoff_ms_(options_.backoff_min_ms),
        rng_(std::random_device{}()) {}

  ~Impl() { Stop(); }

  absl::Status Start() {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("participant: already started");
    started_ = true;
    work_.emplace(net::make_work_guard(ioc_));
    net::post(ioc_, [this] {
      Connect();
      ArmTick();
    });
    if (read_ahead_) {
      net_work_.emplace(net::make_work_guard(net_ioc_));
      net_thread_ = std::thread([this] { net_ioc_.run(); });
    }
    thread_ = std::thread([this] { ioc_.run(); });
    return absl::OkStatus();
  }

  void Stop() {
    {
      absl::MutexLock lock(&mu_);
      if (!started_ || stopped_) return;
      stopped_ = true;
    }
    net::post(ioc_, [this] {
      stopping_ = true;
      reconnect_timer_.cancel();
      tick_timer_.cancel();
      // Best effort: held-back acks, votes and DONEs go out ahead of the
      // close frame once durable (what is lost is redelivered or re-driven,
      // as after a crash). A failed flush closes with its error.
      if (session_ && client_) Check(session_->Flush());
      if (client_) CloseClient(absl::OkStatus());
      work_.reset();
    });
    // A close handshake is bounded (1 s in WsClient); the io_context then
    // runs out of work and the thread ends.
    thread_.join();
    if (read_ahead_) {
      // The last frames and the close are queued on the network thread by
      // now; the client's callbacks it posts to ioc_ from here never run.
      net::post(net_ioc_, [this] { net_work_.reset(); });
      net_thread_.join();
    }
  }

  ParticipantStats stats() const { return stats_.Get(); }

 private:
  // Everything below runs on the SDK's thread.
  void Connect() {
    if (stopping_) return;
    const uint64_t id = ++connection_id_;
    participant::SessionEnv env;
    env.options = &options_;
    env.resource = resource_;
    env.handler = &handler_;
    env.stats = &stats_;
    env.group_commit = options_.group_commit;
    env.send = [this, id](std::string frame) {
      if (id != connection_id_ || !client_) return;
      OnNetwork([client = client_, frame = std::move(frame)]() mutable {
        client->Send(std::move(frame));
      });
    };
    session_ = participant::MakeSession(std::move(env));
    opened_at_ = std::chrono::steady_clock::now();
    // The client calls these on its io_context's thread.
    WsClient::Callbacks callbacks;
    callbacks.on_open = [this, id] {
      OnSdk([this, id] {
        if (id != connection_id_ || !session_) return;
        Check(session_->Start());
      });
    };
    callbacks.on_frame = [this, id](std::string data, bool text) {
      if (read_ahead_ && text && participant::TakesDecodedFrames(options_.mode)) {
        // Decoded here, on the network thread.
        net::post(ioc_, [this, id, frame = protocol::Decode(data)]() mutable {
          OnFrame(id, [&](Session& s) { return s.OnDecoded(std::move(frame)); });
        });
        return;
      }
      OnSdk([this, id, data = std::move(data), text] {
        OnFrame(id, [&](Session& s) { return s.OnFrame(data, text); });
      });
    };
    callbacks.on_closed = [this, id](absl::Status why) {
      OnSdk([this, id, why = std::move(why)]() mutable {
        if (id != connection_id_) return;
        OnClosed(std::move(why));
      });
    };
    client_ = std::make_shared<WsClient>(
        read_ahead_ ? net_ioc_ : ioc_, url_, options_.max_frame_bytes,
        std::chrono::milliseconds(options_.connect_timeout_ms), std::move(callbacks));
    OnNetwork([client = client_] { client->Start(); });
  }

  // One frame of connection `id`, handed to the session by `feed`.
  void OnFrame(uint64_t id, absl::FunctionRef<absl::Status(Session&)> feed) {
    if (id != connection_id_ || stopping_ || !session_) return;
    if (GroupFull()) {
      group_first_frame_ = frames_;
      const absl::Status flushed = session_->Flush();
      if (!flushed.ok()) {
        Check(flushed);  // the session is over: the frame goes nowhere
        return;
      }
    }
    const bool was_open = session_->open();
    Check(feed(*session_));
    ++frames_;
    if (!was_open && session_->open()) backoff_ms_ = options_.backoff_min_ms;
    if (session_->pending()) ScheduleFlush(id);
  }

  // Runs `work` on the thread of `where` (ioc_: the SDK's; net_ioc_: the
  // client's): without read_ahead both are this one, so at once; with it,
  // queued there in order.
  template <typename Work>
  void RunOn(net::io_context& where, Work work) {
    if (read_ahead_) {
      net::post(where, std::move(work));
    } else {
      work();
    }
  }
  template <typename Work>
  void OnSdk(Work work) {
    RunOn(ioc_, std::move(work));
  }
  template <typename Work>
  void OnNetwork(Work work) {
    RunOn(net_ioc_, std::move(work));
  }

  void CloseClient(absl::Status why) {
    OnNetwork(
        [client = client_, why = std::move(why)]() mutable { client->Close(std::move(why)); });
  }

  // Flushes the session's held-back acks once the frames that had already
  // arrived are handled: the end of a burst. A WebSocket read whose frame
  // is already buffered completes through the io_context's queue, and it
  // is queued only after this frame's handler returns (with read_ahead:
  // the network thread queues each frame it read on ioc_); so the flush
  // goes round the queue, and round again while frames keep coming, and
  // runs after a round that brought none (then the next read waits on the
  // socket). `seen` is the frame count at the previous round; the first
  // round always goes on. (OnFrame ends a group that is full first.)
  void ScheduleFlush(uint64_t id) {
    if (flush_scheduled_for_ == id) return;
    flush_scheduled_for_ = id;
    group_first_frame_ = frames_ > 0 ? frames_ - 1 : 0;  // OnFrame counted the group's first
    PostFlush(id, std::nullopt);
  }

  // Exactly-once: the open group took max_group_frames frames, so it ends
  // before the next one (ParticipantOptions::max_group_frames). The flush
  // already posted stays, for the next group.
  bool GroupFull() const {
    const uint64_t cap = options_.mode == Mode::kExactlyOnce ? options_.max_group_frames : 0;
    return cap != 0 && session_->pending() && frames_ - group_first_frame_ >= cap;
  }
  void PostFlush(uint64_t id, std::optional<uint64_t> seen) {
    net::post(ioc_, [this, id, seen] {
      if (id != connection_id_ || !session_) return;  // that session is gone
      if (seen != frames_) return PostFlush(id, frames_);
      flush_scheduled_for_ = 0;
      Check(session_->Flush());
    });
  }

  // Ends the session on an error (the client reports the close).
  void Check(const absl::Status& status) {
    if (status.ok() || !client_) return;
    if (!failure_.has_value()) failure_ = status;
    CloseClient(status);
  }

  void OnClosed(absl::Status why) {
    const absl::Status reason = failure_.has_value() ? *failure_ : why;
    failure_.reset();
    client_.reset();
    session_.reset();
    if (stopping_) return;
    spdlog::warn("once participant {}: session ended: {}; reconnecting in ~{} ms",
                 options_.participant_id, reason.ToString(), backoff_ms_);
    stats_.Update([&reason](ParticipantStats& s) {
      ++s.session_failures;
      s.last_error = reason.ToString();
    });
    std::uniform_real_distribution<double> jitter(1.0 - options_.backoff_jitter,
                                                  1.0 + options_.backoff_jitter);
    const auto wait = std::chrono::milliseconds(std::max<int64_t>(
        1, static_cast<int64_t>(static_cast<double>(backoff_ms_) * jitter(rng_))));
    backoff_ms_ = std::min(options_.backoff_max_ms, backoff_ms_ * 2);
    reconnect_timer_.expires_after(wait);
    reconnect_timer_.async_wait([this](boost::system::error_code ec) {
      if (!ec) Connect();
    });
  }

  void ArmTick() {
    // The re-ask timer also polices the opening: no welcome/subscribed
    // within connect_timeout_ms ends the attempt.
    const int64_t period = std::min(options_.reask_interval_ms, options_.connect_timeout_ms);
    tick_timer_.expires_after(std::chrono::milliseconds(std::max<int64_t>(period, 1)));
    tick_timer_.async_wait([this](boost::system::error_code ec) {
      if (ec || stopping_) return;
      OnTick();
      ArmTick();
    });
  }

  void OnTick() {
    if (!session_ || !client_) return;
    const auto now = std::chrono::steady_clock::now();
    if (!session_->open()) {
      if (now - opened_at_ > std::chrono::milliseconds(options_.connect_timeout_ms)) {
        Check(absl::DeadlineExceededError(
            absl::StrCat("no welcome/subscribed within ", options_.connect_timeout_ms, " ms")));
      }
      return;
    }
    if (now - last_reask_ >= std::chrono::milliseconds(options_.reask_interval_ms)) {
      last_reask_ = now;
      Check(session_->OnTimer());
      // Re-asks made inside an open group are held with it.
      if (session_->pending()) ScheduleFlush(connection_id_);
    }
  }

  const ParticipantOptions options_;
  const participant::WsUrl url_;
  std::unique_ptr<SqliteResource> owned_;
  Resource* const resource_;
  const Handler handler_;
  participant::StatsBox stats_;

  absl::Mutex mu_;
  bool started_ ABSL_GUARDED_BY(mu_) = false;
  bool stopped_ ABSL_GUARDED_BY(mu_) = false;

  net::io_context ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> work_;
  std::thread thread_;
  // read_ahead: the network thread's io_context, which runs the client
  // (destroyed before ioc_, whose queue its callbacks post to).
  const bool read_ahead_;
  net::io_context net_ioc_;
  std::optional<net::executor_work_guard<net::io_context::executor_type>> net_work_;
  std::thread net_thread_;

  // The SDK thread's state.
  net::steady_timer reconnect_timer_;
  net::steady_timer tick_timer_;
  bool stopping_ = false;
  uint64_t connection_id_ = 0;
  std::shared_ptr<WsClient> client_;
  std::unique_ptr<Session> session_;
  uint64_t frames_ = 0;               // frames handled, over all connections
  uint64_t flush_scheduled_for_ = 0;  // the connection whose flush is posted
  uint64_t group_first_frame_ = 0;    // frames_ before the open group's first frame
  std::optional<absl::Status> failure_;
  std::chrono::steady_clock::time_point opened_at_;
  std::chrono::steady_clock::time_point last_reask_;
  int64_t backoff_ms_;
  std::mt19937_64 rng_;
};

absl::StatusOr<std::unique_ptr<Participant>> Participant::Create(ParticipantOptions options,
                                                                 Resource* resource,
                                                                 Handler handler) {
  if (options.topic.empty() || options.group.empty()) {
    return absl::InvalidArgumentError("participant options: topic and group are required");
  }
  if (options.participant_id.empty() || options.participant_id.size() > 255) {
    return absl::InvalidArgumentError(
        "participant options: participant_id must have 1..255 characters");
  }
  if (options.window == 0 || options.window > 1024) {
    return absl::InvalidArgumentError("participant options: window must be 1..1024");
  }
  if (options.backoff_min_ms < 1 || options.backoff_max_ms < options.backoff_min_ms) {
    return absl::InvalidArgumentError(
        "participant options: need 1 <= backoff_min_ms <= backoff_max_ms");
  }
  if (options.backoff_jitter < 0 || options.backoff_jitter >= 1) {
    return absl::InvalidArgumentError("participant options: backoff_jitter must be in [0, 1)");
  }
  if (options.reask_interval_ms < 1 || options.connect_timeout_ms < 1) {
    return absl::InvalidArgumentError(
        "participant options: reask_interval_ms and connect_timeout_ms must be positive");
  }
  if (!handler) return absl::InvalidArgumentError("participant: a handler is required");
  ONCE_ASSIGN_OR_RETURN(participant::WsUrl url, participant::ParseWsUrl(options.url));
  std::unique_ptr<SqliteResource> owned;
  if (resource == nullptr) {
    if (options.journal_path.empty()) {
      return absl::InvalidArgumentError("participant: give a resource or options.journal_path");
    }
    ONCE_ASSIGN_OR_RETURN(owned, SqliteResource::Open(options.journal_path));
  }
  auto impl = std::make_unique<Impl>(std::move(options), std::move(url), resource, std::move(owned),
                                     std::move(handler));
  return std::unique_ptr<Participant>(new Participant(std::move(impl)));
}

Participant::Participant(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Participant::~Participant() { Stop(); }
absl::Status Participant::Start() { return impl_->Start(); }
void Participant::Stop() { impl_->Stop(); }
ParticipantStats Participant::stats() const { return impl_->stats(); }

}  // namespace once
