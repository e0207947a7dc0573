#ifndef TESSERA_COMMON_MEMORY_H_
#define TESSERA_COMMON_MEMORY_H_

#include <cstddef>

namespace tessera {

// Restarts the program (execv of /proc/self/exe: same pid, same arguments)
// with glibc's malloc backing its heap by transparent huge pages
// (GLIBC_TUNABLES=glibc.malloc.hugetlb=1, glibc >= 2.35), and returns only
// when it does not: the tunable is already set either way, THP is off on
// this machine, TESSERA_HUGE_PAGES=0, or the exec failed. On a parameter
// server's multi-megabyte weights, gradients and gRPC receive buffers, 4 KiB
// pages cost a page fault per 4 KiB on first touch and a TLB miss per 4 KiB
// on every pass (measured: a 64 MiB push took 0.86 CPU s/GB with them, 0.57
// with huge pages). Call first thing in main(), before threads start.
void RestartWithHugePageMalloc(char** argv);

// Whether this process runs with glibc.malloc.hugetlb=1 (see above).
bool HugePageMallocEnabled();

// Makes glibc malloc keep large freed blocks for reuse instead of returning
// them to the kernel. By default every block over 128 KiB is a fresh mmap, so
// each tensor chunk or pull buffer page-faults its way in (measured: page
// faults in memmove were a third of a parameter server's CPU time), and every
// thread's own arena unmaps its heaps as they empty; one arena, kept, avoids
// both. Call once at the top of main(), before threads start.
void KeepLargeAllocations();

// Turns off Abseil's mutex deadlock detection, which Debian's Abseil build
// leaves on: it keeps a lock graph updated on every Mutex acquisition (a few
// percent of a parameter server's CPU on small pushes). Tests keep it.
// Call once at the top of main(), before threads start.
void DisableMutexDeadlockDetection();

// Copies n bytes from src to dst as memcpy does, with non-temporal stores
// on x86-64 (memcpy elsewhere): dst's cache lines are not read first (no
// read for ownership) and not kept in the cache. For a large destination
// that is not read again soon, such as the parameters a pull of many
// megabytes lands in. The stores are visible to other threads, in order with
// later stores, once it returns. The ranges must not overlap.
void StreamingCopy(void* dst, const void* src, size_t n);

}  // namespace tessera

#endif  // TESSERA_COMMON_MEMORY_H_
