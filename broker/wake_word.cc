#include "broker/wake_word.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace once::broker {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "a futex word must be a plain, lock-free 32-bit integer");

long Futex(std::atomic<uint32_t>* word, int op, uint32_t value) {
  return syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), op, value, nullptr, nullptr, 0);
}

}  // namespace

void WakeWord::Wait(uint32_t seen) {
  // EAGAIN: the word changed before the kernel looked; EINTR: a signal.
  // Either way the caller re-checks its condition.
  // Counted as a sleeper before the kernel compares the word: a Bump that
  // does not see the count changed the word before that comparison, which
  // then fails (both sides are sequentially consistent).
  sleepers_.fetch_add(1, std::memory_order_seq_cst);
  while (word_.load(std::memory_order_seq_cst) == seen) {
    if (Futex(&word_, FUTEX_WAIT_PRIVATE, seen) == 0) break;
    if (errno == EAGAIN) break;
  }
  sleepers_.fetch_sub(1, std::memory_order_relaxed);
}

void WakeWord::Bump() {
  word_.fetch_add(1, std::memory_order_seq_cst);
  // No system call when nobody sleeps: a group commit bumps once per group.
  if (sleepers_.load(std::memory_order_seq_cst) > 0) {
    Futex(&word_, FUTEX_WAKE_PRIVATE, static_cast<uint32_t>(INT_MAX));
  }
}

}  // namespace once::broker
