// Listener: accepts connections and starts an HttpSession for each, on a
// strand of its own (Beast advanced_server's listener). Beyond
// max_connections a connection gets a rejecting session (503) or, past
// kMaxRejectingSessions of those, is closed at once.
#ifndef ONCE_COORDINATOR_LISTENER_H_
#define ONCE_COORDINATOR_LISTENER_H_

#include <memory>

#include "absl/status/statusor.h"
#include "boost/asio/io_context.hpp"
#include "boost/asio/ip/tcp.hpp"
#include "boost/asio/steady_timer.hpp"
#include "boost/asio/strand.hpp"
#include "boost/beast/core/error.hpp"
#include "coordinator/server_state.h"
#include "coordinator/service_options.h"

namespace once::coordinator {

class Listener : public std::enable_shared_from_this<Listener> {
 public:
  // Opens, binds and listens (so the port is known, and taken, before
  // this returns). kUnavailable naming the address and the reason when
  // the bind fails. `state` is not owned and outlives the listener.
  static absl::StatusOr<std::shared_ptr<Listener>> Open(boost::asio::io_context& ioc,
                                                        const ListenAddress& address,
                                                        ServerState* state);

  // The bound address (with the real port when 0 was asked).
  boost::asio::ip::tcp::endpoint local_endpoint() const { return endpoint_; }

  // Starts accepting. Call once.
  void Run();
  // Thread-safe: closes the acceptor; no connection is accepted after.
  void Stop();

 private:
  Listener(boost::asio::io_context& ioc, ServerState* state);

  void DoAccept();
  void OnAccept(boost::beast::error_code ec, boost::asio::ip::tcp::socket socket);

  boost::asio::io_context& ioc_;
  ServerState* const state_;
  boost::asio::strand<boost::asio::io_context::executor_type> strand_;
  boost::asio::ip::tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_timer_;
  boost::asio::ip::tcp::endpoint endpoint_;
  bool stopped_ = false;  // on strand_
};

}  // namespace once::coordinator

#endif  // ONCE_COORDINATOR_LISTENER_H_
