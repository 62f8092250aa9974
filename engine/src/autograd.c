/* autograd.c: graph recording on tensors and the reverse-mode engine (DESIGN.md section 4). */
#include "internal.h"
#include <stdlib.h>

static _Thread_local bool grad_mode = true;
static uint64_t seq_counter;
static uint64_t pass_counter;

int ddpm_grad_enabled(void) { return grad_mode; }
void ddpm_set_grad_enabled(int enabled) { grad_mode = enabled != 0; }
bool ddpm_ag_enabled(void) { return grad_mode; }

/* ---- tensor-side autograd metadata -------------------------------------------------------------- */
int ddpm_tensor_requires_grad(const ddpm_tensor *t) { return t && t->requires_grad; }
int ddpm_tensor_is_leaf(const ddpm_tensor *t) { return t && t->grad_fn == NULL; }

int ddpm_tensor_set_requires_grad(ddpm_tensor *t, int flag) {
  DDPM_TRY(ddpm_check_tensor("requires_grad_", "self", t));
  if (t->grad_fn && !flag)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "requires_grad_: can only change requires_grad of leaf tensors; use :detach() on a result of %s",
                     ddpm_opname(t->grad_fn->op));
  if (flag && !ddpm_is_float(t->dtype))
    return DDPM_FAIL(DDPM_ERR_DTYPE, "requires_grad_: only floating point tensors can require gradients, got %s",
                     ddpm_fmt_tensor(t));
  t->requires_grad = flag != 0;
  return DDPM_OK;
}

int ddpm_tensor_get_grad(ddpm_tensor *t, ddpm_tensor **out) {
  DDPM_TRY(ddpm_check_tensor("grad", "self", t));
  DDPM_TRY(ddpm_check_out("grad", out));
  *out = t->grad;
  if (t->grad) ddpm_tensor_retain(t->grad);
  return DDPM_OK;
}

int ddpm_tensor_set_grad(ddpm_tensor *t, ddpm_tensor *g) {
  DDPM_TRY(ddpm_check_tensor("grad", "self", t));
  if (g && (!ddpm_same_shape(t, g) || g->device != t->device))
    return DDPM_FAIL(DDPM_ERR_SHAPE, "set grad: gradient %s does not match tensor %s", ddpm_fmt_tensor(g),
                     ddpm_fmt_tensor(t));
  if (g && g->dtype != t->dtype)
    return DDPM_FAIL(DDPM_ERR_DTYPE, "set grad: gradient %s must have the dtype of tensor %s", ddpm_fmt_tensor(g),
                     ddpm_fmt_tensor(t));
  if (g) ddpm_tensor_retain(g);
  ddpm_tensor_release(t->grad);
  t->grad = g;
  return DDPM_OK;
}

const char *ddpm_tensor_grad_fn_name(const ddpm_tensor *t) {
  return t && t->grad_fn ? ddpm_opname(t->grad_fn->op) : NULL;
}

int ddpm_check_inplace(const char *op, const ddpm_tensor *t) {
  if (grad_mode && t->requires_grad) {
    if (!t->grad_fn)
      return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                       "%s: a leaf tensor that requires grad (%s) cannot be modified in place while grad mode is on; "
                       "wrap the update in ddpm.no_grad",
                       op, ddpm_fmt_tensor(t));
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "%s: %s is part of a live autograd graph (made by %s) and cannot be modified in place; "
                     "use the out-of-place form",
                     op, ddpm_fmt_tensor(t), ddpm_opname(t->grad_fn->op));
  }
  if (ddpm_has_internal_overlap(t))
    return DDPM_FAIL(DDPM_ERR_ARGUMENT,
                     "%s: %s has overlapping elements (an expanded view); write into a :contiguous() copy",
                     op, ddpm_fmt_tensor(t));
  return DDPM_OK;
}

/* ---- nodes ----------------------------------------------------------------------------------------- */
void ddpm_node_retain(ddpm_node *n) {
  if (n) n->refcount++;
}

/* how to rebuild a saved activation: the node that made it and the view the consumer saw */
typedef struct ddpm_replay {
  ddpm_node *producer;
  int ndim;
  int64_t shape[DDPM_MAX_DIMS], strides[DDPM_MAX_DIMS], offset;
} ddpm_replay;

static void node_free_saved(ddpm_node *n) {
  for (int k = 0; k < n->nsaved; k++) {
    ddpm_tensor_release(n->saved[k]);
    n->saved[k] = NULL;
    if (n->replay[k]) {
      ddpm_node_release(n->replay[k]->producer);
      free(n->replay[k]);
      n->replay[k] = NULL;
    }
  }
}

/* Iterative, because a long chain of nodes would otherwise recurse once per op. */
void ddpm_node_release(ddpm_node *n) {
  if (!n || --n->refcount > 0) return;
  size_t cap = 64, top = 0;
  ddpm_node **stack = malloc(cap * sizeof *stack);
  ddpm_node *cur = n;
  for (;;) {
    node_free_saved(cur);
    ddpm_tensor_release(cur->grad);
    for (int k = 0; k < cur->nin; k++) {
      ddpm_tensor_release(cur->next[k].leaf);
      ddpm_node *c = cur->next[k].node;
      if (c && --c->refcount == 0) {
        if (top == cap) {
          ddpm_node **ns = stack ? realloc(stack, 2 * cap * sizeof *stack) : NULL;
          if (!ns) { /* fall back to recursion rather than leak */
            c->refcount = 1;
            ddpm_node_release(c);
            continue;
          }
          stack = ns;
          cap *= 2;
        }
        stack[top++] = c;
      }
    }
    free(cur->next);
    free(cur->in_meta);
    free(cur);
    if (!top || !stack) break;
    cur = stack[--top];
  }
  free(stack);
}

ddpm_node *ddpm_ag_begin(int op, int nin, ddpm_tensor *const *in) {
  if (!grad_mode) return NULL;
  bool any = false;
  for (int k = 0; k < nin; k++)
    if (in[k] && in[k]->requires_grad) any = true;
  if (!any) return NULL;
  ddpm_node *n = calloc(1, sizeof *n);
  if (!n) return NULL;
  n->next = calloc((size_t)nin, sizeof *n->next);
  n->in_meta = calloc((size_t)nin, sizeof *n->in_meta);
  if (!n->next || !n->in_meta) {
    free(n->next);
    free(n->in_meta);
    free(n);
    return NULL;
  }
  n->refcount = 1;
  n->op = op;
  n->nin = nin;
  n->seq = ++seq_counter;
  for (int k = 0; k < nin; k++) {
    ddpm_tensor *t = in[k];
    if (!t) continue;
    ddpm_meta_of(&n->in_meta[k], t);
    if (!t->requires_grad) continue;
    if (t->grad_fn) {
      n->next[k].node = t->grad_fn;
      ddpm_node_retain(t->grad_fn);
    } else {
      n->next[k].leaf = t;
      ddpm_tensor_retain(t);
    }
  }
  return n;
}

int ddpm_ag_save(ddpm_node *n, ddpm_tensor *t) {
  if (n->nsaved >= DDPM_MAX_SAVED)
    return DDPM_FAIL(DDPM_ERR_INTERNAL, "%s: too many saved tensors", ddpm_opname(n->op));
  ddpm_tensor *a = NULL;
  if (t) DDPM_TRY(ddpm_tensor_alias(&a, t, t->ndim, t->shape, t->strides, t->offset));
  n->saved[n->nsaved] = a;
  n->saved_version[n->nsaved] = t ? t->storage->version : 0;
  n->nsaved++;
  return DDPM_OK;
}

static int replay_on = -1;

int ddpm_ag_save_replayable(ddpm_node *n, ddpm_tensor *t) {
  if (replay_on < 0) {
    const char *e = getenv("DDPM_SAVE_REPLAY");
    replay_on = !(e && e[0] == '0');
  }
  ddpm_node *p = t && replay_on ? t->grad_fn : NULL;
  /* views share their base's storage: walk down to the node that allocated it */
  while (p && (p->op == DDPM_OP_VIEW || p->op == DDPM_OP_PERMUTE || p->op == DDPM_OP_EXPAND ||
               p->op == DDPM_OP_SLICE || p->op == DDPM_OP_SELECT))
    p = p->nin >= 1 ? p->next[0].node : NULL;
  if (!p || !ddpm_norm_replayable(p->op) || p->released || p->out_meta.dtype != t->dtype ||
      (size_t)ddpm_shape_numel(p->out_meta.ndim, p->out_meta.shape) * (size_t)ddpm_dsize(t->dtype) !=
          t->storage->nbytes ||
      n->nsaved >= DDPM_MAX_SAVED)
    return ddpm_ag_save(n, t);
  ddpm_replay *r = calloc(1, sizeof *r);
  if (!r) return DDPM_FAIL(DDPM_ERR_OOM, "%s: out of memory saving a tensor for backward", ddpm_opname(n->op));
  r->producer = p;
  ddpm_node_retain(p);
  r->ndim = t->ndim;
  memcpy(r->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
  memcpy(r->strides, t->strides, sizeof(int64_t) * (size_t)t->ndim);
  r->offset = t->offset;
  n->saved[n->nsaved] = NULL;
  n->saved_version[n->nsaved] = 0;
  n->replay[n->nsaved] = r;
  n->nsaved++;
  return DDPM_OK;
}

int ddpm_ag_saved(ddpm_node *n, int k, ddpm_tensor **out) {
  *out = NULL;
  if (k >= n->nsaved) return DDPM_OK;
  if (n->saved[k]) {
    ddpm_tensor_retain(n->saved[k]);
    *out = n->saved[k];
    return DDPM_OK;
  }
  ddpm_replay *r = n->replay[k];
  if (!r) return DDPM_OK;
  ddpm_node *p = r->producer;
  if (p->released)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "backward of %s: the %s output it needs was freed by an earlier backward; "
                     "pass {retain_graph=true} to that call", ddpm_opname(n->op), ddpm_opname(p->op));
  for (int j = 0; j < p->nsaved; j++)
    if (p->saved[j] && p->saved[j]->storage->version != p->saved_version[j])
      return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                       "backward of %s: the input of the %s before it, %s, was modified in place after the "
                       "forward (version %lld, expected %lld)",
                       ddpm_opname(n->op), ddpm_opname(p->op), ddpm_fmt_tensor(p->saved[j]),
                       (long long)p->saved[j]->storage->version, (long long)p->saved_version[j]);
  ddpm_tensor *y = NULL;
  DDPM_TRY(ddpm_norm_replay(p, &y));
  int st = ddpm_tensor_alias(out, y, r->ndim, r->shape, r->strides, r->offset);
  ddpm_tensor_release(y);
  return st;
}

void ddpm_ag_finish(ddpm_node *n, ddpm_tensor *out) {
  ddpm_meta_of(&n->out_meta, out);
  ddpm_node_release(out->grad_fn);
  out->grad_fn = n;
  out->requires_grad = true;
}

/* ---- the engine ------------------------------------------------------------------------------------ */
typedef struct {
  ddpm_node **v;
  size_t n, cap;
} node_vec;

static int vec_push(node_vec *s, ddpm_node *x) {
  if (s->n == s->cap) {
    size_t nc = s->cap ? 2 * s->cap : 256;
    ddpm_node **nv = realloc(s->v, nc * sizeof *nv);
    if (!nv) return DDPM_FAIL(DDPM_ERR_OOM, "backward: out of memory for the node list");
    s->v = nv;
    s->cap = nc;
  }
  s->v[s->n++] = x;
  return DDPM_OK;
}

static int by_seq_desc(const void *a, const void *b) {
  uint64_t x = (*(ddpm_node *const *)a)->seq, y = (*(ddpm_node *const *)b)->seq;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* sum += g, reusing sum's buffer when nobody else can see it. */
static int accumulate(ddpm_tensor **sum, ddpm_tensor *g) {
  if (!*sum) {
    ddpm_tensor_retain(g);
    *sum = g;
    return DDPM_OK;
  }
  ddpm_tensor *s = *sum;
  if (s->refcount == 1 && s->storage->refcount == 1 && !ddpm_has_internal_overlap(s) &&
      s->dtype == g->dtype) {
    ddpm_call c = {.op = DDPM_OP_ADD, .nin = 2, .nout = 1, .in = {s, g}, .out = {s}};
    return ddpm_dispatch(&c);
  }
  ddpm_tensor *r = NULL;
  DDPM_TRY(ddpm_binary_op(&r, DDPM_OP_ADD, s, g));
  ddpm_tensor_release(s);
  *sum = r;
  return DDPM_OK;
}

/* A leaf's .grad: adopted when exclusively ours, else a contiguous copy in the leaf's dtype. */
static int accumulate_leaf(ddpm_tensor *leaf, ddpm_tensor *g) {
  if (leaf->grad) {
    ddpm_call c = {.op = DDPM_OP_ADD, .nin = 2, .nout = 1, .in = {leaf->grad, g}, .out = {leaf->grad}};
    if (g->dtype != leaf->grad->dtype) {
      ddpm_tensor *cg = NULL;
      DDPM_TRY(ddpm_cast(&cg, g, leaf->grad->dtype));
      c.in[1] = cg;
      int st = ddpm_dispatch(&c);
      ddpm_tensor_release(cg);
      return st;
    }
    return ddpm_dispatch(&c);
  }
  if (g->refcount == 1 && g->storage->refcount == 1 && g->dtype == leaf->dtype &&
      ddpm_tensor_is_contiguous(g) && g->offset == 0 && !g->grad_fn) {
    ddpm_tensor_retain(g);
    leaf->grad = g;
    return DDPM_OK;
  }
  ddpm_tensor *c = NULL;
  DDPM_TRY(ddpm_tensor_new_like(&c, leaf));
  int st = ddpm_copy_(c, g);
  if (st) {
    ddpm_tensor_release(c);
    return st;
  }
  leaf->grad = c;
  return DDPM_OK;
}

static bool meta_matches(const ddpm_meta *m, const ddpm_tensor *g) {
  if (m->ndim != g->ndim || m->device != g->device) return false;
  for (int i = 0; i < m->ndim; i++)
    if (m->shape[i] != g->shape[i]) return false;
  return true;
}

/* Shared by backward() and autograd.grad(): capture != NULL routes gradients of the given
 * inputs there instead of into leaves' .grad. */
static int run_engine(int nroots, ddpm_tensor *const *roots, ddpm_tensor *const *root_grads, int retain,
                      int ncap, ddpm_tensor *const *cap_in, ddpm_tensor **cap_out) {
  int st = DDPM_OK;
  node_vec order = {0}, stack = {0};
  uint64_t pass = ++pass_counter;
  bool saved_mode = grad_mode;
  grad_mode = false; /* backward formulas build no graph */

  for (int r = 0; r < nroots; r++) {
    ddpm_node *g = roots[r]->grad_fn;
    if (g && g->pass != pass) {
      g->pass = pass;
      DDPM_CHECK(vec_push(&stack, g));
    }
  }
  while (stack.n) {
    ddpm_node *n = stack.v[--stack.n];
    DDPM_CHECK(vec_push(&order, n));
    for (int k = 0; k < n->nin; k++) {
      ddpm_node *c = n->next[k].node;
      if (c && c->pass != pass) {
        c->pass = pass;
        DDPM_CHECK(vec_push(&stack, c));
      }
    }
  }
  qsort(order.v, order.n, sizeof *order.v, by_seq_desc);

  /* seed the roots */
  for (int r = 0; r < nroots; r++) {
    ddpm_tensor *t = roots[r], *g = root_grads[r];
    if (t->grad_fn) {
      DDPM_CHECK(accumulate(&t->grad_fn->grad, g));
    } else { /* a leaf root: its gradient is the seed itself */
      bool captured = false;
      for (int k = 0; k < ncap; k++)
        if (cap_in[k] == t) {
          DDPM_CHECK(accumulate(&cap_out[k], g));
          captured = true;
        }
      if (!captured && !cap_in) DDPM_CHECK(accumulate_leaf(t, g));
    }
  }

  for (size_t idx = 0; idx < order.n; idx++) {
    ddpm_node *n = order.v[idx];
    ddpm_tensor *gout = n->grad;
    n->grad = NULL;
    if (!gout) continue; /* no gradient reached this node */
    for (int k = 0; k < ncap; k++)
      if (cap_in[k]->grad_fn == n && (st = accumulate(&cap_out[k], gout)) != DDPM_OK) {
        ddpm_tensor_release(gout);
        goto done;
      }
    if (n->released) {
      ddpm_tensor_release(gout);
      st = DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "backward: trying to backward through the graph a second time (the tensors %s saved "
                     "were freed by the first backward); pass {retain_graph=true} to the first call",
                     ddpm_opname(n->op));
      goto done;
    }
    for (int k = 0; k < n->nsaved; k++)
      if (n->saved[k] && n->saved[k]->storage->version != n->saved_version[k]) {
        ddpm_tensor_release(gout);
        st = DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                       "backward: a tensor %s saved for its gradient (%s) was modified in place after "
                       "it was saved (version %lld, expected %lld)",
                       ddpm_opname(n->op), ddpm_fmt_tensor(n->saved[k]),
                       (long long)n->saved[k]->storage->version, (long long)n->saved_version[k]);
        goto done;
      }
    ddpm_tensor *gin_small[DDPM_MAX_IN] = {0};
    ddpm_tensor **gin = n->nin <= DDPM_MAX_IN ? gin_small : calloc((size_t)n->nin, sizeof *gin);
    if (!gin) {
      ddpm_tensor_release(gout);
      st = DDPM_FAIL(DDPM_ERR_OOM, "backward: out of memory");
      goto done;
    }
    ddpm_backward_fn bw = ddpm_backward_table[n->op];
    st = bw ? bw(n, gout, gin)
            : DDPM_FAIL(DDPM_ERR_INTERNAL, "backward: op %s has no backward", ddpm_opname(n->op));
    ddpm_tensor_release(gout);
    for (int k = 0; st == DDPM_OK && k < n->nin; k++) {
      ddpm_tensor *g = gin[k];
      if (!g) continue;
      if (!meta_matches(&n->in_meta[k], g)) {
        st = DDPM_FAIL(DDPM_ERR_INTERNAL, "backward of %s produced gradient %s for input %d of shape %s",
                       ddpm_opname(n->op), ddpm_fmt_tensor(g), k,
                       ddpm_fmt_shape(n->in_meta[k].ndim, n->in_meta[k].shape));
        break;
      }
      if (n->next[k].node) {
        st = accumulate(&n->next[k].node->grad, g);
      } else if (n->next[k].leaf) {
        ddpm_tensor *leaf = n->next[k].leaf;
        if (cap_in) {
          for (int c = 0; c < ncap && st == DDPM_OK; c++)
            if (cap_in[c] == leaf) st = accumulate(&cap_out[c], g);
        } else {
          st = accumulate_leaf(leaf, g);
        }
      }
    }
    for (int k = 0; k < n->nin; k++) ddpm_tensor_release(gin[k]);
    if (gin != gin_small) free(gin);
    if (st) goto done;
    if (!retain && n->nsaved > 0) {
      node_free_saved(n);
      n->released = true;
    }
  }
done:
  /* drop partial gradients left by an error so the next pass starts clean */
  for (size_t idx = 0; idx < order.n; idx++) {
    ddpm_tensor_release(order.v[idx]->grad);
    order.v[idx]->grad = NULL;
  }
  free(order.v);
  free(stack.v);
  grad_mode = saved_mode;
  return st;
}

static int default_root_grad(ddpm_tensor *root, ddpm_tensor *grad, ddpm_tensor **seed, const char *op) {
  if (grad) {
    if (!ddpm_same_shape(root, grad))
      return DDPM_FAIL(DDPM_ERR_SHAPE, "%s: gradient %s does not match the output %s", op,
                       ddpm_fmt_tensor(grad), ddpm_fmt_tensor(root));
    DDPM_TRY(ddpm_check_same_device(op, root, grad));
    if (grad->dtype != root->dtype) return ddpm_cast(seed, grad, root->dtype);
    ddpm_tensor_retain(grad);
    *seed = grad;
    return DDPM_OK;
  }
  if (ddpm_tensor_numel(root) != 1)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "%s: grad can be implicitly created only for scalar outputs; %s needs an explicit gradient",
                     op, ddpm_fmt_tensor(root));
  return ddpm_full(seed, root->ndim, root->shape, 1.0, root->dtype, root->device);
}

int ddpm_backward(ddpm_tensor *root, ddpm_tensor *grad, int retain_graph) {
  DDPM_TRY(ddpm_check_tensor("backward", "self", root));
  if (!root->requires_grad)
    return DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "backward: %s does not require grad and has no grad_fn (was it computed under no_grad, "
                     "or from tensors without requires_grad?)",
                     ddpm_fmt_tensor(root));
  ddpm_tensor *seed = NULL;
  DDPM_TRY(default_root_grad(root, grad, &seed, "backward"));
  int st = run_engine(1, &root, &seed, retain_graph, 0, NULL, NULL);
  ddpm_tensor_release(seed);
  return st;
}

int ddpm_autograd_backward(int n, ddpm_tensor *const *roots, ddpm_tensor *const *grads, int retain_graph) {
  if (n <= 0 || !roots) return DDPM_FAIL(DDPM_ERR_ARGUMENT, "autograd.backward: expected at least one tensor");
  ddpm_tensor **seeds = calloc((size_t)n, sizeof *seeds);
  if (!seeds) return DDPM_FAIL(DDPM_ERR_OOM, "autograd.backward: out of memory");
  int st = DDPM_OK;
  for (int r = 0; r < n && !st; r++) {
    if (!roots[r]) st = DDPM_FAIL(DDPM_ERR_ARGUMENT, "autograd.backward: tensor %d is nil", r + 1);
    else if (!roots[r]->requires_grad)
      st = DDPM_FAIL(DDPM_ERR_AUTOGRAD, "autograd.backward: tensor %d (%s) does not require grad and has no grad_fn",
                     r + 1, ddpm_fmt_tensor(roots[r]));
    else st = default_root_grad(roots[r], grads ? grads[r] : NULL, &seeds[r], "autograd.backward");
  }
  if (!st) st = run_engine(n, roots, seeds, retain_graph, 0, NULL, NULL);
  for (int r = 0; r < n; r++) ddpm_tensor_release(seeds[r]);
  free(seeds);
  return st;
}

int ddpm_autograd_grad(int noutputs, ddpm_tensor *const *outputs, ddpm_tensor *const *grad_outputs,
                       int ninputs, ddpm_tensor *const *inputs, ddpm_tensor **grads, int retain_graph,
                       int allow_unused) {
  if (noutputs <= 0 || ninputs <= 0 || !outputs || !inputs || !grads)
    return DDPM_FAIL(DDPM_ERR_ARGUMENT, "autograd.grad: need at least one output and one input, and room for the gradients");
  for (int k = 0; k < ninputs; k++) {
    grads[k] = NULL;
    DDPM_TRY(ddpm_check_tensor("autograd.grad", "an input", inputs[k]));
    if (!inputs[k]->requires_grad)
      return DDPM_FAIL(DDPM_ERR_AUTOGRAD, "autograd.grad: input %d (%s) does not require grad", k + 1,
                       ddpm_fmt_tensor(inputs[k]));
  }
  ddpm_tensor **seeds = calloc((size_t)noutputs, sizeof *seeds);
  if (!seeds) return DDPM_FAIL(DDPM_ERR_OOM, "autograd.grad: out of memory");
  int st = DDPM_OK;
  for (int r = 0; r < noutputs && !st; r++) {
    if (!outputs[r] || !outputs[r]->requires_grad)
      st = DDPM_FAIL(DDPM_ERR_AUTOGRAD, "autograd.grad: output %d does not require grad", r + 1);
    else
      st = default_root_grad(outputs[r], grad_outputs ? grad_outputs[r] : NULL, &seeds[r], "autograd.grad");
  }
  if (!st) st = run_engine(noutputs, outputs, seeds, retain_graph, ninputs, inputs, grads);
  for (int r = 0; r < noutputs; r++) ddpm_tensor_release(seeds[r]);
  free(seeds);
  for (int k = 0; !st && k < ninputs; k++)
    if (!grads[k] && !allow_unused)
      st = DDPM_FAIL(DDPM_ERR_AUTOGRAD,
                     "autograd.grad: input %d (%s) was not used to compute the outputs; pass {allow_unused=true}",
                     k + 1, ddpm_fmt_tensor(inputs[k]));
  if (st)
    for (int k = 0; k < ninputs; k++) {
      ddpm_tensor_release(grads[k]);
      grads[k] = NULL;
    }
  return st;
}
