#ifndef TESSERA_COMMON_MEMORY_H_
#define TESSERA_COMMON_MEMORY_H_

namespace tessera {

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

}  // namespace tessera

#endif  // TESSERA_COMMON_MEMORY_H_
