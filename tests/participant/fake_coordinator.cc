#include "tests/participant/fake_coordinator.h"

#include <future>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/buffer.hpp"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/buffers_to_string.hpp"
#include "boost/beast/core/flat_buffer.hpp"
#include "boost/beast/core/tcp_stream.hpp"
#include "boost/beast/websocket/stream.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"

namespace once::testing {

namespace beast = boost::beast;
namespace net = boost::asio;
namespace websocket = boost::beast::websocket;
using tcp = net::ip::tcp;

struct FakeCoordinator::Connection : std::enable_shared_from_this<Connection> {
  Connection(tcp::socket socket, FakeCoordinator* owner) : ws(std::move(socket)), owner(owner) {}

  websocket::stream<beast::tcp_stream> ws;
  FakeCoordinator* owner;
  beast::flat_buffer buffer;
  std::deque<std::pair<std::string, bool>> out;  // io thread only
  bool writing = false;

  // Guarded by owner->mu_.
  std::deque<std::string> received;
  bool closed = false;

  void Read() {
    ws.async_read(buffer, [self = shared_from_this()](beast::error_code ec, size_t) {
      absl::MutexLock lock(&self->owner->mu_);
      if (ec) {
        self->closed = true;
        return;
      }
      self->received.push_back(beast::buffers_to_string(self->buffer.data()));
      self->buffer.consume(self->buffer.size());
      net::post(self->ws.get_executor(), [self] { self->Read(); });
    });
  }

  void Write() {
    if (writing || out.empty()) return;
    writing = true;
    ws.text(out.front().second);
    ws.async_write(net::buffer(out.front().first),
                   [self = shared_from_this()](beast::error_code, size_t) {
                     self->writing = false;
                     self->out.pop_front();
                     self->Write();
                   });
  }
};

FakeCoordinator::FakeCoordinator()
    : acceptor_(ioc_, tcp::endpoint(net::ip::make_address("127.0.0.1"), 0)) {
  port_ = acceptor_.local_endpoint().port();
  DoAccept();
  thread_ = std::thread([this] { ioc_.run(); });
}

FakeCoordinator::~FakeCoordinator() {
  std::promise<void> closed;
  net::post(ioc_, [this, &closed] {
    beast::error_code ec;
    acceptor_.close(ec);
    absl::MutexLock lock(&mu_);
    for (auto& c : connections_) beast::get_lowest_layer(c->ws).socket().close(ec);
    closed.set_value();
  });
  closed.get_future().wait_for(std::chrono::seconds(5));
  // The handlers still pending complete with errors; nothing else is needed.
  ioc_.stop();
  thread_.join();
}

std::string FakeCoordinator::url() const {
  return absl::StrCat("ws://127.0.0.1:", port_, "/v1/ws");
}

void FakeCoordinator::DoAccept() {
  acceptor_.async_accept([this](beast::error_code ec, tcp::socket socket) {
    if (ec) return;
    auto c = std::make_shared<Connection>(std::move(socket), this);
    c->ws.async_accept([this, c](beast::error_code ec) {
      if (ec) return;
      {
        absl::MutexLock lock(&mu_);
        connections_.push_back(c);
      }
      c->Read();
    });
    DoAccept();
  });
}

int FakeCoordinator::connections() const {
  absl::MutexLock lock(&mu_);
  return static_cast<int>(connections_.size());
}

bool FakeCoordinator::WaitForConnection(int n, std::chrono::milliseconds timeout) {
  absl::MutexLock lock(&mu_);
  auto enough = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) {
    return static_cast<int>(connections_.size()) >= n;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&enough), absl::FromChrono(timeout));
}

bool FakeCoordinator::WaitClosed(int n, std::chrono::milliseconds timeout) {
  if (!WaitForConnection(n, timeout)) return false;
  absl::MutexLock lock(&mu_);
  auto closed = [this, n]() ABSL_SHARED_LOCKS_REQUIRED(mu_) { return connections_[n - 1]->closed; };
  return mu_.AwaitWithTimeout(absl::Condition(&closed), absl::FromChrono(timeout));
}

absl::StatusOr<boost::json::object> FakeCoordinator::Receive(int n,
                                                             std::chrono::milliseconds timeout) {
  if (!WaitForConnection(n, timeout)) {
    return absl::DeadlineExceededError(absl::StrCat("no connection ", n));
  }
  std::string text;
  {
    absl::MutexLock lock(&mu_);
    Connection* c = connections_[n - 1].get();
    auto ready = [c]()
                     ABSL_SHARED_LOCKS_REQUIRED(mu_) { return !c->received.empty() || c->closed; };
    mu_.AwaitWithTimeout(absl::Condition(&ready), absl::FromChrono(timeout));
    if (c->received.empty()) {
      if (c->closed) return absl::UnavailableError(absl::StrCat("connection ", n, " closed"));
      return absl::DeadlineExceededError(absl::StrCat("no frame on connection ", n));
    }
    text = std::move(c->received.front());
    c->received.pop_front();
  }
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return absl::DataLossError(absl::StrCat("not a JSON object: ", text));
  return std::move(v.as_object());
}

absl::StatusOr<boost::json::object> FakeCoordinator::ReceiveType(
    int n, const std::string& type, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (int i = 0; i < 10'000; ++i) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    absl::StatusOr<boost::json::object> frame = Receive(n, left);
    if (!frame.ok()) return frame;
    auto it = frame->find("type");
    if (it != frame->end() && it->value().is_string() && it->value().get_string() == type) {
      return frame;
    }
  }
  return absl::DeadlineExceededError(absl::StrCat("no \"", type, "\" frame on connection ", n));
}

void FakeCoordinator::SendText(int n, std::string text) {
  std::shared_ptr<Connection> c;
  {
    absl::MutexLock lock(&mu_);
    if (n < 1 || n > static_cast<int>(connections_.size())) return;
    c = connections_[n - 1];
  }
  net::post(ioc_, [c, text = std::move(text)]() mutable {
    c->out.emplace_back(std::move(text), true);
    c->Write();
  });
}

void FakeCoordinator::SendBinary(int n, std::string bytes) {
  std::shared_ptr<Connection> c;
  {
    absl::MutexLock lock(&mu_);
    if (n < 1 || n > static_cast<int>(connections_.size())) return;
    c = connections_[n - 1];
  }
  net::post(ioc_, [c, bytes = std::move(bytes)]() mutable {
    c->out.emplace_back(std::move(bytes), false);
    c->Write();
  });
}

void FakeCoordinator::Send(int n, const boost::json::object& frame) {
  SendText(n, boost::json::serialize(frame));
}

}  // namespace once::testing
