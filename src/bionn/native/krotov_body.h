/* Body of krotov.c for one floating-point type: KROTOV_REAL, with names from KROTOV_NAME. */

/* sign(w) |w|^(p-1), the factor of the Lp inner product (Eq. (2)), for one row. */
static void KROTOV_NAME(lp_row)(const KROTOV_REAL *w, KROTOV_REAL *out, int64_t n, double p)
{
    if (p == 2.0) {
        memcpy(out, w, (size_t)n * sizeof(KROTOV_REAL));
    } else if (p == 3.0) {
        for (int64_t i = 0; i < n; i++)
            out[i] = w[i] * (KROTOV_REAL)fabs((double)w[i]);
    } else {
        const KROTOV_REAL e = (KROTOV_REAL)(p - 1.0);
        for (int64_t i = 0; i < n; i++) {
            const KROTOV_REAL a = (KROTOV_REAL)pow(fabs((double)w[i]), (double)e);
            out[i] = w[i] > 0 ? a : (w[i] < 0 ? -a : (KROTOV_REAL)0);
        }
    }
}

/* out[rows[r]] = sign(W[rows[r]]) |W[rows[r]]|^(p-1) for r < n_rows: the rows of the kept
 * matrix that the last optimizer step changed. */
void KROTOV_NAME(bionn_krotov_lp_rows)(const KROTOV_REAL *W, KROTOV_REAL *out,
                                        const int64_t *rows, int64_t n_rows, int64_t inputs,
                                        double p, int64_t threads)
{
    (void)threads; /* used by the OpenMP clause only */
#pragma omp parallel for num_threads(KROTOV_TEAM(threads, n_rows * inputs)) schedule(static)
    for (int64_t r = 0; r < n_rows; r++)
        KROTOV_NAME(lp_row)(W + rows[r] * inputs, out + rows[r] * inputs, inputs, p);
}

/* The same with the kept matrix's columns in another order: out[rows[r]][j] is the factor of
 * W[rows[r]][order[j]] (bionn.rules.krotov_hopfield keeps its columns in the order of how often
 * each input is non-zero, so that a minibatch's product can skip the inputs that are zero). */
void KROTOV_NAME(bionn_krotov_lp_rows_ordered)(const KROTOV_REAL *W, KROTOV_REAL *out,
                                                const int64_t *rows, int64_t n_rows,
                                                int64_t inputs, const int64_t *order, double p,
                                                int64_t threads)
{
    (void)threads; /* used by the OpenMP clause only */
#pragma omp parallel for num_threads(KROTOV_TEAM(threads, n_rows * inputs)) schedule(static)
    for (int64_t r = 0; r < n_rows; r++) {
        const KROTOV_REAL *w = W + rows[r] * inputs;
        KROTOV_REAL *o = out + rows[r] * inputs;
        for (int64_t j = 0; j < inputs; j++)
            o[j] = w[order[j]];
        if (p != 2.0)
            KROTOV_NAME(lp_row)(o, o, inputs, p); /* elementwise, so in place is safe */
    }
}

/* The same into the kept matrix held in the memory of its transpose: out_t is (inputs, hidden)
 * and out_t[j][rows[r]] the factor of W[rows[r]][order[j]] (the layout whose leading rows are the
 * block of the most used inputs, which bionn's oneDNN product reads in place). Each thread
 * writes its own rows j of out_t. */
void KROTOV_NAME(bionn_krotov_lp_rows_ordered_t)(const KROTOV_REAL *W, KROTOV_REAL *out_t,
                                                  const int64_t *rows, int64_t n_rows,
                                                  int64_t inputs, int64_t hidden,
                                                  const int64_t *order, double p,
                                                  int64_t threads)
{
    (void)threads; /* used by the OpenMP clause only */
    const KROTOV_REAL e = (KROTOV_REAL)(p - 1.0);
#pragma omp parallel for num_threads(KROTOV_TEAM(threads, n_rows * inputs)) schedule(static)
    for (int64_t j = 0; j < inputs; j++) {
        KROTOV_REAL *o = out_t + j * hidden;
        const KROTOV_REAL *w = W + order[j];
        if (p == 2.0) {
            for (int64_t r = 0; r < n_rows; r++)
                o[rows[r]] = w[rows[r] * inputs];
        } else if (p == 3.0) {
            for (int64_t r = 0; r < n_rows; r++) {
                const KROTOV_REAL x = w[rows[r] * inputs];
                o[rows[r]] = x * (KROTOV_REAL)fabs((double)x);
            }
        } else {
            for (int64_t r = 0; r < n_rows; r++) {
                const KROTOV_REAL x = w[rows[r] * inputs];
                const KROTOV_REAL a = (KROTOV_REAL)pow(fabs((double)x), (double)e);
                o[rows[r]] = x > 0 ? a : (x < 0 ? -a : (KROTOV_REAL)0);
            }
        }
    }
}

/* A key with the order of the floating-point value as an unsigned integer: the sign bit is
 * flipped for numbers >= 0 and every bit for numbers < 0. A positive NaN gets a larger key than
 * +inf, so it ranks first, as torch.topk ranks NaN. */
static inline KROTOV_UINT KROTOV_NAME(order_key)(KROTOV_REAL x)
{
    KROTOV_UINT u;
    memcpy(&u, &x, sizeof u);
    const KROTOV_UINT negative = (KROTOV_UINT)0 - (u >> KROTOV_SIGN_SHIFT);
    return u ^ (negative | ((KROTOV_UINT)1 << KROTOV_SIGN_SHIFT));
}

/* The k strongest units of one example (k <= hidden): top_i[0] is the strongest (the winner,
 * g = 1) and top_i[k-1] the k-th (g = -Delta), Eq. (10). Ties keep the lower unit index first.
 *
 * The k-th largest current is at least T, the k-th largest of the block maxima (k blocks hold
 * that many currents at least as large), so only currents >= T can be among the k strongest.
 * The block maxima are one vectorised pass; the units with currents >= T are then gathered
 * without branches from the blocks whose maximum reaches T (about k blocks), and ranked.
 * Scratch: `block_max` holds ceil(hidden / KROTOV_BLOCK) entries, `candidates` hidden. */
#ifndef KROTOV_BLOCK
#define KROTOV_BLOCK 32
#endif
static void KROTOV_NAME(rank)(const KROTOV_REAL *restrict c, int64_t hidden, int64_t k,
                              KROTOV_UINT *restrict block_max, int32_t *restrict candidates,
                              KROTOV_UINT *restrict top_key, int64_t *restrict top_i)
{
    const int64_t blocks = (hidden + KROTOV_BLOCK - 1) / KROTOV_BLOCK;
    const int64_t full = hidden / KROTOV_BLOCK;
    for (int64_t b = 0; b < full; b++) {
        const KROTOV_REAL *restrict block = c + b * KROTOV_BLOCK;
        KROTOV_UINT m = 0;
        for (int64_t j = 0; j < KROTOV_BLOCK; j++) {
            const KROTOV_UINT key = KROTOV_NAME(order_key)(block[j]);
            m = key > m ? key : m;
        }
        block_max[b] = m;
    }
    if (full < blocks) {
        KROTOV_UINT m = 0;
        for (int64_t j = full * KROTOV_BLOCK; j < hidden; j++) {
            const KROTOV_UINT key = KROTOV_NAME(order_key)(c[j]);
            m = key > m ? key : m;
        }
        block_max[full] = m;
    }
    /* T, the k-th largest block maximum (0 when there are at most k blocks: keep them all) */
    KROTOV_UINT threshold = 0;
    if (blocks > k) {
        int64_t filled = 0;
        for (int64_t b = 0; b < blocks; b++) {
            const KROTOV_UINT key = block_max[b];
            if (filled == k && key <= top_key[k - 1])
                continue;
            int64_t pos = filled < k ? filled++ : k - 1;
            for (; pos > 0 && key > top_key[pos - 1]; pos--)
                top_key[pos] = top_key[pos - 1];
            top_key[pos] = key;
        }
        threshold = top_key[k - 1];
    }
    /* the units with currents >= T, in index order */
    int64_t n = 0;
    for (int64_t b = 0; b < blocks; b++) {
        if (block_max[b] < threshold)
            continue;
        const int64_t end = (b + 1) * KROTOV_BLOCK < hidden ? (b + 1) * KROTOV_BLOCK : hidden;
        for (int64_t j = b * KROTOV_BLOCK; j < end; j++) {
            candidates[n] = (int32_t)j;
            n += KROTOV_NAME(order_key)(c[j]) >= threshold;
        }
    }
    /* the k strongest of them (there are at least k), ties to the lower index */
    int64_t filled = 0;
    for (int64_t e = 0; e < n; e++) {
        const int64_t j = candidates[e];
        const KROTOV_UINT key = KROTOV_NAME(order_key)(c[j]);
        if (filled == k && key <= top_key[k - 1])
            continue;
        int64_t pos = filled < k ? filled++ : k - 1;
        for (; pos > 0 && key > top_key[pos - 1]; pos--) {
            top_key[pos] = top_key[pos - 1];
            top_i[pos] = top_i[pos - 1];
        }
        top_key[pos] = key;
        top_i[pos] = j;
    }
}

/* The paper's normalised minibatch update on the units it touches.
 *
 * currents: batch x hidden, I^A_mu = <W_mu, v^A>_p.   v: batch x inputs.   W: hidden x inputs.
 * For each example the winner gets g = 1 and the k-th unit g = -delta. With
 *     ds_mu,i = sum_A g^A_mu (radius_p v^A_i - I^A_mu W_mu,i)            (Eq. (3))
 * only rows with g != 0 for some example are non-zero. They are returned in ascending order in
 * rows[0..n), and grad[r, :] = -ds[rows[r], :] / scale with scale = max(max|ds|, prec), the
 * pseudo-gradient that SGD(lr = eps) turns into the paper's step.
 *
 * rows: 2*batch entries; grad: 2*batch x inputs; winners: batch entries (each example's
 * strongest unit); won: NULL or hidden flags, set to 1 for every winner. Built with OpenMP,
 * the work is shared by up to `threads` threads.
 * Returns n, or -1 if scratch memory could not be allocated.
 */
int64_t KROTOV_NAME(bionn_krotov_update)(
    const KROTOV_REAL *currents, const KROTOV_REAL *v, const KROTOV_REAL *W,
    int64_t batch, int64_t hidden, int64_t inputs, int64_t k, double delta, double radius_p,
    double prec, int64_t threads, int64_t *rows, KROTOV_REAL *grad, int64_t *winners,
    uint8_t *won, double *scale)
{
    const int team = KROTOV_TEAM(threads, batch * hidden);
    int64_t *kth = malloc((size_t)batch * sizeof(int64_t));
    int32_t *slot = malloc((size_t)hidden * sizeof(int32_t));
    KROTOV_REAL *g_current = malloc((size_t)(2 * batch) * sizeof(KROTOV_REAL));
    KROTOV_REAL *first_current = malloc((size_t)batch * sizeof(KROTOV_REAL));
    KROTOV_REAL *kth_current = malloc((size_t)batch * sizeof(KROTOV_REAL));
    KROTOV_UINT *largest = malloc((size_t)team * sizeof(KROTOV_UINT));
    const KROTOV_REAL rp = (KROTOV_REAL)radius_p;
    const KROTOV_REAL minus_delta = (KROTOV_REAL)(-delta);
    int failed = !kth || !slot || !g_current || !first_current || !kth_current || !largest;
    int64_t n = 0;
    KROTOV_REAL s = 0;
    if (failed)
        goto done;

    /* One parallel region (one thread when the minibatch is small): the ranking split by
     * examples, then the bookkeeping on one thread, then the rows split between the threads. */
#pragma omp parallel num_threads(team)
    {
        int me = 0, members = 1;
#ifdef _OPENMP
        me = omp_get_thread_num();
        members = omp_get_num_threads();
#endif
        /* 1. the ranking; each thread owns its scratch memory */
        KROTOV_UINT *block_max =
            malloc((size_t)((hidden + KROTOV_BLOCK - 1) / KROTOV_BLOCK) * sizeof(KROTOV_UINT));
        int32_t *candidates = malloc((size_t)hidden * sizeof(int32_t));
        KROTOV_UINT *top_key = malloc((size_t)k * sizeof(KROTOV_UINT));
        int64_t *top_i = malloc((size_t)k * sizeof(int64_t));
        if (!block_max || !candidates || !top_key || !top_i) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(static)
        for (int64_t a = 0; a < batch; a++) {
            if (!block_max || !candidates || !top_key || !top_i)
                continue;
            const KROTOV_REAL *ca = currents + a * hidden;
            KROTOV_NAME(rank)(ca, hidden, k, block_max, candidates, top_key, top_i);
            winners[a] = top_i[0];
            kth[a] = top_i[k - 1];
            first_current[a] = ca[top_i[0]];
            kth_current[a] = ca[top_i[k - 1]];
        }
        free(block_max);
        free(candidates);
        free(top_key);
        free(top_i);

        /* 2. which units are touched: rows in ascending order, slot[unit] = its row; and the
         * sums sum_A g I^A of each row */
#pragma omp single
        if (!failed) {
            memset(slot, 0xff, (size_t)hidden * sizeof(int32_t)); /* -1: untouched */
            for (int64_t a = 0; a < batch; a++) {
                slot[winners[a]] = 0;
                slot[kth[a]] = 0;
                if (won)
                    won[winners[a]] = 1;
            }
            for (int64_t u = 0; u < hidden; u++)
                if (slot[u] == 0) {
                    slot[u] = (int32_t)n;
                    rows[n++] = u;
                }
            memset(g_current, 0, (size_t)n * sizeof(KROTOV_REAL));
            for (int64_t a = 0; a < batch; a++) {
                g_current[slot[winners[a]]] += first_current[a];
                g_current[slot[kth[a]]] += minus_delta * kth_current[a];
            }
        }

        /* 3. per row of this thread: the Hebbian sum sum_A g v^A (the thread walks the whole
         * minibatch and adds only into its own rows), then
         *     ds = radius^p (sum_A g v^A) - (sum_A g I^A) W,
         * and its largest |ds|, found as the largest bit pattern of |ds| read as an unsigned
         * integer (the order of non-negative floats): a reduction the compiler vectorises, in
         * which a NaN pattern lies above every number's, so a NaN anywhere shows. */
        const int64_t first_row = failed ? 0 : n * me / members;
        const int64_t end_row = failed ? 0 : n * (me + 1) / members;
        memset(grad + first_row * inputs, 0,
               (size_t)((end_row - first_row) * inputs) * sizeof(KROTOV_REAL));
        for (int64_t a = 0; a < batch && end_row > first_row; a++) {
            const KROTOV_REAL *restrict va = v + a * inputs;
            const int64_t r1 = slot[winners[a]];
            if (r1 >= first_row && r1 < end_row) {
                KROTOV_REAL *restrict h = grad + r1 * inputs;
                for (int64_t i = 0; i < inputs; i++)
                    h[i] += va[i];
            }
            const int64_t r2 = slot[kth[a]];
            if (delta != 0.0 && r2 >= first_row && r2 < end_row) {
                KROTOV_REAL *restrict h = grad + r2 * inputs;
                for (int64_t i = 0; i < inputs; i++)
                    h[i] += minus_delta * va[i];
            }
        }
        KROTOV_UINT mine = 0;
        for (int64_t r = first_row; r < end_row; r++) {
            KROTOV_REAL *restrict d = grad + r * inputs;
            const KROTOV_REAL *restrict w = W + rows[r] * inputs;
            const KROTOV_REAL gi = g_current[r];
            KROTOV_UINT row_max = 0;
            for (int64_t i = 0; i < inputs; i++) {
                const KROTOV_REAL value = rp * d[i] - gi * w[i];
                KROTOV_UINT bits;
                memcpy(&bits, &value, sizeof bits);
                bits &= KROTOV_ABS_MASK;
                row_max = bits > row_max ? bits : row_max;
                d[i] = value;
            }
            mine = row_max > mine ? row_max : mine;
        }
        largest[me] = mine;

        /* 4. max|ds| over all rows (prec as its floor), then each thread divides its rows */
#pragma omp barrier
#pragma omp single
        {
            KROTOV_UINT all = 0;
            for (int t = 0; t < members; t++)
                all = largest[t] > all ? largest[t] : all;
            KROTOV_REAL top;
            memcpy(&top, &all, sizeof top);
            *scale = top != top ? (double)NAN : ((double)top > prec ? (double)top : prec);
            s = (KROTOV_REAL)*scale;
        }
        for (int64_t e = first_row * inputs; e < end_row * inputs; e++)
            grad[e] = -grad[e] / s;
    }

done:
    free(kth);
    free(slot);
    free(g_current);
    free(first_current);
    free(kth_current);
    free(largest);
    return failed ? -1 : n;
}

/* The currents of Eq. (2) from each example's own non-zero inputs:
 *
 *     out[b][h] = sum over the inputs q with v[b][q] != 0 of v[b][q] wt[rank[q]][h],
 *
 * wt being the kept sign(W)|W|^(p-1) in the memory of its transpose, (inputs, hidden), row
 * rank[q] for input q. A NaN or inf input counts as non-zero. First the non-zero inputs of every
 * example are listed (nz_start[b] .. nz_start[b + 1] in nz_row and nz_val, buffers of
 * batch * inputs and batch + 1 entries); then, for a tile of hidden units at a time, each
 * example's tile of currents is summed in registers over its own list, in the order of the
 * inputs. The work is that of the non-zero entries alone (a fifth of MNIST's), against a dense
 * product over every input used by any example of the minibatch (two thirds of them). Tiles
 * are shared between threads; each thread writes its own columns of out. Returns the number of
 * non-zero entries. */
#if !defined(KROTOV_VBYTES)
/* The width of one vector: a register of the instruction set compiled for (eight of them hold
 * a tile's sums, which leaves registers for the loads) */
#if defined(__AVX512F__)
#define KROTOV_VBYTES 64
#elif defined(__AVX__)
#define KROTOV_VBYTES 32
#else
#define KROTOV_VBYTES 16
#endif
#endif
#define KROTOV_VLEN ((int64_t)(KROTOV_VBYTES / sizeof(KROTOV_REAL)))
#if defined(__GNUC__)
typedef KROTOV_REAL KROTOV_NAME(vec) __attribute__((vector_size(KROTOV_VBYTES)));

static inline KROTOV_NAME(vec) KROTOV_NAME(vload)(const KROTOV_REAL *p)
{
    KROTOV_NAME(vec) x;
    memcpy(&x, p, sizeof x);
    return x;
}

/* The tiles of 8 vectors (8 * KROTOV_VLEN hidden units from h0) and of one, for every
 * example; the sums are held in named variables, which compilers keep in registers, and each
 * step is one fused multiply-add (GCC contracts a * b + c only when told; clang does by
 * default within an expression). */
#if !defined(__clang__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif
static void KROTOV_NAME(tile8)(const KROTOV_REAL *wt, int64_t hidden, int64_t h0,
                               KROTOV_REAL *out, int64_t batch, const int32_t *nz_row,
                               const KROTOV_REAL *nz_val, const int64_t *nz_start)
{
    const int64_t L = KROTOV_VLEN;
    for (int64_t b = 0; b < batch; b++) {
        KROTOV_NAME(vec) a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0}, a4 = {0}, a5 = {0}, a6 = {0},
                         a7 = {0};
        for (int64_t i = nz_start[b]; i < nz_start[b + 1]; i++) {
            const KROTOV_REAL a = nz_val[i];
            const KROTOV_REAL *w = wt + (int64_t)nz_row[i] * hidden + h0;
            a0 += a * KROTOV_NAME(vload)(w);
            a1 += a * KROTOV_NAME(vload)(w + L);
            a2 += a * KROTOV_NAME(vload)(w + 2 * L);
            a3 += a * KROTOV_NAME(vload)(w + 3 * L);
            a4 += a * KROTOV_NAME(vload)(w + 4 * L);
            a5 += a * KROTOV_NAME(vload)(w + 5 * L);
            a6 += a * KROTOV_NAME(vload)(w + 6 * L);
            a7 += a * KROTOV_NAME(vload)(w + 7 * L);
        }
        KROTOV_REAL *o = out + b * hidden + h0;
        memcpy(o, &a0, sizeof a0);
        memcpy(o + L, &a1, sizeof a1);
        memcpy(o + 2 * L, &a2, sizeof a2);
        memcpy(o + 3 * L, &a3, sizeof a3);
        memcpy(o + 4 * L, &a4, sizeof a4);
        memcpy(o + 5 * L, &a5, sizeof a5);
        memcpy(o + 6 * L, &a6, sizeof a6);
        memcpy(o + 7 * L, &a7, sizeof a7);
    }
}

static void KROTOV_NAME(tile1)(const KROTOV_REAL *wt, int64_t hidden, int64_t h0,
                               KROTOV_REAL *out, int64_t batch, const int32_t *nz_row,
                               const KROTOV_REAL *nz_val, const int64_t *nz_start)
{
    for (int64_t b = 0; b < batch; b++) {
        KROTOV_NAME(vec) a0 = {0};
        for (int64_t i = nz_start[b]; i < nz_start[b + 1]; i++)
            a0 += nz_val[i] * KROTOV_NAME(vload)(wt + (int64_t)nz_row[i] * hidden + h0);
        memcpy(out + b * hidden + h0, &a0, sizeof a0);
    }
}
#if !defined(__clang__)
#pragma GCC pop_options
#endif
#endif

int64_t KROTOV_NAME(bionn_krotov_sparse_currents)(const KROTOV_REAL *v, int64_t batch,
                                                  int64_t inputs, const KROTOV_REAL *wt,
                                                  int64_t hidden, const int64_t *rank,
                                                  KROTOV_REAL *out, int32_t *nz_row,
                                                  KROTOV_REAL *nz_val, int64_t *nz_start,
                                                  int64_t threads)
{
    (void)threads; /* used by the OpenMP clause only */
    int64_t n = 0;
    for (int64_t b = 0; b < batch; b++) {
        nz_start[b] = n;
        const KROTOV_REAL *x = v + b * inputs;
        for (int64_t q = 0; q < inputs; q++) { /* branch-free: every entry written, kept if != 0 */
            nz_row[n] = (int32_t)rank[q];
            nz_val[n] = x[q];
            n += x[q] != 0;
        }
    }
    nz_start[batch] = n;
    int64_t done = 0;
#if defined(__GNUC__)
    const int64_t wide = 8 * KROTOV_VLEN;
    const int64_t tiles = hidden / wide;
#pragma omp parallel for num_threads(KROTOV_TEAM(threads, n * hidden / 8)) schedule(static)
    for (int64_t t = 0; t < tiles; t++)
        KROTOV_NAME(tile8)(wt, hidden, t * wide, out, batch, nz_row, nz_val, nz_start);
    done = tiles * wide;
    for (; done + KROTOV_VLEN <= hidden; done += KROTOV_VLEN)
        KROTOV_NAME(tile1)(wt, hidden, done, out, batch, nz_row, nz_val, nz_start);
#endif
    for (int64_t b = 0; b < batch; b++) { /* the last columns, fewer than one vector */
        KROTOV_REAL *o = out + b * hidden;
        for (int64_t h = done; h < hidden; h++)
            o[h] = 0;
        for (int64_t i = nz_start[b]; i < nz_start[b + 1]; i++) {
            const KROTOV_REAL a = nz_val[i];
            const KROTOV_REAL *w = wt + (int64_t)nz_row[i] * hidden;
            for (int64_t h = done; h < hidden; h++)
                o[h] += a * w[h];
        }
    }
    return n;
}
#undef KROTOV_VLEN
