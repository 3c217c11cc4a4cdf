#include "coordinator/api_exchange.h"

#include <atomic>
#include <utility>

#include "spdlog/spdlog.h"

namespace once::coordinator {

const std::string& ApiRequest::param(absl::string_view name) const {
  static const std::string* const kEmpty = new std::string();
  auto it = params.find(name);
  return it == params.end() ? *kEmpty : it->second;
}

class Responder::State {
 public:
  explicit State(SendFn send) : send_(std::move(send)) {}

  ~State() {
    if (sent_.load(std::memory_order_acquire)) return;
    // Nobody answered: the handler dropped the request. Answer for it.
    spdlog::error("a handler dropped its request without answering; sending 500");
    ApiResponse response;
    response.status = 500;
    response.body =
        R"({"error":{"code":"internal","message":"the request was dropped without an answer"}})";
    send_(std::move(response));
  }

  void Send(ApiResponse response) {
    if (sent_.exchange(true, std::memory_order_acq_rel)) {
      spdlog::error("a handler answered a request twice; the second answer ({}) is dropped",
                    response.status);
      return;
    }
    send_(std::move(response));
  }

  bool sent() const { return sent_.load(std::memory_order_acquire); }

 private:
  const SendFn send_;
  std::atomic<bool> sent_{false};
};

Responder::Responder(SendFn send) : state_(std::make_shared<State>(std::move(send))) {}

void Responder::Send(ApiResponse response) const { state_->Send(std::move(response)); }

bool Responder::sent() const { return state_->sent(); }

}  // namespace once::coordinator
