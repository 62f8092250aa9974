/* test_linalg.c: matmul in every 1-D/2-D/N-D broadcast form, bmm, linear with and without bias,
 * cat/stack, index_select/index_add_, against naive loops, over float dtypes and
 * non-contiguous operands. */
#include "tref.h"

static const int fdts[4] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16};

static double mm_tol(int dt, double want, double absdot) {
  switch (dt) {
  case DDPM_FLOAT64: return 1e-12 * (1 + absdot);
  case DDPM_FLOAT32: return 2e-6 * (1 + absdot);
  default: return dtype_tol(dt, want) + 1e-5 * absdot;
  }
}

/* naive matmul with PyTorch's rules; out index oi of the result shape */
typedef struct {
  int na, nb;
  int64_t sa[5], sb[5];
} mshape;
static const mshape mshapes[] = {
    {1, 1, {4}, {4}},                         /* dot */
    {1, 2, {4}, {4, 3}},                      /* vector @ matrix */
    {2, 1, {5, 4}, {4}},                      /* matrix @ vector */
    {2, 2, {5, 4}, {4, 3}},                   /* mm */
    {3, 1, {2, 5, 4}, {4}},                   /* batched @ vector */
    {1, 3, {4}, {2, 4, 3}},                   /* vector @ batched */
    {3, 2, {2, 5, 4}, {4, 3}},                /* batched @ matrix: folded into one GEMM */
    {2, 3, {5, 4}, {2, 4, 3}},                /* matrix @ batched */
    {4, 3, {2, 1, 5, 4}, {3, 4, 2}},          /* batch dims broadcast both ways */
    {4, 4, {2, 3, 5, 4}, {2, 3, 4, 3}},       /* 4-D */
    {2, 2, {5, 0}, {0, 3}},                   /* empty inner dim: zeros */
    {5, 2, {2, 1, 2, 3, 4}, {4, 2}},          /* 5-D @ 2-D */
};

static void check_matmul(const mshape *ms, int dt, int la, int lb, trng *r) {
  ddpm_tensor *a = trand(dt, ms->na, ms->sa, -1, 1, r, la), *b = trand(dt, ms->nb, ms->sb, -1, 1, r, lb), *o = NULL;
  int st = ddpm_matmul(&o, a, b);
  CHECK_OK(st);
  if (!st) {
    int64_t K = ms->sa[ms->na - 1];
    int ba = ms->na > 2 ? ms->na - 2 : 0, bb = ms->nb > 2 ? ms->nb - 2 : 0, nbatch = ba > bb ? ba : bb;
    int64_t batch[8], oshape[8];
    for (int d = 0; d < nbatch; d++) {
      int ia = d - (nbatch - ba), ib = d - (nbatch - bb);
      int64_t x = ia >= 0 ? ms->sa[ia] : 1, y = ib >= 0 ? ms->sb[ib] : 1;
      batch[d] = x > y ? x : y;
    }
    int on = 0;
    for (int d = 0; d < nbatch; d++) oshape[on++] = batch[d];
    int64_t M = ms->na > 1 ? ms->sa[ms->na - 2] : 1, N = ms->nb > 1 ? ms->sb[ms->nb - 1] : 1;
    if (ms->na > 1) oshape[on++] = M;
    if (ms->nb > 1) oshape[on++] = N;
    CHECK(same_shape_as(o, on, oshape) && ddpm_tensor_dtype(o) == dt);
    int64_t oi[8] = {0};
    int bad = 0;
    do {
      int64_t i = ms->na > 1 ? oi[nbatch] : 0, j = ms->nb > 1 ? oi[on - 1] : 0;
      double acc = 0, absacc = 0;
      for (int64_t k = 0; k < K; k++) {
        int64_t ai[8], bi[8];
        for (int d = 0; d < ba; d++) ai[d] = ms->sa[d] == 1 ? 0 : oi[d + nbatch - ba];
        for (int d = 0; d < bb; d++) bi[d] = ms->sb[d] == 1 ? 0 : oi[d + nbatch - bb];
        if (ms->na > 1) ai[ms->na - 2] = i;
        ai[ms->na - 1] = k;
        if (ms->nb > 1) {
          bi[ms->nb - 2] = k;
          bi[ms->nb - 1] = j;
        } else {
          bi[0] = k;
        }
        double p = tget(a, ai) * tget(b, bi);
        acc += p;
        absacc += fabs(p);
      }
      double want = ref_store(dt, acc);
      ELEM(bad, tget(o, oi), want, mm_tol(dt, want, absacc), "matmul %s", dt_name(dt));
    } while (on && next_index(on, oshape, oi));
    CHECK_CASE(bad, "matmul %dD@%dD %s %s,%s", ms->na, ms->nb, dt_name(dt), layout_name[la], layout_name[lb]);
  }
  ddpm_tensor_release(o);
  ddpm_tensor_release(a);
  ddpm_tensor_release(b);
}

static void test_matmul(void) {
  trng r = {31};
  for (size_t s = 0; s < sizeof mshapes / sizeof mshapes[0]; s++)
    for (int di = 0; di < 4; di++)
      for (int la = 0; la < LAYOUT_COUNT; la++) check_matmul(&mshapes[s], fdts[di], la, (la + 1 + (int)s) % LAYOUT_COUNT, &r);
  /* a bigger product that goes through BLAS's blocked kernels and the threaded batch loop */
  mshape big = {3, 3, {6, 40, 70}, {6, 70, 50}}, big2 = {2, 2, {130, 257}, {257, 90}};
  check_matmul(&big, DDPM_FLOAT32, LAYOUT_PERMUTED, LAYOUT_CONTIG, &r);
  check_matmul(&big2, DDPM_FLOAT32, LAYOUT_CONTIG, LAYOUT_PERMUTED, &r);
  check_matmul(&big2, DDPM_FLOAT64, LAYOUT_SLICED, LAYOUT_CONTIG, &r);
}

static void test_bmm(void) {
  trng r = {32};
  static const int64_t shapes[][6] = {{3, 4, 5, 3, 5, 2}, {1, 4, 5, 3, 5, 2}, {3, 4, 5, 1, 5, 2}, {2, 1, 1, 2, 1, 1}};
  for (size_t s = 0; s < 4; s++)
    for (int di = 0; di < 4; di++)
      for (int la = 0; la < LAYOUT_COUNT; la++) {
        int dt = fdts[di];
        const int64_t *sa = shapes[s], *sb = shapes[s] + 3;
        ddpm_tensor *a = trand(dt, 3, sa, -1, 1, &r, la), *b = trand(dt, 3, sb, -1, 1, &r, (la + 2) % 4), *o = NULL;
        CHECK_OK(ddpm_bmm(&o, a, b));
        if (o) {
          int64_t B = sa[0] > sb[0] ? sa[0] : sb[0], os[3] = {B, sa[1], sb[2]}, oi[3] = {0};
          CHECK(same_shape_as(o, 3, os));
          int bad = 0;
          do {
            double acc = 0, absacc = 0;
            for (int64_t k = 0; k < sa[2]; k++) {
              int64_t ai[3] = {sa[0] == 1 ? 0 : oi[0], oi[1], k}, bi[3] = {sb[0] == 1 ? 0 : oi[0], k, oi[2]};
              double p = tget(a, ai) * tget(b, bi);
              acc += p;
              absacc += fabs(p);
            }
            double want = ref_store(dt, acc);
            ELEM(bad, tget(o, oi), want, mm_tol(dt, want, absacc), "bmm %s", dt_name(dt));
          } while (next_index(3, os, oi));
          CHECK_CASE(bad, "bmm case %zu %s %s", s, dt_name(dt), layout_name[la]);
        }
        ddpm_tensor_release(o);
        ddpm_tensor_release(a);
        ddpm_tensor_release(b);
      }
}

static void test_linear(void) {
  trng r = {33};
  static const int xnd[] = {1, 2, 3};
  static const int64_t xs[][3] = {{6}, {5, 6}, {2, 3, 6}};
  int64_t ws[2] = {4, 6}, bs[1] = {4};
  for (int c = 0; c < 3; c++)
    for (int di = 0; di < 4; di++)
      for (int withb = 0; withb < 2; withb++)
        for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
          int dt = fdts[di];
          ddpm_tensor *x = trand(dt, xnd[c], xs[c], -1, 1, &r, lay), *w = trand(dt, 2, ws, -1, 1, &r, (lay + 1) % 4);
          ddpm_tensor *b = withb ? trand(dt, 1, bs, -1, 1, &r, (lay + 2) % 4) : NULL, *o = NULL;
          CHECK_OK(ddpm_linear(&o, x, w, b));
          if (o) {
            int n = xnd[c];
            int64_t os[3], oi[3] = {0};
            memcpy(os, xs[c], sizeof os);
            os[n - 1] = 4;
            CHECK(same_shape_as(o, n, os) && ddpm_tensor_dtype(o) == dt);
            int bad = 0;
            do {
              int64_t j = oi[n - 1], wi[2] = {j, 0}, bi[1] = {j}, xi[3];
              memcpy(xi, oi, sizeof xi);
              double acc = withb ? tget(b, bi) : 0, absacc = fabs(acc);
              for (int64_t k = 0; k < 6; k++) {
                xi[n - 1] = k;
                wi[1] = k;
                double p = tget(x, xi) * tget(w, wi);
                acc += p;
                absacc += fabs(p);
              }
              double want = ref_store(dt, acc);
              ELEM(bad, tget(o, oi), want, mm_tol(dt, want, absacc), "linear %s", dt_name(dt));
            } while (next_index(n, os, oi));
            CHECK_CASE(bad, "linear x %dD bias %d %s %s", n, withb, dt_name(dt), layout_name[lay]);
          }
          ddpm_tensor_release(o);
          ddpm_tensor_release(x);
          ddpm_tensor_release(w);
          ddpm_tensor_release(b);
        }
}

/* a linear layer big enough for every blocking of the AVX-512 GEMM: several 256-long K blocks,
 * column tiles (N > 512), row tiles with a tail, the bias added once */
static void test_linear_big(void) {
  trng r = {34};
  int64_t xs[2] = {77, 600}, ws[2] = {530, 600}, bs[1] = {530};
  for (int lay = 0; lay < 2; lay++) {
    ddpm_tensor *x = trand(DDPM_FLOAT32, 2, xs, -1, 1, &r, lay), *w = trand(DDPM_FLOAT32, 2, ws, -1, 1, &r, 1 - lay);
    ddpm_tensor *b = trand(DDPM_FLOAT32, 1, bs, -1, 1, &r, LAYOUT_CONTIG), *o = NULL;
    CHECK_OK(ddpm_linear(&o, x, w, b));
    if (o) {
      int bad = 0;
      for (int64_t i = 0; i < xs[0]; i++)
        for (int64_t j = 0; j < ws[0]; j++) {
          int64_t bi[1] = {j}, oi[2] = {i, j};
          double acc = tget(b, bi), absacc = fabs(acc);
          for (int64_t k = 0; k < xs[1]; k++) {
            int64_t xi[2] = {i, k}, wi[2] = {j, k};
            double p = tget(x, xi) * tget(w, wi);
            acc += p;
            absacc += fabs(p);
          }
          double want = ref_store(DDPM_FLOAT32, acc);
          ELEM(bad, tget(o, oi), want, mm_tol(DDPM_FLOAT32, want, absacc), "linear big");
        }
      CHECK_CASE(bad, "linear [77,600] x [530,600]^T + bias, %s", layout_name[lay]);
    }
    ddpm_tensor_release(o);
    ddpm_tensor_release(x);
    ddpm_tensor_release(w);
    ddpm_tensor_release(b);
  }
}

static void test_cat_stack(void) {
  trng r = {34};
  for (int dim = -3; dim < 3; dim++)
    for (int lay = 0; lay < LAYOUT_COUNT; lay++) {
      int d = dim < 0 ? dim + 3 : dim;
      int64_t s0[3] = {2, 3, 4}, s1[3] = {2, 3, 4}, s2[3] = {2, 3, 4};
      s1[d] = 1;
      s2[d] = 5;
      ddpm_tensor *t[3] = {trand(DDPM_FLOAT32, 3, s0, -5, 5, &r, lay), trand(DDPM_FLOAT64, 3, s1, -5, 5, &r, (lay + 1) % 4),
                           trand(DDPM_INT32, 3, s2, -5, 5, &r, (lay + 2) % 4)};
      ddpm_tensor *o = NULL;
      CHECK_OK(ddpm_cat(&o, 3, t, dim));
      if (o) {
        int64_t os[3] = {2, 3, 4}, oi[3] = {0};
        os[d] = s0[d] + s1[d] + s2[d];
        CHECK(same_shape_as(o, 3, os) && ddpm_tensor_dtype(o) == DDPM_FLOAT64);
        int bad = 0;
        do {
          int64_t ii[3] = {oi[0], oi[1], oi[2]};
          int k = oi[d] < s0[d] ? 0 : oi[d] < s0[d] + s1[d] ? 1 : 2;
          ii[d] -= k == 0 ? 0 : k == 1 ? s0[d] : s0[d] + s1[d];
          ELEM(bad, tget(o, oi), tget(t[k], ii), 0, "cat dim %d", dim);
        } while (next_index(3, os, oi));
        CHECK_CASE(bad, "cat dim %d %s", dim, layout_name[lay]);
      }
      ddpm_tensor_release(o);
      /* stack: equal shapes only */
      ddpm_tensor *u[2] = {t[0], NULL};
      u[1] = trand(DDPM_FLOAT32, 3, s0, -5, 5, &r, (lay + 3) % 4);
      for (int sd = -4; sd < 4; sd++) {
        ddpm_tensor *so = NULL;
        CHECK_OK(ddpm_stack(&so, 2, u, sd));
        if (!so) continue;
        int e = sd < 0 ? sd + 4 : sd;
        int64_t os[4], oi[4] = {0};
        for (int q = 0, j = 0; q < 4; q++) os[q] = q == e ? 2 : s0[j++];
        CHECK(same_shape_as(so, 4, os));
        int bad = 0;
        do {
          int64_t ii[3];
          for (int q = 0, j = 0; q < 4; q++)
            if (q != e) ii[j++] = oi[q];
          ELEM(bad, tget(so, oi), tget(u[oi[e]], ii), 0, "stack dim %d", sd);
        } while (next_index(4, os, oi));
        CHECK_CASE(bad, "stack dim %d %s", sd, layout_name[lay]);
        ddpm_tensor_release(so);
      }
      ddpm_tensor_release(u[1]);
      for (int k = 0; k < 3; k++) ddpm_tensor_release(t[k]);
    }
  /* legacy empty 1-D tensors are skipped, as in PyTorch; mismatched sizes are refused */
  int64_t s[2] = {2, 3}, e1[1] = {0}, s4[2] = {2, 4};
  ddpm_tensor *a = trand(DDPM_FLOAT32, 2, s, 0, 1, &r, 0), *e = NULL, *o = NULL, *c = trand(DDPM_FLOAT32, 2, s4, 0, 1, &r, 0);
  CHECK_OK(ddpm_empty(&e, 1, e1, DDPM_FLOAT32, DDPM_CPU));
  ddpm_tensor *l[3] = {e, a, a};
  CHECK_OK(ddpm_cat(&o, 3, l, 0));
  int64_t want[2] = {4, 3};
  CHECK(o && same_shape_as(o, 2, want));
  ddpm_tensor_release(o);
  ddpm_tensor *l2[2] = {a, c};
  CHECK(ddpm_cat(&o, 2, l2, 0) == DDPM_ERR_SHAPE);
  CHECK(ddpm_stack(&o, 2, l2, 0) == DDPM_ERR_SHAPE);
  CHECK(ddpm_cat(&o, 2, l2, 2) == DDPM_ERR_INDEX);
  CHECK(ddpm_stack(&o, 2, l, 5) == DDPM_ERR_INDEX || ddpm_stack(&o, 2, l, 5) == DDPM_ERR_SHAPE);
  CHECK(ddpm_cat(&o, 0, l, 0) == DDPM_ERR_ARGUMENT);
  ddpm_tensor *l3[2] = {a, NULL};
  CHECK(ddpm_cat(&o, 2, l3, 0) == DDPM_ERR_ARGUMENT);
  ddpm_tensor_release(a);
  ddpm_tensor_release(c);
  ddpm_tensor_release(e);
}

static void test_index(void) {
  trng r = {35};
  static const int dts[] = {DDPM_FLOAT32, DDPM_FLOAT64, DDPM_FLOAT16, DDPM_BFLOAT16, DDPM_INT64, DDPM_UINT8};
  int64_t shape[3] = {4, 5, 6};
  double iv[7] = {3, 0, -1, 2, 2, 1, 0};
  int64_t ni = 7;
  for (size_t k = 0; k < sizeof dts / sizeof dts[0]; k++)
    for (int d = 0; d < 3; d++)
      for (int lay = 0; lay < LAYOUT_COUNT; lay++)
        for (int idt = 0; idt < 2; idt++) {
          int dt = dts[k];
          ddpm_tensor *x = trand(dt, 3, shape, -9, 9, &r, lay), *ix = NULL, *o = NULL;
          CHECK_OK(ddpm_from_doubles(&ix, iv, 1, &ni, idt ? DDPM_INT32 : DDPM_INT64, DDPM_CPU));
          CHECK_OK(ddpm_index_select(&o, x, d, ix));
          if (o) {
            int64_t os[3] = {4, 5, 6}, oi[3] = {0};
            os[d] = ni;
            CHECK(same_shape_as(o, 3, os) && ddpm_tensor_dtype(o) == dt);
            int bad = 0;
            do {
              int64_t xi[3] = {oi[0], oi[1], oi[2]};
              int64_t v = (int64_t)iv[oi[d]];
              xi[d] = v < 0 ? v + shape[d] : v;
              ELEM(bad, tget(o, oi), tget(x, xi), 0, "index_select dim %d", d);
            } while (next_index(3, os, oi));
            CHECK_CASE(bad, "index_select dim %d %s %s", d, dt_name(dt), layout_name[lay]);
          }
          /* index_add_: the adjoint, repeated indices accumulate; self is a non-contiguous view */
          if (lay != LAYOUT_EXPANDED && dt != DDPM_UINT8) {
            int64_t ss[3] = {4, 5, 6};
            ss[d] = ni;
            ddpm_tensor *src = trand(dt, 3, ss, -3, 3, &r, (lay + 1) % 3);
            double before[120];
            int64_t xi[3] = {0};
            int q = 0;
            do before[q++] = tget(x, xi);
            while (next_index(3, shape, xi));
            CHECK_OK(ddpm_index_add_(x, d, ix, src));
            int bad = 0;
            q = 0;
            memset(xi, 0, sizeof xi);
            do {
              double want = before[q++];
              int64_t si[3] = {xi[0], xi[1], xi[2]};
              for (int64_t m = 0; m < ni; m++) {
                int64_t v = (int64_t)iv[m];
                if ((v < 0 ? v + shape[d] : v) != xi[d]) continue;
                si[d] = m;
                want = ref_store(dt, want + tget(src, si));
              }
              ELEM(bad, tget(x, xi), want, dtype_tol(dt, want) * 3, "index_add_ dim %d", d);
            } while (next_index(3, shape, xi));
            CHECK_CASE(bad, "index_add_ dim %d %s %s", d, dt_name(dt), layout_name[lay]);
            ddpm_tensor_release(src);
          }
          ddpm_tensor_release(o);
          ddpm_tensor_release(ix);
          ddpm_tensor_release(x);
        }
  /* bad indices */
  ddpm_tensor *x = trand(DDPM_FLOAT32, 3, shape, 0, 1, &r, 0), *ix = NULL, *fx = NULL, *o = NULL, *ix2 = NULL;
  double bad_iv[2] = {0, 4};
  int64_t two = 2, m22[2] = {2, 1};
  CHECK_OK(ddpm_from_doubles(&ix, bad_iv, 1, &two, DDPM_INT64, DDPM_CPU));
  CHECK(ddpm_index_select(&o, x, 0, ix) == DDPM_ERR_INDEX);
  bad_iv[1] = -5;
  ddpm_tensor_release(ix);
  CHECK_OK(ddpm_from_doubles(&ix, bad_iv, 1, &two, DDPM_INT64, DDPM_CPU));
  CHECK(ddpm_index_select(&o, x, 0, ix) == DDPM_ERR_INDEX);
  CHECK(ddpm_index_select(&o, x, 3, ix) == DDPM_ERR_INDEX);
  CHECK_OK(ddpm_from_doubles(&fx, bad_iv, 1, &two, DDPM_FLOAT32, DDPM_CPU));
  CHECK(ddpm_index_select(&o, x, 0, fx) == DDPM_ERR_DTYPE);
  CHECK_OK(ddpm_from_doubles(&ix2, bad_iv, 2, m22, DDPM_INT64, DDPM_CPU));
  CHECK(ddpm_index_select(&o, x, 0, ix2) == DDPM_ERR_SHAPE);
  CHECK(ddpm_index_add_(x, 0, ix, x) == DDPM_ERR_SHAPE);
  ddpm_tensor_release(ix2);
  ddpm_tensor_release(fx);
  ddpm_tensor_release(ix);
  ddpm_tensor_release(x);
}

int main(void) {
  ddpm_set_num_threads(2);
  test_matmul();
  test_bmm();
  test_linear();
  test_linear_big();
  test_cat_stack();
  test_index();
  return tcheck_summary("test_linalg");
}
