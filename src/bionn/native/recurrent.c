/* RFLO and UORO on the leaky rate RNN over a stretch of steps, for float and for double
 * (recurrent_body.h, included twice). bionn.rules.temporal_credit.online_gradients calls it
 * where the network is small: there a step is a few thousand multiply-adds, and one C loop over
 * the whole stretch replaces a few dozen tensor operations per step, each of whose fixed cost
 * exceeds its arithmetic. The torch code computes the same thing and is the fallback.
 *
 * Arrays (C order, time-major): x (steps, batch, f); cls (steps, batch) class index, -1 where
 * no target (NULL for values); goal and scale (steps, batch, c) for values, scale (steps, batch)
 * = keep / count for classes; has_target (steps); theta = [W | U | b] (n, d), d = n + f + 1;
 * w_out (c, n); b_out (c); fb = RFLO's B (n, c); nu (steps, batch, n) UORO's signs. State,
 * updated in place: a (batch, n); trace (batch, n, d) = RFLO's p or UORO's theta~; a_tilde
 * (batch, n); out (steps, batch, c); gradients g_theta (n, d), g_wout (c, n), g_bout (c), added
 * to. work: scratch of d + 4 n + c numbers. method 0 = RFLO, 1 = UORO; act 0 = tanh, 1 = relu,
 * 2 = sigmoid.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define REAL float
#define NAME(name) name##_f32
#include "recurrent_body.h"
#undef REAL
#undef NAME

#define REAL double
#define NAME(name) name##_f64
#include "recurrent_body.h"
#undef REAL
#undef NAME

/* The version of the interface above; the Python side checks it after loading. */
int64_t bionn_recurrent_abi(void) { return 1; }
