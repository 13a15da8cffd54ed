// libtorch's intra-op thread count for encoding.
//
// libtorch's default is the number of physical cores it detects. On a VM
// whose vCPUs are reported as SMT siblings of one core, that is 1, and the
// forward pass runs on one thread while the other cores idle: half the
// ingest speed on a 2-vCPU machine.
#pragma once

namespace hamdb {

// Sets libtorch's intra-op threads to `threads`, or to every logical CPU
// when threads <= 0, unless OMP_NUM_THREADS is set in the environment (then
// that wins, as libtorch reads it itself). Returns the count in effect.
int SetTorchThreads(int threads);

// Makes libtorch run the calling thread's operations on that thread alone
// (no OpenMP team), for a caller that runs several encodes side by side on
// threads of its own: those threads are its parallelism, so OMP_NUM_THREADS
// does not change this. Like SetTorchThreads(1), it also makes one thread the
// default of threads that have not yet run a libtorch operation. Cheap after
// the first call on a thread. Returns the calling thread's count (1).
int UseOneTorchThreadHere();

}  // namespace hamdb
