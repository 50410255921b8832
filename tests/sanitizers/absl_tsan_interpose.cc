// ThreadSanitizer builds only (cmake/QragSanitize.cmake links this object into every executable).
//
// Debian's Abseil is not built with -fsanitize=thread, so absl::Mutex and absl::CondVar, which qrag and
// gRPC use, synchronize invisibly to TSan, and every access they order would be reported as a race. This
// file interposes their public entry points (the executable's definitions win over libabsl_synchronization.so
// for every caller, the library itself included), calls the library's own code found with
// dlsym(RTLD_NEXT), and tells TSan what happened with its mutex annotations (sanitizer/tsan_interface.h).
// The waits (Await, CondVar::Wait, the LockWhen family's) release and re-take the lock inside; they are
// annotated as an unlock before and a lock after. The library evaluates their Condition while it holds the lock
// internally (on the waiting thread or on the thread that unlocks), which TSan cannot see: the Condition is
// wrapped so that its evaluation acquires the mutex's clock before and releases into it after.
#include <dlfcn.h>
#include <sanitizer/tsan_interface.h>

#include <cstdio>
#include <cstdlib>

#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace {

template <typename Fn>
Fn Real(const char* mangled) {
  void* p = dlsym(RTLD_NEXT, mangled);
  if (p == nullptr) {
    std::fprintf(stderr, "absl_tsan_interpose: %s not found in Abseil\n", mangled);
    std::abort();
  }
  return reinterpret_cast<Fn>(p);
}

using absl::Condition;
using absl::Duration;
using absl::Mutex;
using absl::Time;

constexpr unsigned kRead = __tsan_mutex_read_lock;

void PreLock(const void* m, unsigned flags) { __tsan_mutex_pre_lock(const_cast<void*>(m), flags); }
void PostLock(const void* m, unsigned flags) { __tsan_mutex_post_lock(const_cast<void*>(m), flags, 0); }
void PreUnlock(const void* m, unsigned flags) { __tsan_mutex_pre_unlock(const_cast<void*>(m), flags); }
void PostUnlock(const void* m, unsigned flags) { __tsan_mutex_post_unlock(const_cast<void*>(m), flags); }

// The library's entry points call each other (AwaitWithTimeout calls AwaitWithDeadline, ...), and those calls
// land here too: only the outermost call on a thread is annotated.
thread_local int nesting = 0;
struct Nest {
  Nest() : outer(nesting++ == 0) {}
  ~Nest() { --nesting; }
  const bool outer;
};

// A Condition evaluated "under" the mutex as far as TSan knows.
struct Guarded {
  const Condition* cond;
  void* mu;
};
bool EvalGuarded(Guarded* g) {
  __tsan_acquire(g->mu);
  const bool r = g->cond->Eval();
  __tsan_release(g->mu);
  return r;
}

}  // namespace

#define QRAG_REAL(type, name) static const auto real = Real<type>(name)

namespace absl {
ABSL_NAMESPACE_BEGIN

void Mutex::Lock() {
  QRAG_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex4LockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreLock(this, 0);
  real(this);
  PostLock(this, 0);
}

void Mutex::Unlock() {
  QRAG_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex6UnlockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreUnlock(this, 0);
  real(this);
  PostUnlock(this, 0);
}

void Mutex::ReaderLock() {
  QRAG_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex10ReaderLockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreLock(this, kRead);
  real(this);
  PostLock(this, kRead);
}

void Mutex::ReaderUnlock() {
  QRAG_REAL(void (*)(Mutex*), "_ZN4absl7debian35Mutex12ReaderUnlockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreUnlock(this, kRead);
  real(this);
  PostUnlock(this, kRead);
}

bool Mutex::TryLock() {
  QRAG_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex7TryLockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreLock(this, __tsan_mutex_try_lock);
  const bool ok = real(this);
  PostLock(this, __tsan_mutex_try_lock | (ok ? 0 : __tsan_mutex_try_lock_failed));
  return ok;
}

bool Mutex::ReaderTryLock() {
  QRAG_REAL(bool (*)(Mutex*), "_ZN4absl7debian35Mutex13ReaderTryLockEv");
  Nest nest;
  if (!nest.outer) return real(this);
  PreLock(this, kRead | __tsan_mutex_try_lock);
  const bool ok = real(this);
  PostLock(this, kRead | __tsan_mutex_try_lock | (ok ? 0 : __tsan_mutex_try_lock_failed));
  return ok;
}

void Mutex::LockWhen(const Condition& cond) {
  QRAG_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex8LockWhenERKNS0_9ConditionE");
  Nest nest;
  if (!nest.outer) return real(this, cond);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreLock(this, 0);
  real(this, wrapped);
  PostLock(this, 0);
}

void Mutex::ReaderLockWhen(const Condition& cond) {
  QRAG_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex14ReaderLockWhenERKNS0_9ConditionE");
  Nest nest;
  if (!nest.outer) return real(this, cond);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreLock(this, kRead);
  real(this, wrapped);
  PostLock(this, kRead);
}

bool Mutex::LockWhenWithTimeout(const Condition& cond, Duration timeout) {
  QRAG_REAL(bool (*)(Mutex*, const Condition&, Duration),
            "_ZN4absl7debian35Mutex19LockWhenWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Nest nest;
  if (!nest.outer) return real(this, cond, timeout);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreLock(this, 0);
  const bool r = real(this, wrapped, timeout);
  PostLock(this, 0);
  return r;
}

bool Mutex::LockWhenWithDeadline(const Condition& cond, Time deadline) {
  QRAG_REAL(bool (*)(Mutex*, const Condition&, Time),
            "_ZN4absl7debian35Mutex20LockWhenWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Nest nest;
  if (!nest.outer) return real(this, cond, deadline);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreLock(this, 0);
  const bool r = real(this, wrapped, deadline);
  PostLock(this, 0);
  return r;
}

void Mutex::Await(const Condition& cond) {
  QRAG_REAL(void (*)(Mutex*, const Condition&), "_ZN4absl7debian35Mutex5AwaitERKNS0_9ConditionE");
  Nest nest;
  if (!nest.outer) return real(this, cond);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreUnlock(this, 0);
  PostUnlock(this, 0);
  real(this, wrapped);
  PreLock(this, 0);
  PostLock(this, 0);
}

bool Mutex::AwaitWithTimeout(const Condition& cond, Duration timeout) {
  QRAG_REAL(bool (*)(Mutex*, const Condition&, Duration),
            "_ZN4absl7debian35Mutex16AwaitWithTimeoutERKNS0_9ConditionENS0_8DurationE");
  Nest nest;
  if (!nest.outer) return real(this, cond, timeout);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreUnlock(this, 0);
  PostUnlock(this, 0);
  const bool r = real(this, wrapped, timeout);
  PreLock(this, 0);
  PostLock(this, 0);
  return r;
}

bool Mutex::AwaitWithDeadline(const Condition& cond, Time deadline) {
  QRAG_REAL(bool (*)(Mutex*, const Condition&, Time),
            "_ZN4absl7debian35Mutex17AwaitWithDeadlineERKNS0_9ConditionENS0_4TimeE");
  Nest nest;
  if (!nest.outer) return real(this, cond, deadline);
  Guarded g{&cond, this};
  const Condition wrapped(&EvalGuarded, &g);
  PreUnlock(this, 0);
  PostUnlock(this, 0);
  const bool r = real(this, wrapped, deadline);
  PreLock(this, 0);
  PostLock(this, 0);
  return r;
}

void CondVar::Wait(Mutex* mu) {
  QRAG_REAL(void (*)(CondVar*, Mutex*), "_ZN4absl7debian37CondVar4WaitEPNS0_5MutexE");
  Nest nest;
  if (!nest.outer) return real(this, mu);
  PreUnlock(mu, 0);
  PostUnlock(mu, 0);
  real(this, mu);
  PreLock(mu, 0);
  PostLock(mu, 0);
}

bool CondVar::WaitWithTimeout(Mutex* mu, Duration timeout) {
  QRAG_REAL(bool (*)(CondVar*, Mutex*, Duration),
            "_ZN4absl7debian37CondVar15WaitWithTimeoutEPNS0_5MutexENS0_8DurationE");
  Nest nest;
  if (!nest.outer) return real(this, mu, timeout);
  PreUnlock(mu, 0);
  PostUnlock(mu, 0);
  const bool r = real(this, mu, timeout);
  PreLock(mu, 0);
  PostLock(mu, 0);
  return r;
}

bool CondVar::WaitWithDeadline(Mutex* mu, Time deadline) {
  QRAG_REAL(bool (*)(CondVar*, Mutex*, Time),
            "_ZN4absl7debian37CondVar16WaitWithDeadlineEPNS0_5MutexENS0_4TimeE");
  Nest nest;
  if (!nest.outer) return real(this, mu, deadline);
  PreUnlock(mu, 0);
  PostUnlock(mu, 0);
  const bool r = real(this, mu, deadline);
  PreLock(mu, 0);
  PostLock(mu, 0);
  return r;
}

ABSL_NAMESPACE_END
}  // namespace absl
