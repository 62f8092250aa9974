/* profile.c: the optional per-op profiler: calls and self time of every kernel that ddpm_dispatch
 * runs, kept per op name. Off by default (ddpm_dispatch then pays one predictable branch); on with
 * ddpm_profile_enable(1) or the environment variable DDPM_PROFILE=1, which also prints the table
 * to stderr when the process exits. CUDA kernels are asynchronous: on a GPU the time is the
 * launch cost unless the caller synchronizes.  DDPM_PROFILE_CLOCK=cpu charges process CPU time instead
 * of wall time: on a shared, oversubscribed machine wall time per kernel mostly measures how long
 * the scheduler kept a thread away, CPU time what the kernel itself cost. */
#include "internal.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

DDPM_INTERNAL int ddpm_profile_on;
DDPM_INTERNAL int ddpm_profile_call(ddpm_kernel_fn fn, ddpm_call *c);

static int64_t prof_calls[DDPM_OP_COUNT];
static int64_t prof_ns[DDPM_OP_COUNT];
static int64_t prof_since_ns; /* when profiling was last enabled or reset */
static int64_t prof_wall_ns;  /* enabled time accumulated before the last disable */
/* Time spent in kernels called from inside the running kernel (composite kernels), so that each
 * op is charged its self time only. */
static _Thread_local int64_t child_ns;
static clockid_t prof_clock = CLOCK_MONOTONIC;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(prof_clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int ddpm_profile_call(ddpm_kernel_fn fn, ddpm_call *c) {
  int64_t saved = child_ns, t0 = now_ns();
  child_ns = 0;
  int st = fn(c);
  int64_t dt = now_ns() - t0;
  __atomic_fetch_add(&prof_ns[c->op], dt - child_ns, __ATOMIC_RELAXED);
  __atomic_fetch_add(&prof_calls[c->op], 1, __ATOMIC_RELAXED);
  child_ns = saved + dt;
  return st;
}

int ddpm_profile_enable(int on) {
  int was = ddpm_profile_on;
  if (on && !was) prof_since_ns = now_ns();
  if (!on && was) prof_wall_ns += now_ns() - prof_since_ns;
  ddpm_profile_on = on != 0;
  return was;
}

void ddpm_profile_reset(void) {
  for (int k = 0; k < DDPM_OP_COUNT; k++) prof_calls[k] = prof_ns[k] = 0;
  prof_wall_ns = 0;
  prof_since_ns = now_ns();
}

int ddpm_profile_read(int op, int64_t *calls, double *seconds) {
  if (op < 0 || op >= DDPM_OP_COUNT)
    return DDPM_FAIL(DDPM_ERR_INDEX, "profile_read: op %d; expected 0 <= op < %d", op, DDPM_OP_COUNT);
  if (calls) *calls = __atomic_load_n(&prof_calls[op], __ATOMIC_RELAXED);
  if (seconds) *seconds = (double)__atomic_load_n(&prof_ns[op], __ATOMIC_RELAXED) * 1e-9;
  return DDPM_OK;
}

double ddpm_profile_wall(void) {
  return (double)(prof_wall_ns + (ddpm_profile_on ? now_ns() - prof_since_ns : 0)) * 1e-9;
}

static void report_at_exit(void) {
  int order[DDPM_OP_COUNT], n = 0;
  double total = 0, wall = ddpm_profile_wall();
  for (int k = 0; k < DDPM_OP_COUNT; k++)
    if (prof_calls[k]) { order[n++] = k; total += prof_ns[k] * 1e-9; }
  for (int a = 1; a < n; a++) /* insertion sort by time, descending: n is small */
    for (int b = a; b > 0 && prof_ns[order[b]] > prof_ns[order[b - 1]]; b--) {
      int t = order[b]; order[b] = order[b - 1]; order[b - 1] = t;
    }
  fprintf(stderr, "ddpm profile (DDPM_PROFILE=1): %.3f s in kernels of %.3f s profiled\n", total, wall);
  fprintf(stderr, "  %-36s %10s %10s %7s %10s\n", "op", "calls", "seconds", "share", "ms/call");
  for (int a = 0; a < n; a++) {
    int k = order[a];
    double s = prof_ns[k] * 1e-9;
    fprintf(stderr, "  %-36s %10lld %10.3f %6.1f%% %10.3f\n", ddpm_opname(k), (long long)prof_calls[k], s,
            wall > 0 ? 100 * s / wall : 0, 1e3 * s / prof_calls[k]);
  }
  fprintf(stderr, "  %-36s %10s %10.3f %6.1f%%\n", "(outside kernels)", "", wall - total,
          wall > 0 ? 100 * (wall - total) / wall : 0);
}

__attribute__((constructor)) static void profile_from_env(void) {
  const char *k = getenv("DDPM_PROFILE_CLOCK");
  if (k && (!strcmp(k, "cpu") || !strcmp(k, "process"))) prof_clock = CLOCK_PROCESS_CPUTIME_ID;
  const char *v = getenv("DDPM_PROFILE");
  if (v && v[0] == '1' && v[1] == 0) {
    ddpm_profile_enable(1);
    atexit(report_at_exit);
  }
}
