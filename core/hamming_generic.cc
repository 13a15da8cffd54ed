// Hamming kernels for HammingIsa::kGeneric; see hamming_impl.inc. Compiler flags
// for this file are set in core/CMakeLists.txt.
#define HAMDB_ISA_NS isa_generic
#define HAMDB_ISA_ENUM HammingIsa::kGeneric
#include "core/hamming_impl.inc"
