#include "coordinator/listener.h"

#include <chrono>
#include <utility>

#include "absl/strings/str_cat.h"
#include "boost/asio/dispatch.hpp"
#include "boost/asio/ip/address.hpp"
#include "boost/asio/post.hpp"
#include "boost/beast/core/bind_handler.hpp"
#include "coordinator/http_session.h"
#include "spdlog/spdlog.h"

namespace once::coordinator {
namespace beast = boost::beast;
namespace net = boost::asio;
using tcp = boost::asio::ip::tcp;

namespace {

// After a failed accept that may be transient (out of descriptors), wait
// this long before the next, rather than spinning.
constexpr std::chrono::milliseconds kAcceptRetryDelay(100);

}  // namespace

Listener::Listener(net::io_context& ioc, ServerState* state)
    : ioc_(ioc),
      state_(state),
      strand_(net::make_strand(ioc)),
      acceptor_(strand_),
      retry_timer_(strand_) {}

absl::StatusOr<std::shared_ptr<Listener>> Listener::Open(net::io_context& ioc,
                                                         const ListenAddress& address,
                                                         ServerState* state) {
  std::shared_ptr<Listener> listener(new Listener(ioc, state));
  beast::error_code ec;
  const net::ip::address ip = net::ip::make_address(address.host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("listen address \"", address.host, "\": ", ec.message()));
  }
  const tcp::endpoint endpoint(ip, address.port);
  const std::string where = absl::StrCat(address.host, ":", address.port);
  tcp::acceptor& a = listener->acceptor_;
  a.open(endpoint.protocol(), ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot open a socket for ", where, ": ", ec.message()));
  a.set_option(net::socket_base::reuse_address(true), ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot set SO_REUSEADDR on ", where, ": ", ec.message()));
  a.bind(endpoint, ec);
  if (ec) return absl::UnavailableError(absl::StrCat("cannot bind ", where, ": ", ec.message()));
  a.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    return absl::UnavailableError(absl::StrCat("cannot listen on ", where, ": ", ec.message()));
  listener->endpoint_ = a.local_endpoint(ec);
  if (ec)
    return absl::UnavailableError(
        absl::StrCat("cannot read the bound address of ", where, ": ", ec.message()));
  return listener;
}

void Listener::Run() {
  net::dispatch(strand_, beast::bind_front_handler(&Listener::DoAccept, shared_from_this()));
}

void Listener::Stop() {
  net::post(strand_, [self = shared_from_this()] {
    self->stopped_ = true;
    beast::error_code ec;
    self->retry_timer_.cancel();
    self->acceptor_.close(ec);
  });
}

void Listener::DoAccept() {
  if (stopped_) return;
  // Each connection gets a strand of its own.
  acceptor_.async_accept(net::make_strand(ioc_),
                         beast::bind_front_handler(&Listener::OnAccept, shared_from_this()));
}

void Listener::OnAccept(beast::error_code ec, tcp::socket socket) {
  if (stopped_ || ec == net::error::operation_aborted) return;
  if (ec) {
    spdlog::warn("accept failed: {}; retrying in {} ms", ec.message(), kAcceptRetryDelay.count());
    retry_timer_.expires_after(kAcceptRetryDelay);
    retry_timer_.async_wait([self = shared_from_this()](beast::error_code wait_ec) {
      if (!wait_ec) self->DoAccept();
    });
    return;
  }
  beast::error_code opt_ec;
  socket.set_option(tcp::no_delay(true), opt_ec);  // answers are small; do not wait for acks
  if (state_->TryReserveConnection()) {
    std::make_shared<HttpSession>(std::move(socket), state_, HttpSession::Mode::kServe)->Run();
  } else {
    state_->metrics().ConnectionRejected();
    if (state_->TryReserveRejection()) {
      std::make_shared<HttpSession>(std::move(socket), state_, HttpSession::Mode::kReject)->Run();
    } else {
      beast::error_code close_ec;
      socket.close(close_ec);
    }
  }
  DoAccept();
}

}  // namespace once::coordinator
