/* The body of recurrent.c for one floating type: REAL is float or double, NAME(x) appends the
 * type's suffix. Included twice by recurrent.c. See recurrent.c for the algorithm and the layout
 * of every array. */

static REAL NAME(phi)(int64_t act, REAL h, REAL *dphi) {
    REAL y;
    if (act == 0) {          /* tanh */
        y = (REAL)tanh((double)h);
        *dphi = (REAL)1 - y * y;
    } else if (act == 1) {   /* relu */
        y = h > 0 ? h : (REAL)0;
        *dphi = h > 0 ? (REAL)1 : (REAL)0;
    } else {                 /* sigmoid */
        y = (REAL)(1.0 / (1.0 + exp(-(double)h)));
        *dphi = y - y * y;
    }
    return y;
}

int64_t NAME(bionn_online)(
    int64_t method, int64_t steps, int64_t batch, int64_t n, int64_t f, int64_t c,
    const REAL *x, const int64_t *cls, const REAL *goal, const REAL *scale,
    const uint8_t *has_target, const REAL *theta, const REAL *w_out, const REAL *b_out,
    const REAL *fb, REAL alpha, int64_t act, const REAL *nu, REAL eps,
    REAL *a, REAL *trace, REAL *a_tilde, REAL *out, REAL *g_theta, REAL *g_wout,
    REAL *g_bout, REAL *work)
{
    const int64_t d = n + f + 1;
    const REAL keep = (REAL)1 - alpha;
    const REAL norm_nu = (REAL)sqrt((double)n);
    REAL *z = work;            /* d: [a_{t-1}; x_t; 1] */
    REAL *dphi = z + d;        /* n */
    REAL *anew = dphi + n;     /* n */
    REAL *e = anew + n;        /* c */
    REAL *cv = e + c;          /* n */
    REAL *ja = cv + n;         /* n */
    /* example by example (they are independent), so that one example's trace stays in the
     * cache for the whole stretch of steps */
    for (int64_t b = 0; b < batch; ++b) {
        REAL *ab = a + b * n;
        REAL *pb = trace + b * n * d;
        for (int64_t t = 0; t < steps; ++t) {
            const REAL *xt = x + (t * batch + b) * f;
            memcpy(z, ab, (size_t)n * sizeof(REAL));
            memcpy(z + n, xt, (size_t)f * sizeof(REAL));
            z[d - 1] = (REAL)1;
            /* Eq. (1): h = Theta z, a_t = (1 - alpha) a_{t-1} + alpha phi(h) */
            for (int64_t i = 0; i < n; ++i) {
                const REAL *row = theta + i * d;
                REAL h = 0;
                for (int64_t l = 0; l < d; ++l) h += row[l] * z[l];
                REAL y = NAME(phi)(act, h, dphi + i);
                anew[i] = keep * z[i] + alpha * y;
            }
            if (method == 0) {
                /* RFLO Eq. (15): p = (1 - alpha) p + alpha phi'(h) z^T */
                for (int64_t i = 0; i < n; ++i) {
                    REAL *pr = pb + i * d;
                    const REAL s = alpha * dphi[i];
                    for (int64_t l = 0; l < d; ++l) pr[l] = keep * pr[l] + s * z[l];
                }
            } else {
                /* UORO (Tallec & Ollivier Alg. 1): J a~, the normalisers, the new factors */
                REAL *at = a_tilde + b * n;
                const REAL *nub = nu + (t * batch + b) * n;
                double nja = 0, nv = 0, nz = 0, nt = 0;
                for (int64_t i = 0; i < n; ++i) {
                    const REAL *row = theta + i * d; /* W = Theta[:, :n] */
                    REAL wa = 0;
                    for (int64_t j = 0; j < n; ++j) wa += row[j] * at[j];
                    ja[i] = keep * at[i] + alpha * dphi[i] * wa;
                    nja += (double)ja[i] * ja[i];
                    cv[i] = nub[i] * dphi[i]; /* v = nu * phi'(h) */
                    nv += (double)cv[i] * cv[i];
                }
                for (int64_t l = 0; l < d; ++l) nz += (double)z[l] * z[l];
                for (int64_t k = 0; k < n * d; ++k) nt += (double)pb[k] * pb[k];
                const REAL rho0 = (REAL)sqrt(((REAL)sqrt(nt) + eps) / ((REAL)sqrt(nja) + eps));
                const REAL rho1 = (REAL)sqrt((alpha * (REAL)sqrt(nv) * (REAL)sqrt(nz) + eps)
                                             / (norm_nu + eps));
                for (int64_t i = 0; i < n; ++i) at[i] = rho0 * ja[i] + rho1 * nub[i];
                const REAL inv0 = (REAL)1 / rho0, s1 = alpha / rho1;
                for (int64_t i = 0; i < n; ++i) {
                    REAL *pr = pb + i * d;
                    const REAL s = s1 * cv[i];
                    for (int64_t l = 0; l < d; ++l) pr[l] = pr[l] * inv0 + s * z[l];
                }
            }
            memcpy(ab, anew, (size_t)n * sizeof(REAL));
            /* the readout y_t = W_out a_t + b_out */
            REAL *ot = out + (t * batch + b) * c;
            for (int64_t k = 0; k < c; ++k) {
                const REAL *row = w_out + k * n;
                REAL s = b_out[k];
                for (int64_t i = 0; i < n; ++i) s += row[i] * anew[i];
                ot[k] = s;
            }
            if (!has_target[t]) continue;
            /* Eq. (3): e_t = dL/dy_t of this step's share of the loss */
            if (cls != NULL) {
                const int64_t target = cls[t * batch + b];
                if (target < 0) continue;
                REAL top = ot[0], sum = 0;
                for (int64_t k = 1; k < c; ++k) top = ot[k] > top ? ot[k] : top;
                for (int64_t k = 0; k < c; ++k) {
                    e[k] = (REAL)exp((double)(ot[k] - top));
                    sum += e[k];
                }
                const REAL sc = scale[t * batch + b];
                for (int64_t k = 0; k < c; ++k) e[k] = e[k] / sum * sc;
                e[target] -= sc;
            } else {
                int any = 0;
                for (int64_t k = 0; k < c; ++k) {
                    const REAL sc = scale[(t * batch + b) * c + k];
                    e[k] = sc != 0 ? (ot[k] - goal[(t * batch + b) * c + k]) * sc : (REAL)0;
                    any |= sc != 0;
                }
                if (!any) continue;
            }
            for (int64_t k = 0; k < c; ++k) {
                REAL *row = g_wout + k * n;
                for (int64_t i = 0; i < n; ++i) row[i] += e[k] * anew[i];
                g_bout[k] += e[k];
            }
            if (method == 0) {
                /* RFLO Eq. (14): dTheta += (B e_t)_i p[i, :] */
                for (int64_t i = 0; i < n; ++i) {
                    REAL s = 0;
                    for (int64_t k = 0; k < c; ++k) s += fb[i * c + k] * e[k];
                    REAL *gr = g_theta + i * d;
                    const REAL *pr = pb + i * d;
                    for (int64_t l = 0; l < d; ++l) gr[l] += s * pr[l];
                }
            } else {
                /* UORO-g: dTheta += ((W_out^T e_t) . a~) theta~ */
                const REAL *at = a_tilde + b * n;
                REAL s = 0;
                for (int64_t i = 0; i < n; ++i) {
                    REAL ci = 0;
                    for (int64_t k = 0; k < c; ++k) ci += w_out[k * n + i] * e[k];
                    s += ci * at[i];
                }
                for (int64_t k = 0; k < n * d; ++k) g_theta[k] += s * pb[k];
            }
        }
    }
    return 0;
}
