// The fixture of the integration tests: a real onced child process on
// 127.0.0.1:0 with a temporary data directory, and helpers to talk to it.
#ifndef ONCE_TESTS_COORDINATOR_INTEGRATION_FIXTURE_H_
#define ONCE_TESTS_COORDINATOR_INTEGRATION_FIXTURE_H_

#include <signal.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "boost/json/array.hpp"
#include "boost/json/object.hpp"
#include "boost/json/parse.hpp"
#include "boost/json/serialize.hpp"
#include "boost/json/value.hpp"
#include "gtest/gtest.h"
#include "tests/coordinator/http_test_client.h"
#include "tests/coordinator/onced_process.h"
#include "tests/coordinator/ws_test_client.h"
#include "tests/testing/status_matchers.h"

namespace once::testing {

class ServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/onced_test_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    data_dir_ = root_ + "/data";
  }

  void TearDown() override {
    // Every test ends with a clean drain: SIGTERM, exit status 0 (under
    // ASan this also runs the leak check over everything the test did).
    if (server_ != nullptr) {
      EXPECT_TRUE(server_->Signal(SIGTERM).ok());
      absl::StatusOr<int> code = server_->Wait(std::chrono::seconds(30));
      EXPECT_TRUE(code.ok()) << code.status();
      if (code.ok()) {
        EXPECT_EQ(*code, 0) << "onced's exit status after SIGTERM";
      }
    }
    server_.reset();
    if (HasFailure()) {
      std::cerr << "onced stderr:\n" << ReadFileOrEmpty(root_ + "/onced.log") << "\n";
    }
    std::filesystem::remove_all(root_);
  }

  void StartServer(std::vector<std::string> args = {}) {
    ONCE_ASSERT_OK_AND_ASSIGN(server_, OncedProcess::Start(data_dir_, root_ + "/onced.log", args));
  }

  // Stops the server with SIGTERM and expects a clean exit.
  void StopServer() {
    ONCE_ASSERT_OK(server_->Signal(SIGTERM));
    ONCE_ASSERT_OK_AND_ASSIGN(int code, server_->Wait(std::chrono::seconds(20)));
    EXPECT_EQ(code, 0);
    server_.reset();
  }

  HttpTestClient Client() { return HttpTestClient(server_->port()); }

  // The request, which must get `status`.
  boost::json::value Expect(int status, absl::string_view method, absl::string_view target,
                            absl::string_view body = "",
                            const std::vector<std::pair<std::string, std::string>>& headers = {}) {
    HttpTestClient client = Client();
    absl::StatusOr<HttpResult> r = client.Request(method, target, body, headers);
    EXPECT_TRUE(r.ok()) << method << " " << target << ": " << r.status();
    if (!r.ok()) return nullptr;
    EXPECT_EQ(r->status, status) << method << " " << target << " answered " << r->body;
    return r->json();
  }

  // A metric's value from /metrics (a line "name value"), or -1.
  double Metric(absl::string_view name) {
    HttpTestClient client = Client();
    absl::StatusOr<HttpResult> r = client.Request("GET", "/metrics");
    if (!r.ok() || r->status != 200) return -1;
    for (absl::string_view line : absl::StrSplit(r->body, '\n')) {
      if (absl::StartsWith(line, absl::StrCat(name, " "))) {
        double v = -1;
        if (absl::SimpleAtod(line.substr(name.size() + 1), &v)) return v;
      }
    }
    return -1;
  }

  // Waits (bounded) until the gauge reaches `value`.
  bool WaitForMetric(absl::string_view name, double value,
                     std::chrono::milliseconds timeout = std::chrono::seconds(10)) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Metric(name) == value) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }

  std::string root_;
  std::string data_dir_;
  std::unique_ptr<OncedProcess> server_;
};

inline boost::json::array Messages(const boost::json::value& fetched) {
  if (!fetched.is_object() || !fetched.as_object().contains("messages")) return {};
  return fetched.at("messages").as_array();
}

inline std::vector<std::string> Tokens(const boost::json::array& messages) {
  std::vector<std::string> tokens;
  for (const boost::json::value& m : messages) {
    tokens.emplace_back(m.at("delivery_token").as_string());
  }
  return tokens;
}

inline std::string TokensBody(const std::vector<std::string>& tokens) {
  boost::json::array a;
  for (const std::string& t : tokens) a.emplace_back(t);
  boost::json::object o;
  o["tokens"] = a;
  return boost::json::serialize(o);
}

// A WebSocket frame written as JSON text by a test.
inline boost::json::object Frame(const std::string& text) {
  return boost::json::parse(text).as_object();
}

// The next frame on `ws`, which must come and be of `type` ({} if not).
inline boost::json::object NextFrame(WsTestClient& ws, const std::string& type) {
  absl::StatusOr<boost::json::object> f = ws.Receive();
  EXPECT_TRUE(f.ok()) << "waiting for " << type << ": " << f.status();
  if (!f.ok()) return {};
  EXPECT_EQ(f->at("type").as_string(), type) << boost::json::serialize(*f);
  return *f;
}

}  // namespace once::testing

#endif  // ONCE_TESTS_COORDINATOR_INTEGRATION_FIXTURE_H_
