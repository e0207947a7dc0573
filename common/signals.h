#ifndef TESSERA_COMMON_SIGNALS_H_
#define TESSERA_COMMON_SIGNALS_H_

namespace tessera {

// Blocks SIGINT and SIGTERM in the calling thread and in every thread it
// starts afterwards, so that only WaitForTerminationSignal() receives them.
// Call at the top of main(), before any thread starts.
void BlockTerminationSignals();

// Waits until SIGINT or SIGTERM arrives; returns its number.
// REQUIRES: BlockTerminationSignals() was called first.
int WaitForTerminationSignal();

}  // namespace tessera

#endif  // TESSERA_COMMON_SIGNALS_H_
