/* ddpm_lua.c: the ddpm-lua executable: LuaJIT with the ddpm package preloaded; runs a script,
 * -e code, or the REPL (lua/ddpm/repl.lua), whose line editing this file provides. */
#define _GNU_SOURCE
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <luajit.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef DDPM_HAVE_READLINE
#include <readline/history.h>
#include <readline/readline.h>
#endif
#include "ddpm.h"

#define PROG "ddpm-lua"

static lua_State *globalL;
/* "@<dir>/ddpm/": chunks whose source starts with this are the library's, hidden in tracebacks */
static char pkg_prefix[PATH_MAX + 16];

/* ---- Ctrl-C ------------------------------------------------------------------------------------
 * While Lua code runs, SIGINT installs a hook that raises "interrupted!" at the next Lua
 * instruction, so scripts can catch it (a trainer saves a checkpoint) and the REPL survives.
 * Code the JIT compiled into a loop without exits never runs the hook; a second Ctrl-C then
 * kills the process, as in lua and luajit. */
static int is_internal(const char *src);
static void stop_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  /* name the user's line that was running, not the library function the signal landed in */
  lua_Debug d;
  for (int level = 0; lua_getstack(L, level, &d); level++) {
    lua_getinfo(L, "Sl", &d);
    if (*d.what != 'C' && d.currentline > 0 && !is_internal(d.source)) {
      luaL_where(L, level);
      lua_pushliteral(L, "interrupted!");
      lua_concat(L, 2);
      lua_error(L);
    }
  }
  luaL_error(L, "interrupted!");
}
static void on_sigint(int sig) {
  signal(sig, SIG_DFL);
  if (globalL) lua_sethook(globalL, stop_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

/* ---- errors --------------------------------------------------------------------------------------- */
static int is_internal(const char *src) {
  return !strcmp(src, "=[C]") || (pkg_prefix[0] && !strncmp(src, pkg_prefix, strlen(pkg_prefix)));
}

/* An error object {exit_code = n, message = s} (raised by ddpm.cli for usage errors and --help)
 * asks the host to print the message and exit with that status, without a traceback. */
static int is_exit_request(lua_State *L, int idx) {
  if (!lua_istable(L, idx)) return 0;
  lua_getfield(L, idx, "exit_code");
  int yes = lua_type(L, -1) == LUA_TNUMBER;
  lua_pop(L, 1);
  return yes;
}

/* Message handler: the message plus a SHORT traceback of the user's frames only (frames of the
 * ddpm package, C functions and the REPL are noise to someone debugging a script). A traceback
 * with a single frame repeats the message's own position and is left out. DDPM_TRACEBACK=full
 * gives LuaJIT's complete traceback, for debugging the library itself. */
static int traceback(lua_State *L) {
  if (is_exit_request(L, 1)) return 1;
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) {
      msg = lua_tostring(L, -1);
    } else {
      msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
    }
  }
  const char *full = getenv("DDPM_TRACEBACK");
  if (full && !strcmp(full, "full")) {
    luaL_traceback(L, L, msg, 1);
    return 1;
  }
  luaL_Buffer b;
  lua_pushstring(L, msg);
  int nframes = 0;
  lua_Debug ar;
  luaL_buffinit(L, &b);
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    lua_getinfo(L, "Sln", &ar);
    if (*ar.what == 'C' || is_internal(ar.source)) continue;
    char line[LUA_IDSIZE + 160];
    if (*ar.namewhat) {
      snprintf(line, sizeof line, "\n\t%s:%d: in function '%s'", ar.short_src, ar.currentline, ar.name);
    } else if (*ar.what == 'm') {
      snprintf(line, sizeof line, "\n\t%s:%d: in main chunk", ar.short_src, ar.currentline);
    } else {
      snprintf(line, sizeof line, "\n\t%s:%d: in function <%s:%d>", ar.short_src, ar.currentline, ar.short_src,
               ar.linedefined);
    }
    luaL_addstring(&b, line);
    nframes++;
  }
  luaL_pushresult(&b);
  if (nframes >= 2) {
    lua_pushstring(L, "\nstack traceback:");
    lua_insert(L, -2);
    lua_concat(L, 3);
  } else {
    lua_pop(L, 1);
  }
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
  lua_sethook(L, NULL, 0, 0); /* a Ctrl-C that arrived as the call returned must not fire later */
  lua_remove(L, base);
  return st;
}

/* Print the error on top of the stack, if any; the exit status it asks for (0: none). */
static int report(lua_State *L, int st) {
  if (!st) return 0;
  int code = 1;
  if (is_exit_request(L, -1)) {
    lua_getfield(L, -1, "exit_code");
    code = (int)lua_tointeger(L, -1);
    lua_getfield(L, -2, "message");
    const char *m = lua_tostring(L, -1);
    if (m && *m) {
      FILE *f = code == 0 ? stdout : stderr;
      fputs(m, f);
      if (m[strlen(m) - 1] != '\n') fputc('\n', f);
    }
    lua_pop(L, 2);
  } else {
    const char *msg = lua_tostring(L, -1);
    fprintf(stderr, PROG ": %s\n", msg ? msg : "(error object is not a string)");
    /* a run stopped by Ctrl-C exits as shells expect of SIGINT (128 + 2) */
    const char *hit = msg ? strstr(msg, "interrupted!") : NULL;
    if (hit && (hit[12] == 0 || hit[12] == '\n') && !memchr(msg, '\n', (size_t)(hit - msg))) code = 130;
  }
  fflush(stdout);
  fflush(stderr);
  lua_pop(L, 1);
  return code;
}

/* ---- line input for repl.lua --------------------------------------------------------------------
 * readline(prompt) -> line | nil (end of input) | nil, "interrupt" (Ctrl-C: the REPL drops the
 * pending input and prompts again). Readline runs in its callback mode so that a Ctrl-C at the
 * prompt is a plain EINTR from select() rather than a signal fired into the middle of Lua. */
static volatile sig_atomic_t got_sigint, got_sigwinch;
static void on_sigint_at_prompt(int sig) {
  (void)sig;
  got_sigint = 1;
}
static void on_sigwinch(int sig) {
  (void)sig;
  got_sigwinch = 1;
}
static void catch_at_prompt(struct sigaction *old_winch) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = on_sigint_at_prompt; /* no SA_RESTART: the blocking read must return EINTR */
  sigaction(SIGINT, &sa, NULL);
  sa.sa_handler = on_sigwinch;
  sigaction(SIGWINCH, &sa, old_winch);
  got_sigint = got_sigwinch = 0;
}
static void release_prompt(struct sigaction *old_winch) {
  sigaction(SIGWINCH, old_winch, NULL);
  signal(SIGINT, on_sigint); /* the REPL runs under docall: computations are interruptible again */
}

#ifdef DDPM_HAVE_READLINE
static char *line_got;
static int line_done;
static void on_line(char *line) {
  line_got = line;
  line_done = 1;
  rl_callback_handler_remove();
}

/* Tab completion asks repl.lua (_DDPM_HOST.completer(text) -> list of strings). */
static char **cmatches;
static int cnmatch, cnext;
static char *cgenerator(const char *text, int state) {
  (void)text;
  if (!state) cnext = 0;
  return cnext < cnmatch ? strdup(cmatches[cnext++]) : NULL;
}
static char **complete_cb(const char *text, int start, int end) {
  (void)start;
  (void)end;
  lua_State *L = globalL;
  rl_attempted_completion_over = 1; /* never fall back to file names */
  for (int k = 0; k < cnmatch; k++) free(cmatches[k]);
  free(cmatches);
  cmatches = NULL;
  cnmatch = 0;
  int top = lua_gettop(L);
  lua_getglobal(L, "_DDPM_HOST");
  if (lua_istable(L, -1)) {
    lua_getfield(L, -1, "completer");
    if (lua_isfunction(L, -1)) {
      lua_pushstring(L, text);
      if (lua_pcall(L, 1, 1, 0) == 0 && lua_istable(L, -1)) {
        int n = (int)lua_objlen(L, -1);
        cmatches = calloc(n + 1, sizeof(char *));
        for (int k = 1; cmatches && k <= n; k++) {
          lua_rawgeti(L, -1, k);
          const char *s = lua_tostring(L, -1);
          if (s) cmatches[cnmatch++] = strdup(s);
          lua_pop(L, 1);
        }
      }
    }
  }
  lua_settop(L, top);
  if (!cnmatch) return NULL;
  rl_completion_append_character = '\0';
  return rl_completion_matches(text, cgenerator);
}

static int readline_tty(lua_State *L, const char *prompt) {
  struct sigaction old_winch;
  catch_at_prompt(&old_winch);
  line_done = 0;
  line_got = NULL;
  int interrupted = 0, fd = fileno(rl_instream ? rl_instream : stdin);
  rl_callback_handler_install(prompt, on_line);
  while (!line_done) {
    fd_set fds;
    FD_ZERO(&fds);
    FD_SET(fd, &fds);
    int n = select(fd + 1, &fds, NULL, NULL, NULL);
    if (n < 0 && errno == EINTR) {
      if (got_sigint) {
        interrupted = 1;
        break;
      }
      if (got_sigwinch) {
        got_sigwinch = 0;
        rl_resize_terminal();
      }
      continue;
    }
    if (n < 0) break;
    rl_callback_read_char();
  }
  if (!line_done) { /* interrupted or failed: show the abandoned line with ^C and start over */
    rl_point = rl_end;
    rl_redisplay();
    fputs(interrupted ? "^C\n" : "\n", rl_outstream ? rl_outstream : stdout);
    rl_free_line_state();
    rl_callback_sigcleanup();
    rl_callback_handler_remove();
  }
  release_prompt(&old_winch);
  if (line_got) {
    lua_pushstring(L, line_got);
    free(line_got);
    line_got = NULL;
    return 1;
  }
  lua_pushnil(L);
  if (!interrupted) return 1;
  lua_pushliteral(L, "interrupt");
  return 2;
}
#endif

static int readline_plain(lua_State *L, const char *prompt, int tty) {
  if (tty) {
    fputs(prompt, stdout);
    fflush(stdout);
  }
  struct sigaction old_winch;
  catch_at_prompt(&old_winch);
  char buf[8192];
  luaL_Buffer b;
  luaL_buffinit(L, &b);
  int got = 0, interrupted = 0;
  for (;;) {
    if (!fgets(buf, sizeof buf, stdin)) {
      if (ferror(stdin) && errno == EINTR) {
        clearerr(stdin);
        if (got_sigint) {
          interrupted = 1;
          break;
        }
        continue;
      }
      break;
    }
    got = 1;
    size_t n = strlen(buf);
    if (n && buf[n - 1] == '\n') {
      luaL_addlstring(&b, buf, n - 1);
      break;
    }
    luaL_addlstring(&b, buf, n);
  }
  release_prompt(&old_winch);
  if (interrupted) {
    lua_pushnil(L);
    lua_pushliteral(L, "interrupt");
    return 2;
  }
  if (!got) return 0;
  luaL_pushresult(&b);
  return 1;
}

static int l_readline(lua_State *L) {
  const char *prompt = luaL_optstring(L, 1, "> ");
  int tty = isatty(0);
  fflush(stdout);
  fflush(stderr);
  lua_sethook(L, NULL, 0, 0); /* an interrupt meant for a finished computation is void */
#ifdef DDPM_HAVE_READLINE
  if (tty) return readline_tty(L, prompt);
#endif
  return readline_plain(L, prompt, tty);
}

/* History: read at start, each entry appended to the file at once (a killed session keeps its
 * history), the file truncated on exit. Without readline these do nothing. */
static int l_add_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  add_history(luaL_checkstring(L, 1));
  if (lua_isstring(L, 2)) {
    const char *path = lua_tostring(L, 2);
    struct stat st;
    if (stat(path, &st) != 0) write_history(path); /* append_history does not create the file */
    else append_history(1, path);
  }
#endif
  return 0;
}
static int l_read_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  read_history(luaL_checkstring(L, 1));
#endif
  return 0;
}
static int l_truncate_history(lua_State *L) {
#ifdef DDPM_HAVE_READLINE
  history_truncate_file(luaL_checkstring(L, 1), (int)luaL_optinteger(L, 2, 1000));
#endif
  return 0;
}
static int l_isatty(lua_State *L) {
  lua_pushboolean(L, isatty((int)luaL_optinteger(L, 1, 0)));
  return 1;
}

static void register_host(lua_State *L, const char *lua_dir) {
  lua_newtable(L);
  lua_pushcfunction(L, l_readline);
  lua_setfield(L, -2, "readline");
  lua_pushcfunction(L, l_add_history);
  lua_setfield(L, -2, "add_history");
  lua_pushcfunction(L, l_read_history);
  lua_setfield(L, -2, "read_history");
  lua_pushcfunction(L, l_truncate_history);
  lua_setfield(L, -2, "truncate_history");
  lua_pushcfunction(L, l_isatty);
  lua_setfield(L, -2, "isatty");
  lua_pushcfunction(L, traceback);
  lua_setfield(L, -2, "traceback");
  lua_pushstring(L, DDPM_VERSION_STRING);
  lua_setfield(L, -2, "version");
  lua_pushstring(L, lua_dir);
  lua_setfield(L, -2, "lua_dir");
#ifdef DDPM_HAVE_READLINE
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  lua_setfield(L, -2, "has_readline");
  lua_setglobal(L, "_DDPM_HOST");
#ifdef DDPM_HAVE_READLINE
  rl_readline_name = "ddpm-lua"; /* for $if ddpm-lua in ~/.inputrc */
  rl_catch_signals = 0;
  rl_catch_sigwinch = 0;
  rl_attempted_completion_function = complete_cb;
  /* keep '.' and ':' inside words so "ddpm.ra<TAB>" and "t:su<TAB>" complete as a whole */
  rl_basic_word_break_characters = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#[]}";
#endif
}

/* ---- package paths -----------------------------------------------------------------------------
 * DDPM_LUA_PATH (a directory holding ddpm/) wins; then an installed tree beside the executable
 * (<prefix>/bin/ddpm-lua -> <prefix>/share/ddpm-lua/lua); else the build tree, whose sources are in
 * the source directory and whose generated files (cdef.lua, build_config.lua) are in the build
 * directory. Returns the directory holding ddpm/ (for tracebacks). */
static int exists(const char *p) {
  struct stat st;
  return stat(p, &st) == 0;
}

static void set_paths(lua_State *L, char *lua_dir) {
  char exe[PATH_MAX], buf[4 * PATH_MAX + 64], cand[2 * PATH_MAX], probe[2 * PATH_MAX + 32];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  exe[n > 0 ? n : 0] = 0;
  char *slash = strrchr(exe, '/');
  if (slash) *slash = 0;
  const char *env = getenv("DDPM_LUA_PATH");
  snprintf(cand, sizeof cand, "%s/../share/ddpm-lua/lua", exe);
  snprintf(probe, sizeof probe, "%s/ddpm/init.lua", cand);
  if (env && *env) {
    snprintf(lua_dir, PATH_MAX, "%s", env);
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;", env, env);
  } else if (exists(probe)) {
    if (!realpath(cand, lua_dir)) snprintf(lua_dir, PATH_MAX, "%.*s", PATH_MAX - 1, cand);
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;", lua_dir, lua_dir);
  } else {
    snprintf(lua_dir, PATH_MAX, "%s", DDPM_SOURCE_LUA_DIR);
    snprintf(buf, sizeof buf, "%s/?.lua;%s/?/init.lua;%s/?.lua;", DDPM_SOURCE_LUA_DIR, DDPM_SOURCE_LUA_DIR,
             DDPM_BUILD_LUA_DIR);
  }
  snprintf(pkg_prefix, sizeof pkg_prefix, "@%s/ddpm/", lua_dir);
  lua_getglobal(L, "package");
  lua_getfield(L, -1, "path");
  lua_pushfstring(L, "%s%s", buf, lua_tostring(L, -1));
  lua_setfield(L, -3, "path");
  lua_pop(L, 2);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: " PROG " [options] [script [args]]\n"
          "LuaJIT with the ddpm tensor library preloaded as the global `ddpm`.\n"
          "Available options are:\n"
          "  -e code   execute the string 'code'\n"
          "  -l mod    require library 'mod' into the global 'mod' (-l g=mod: into global 'g')\n"
          "  -i        enter the interactive REPL after running script (even if it fails)\n"
          "  -v        show version information\n"
          "  -h        show this help and exit\n"
          "  --        stop handling options\n"
          "  -         run stdin as a script, stop handling options\n"
          "The script sees its arguments in `arg` (arg[0] is the script) and in `...`.\n"
          "With no script and no -e or -v, starts the REPL: readline editing, history in\n"
          "~/.ddpm_lua_history (env DDPM_HISTORY; empty disables it), multi-line input,\n"
          "results printed, `=expr` prints expr, Ctrl-C interrupts, Ctrl-D exits.\n"
          "Errors print `file:line: message` and the user's frames; DDPM_TRACEBACK=full shows all.\n");
}

/* arg table as the lua interpreter builds it: script at 0, interpreter and options negative,
 * script arguments positive. */
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

/* -l mod / -l g=mod: require into a global */
static int dolibrary(lua_State *L, const char *spec) {
  const char *eq = strchr(spec, '=');
  const char *mod = eq ? eq + 1 : spec;
  lua_getglobal(L, "require");
  lua_pushstring(L, mod);
  int st = docall(L, 1, 1);
  if (st) return report(L, st);
  if (eq) lua_pushlstring(L, spec, (size_t)(eq - spec));
  else lua_pushstring(L, spec);
  lua_insert(L, -2);
  lua_settable(L, LUA_GLOBALSINDEX);
  return 0;
}

/* The value of an option that takes one: "-ecode" or "-e code". */
static const char *optval(int argc, char **argv, int *i) {
  if (argv[*i][2]) return argv[*i] + 2;
  if (*i + 1 < argc) return argv[++*i];
  return NULL;
}

void ddpm_host_omp_policy(char **argv); /* omp_policy.c: may execute the program again */

int main(int argc, char **argv) {
  ddpm_host_omp_policy(argv);
  /* pass 1: validate the options; find the script (or "-") and the flags */
  int i, interactive = 0, version = 0, has_e = 0, stdin_script = 0;
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
    else if (!strcmp(a, "-v") || !strcmp(a, "--version")) version = 1;
    else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else if (a[1] == 'e' || a[1] == 'l') {
      if (!optval(argc, argv, &i)) {
        fprintf(stderr, PROG ": '%s' needs an argument\n", a);
        usage(stderr);
        return 1;
      }
      if (a[1] == 'e') has_e = 1;
    } else {
      fprintf(stderr, PROG ": unrecognized option '%s'\n", a);
      usage(stderr);
      return 1;
    }
  }
  int script = i < argc ? i : 0; /* index of the script name, or of "-" */
  if (version) {
    printf(PROG " %s (libddpm %s, ABI %d, CUDA %s), %s\n", DDPM_VERSION_STRING, ddpm_version(), ddpm_abi_version(),
           ddpm_cuda_built() ? "built" : "not built", LUAJIT_VERSION);
    fflush(stdout);
  }

  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, PROG ": cannot create a Lua state (out of memory)\n");
    return 1;
  }
  globalL = L;
  luaL_openlibs(L);
  char lua_dir[PATH_MAX];
  set_paths(L, lua_dir);
  register_host(L, lua_dir);
  make_arg(L, argc, argv, script ? script : argc);

  /* ddpm preloaded as a global; require 'ddpm' returns the same table */
  lua_getglobal(L, "require");
  lua_pushstring(L, "ddpm");
  int status = report(L, docall(L, 1, 1));
  if (status) {
    lua_close(L);
    return status;
  }
  lua_setglobal(L, "ddpm");

  /* pass 2: -e and -l in order */
  for (int k = 1; k < (script ? script : argc) && !status; k++) {
    const char *a = argv[k];
    if (!strcmp(a, "--") || !strcmp(a, "-")) break;
    if (a[0] == '-' && (a[1] == 'e' || a[1] == 'l')) {
      const char *v = optval(argc, argv, &k);
      if (a[1] == 'l') {
        status = dolibrary(L, v);
      } else {
        int st = luaL_loadbuffer(L, v, strlen(v), "=(command line)");
        if (!st) st = docall(L, 0, 0);
        status = report(L, st);
      }
    }
  }

  if (!status && script) {
    const char *path = stdin_script ? NULL : argv[script];
    int st = luaL_loadfile(L, path);
    if (!st) {
      int nargs = 0;
      for (int k = script + 1; k < argc; k++, nargs++) lua_pushstring(L, argv[k]);
      st = docall(L, nargs, 0);
    }
    status = report(L, st);
  }
  /* like python -i, the REPL opens even after a failing script, to inspect its globals */
  if (interactive || (!script && !has_e && !version)) {
    int st = run_repl(L);
    if (!status) status = st;
  }
  fflush(stdout);
  lua_close(L);
  return status;
}
