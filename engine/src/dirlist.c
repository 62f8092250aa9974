/* dirlist.c: directory listings for data sets (image folders, caches), sorted bytewise so every
 * machine sees the same order; Lua has no portable way to read a directory. */
#include "formats.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/stat.h>

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int ddpm_list_dir(const char *path, char **out, int64_t *nbytes) {
  if (!out || !nbytes || !path) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "list_dir: NULL argument");
  *out = NULL;
  *nbytes = 0;
  DIR *d = opendir(path);
  if (!d) return DDPM_FAIL(DDPM_ERR_IO, "list_dir: cannot read directory '%s': %s", path, strerror(errno));
  size_t n = 0, cap = 64, total = 0;
  char **names = malloc(cap * sizeof *names);
  int st = names ? DDPM_OK : DDPM_FAIL(DDPM_ERR_OOM, "list_dir: out of memory");
  struct dirent *e;
  while (!st && (e = readdir(d))) {
    if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
    size_t len = strlen(e->d_name);
    char *full = malloc(strlen(path) + len + 2);
    char *item = malloc(len + 2);
    if (!full || !item) {
      free(full);
      free(item);
      st = DDPM_FAIL(DDPM_ERR_OOM, "list_dir: out of memory");
      break;
    }
    sprintf(full, "%s/%s", path, e->d_name);
    struct stat sb;
    char kind = 'o';
    if (stat(full, &sb) == 0) kind = S_ISDIR(sb.st_mode) ? 'd' : S_ISREG(sb.st_mode) ? 'f' : 'o';
    free(full);
    item[0] = kind; /* type prefix: d(irectory), f(ile), o(ther or broken link) */
    memcpy(item + 1, e->d_name, len + 1);
    if (n == cap) {
      char **nn = realloc(names, 2 * cap * sizeof *names);
      if (!nn) {
        free(item);
        st = DDPM_FAIL(DDPM_ERR_OOM, "list_dir: out of memory");
        break;
      }
      names = nn;
      cap *= 2;
    }
    names[n++] = item;
    total += len + 2;
  }
  closedir(d);
  if (!st) {
    /* sort by name, ignoring the type prefix */
    for (size_t i = 0; i < n; i++) names[i]++;
    qsort(names, n, sizeof *names, cmp_str);
    for (size_t i = 0; i < n; i++) names[i]--;
    char *buf = malloc(total + 1);
    if (!buf) st = DDPM_FAIL(DDPM_ERR_OOM, "list_dir: out of memory");
    else {
      size_t pos = 0;
      for (size_t i = 0; i < n; i++) {
        size_t len = strlen(names[i]) + 1;
        memcpy(buf + pos, names[i], len);
        pos += len;
      }
      *out = buf;
      *nbytes = (int64_t)pos;
    }
  }
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
  return st;
}

void ddpm_free_buffer(void *p) { free(p); }
