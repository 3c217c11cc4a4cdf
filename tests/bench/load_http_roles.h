// once-load's HTTP publishers and consumers: each a thread with its own
// keep-alive connection (HTTP answers one request at a time per
// connection). Publishers POST batches (flat out or paced); consumers
// long-poll fetch and ack what they got.
#ifndef ONCE_TESTS_BENCH_LOAD_HTTP_ROLES_H_
#define ONCE_TESTS_BENCH_LOAD_HTTP_ROLES_H_

#include <cstdint>
#include <string>
#include <vector>

#include "tests/bench/load_options.h"
#include "tests/bench/load_stats.h"

namespace once::load {

// Publishes until counters->stop_publishing. `index` of `count`
// publishers staggers the pacing.
void RunHttpPublisher(const LoadOptions& options, const std::string& topic, int index, int count,
                      RunCounters* counters);

// Fetches and acks until counters->stop_consuming; appends the latency of
// each delivery (nanoseconds) to `latencies`.
void RunHttpConsumer(const LoadOptions& options, const std::string& topic, const std::string& group,
                     int index, RunCounters* counters, std::vector<int64_t>* latencies);

}  // namespace once::load

#endif  // ONCE_TESTS_BENCH_LOAD_HTTP_ROLES_H_
