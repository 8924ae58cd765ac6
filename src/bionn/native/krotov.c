/* The ranking and the row update of the competing-hidden-units rule (Krotov & Hopfield 2019),
 * fused in one pass over a minibatch. bionn.rules.krotov_hopfield computes the currents
 * I = v sign(W)|W|^(p-1)^T with torch's matrix product and hands them here; everything after
 * the product is done in this file, for float and for double (krotov_body.h, included twice).
 *
 * The functions have plain C signatures and are called through ctypes: no Python or torch
 * headers are needed to build them.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Built with OpenMP, the minibatch is shared between threads. bionn links the kernel against
 * the OpenMP runtime that torch has already loaded (same library name), so the kernel's
 * parallel regions run on torch's own worker threads rather than on a second pool. A region
 * runs on one thread when its work is too small to pay for waking the others. */
#ifdef _OPENMP
#include <omp.h>
#endif
#define KROTOV_MIN_PARALLEL 16384
#define KROTOV_TEAM(threads, work) \
    ((int)((work) >= KROTOV_MIN_PARALLEL && (threads) > 1 ? (threads) : 1))

#define KROTOV_REAL float
#define KROTOV_UINT uint32_t
#define KROTOV_ABS_MASK UINT32_C(0x7fffffff)
#define KROTOV_SIGN_SHIFT 31
#define KROTOV_NAME(name) name##_f32
#include "krotov_body.h"
#undef KROTOV_REAL
#undef KROTOV_UINT
#undef KROTOV_ABS_MASK
#undef KROTOV_SIGN_SHIFT
#undef KROTOV_NAME

#define KROTOV_REAL double
#define KROTOV_UINT uint64_t
#define KROTOV_ABS_MASK UINT64_C(0x7fffffffffffffff)
#define KROTOV_SIGN_SHIFT 63
#define KROTOV_NAME(name) name##_f64
#include "krotov_body.h"
#undef KROTOV_REAL
#undef KROTOV_UINT
#undef KROTOV_ABS_MASK
#undef KROTOV_SIGN_SHIFT
#undef KROTOV_NAME

/* The bytes of one vector of the sparse product's tiles (64 with AVX-512, 32 with AVX, else
 * 16): --product auto takes that product only from 32 up, where it was measured faster. */
int64_t bionn_krotov_vector_bytes(void) { return KROTOV_VBYTES; }

/* The version of the interface below; the Python side checks it after loading. */
int64_t bionn_krotov_abi(void) { return 5; }
