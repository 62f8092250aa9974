/* json.c: a small strict JSON parser (RFC 8259) for file headers that come from outside: depth and
 * size limits, UTF-8 validation, no extensions, every failure reported with its byte offset. */
#include "formats.h"
#include <stdio.h>

#define JSON_MAX_DEPTH 64

/* Nodes and decoded strings live in an arena of chunks freed together. */
typedef struct chunk {
  struct chunk *next;
  size_t used, cap;
  char data[];
} chunk;

struct ddpm_json_doc {
  chunk *chunks;
  ddpm_json *root;
};

typedef struct {
  const char *s;
  size_t len, pos;
  int depth;
  ddpm_json_doc *doc;
  char *err;
  size_t errlen;
  bool failed;
} parser;

static void *arena_alloc(ddpm_json_doc *d, size_t n) {
  n = (n + 15) & ~(size_t)15;
  chunk *c = d->chunks;
  if (!c || c->cap - c->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    c = malloc(sizeof(chunk) + cap);
    if (!c) return NULL;
    c->cap = cap;
    c->used = 0;
    c->next = d->chunks;
    d->chunks = c;
  }
  void *p = c->data + c->used;
  c->used += n;
  return p;
}

static int fail(parser *p, const char *fmt, const char *what) {
  if (!p->failed) {
    char tmp[160];
    snprintf(tmp, sizeof tmp, fmt, what);
    snprintf(p->err, p->errlen, "%s at byte %zu", tmp, p->pos);
    p->failed = true;
  }
  return -1;
}

static void skip_ws(parser *p) {
  while (p->pos < p->len) {
    char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

/* Length of the UTF-8 sequence at s (n bytes available), 0 if invalid (overlongs, surrogates,
 * code points above U+10FFFF are invalid). */
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2) return 0;
  if (c < 0xE0) return n >= 2 && (s[1] & 0xC0) == 0x80 ? 2 : 0;
  if (c < 0xF0) {
    if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80) return 0;
    if (c == 0xE0 && s[1] < 0xA0) return 0; /* overlong */
    if (c == 0xED && s[1] >= 0xA0) return 0; /* surrogate */
    return 3;
  }
  if (c < 0xF5) {
    if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
    if (c == 0xF0 && s[1] < 0x90) return 0;
    if (c == 0xF4 && s[1] >= 0x90) return 0;
    return 4;
  }
  return 0;
}

bool ddpm_utf8_valid(const char *s, size_t n) {
  const unsigned char *u = (const unsigned char *)s;
  size_t i = 0;
  while (i < n) {
    size_t k = utf8_seq(u + i, n - i);
    if (!k) return false;
    i += k;
  }
  return true;
}

static int hex4(parser *p, unsigned *out) {
  if (p->len - p->pos < 4) return fail(p, "%s", "truncated \\u escape");
  unsigned v = 0;
  for (int i = 0; i < 4; i++) {
    char c = p->s[p->pos + i];
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return fail(p, "%s", "invalid hex digit in \\u escape");
  }
  p->pos += 4;
  *out = v;
  return 0;
}

static size_t put_utf8(char *o, unsigned cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[2] = (char)(0x80 | (cp & 0x3F));
    return 3;
  }
  o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); o[3] = (char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Parse a string at p->pos (on the opening quote); the decoded text is never longer than the
 * raw text, so one allocation of the raw length suffices. */
static int parse_string(parser *p, const char **out, size_t *outlen) {
  p->pos++; /* opening quote */
  size_t start = p->pos, end = start;
  while (end < p->len && p->s[end] != '"') end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->len) return fail(p, "%s", "unterminated string");
  char *o = arena_alloc(p->doc, end - start + 1);
  if (!o) return fail(p, "%s", "out of memory");
  size_t n = 0;
  while (p->pos < end) {
    unsigned char c = (unsigned char)p->s[p->pos];
    if (c < 0x20) return fail(p, "%s", "control character in string (must be escaped)");
    if (c == '\\') {
      char e = p->s[p->pos + 1];
      p->pos += 2;
      switch (e) {
      case '"': o[n++] = '"'; break;
      case '\\': o[n++] = '\\'; break;
      case '/': o[n++] = '/'; break;
      case 'b': o[n++] = '\b'; break;
      case 'f': o[n++] = '\f'; break;
      case 'n': o[n++] = '\n'; break;
      case 'r': o[n++] = '\r'; break;
      case 't': o[n++] = '\t'; break;
      case 'u': {
        unsigned cp;
        if (hex4(p, &cp)) return -1;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          unsigned lo;
          if (p->len - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u')
            return fail(p, "%s", "unpaired UTF-16 surrogate in \\u escape");
          p->pos += 2;
          if (hex4(p, &lo)) return -1;
          if (lo < 0xDC00 || lo > 0xDFFF) return fail(p, "%s", "unpaired UTF-16 surrogate in \\u escape");
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
          return fail(p, "%s", "unpaired UTF-16 surrogate in \\u escape");
        }
        if (cp == 0) return fail(p, "%s", "NUL character (\\u0000) in string is not supported");
        n += put_utf8(o + n, cp);
        break;
      }
      default: p->pos--; return fail(p, "%s", "invalid escape in string");
      }
      if (p->pos > end) return fail(p, "%s", "unterminated string");
    } else {
      size_t k = utf8_seq((const unsigned char *)p->s + p->pos, end - p->pos);
      if (!k) return fail(p, "%s", "invalid UTF-8 in string");
      memcpy(o + n, p->s + p->pos, k);
      n += k;
      p->pos += k;
    }
  }
  p->pos = end + 1;
  o[n] = 0;
  *out = o;
  *outlen = n;
  return 0;
}

static int parse_number(parser *p, ddpm_json *v) {
  size_t start = p->pos, i = p->pos;
  const char *s = p->s;
  if (i < p->len && s[i] == '-') i++;
  if (i >= p->len) return fail(p, "%s", "truncated number");
  if (s[i] == '0') {
    i++;
  } else if (s[i] >= '1' && s[i] <= '9') {
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  } else {
    return fail(p, "%s", "invalid number");
  }
  if (i < p->len && s[i] == '.') {
    i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') { p->pos = i; return fail(p, "%s", "invalid number (digit expected after '.')"); }
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  }
  if (i < p->len && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->len && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= p->len || s[i] < '0' || s[i] > '9') { p->pos = i; return fail(p, "%s", "invalid number (digit expected in exponent)"); }
    while (i < p->len && s[i] >= '0' && s[i] <= '9') i++;
  }
  v->type = DDPM_JSON_NUMBER;
  v->str = s + start;
  v->len = i - start;
  p->pos = i;
  return 0;
}

static int literal(parser *p, const char *word) {
  size_t n = strlen(word);
  if (p->len - p->pos < n || memcmp(p->s + p->pos, word, n) != 0) return fail(p, "%s", "invalid literal");
  p->pos += n;
  return 0;
}

static int parse_value(parser *p, ddpm_json *v);

static ddpm_json *new_node(parser *p) {
  ddpm_json *n = arena_alloc(p->doc, sizeof *n);
  if (!n) {
    fail(p, "%s", "out of memory");
    return NULL;
  }
  memset(n, 0, sizeof *n);
  return n;
}

static int parse_container(parser *p, ddpm_json *v, bool object) {
  if (++p->depth > JSON_MAX_DEPTH) return fail(p, "%s", "nesting too deep");
  char close = object ? '}' : ']';
  v->type = object ? DDPM_JSON_OBJECT : DDPM_JSON_ARRAY;
  p->pos++;
  skip_ws(p);
  ddpm_json **tail = &v->child;
  if (p->pos < p->len && p->s[p->pos] == close) {
    p->pos++;
    p->depth--;
    return 0;
  }
  for (;;) {
    ddpm_json *c = new_node(p);
    if (!c) return -1;
    if (object) {
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != '"') return fail(p, "%s", "expected a string key");
      if (parse_string(p, &c->key, &c->keylen)) return -1;
      skip_ws(p);
      if (p->pos >= p->len || p->s[p->pos] != ':') return fail(p, "%s", "expected ':' after key");
      p->pos++;
    }
    if (parse_value(p, c)) return -1;
    *tail = c;
    tail = &c->next;
    v->count++;
    skip_ws(p);
    if (p->pos >= p->len) return fail(p, "%s", object ? "unterminated object" : "unterminated array");
    char ch = p->s[p->pos];
    if (ch == ',') {
      p->pos++;
      continue;
    }
    if (ch == close) {
      p->pos++;
      break;
    }
    return fail(p, "%s", object ? "expected ',' or '}'" : "expected ',' or ']'");
  }
  p->depth--;
  return 0;
}

static int parse_value(parser *p, ddpm_json *v) {
  skip_ws(p);
  if (p->pos >= p->len) return fail(p, "%s", "unexpected end of input");
  char c = p->s[p->pos];
  switch (c) {
  case '{': return parse_container(p, v, true);
  case '[': return parse_container(p, v, false);
  case '"':
    v->type = DDPM_JSON_STRING;
    return parse_string(p, &v->str, &v->len);
  case 't': v->type = DDPM_JSON_BOOL; v->boolean = true; return literal(p, "true");
  case 'f': v->type = DDPM_JSON_BOOL; v->boolean = false; return literal(p, "false");
  case 'n': v->type = DDPM_JSON_NULL; return literal(p, "null");
  default:
    if (c == '-' || (c >= '0' && c <= '9')) return parse_number(p, v);
    return fail(p, "%s", "unexpected character");
  }
}

int ddpm_json_parse(ddpm_json_doc **out, const char *text, size_t len, char *err, size_t errlen) {
  *out = NULL;
  ddpm_json_doc *d = calloc(1, sizeof *d);
  if (!d) {
    snprintf(err, errlen, "out of memory");
    return -1;
  }
  parser p = {.s = text, .len = len, .doc = d, .err = err, .errlen = errlen};
  d->root = new_node(&p);
  if (d->root && !parse_value(&p, d->root)) {
    skip_ws(&p);
    if (p.pos != len) fail(&p, "%s", "trailing characters after the JSON value");
  }
  if (p.failed || !d->root) {
    ddpm_json_free(d);
    return -1;
  }
  *out = d;
  return 0;
}

const ddpm_json *ddpm_json_root(const ddpm_json_doc *doc) { return doc->root; }

void ddpm_json_free(ddpm_json_doc *doc) {
  if (!doc) return;
  chunk *c = doc->chunks;
  while (c) {
    chunk *n = c->next;
    free(c);
    c = n;
  }
  free(doc);
}

const ddpm_json *ddpm_json_get(const ddpm_json *obj, const char *key) {
  if (!obj || obj->type != DDPM_JSON_OBJECT) return NULL;
  for (const ddpm_json *c = obj->child; c; c = c->next)
    if (strcmp(c->key, key) == 0) return c;
  return NULL;
}

bool ddpm_json_int64(const ddpm_json *v, int64_t *out) {
  if (!v || v->type != DDPM_JSON_NUMBER) return false;
  const char *s = v->str;
  size_t n = v->len, i = 0;
  bool neg = false;
  if (n && s[0] == '-') {
    neg = true;
    i = 1;
  }
  if (i >= n) return false;
  uint64_t acc = 0;
  for (; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return false; /* fraction or exponent */
    uint64_t d = (uint64_t)(s[i] - '0');
    if (acc > (UINT64_MAX - d) / 10) return false;
    acc = acc * 10 + d;
  }
  if (!neg && acc > (uint64_t)INT64_MAX) return false;
  if (neg && acc > (uint64_t)INT64_MAX + 1) return false;
  *out = neg ? (int64_t)(0 - acc) : (int64_t)acc;
  return true;
}

const char *ddpm_json_type_name(int type) {
  static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
  return type >= 0 && type <= DDPM_JSON_OBJECT ? names[type] : "?";
}
