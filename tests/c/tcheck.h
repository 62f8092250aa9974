/* tcheck.h: a tiny assertion harness for the C tests; prints "N passed, N failed" per binary. */
#ifndef TCHECK_H
#define TCHECK_H
#include "ddpm.h"
#include "internal.h"
#include <math.h>
#include <stdio.h>
#include <string.h>

static int tc_pass, tc_fail;
#define CHECK(cond)                                                             \
  do {                                                                          \
    if (cond) tc_pass++;                                                        \
    else {                                                                      \
      tc_fail++;                                                                \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);  \
    }                                                                           \
  } while (0)
#define CHECK_OK(expr)                                                                              \
  do {                                                                                              \
    int st_ = (expr);                                                                               \
    if (st_ == DDPM_OK) tc_pass++;                                                                  \
    else {                                                                                          \
      tc_fail++;                                                                                    \
      fprintf(stderr, "%s:%d: %s returned %d: %s\n", __FILE__, __LINE__, #expr, st_, ddpm_last_error()); \
    }                                                                                               \
  } while (0)
#define CHECK_NEAR(a, b, tol)                                                                     \
  do {                                                                                            \
    double a_ = (a), b_ = (b);                                                                    \
    if (fabs(a_ - b_) <= (tol)) tc_pass++;                                                        \
    else {                                                                                        \
      tc_fail++;                                                                                  \
      fprintf(stderr, "%s:%d: %s = %.9g, expected %.9g (tol %g)\n", __FILE__, __LINE__, #a, a_, b_, \
              (double)(tol));                                                                     \
    }                                                                                             \
  } while (0)

static int tcheck_summary(const char *name) {
  printf("%s: %d passed, %d failed\n", name, tc_pass, tc_fail);
  return tc_fail ? 1 : 0;
}
#endif
