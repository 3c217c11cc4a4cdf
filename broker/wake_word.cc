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
  while (word_.load(std::memory_order_acquire) == seen) {
    if (Futex(&word_, FUTEX_WAIT_PRIVATE, seen) == 0) return;
    if (errno == EAGAIN) return;
  }
}

void WakeWord::Bump() {
  word_.fetch_add(1, std::memory_order_acq_rel);
  Futex(&word_, FUTEX_WAKE_PRIVATE, static_cast<uint32_t>(INT_MAX));
}

}  // namespace once::broker
