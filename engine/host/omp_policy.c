/* omp_policy.c: how idle OpenMP threads of ddpm-lua wait.  libgomp's default lets a thread spin
 * ~300000 pause instructions (~10 ms on current cores) at every barrier before it sleeps.  That
 * is harmless on an idle machine but ruinous on a shared one: when another process holds a
 * core, each of the ~1000 parallel regions of a training step waits for the descheduled thread
 * while the other spins; a batch-32 step measured 10.5 s instead of 1.6 s (6.9 CPU-seconds
 * instead of 1.0) on a loaded 2-core machine.  A short spin (GOMP_SPINCOUNT=2000, ~0.1-0.3 ms)
 * still catches the next region on an idle one.  libgomp reads its environment once, when it is
 * loaded (before main), so ddpm-lua sets the variable and executes itself again; a setting in
 * the user's environment (OMP_WAIT_POLICY or GOMP_SPINCOUNT) is left alone.  Costs one exec
 * (~7 ms) at start. */
#include <stdlib.h>
#include <unistd.h>

void ddpm_host_omp_policy(char **argv);

void ddpm_host_omp_policy(char **argv) {
  if (getenv("OMP_WAIT_POLICY") || getenv("GOMP_SPINCOUNT")) return;
  if (setenv("GOMP_SPINCOUNT", "2000", 0) != 0) return;
  execv("/proc/self/exe", argv); /* returns only on failure: then run with the default policy */
}
