#ifndef ONCE_BROKER_WAKE_WORD_H_
#define ONCE_BROKER_WAKE_WORD_H_

#include <atomic>
#include <cstdint>

namespace once::broker {

// A counter that threads sleep on until it changes: Load() it, check your
// condition, and Wait(seen) if it does not hold yet; whoever changes the
// condition calls Bump(), which wakes every sleeper with one futex wake.
//
// Why not std::atomic::wait: libstdc++ spins with sched_yield before it
// sleeps, and with many more waiters than cores (16 appenders on 2 cores)
// those yields became dozens of context switches per append. Why not a
// mutex with a condition: a mutex wakes one waiter at a time, each after
// the previous one released it, a chain of context switches. A futex
// sleeps at once and wakes all sleepers in one system call.
//
// Thread-safe. Spurious wake-ups are possible: callers re-check.
class WakeWord {
 public:
  WakeWord() = default;
  WakeWord(const WakeWord&) = delete;
  WakeWord& operator=(const WakeWord&) = delete;

  uint32_t Load() const { return word_.load(std::memory_order_acquire); }

  // Sleeps while the word still equals `seen` (returns at once otherwise).
  void Wait(uint32_t seen);

  // Changes the word and wakes every thread in Wait.
  void Bump();

 private:
  std::atomic<uint32_t> word_{0};
  std::atomic<int> sleepers_{0};  // threads in Wait
};

}  // namespace once::broker

#endif  // ONCE_BROKER_WAKE_WORD_H_
