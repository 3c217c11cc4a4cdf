// A scripted stand-in for onced's /v1/ws in participant tests: a Boost.Beast
// WebSocket server on 127.0.0.1 (ephemeral port) with one io thread. The
// test reads what the participant sent, connection by connection, and
// sends whatever frames it likes, well-formed or not. Every wait is
// bounded.
#ifndef ONCE_TESTS_PARTICIPANT_FAKE_COORDINATOR_H_
#define ONCE_TESTS_PARTICIPANT_FAKE_COORDINATOR_H_

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/json/object.hpp"

namespace once::testing {

class FakeCoordinator {
 public:
  FakeCoordinator();
  ~FakeCoordinator();

  uint16_t port() const { return port_; }
  std::string url() const;

  // Connections accepted so far (handshake done), numbered from 1.
  int connections() const;
  // Waits until at least `n` connections were accepted.
  bool WaitForConnection(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Waits until connection `n` ended (closed by either side).
  bool WaitClosed(int n, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // The next text frame the participant sent on connection `n`, parsed.
  // kDeadlineExceeded when none came in time; kUnavailable when the
  // connection closed and every frame it carried was read.
  absl::StatusOr<boost::json::object> Receive(
      int n, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The next frame on connection `n` whose "type" is `type`, skipping others
  // (e.g. re-asked votes).
  absl::StatusOr<boost::json::object> ReceiveType(
      int n, const std::string& type, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  void SendText(int n, std::string text);
  void SendBinary(int n, std::string bytes);
  void Send(int n, const boost::json::object& frame);

 private:
  struct Connection;
  void DoAccept();

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  uint16_t port_ = 0;
  std::thread thread_;

  mutable absl::Mutex mu_;
  std::vector<std::shared_ptr<Connection>> connections_ ABSL_GUARDED_BY(mu_);
};

}  // namespace once::testing

#endif  // ONCE_TESTS_PARTICIPANT_FAKE_COORDINATOR_H_
