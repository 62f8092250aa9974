/* ddpm_lua.c: the ddpm-lua executable: LuaJIT with the ddpm package preloaded; runs a script,
 * -e code, or the REPL (lua/ddpm/repl.lua) with readline editing. */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef DDPM_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif
#include "ddpm.h"

static lua_State *globalL;

/* Ctrl-C: stop the running Lua code at its next instruction with an "interrupted!" error, so
 * scripts can catch it (the trainer saves a checkpoint) and the REPL survives. */
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}
static void on_sigint(int sig) {
  signal(sig, SIG_DFL); /* a second Ctrl-C kills the process, as in lua */
  if (globalL) lua_sethook(globalL, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static int traceback(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

/* Run the function on top of the stack with nargs arguments under the traceback handler. */
static int docall(lua_State *L, int nargs, int nres) {
  int base = lua_gettop(L) - nargs;
  lua_pushcfunction(L, traceback);
  lua_insert(L, base);
  signal(SIGINT, on_sigint);
  int st = lua_pcall(L, nargs, nres, base);
  signal(SIGINT, SIG_DFL);
  lua_remove(L, base);
  return st;
}

static int report(lua_State *L, int st) {
  if (st && !lua_isnil(L, -1)) {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, "ddpm-lua: %s\n", msg ? msg : "(error object is not a string)");
    fflush(stderr);
    lua_pop(L, 1);
  }
  return st;
}

/* ---- readline bridge for repl.lua -------------------------------------------------------------- */
static int l_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  int tty = isatty(0);
#ifdef DDPM_HAVE_READLINE
  if (tty) {
    char *line = readline(prompt);
    if (!line) return 0;
    lua_pushstring(L, line);
    free(line);
    return 1;
  }
#endif
  if (tty) {
    fputs(prompt, stdout);
    fflush(stdout);
  }
  char buf[8192];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int got = 0;
  while (fgets(buf, sizeof buf, stdin)) {
    got = 1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') {
      luaL_addlstring(&b, buf, n - 1);
      luaL_pushresult(&b);
      return 1;
    }
    luaL_addlstring(&b, buf, n);
  }
  if (!got) return 0;
  luaL_pushresult(&b);
  return 1;
}
static int l_add_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  add_history(luaL_checkstring(L, 1));
#endif
  return 0;
}
static int l_read_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  read_history(luaL_checkstring(L, 1));
#endif
  return 0;
}
static int l_write_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  const char *path = luaL_checkstring(L, 1);
  write_history(path);
  history_truncate_file(path, 1000);
#endif
  return 0;
}
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
  return 1;
}

static void register_host(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_readline);
  lua_setfield(L, -2, "readline");
  lua_pushcfunction(L, l_add_history);
  lua_setfield(L, -2, "add_history");
  lua_pushcfunction(L, l_read_history);
  lua_setfield(L, -2, "read_history");
  lua_pushcfunction(L, l_write_history);
  lua_setfield(L, -2, "write_history");
  lua_pushcfunction(L, l_isatty);
  lua_setfield(L, -2, "isatty");
  lua_pushstring(L, DDPM_VERSION_STRING);
  lua_setfield(L, -2, "version");
  lua_setglobal(L, "_DDPM_HOST");
}

/* ---- package paths ------------------------------------------------------------------------------ */
static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void set_paths(lua_State *L) {
  char exe[PATH_MAX], buf[4 * PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  char *slash = strrchr(exe, '/');
  if (slash) *slash = 0;
  const char *env = getenv("DDPM_LUA_PATH");
  char installed[PATH_MAX + 64];
  snprintf(installed, sizeof installed, "%s/../share/ddpm-lua/lua", exe);
  char probe[PATH_MAX + 96];
  snprintf(probe, sizeof probe, "%s/ddpm/init.lua", installed);
  if (env && *env) {
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;", env, env);
  } else if (exists(probe)) {
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;", installed, installed);
  } else { /* build tree: sources first, generated files (cdef.lua, build_config.lua) beside */
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;%s/?.lua;", DDPM_SOURCE_LUA_DIR, DDPM_SOURCE_LUA_DIR,
             DDPM_BUILD_LUA_DIR);
  }
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", buf, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

static void usage(const char *prog) {
  fprintf(stderr,
          "usage: %s [options] [script [args]]\n"
          "Runs a Lua script with the ddpm tensor library preloaded as the global `ddpm`.\n"
          "  -e code   execute the string 'code'\n"
          "  -l mod    require library 'mod' into the global of the same name\n"
          "  -i        enter the interactive REPL after running the script\n"
          "  -v        print version information and exit\n"
          "  -h        show this help and exit\n"
          "  --        stop handling options\n"
          "  -         run stdin as a script\n"
          "With no script, starts the REPL (readline editing, history in ~/.ddpm_lua_history,\n"
          "multi-line input, results auto-printed).\n",
          prog);
}

/* arg table as the lua interpreter builds it: script at 0, options negative, args positive */
static void make_arg(lua_State *L, int argc, char **argv, int script) {
  lua_createtable(L, argc - script, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int run_repl(lua_State *L) {
  lua_getglobal(L, "require");
  lua_pushstring(L, "ddpm.repl");
  int st = docall(L, 1, 1);
  if (st) return report(L, st);
  lua_getfield(L, -1, "run");
  lua_remove(L, -2);
  return report(L, docall(L, 0, 0));
}

int main(int argc, char **argv) {
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "ddpm-lua: cannot create a Lua state (out of memory)\n");
    return 1;
  }
  globalL = L;
  luaL_openlibs(L);
  register_host(L);
  set_paths(L);

  /* parse options */
  int i, interactive = 0, script = 0, has_e = 0, stdin_script = 0;
  for (i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') break;
    if (!strcmp(a, "--")) {
      i++;
      break;
    }
    if (!strcmp(a, "-")) {
      stdin_script = 1;
      break;
    }
    if (!strcmp(a, "-i")) interactive = 1;
    else if (!strcmp(a, "-v") || !strcmp(a, "--version")) {
      printf("ddpm-lua %s (libddpm %s, ABI %d, CUDA %s), %s\n", DDPM_VERSION_STRING, ddpm_version(),
             ddpm_abi_version(), ddpm_cuda_built() ? "built" : "not built", LUAJIT_VERSION);
      lua_close(L);
      return 0;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(argv[0]);
      lua_close(L);
      return 0;
    } else if (!strcmp(a, "-e") || !strcmp(a, "-l")) {
      if (i + 1 >= argc) {
        fprintf(stderr, "ddpm-lua: '%s' needs an argument\n", a);
        usage(argv[0]);
        lua_close(L);
        return 1;
      }
      if (a[1] == 'e') has_e = 1;
      i++;
    } else {
      fprintf(stderr, "ddpm-lua: unrecognized option '%s'\n", a);
      usage(argv[0]);
      lua_close(L);
      return 1;
    }
  }
  script = i < argc ? i : 0;
  make_arg(L, argc, argv, script ? script : argc);

  /* preload ddpm as a global */
  lua_getglobal(L, "require");
  lua_pushstring(L, "ddpm");
  if (report(L, docall(L, 1, 1))) {
    lua_close(L);
    return 1;
  }
  lua_setglobal(L, "ddpm");

  /* -e and -l in order */
  for (int k = 1; k < (script ? script : argc); k++) {
    if (!strcmp(argv[k], "-e")) {
      int st = luaL_loadbuffer(L, argv[k + 1], strlen(argv[k + 1]), "=(command line)");
      if (!st) st = docall(L, 0, 0);
      if (report(L, st)) {
        lua_close(L);
        return 1;
      }
      k++;
    } else if (!strcmp(argv[k], "-l")) {
      lua_getglobal(L, "require");
      lua_pushstring(L, argv[k + 1]);
      if (report(L, docall(L, 1, 1))) {
        lua_close(L);
        return 1;
      }
      lua_setglobal(L, argv[k + 1]);
      k++;
    } else if (!strcmp(argv[k], "-") || !strcmp(argv[k], "--")) {
      break;
    }
  }

  int status = 0;
  if (script || stdin_script) {
    const char *path = stdin_script ? NULL : argv[script];
    int st = luaL_loadfile(L, path);
    if (!st) {
      int nargs = 0;
      for (int k = (script ? script : i) + 1; k < argc; k++, nargs++) lua_pushstring(L, argv[k]);
      st = docall(L, nargs, 0);
    }
    status = report(L, st) ? 1 : 0;
  }
  if (interactive || (!script && !stdin_script && !has_e)) {
    if (run_repl(L)) status = 1;
  }
  fflush(stdout);
  lua_close(L);
  return status;
}
