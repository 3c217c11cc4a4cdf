// Threads of their own that run the tasks posted to them, first posted
// first started: the executor of the disk logs' asynchronous group commits
// (DiskLogOptions::executor), kept apart from a service's request workers
// so that a request blocked on an append never waits for a worker.
#ifndef ONCE_BROKER_TASK_POOL_H_
#define ONCE_BROKER_TASK_POOL_H_

#include <deque>
#include <functional>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/any_invocable.h"
#include "absl/synchronization/mutex.h"

namespace once::broker {

class TaskPool {
 public:
  explicit TaskPool(int threads = 1);
  // Runs every task posted before (and those they post), then joins. Must
  // not run on one of the pool's own threads.
  ~TaskPool();
  TaskPool(const TaskPool&) = delete;
  TaskPool& operator=(const TaskPool&) = delete;

  // Thread-safe; also from a task.
  void Post(absl::AnyInvocable<void()> task) ABSL_LOCKS_EXCLUDED(mu_);

  // Post as a std::function, for DiskLogOptions::executor. The pool must
  // outlive whatever holds it.
  std::function<void(absl::AnyInvocable<void()>)> AsExecutor() {
    return [this](absl::AnyInvocable<void()> task) { Post(std::move(task)); };
  }

 private:
  void Run() ABSL_LOCKS_EXCLUDED(mu_);

  absl::Mutex mu_;
  std::deque<absl::AnyInvocable<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;  // last: they start once the rest is built
};

}  // namespace once::broker

#endif  // ONCE_BROKER_TASK_POOL_H_
