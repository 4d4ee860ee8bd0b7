/*
 * directory — the ordered chain of backends, and VRFY's and EXPN's
 * questions to it.
 *
 * A request walks the chain until a definite answer; an earlier temporary
 * failure turns a later "not found" into a temporary failure, never into
 * "no such user". EXPN walks list members depth-first with an explicit
 * stack, bounded in depth, size and work, dropping duplicates and cycles.
 *
 * Backends may answer now or later; request_run() is a loop, not
 * recursion, so a long list of synchronous answers cannot grow the C stack.
 * Requests and their scratch space are recycled through a free list, so
 * the steady state allocates nothing.
 *
 * A link may have an answer cache (dircache.c) in front of its backend,
 * asked for by cache_ parameters on its `directory` line, which are taken
 * out before the backend sees the line. A link without one pays a single
 * branch for it.
 */
#include "porterd/directory.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/config.h"
#include "porterd/dircache.h"
#include "porterd/log.h"
#include "porterd/strutil.h"

#define NO_STRING SIZE_MAX

struct dir_request;
static void request_run(struct dir_request *r);

struct chain_link {
	const struct backend_ops *ops;
	struct backend *be;
	struct dircache *cache;	/* NULL: every question goes to be */
};

struct directory {
	const struct config *cfg;
	struct chain_link chain[CONFIG_DIRECTORIES_MAX];
	size_t nchain;
	struct dir_request *free_list;
	struct dir_request *all;	/* every request ever made, for free */
	bool attached;		/* it served: its caches report when freed */
};

enum request_mode { MODE_LOOKUP, MODE_EXPAND };
enum request_state { ST_ASK, ST_WAIT, ST_GOT, ST_DONE };

/* An answer copied out of a backend; strings are arena offsets. */
struct copied_result {
	enum dir_status status;
	size_t key, fullname, target;
	size_t members_first, nmembers;	/* range of member_offs */
};

struct frame {
	size_t next, end;	/* range of member_offs still to visit */
};

struct out_member {
	size_t fullname, address;	/* arena offsets */
};

struct dir_request {
	struct directory *dir;
	struct dir_request *next_free;
	struct dir_request *next_all;
	enum request_mode mode;
	enum request_state state;
	directory_lookup_fn *lookup_cb;
	directory_expand_fn *expand_cb;
	void *arg;
	bool cancelled;
	bool running;

	char query[ADDRESS_PATH_MAX + 1];	/* as the client gave it */

	/* The query now walking the chain. */
	char address[ADDRESS_PATH_MAX + 1];
	char local[ADDRESS_PATH_MAX + 1];
	const char *domain;	/* qualifies bare keys in answers */
	char domain_buf[ADDRESS_DOMAIN_MAX + 1];
	struct dir_query q;
	size_t link;
	bool saw_tempfail;
	struct copied_result res;

	/* Scratch, kept across uses. */
	char *arena;
	size_t arena_len, arena_cap;
	size_t *member_offs;
	size_t nmember_offs, member_offs_cap;
	struct out_member *out;
	size_t nout, out_cap;
	struct dir_member *members;
	size_t members_cap;
	uint64_t *seen;		/* open-addressing set of hashes; 0 = empty */
	size_t seen_cap, seen_count;

	/* EXPN walk. */
	bool top;		/* the answer expected is the query's own */
	struct frame stack[DIR_EXPAND_DEPTH_MAX];
	size_t depth;
	size_t visits;
	enum dir_status final;
};

/* --- growable scratch ---------------------------------------------------- */

static size_t arena_add(struct dir_request *r, const char *s)
{
	size_t len, off;
	bool inside;

	if (s == NULL)
		return NO_STRING;
	len = strlen(s) + 1;
	/* s may live in the arena itself: find it again after a realloc. */
	inside = r->arena != NULL && s >= r->arena && s < r->arena + r->arena_len;
	off = inside ? (size_t)(s - r->arena) : 0;
	r->arena = mem_grow(r->arena, &r->arena_cap, r->arena_len + len, 1);
	if (inside)
		s = r->arena + off;
	off = r->arena_len;
	memcpy(r->arena + off, s, len);
	r->arena_len += len;
	return off;
}

static const char *arena_str(const struct dir_request *r, size_t off)
{
	return off == NO_STRING ? NULL : r->arena + off;
}

/*
 * The arena string of key (an arena offset) as an address: the key
 * itself when it has a domain or there is none to add, else a new
 * "key@domain" (bare keys are qualified). One growth, one copy of each.
 */
static size_t arena_add_address(struct dir_request *r, size_t key,
				const char *domain)
{
	size_t klen, dlen, off;

	if (key == NO_STRING)
		return NO_STRING;
	klen = strlen(r->arena + key);
	if (domain == NULL || memchr(r->arena + key, '@', klen) != NULL)
		return key;
	dlen = strlen(domain);
	r->arena = mem_grow(r->arena, &r->arena_cap,
			    r->arena_len + klen + 1 + dlen + 1, 1);
	off = r->arena_len;
	memcpy(r->arena + off, r->arena + key, klen);
	r->arena[off + klen] = '@';
	memcpy(r->arena + off + klen + 1, domain, dlen + 1);
	r->arena_len += klen + 1 + dlen + 1;
	return off;
}

/* Insert h into the seen set; false when it was already there. */
static bool seen_insert(struct dir_request *r, uint64_t h)
{
	size_t mask, i;

	if (h == 0)
		h = 1;
	if ((r->seen_count + 1) * 2 > r->seen_cap) {
		size_t oldcap = r->seen_cap;
		uint64_t *old = r->seen;
		size_t ncap = oldcap ? oldcap * 2 : 64;

		r->seen = calloc(ncap, sizeof(*r->seen));
		if (r->seen == NULL)
			abort();
		r->seen_cap = ncap;
		r->seen_count = 0;
		for (i = 0; i < oldcap; i++)
			if (old[i] != 0)
				seen_insert(r, old[i]);
		free(old);
	}
	mask = r->seen_cap - 1;
	for (i = (size_t)h & mask; r->seen[i] != 0; i = (i + 1) & mask)
		if (r->seen[i] == h)
			return false;
	r->seen[i] = h;
	r->seen_count++;
	return true;
}

/* --- requests -------------------------------------------------------------- */

static struct dir_request *request_get(struct directory *dir)
{
	struct dir_request *r = dir->free_list;

	if (r != NULL) {
		dir->free_list = r->next_free;
	} else {
		r = calloc(1, sizeof(*r));
		if (r == NULL)
			abort();
		r->dir = dir;
		r->next_all = dir->all;
		dir->all = r;
	}
	r->cancelled = false;
	r->running = false;
	r->arena_len = 0;
	r->nmember_offs = 0;
	r->nout = 0;
	r->depth = 0;
	r->visits = 0;
	if (r->seen_count > 0) {
		memset(r->seen, 0, r->seen_cap * sizeof(*r->seen));
		r->seen_count = 0;
	}
	return r;
}

static void request_release(struct dir_request *r)
{
	r->next_free = r->dir->free_list;
	r->dir->free_list = r;
}

static void request_free(struct dir_request *r)
{
	free(r->arena);
	free(r->member_offs);
	free(r->out);
	free(r->members);
	free(r->seen);
	free(r);
}

static const char *default_domain(const struct dir_request *r)
{
	const struct config *cfg = r->dir->cfg;

	return cfg->ndomains > 0 ? cfg->domains[0] : "";
}

/* Point the chain at a new query: local (and domain, NULL for a bare name)
 * are lowercased into the request. Returns false when they do not fit. */
static bool query_set(struct dir_request *r, const char *local, size_t locallen,
		      const char *domain, size_t domainlen, bool by_name)
{
	const struct config *cfg = r->dir->cfg;

	if (!str_lower_copy(r->local, sizeof(r->local), local, locallen))
		return false;
	r->q.local = r->local;
	r->q.address = NULL;
	r->q.by_name = by_name;
	r->q.domains = (const char *const *)cfg->domains;
	r->q.ndomains = cfg->ndomains;
	r->domain = cfg->ndomains > 0 ? cfg->domains[0] : NULL;
	if (domain != NULL) {
		if (locallen + 1 + domainlen >= sizeof(r->address) ||
		    !str_lower_copy(r->domain_buf, sizeof(r->domain_buf), domain,
				    domainlen))
			return false;
		memcpy(r->address, r->local, locallen);
		r->address[locallen] = '@';
		memcpy(r->address + locallen + 1, r->domain_buf, domainlen + 1);
		r->q.address = r->address;
		r->domain = r->domain_buf;
	}
	r->link = 0;
	r->saw_tempfail = false;
	r->state = ST_ASK;
	return true;
}

static void copy_result(struct dir_request *r, const struct dir_result *res)
{
	struct copied_result *c = &r->res;

	c->status = res->status;
	c->key = arena_add(r, res->key);
	c->fullname = NO_STRING;
	c->target = NO_STRING;
	c->members_first = r->nmember_offs;
	c->nmembers = 0;
	if (res->status == DIR_USER && res->fullname != NULL && res->fullname[0])
		c->fullname = arena_add(r, res->fullname);
	if (res->status == DIR_FORWARD || res->status == DIR_MOVED)
		c->target = arena_add(r, res->target);
	if (res->status == DIR_LIST) {
		r->member_offs = mem_grow(r->member_offs, &r->member_offs_cap,
				      r->nmember_offs + res->nmembers,
				      sizeof(*r->member_offs));
		for (size_t i = 0; i < res->nmembers; i++)
			r->member_offs[r->nmember_offs++] = arena_add(r, res->members[i]);
		c->nmembers = res->nmembers;
	}
	if (c->key == NO_STRING && (c->status == DIR_USER || c->status == DIR_LIST))
		c->status = DIR_TEMPFAIL;	/* a broken backend answer is not a yes */
}

static void on_backend_answer(const struct dir_result *res, void *arg)
{
	struct dir_request *r = arg;

	if (r->state != ST_WAIT)
		abort();	/* a backend answered twice */
	copy_result(r, res);
	r->state = ST_GOT;
	if (!r->running)
		request_run(r);
}

/* The backend of a cached link answered: keep what may be kept. The link
 * asked is still r->link, which moves on only after this answer. */
static void on_cacheable_answer(const struct dir_result *res, void *arg)
{
	struct dir_request *r = arg;

	dircache_put(r->dir->chain[r->link].cache, &r->q, res);
	on_backend_answer(res, r);
}

/* Out of line, so that the walk's frame stays as lean for a link
 * without a cache as it was before caches. */
static __attribute__((noinline)) void ask_cached(struct dir_request *r,
						 const struct chain_link *l)
{
	struct dir_result hit;

	if (dircache_get(l->cache, &r->q, &hit))
		on_backend_answer(&hit, r);	/* copied before any other put */
	else
		l->ops->lookup(l->be, &r->q, on_cacheable_answer, r);
}

/* Put r's query to link l; the answer may come now or later. */
static void ask_link(struct dir_request *r, const struct chain_link *l)
{
	r->state = ST_WAIT;
	if (l->cache == NULL)
		l->ops->lookup(l->be, &r->q, on_backend_answer, r);
	else
		ask_cached(r, l);
}

/* --- lookup ---------------------------------------------------------------- */

static void finish_lookup(struct dir_request *r, enum dir_status status)
{
	struct dir_answer a = { .status = status, .query = r->query };

	if (!r->cancelled) {
		if (status == DIR_USER || status == DIR_LIST) {
			size_t off = arena_add_address(r, r->res.key, r->domain);
			a.address = arena_str(r, off);
			a.fullname = arena_str(r, r->res.fullname);
		} else if (status == DIR_FORWARD || status == DIR_MOVED) {
			a.address = arena_str(r, r->res.target);
		}
		r->lookup_cb(&a, r->arg);
	}
}

/* --- expansion ------------------------------------------------------------- */

static void add_member(struct dir_request *r, size_t fullname, size_t address)
{
	const char *addr = arena_str(r, address);

	if (!seen_insert(r, str_hash_nocase(addr, strlen(addr))))
		return;
	r->out = mem_grow(r->out, &r->out_cap, r->nout + 1, sizeof(*r->out));
	r->out[r->nout].fullname = fullname;
	r->out[r->nout].address = address;
	r->nout++;
	if (r->nout > DIR_EXPAND_MEMBERS_MAX)
		r->final = DIR_TOO_LARGE;
}

static void finish_expand(struct dir_request *r)
{
	struct dir_expansion e = { .status = r->final, .query = r->query };

	if (r->cancelled)
		return;
	if (r->final == DIR_MOVED)
		e.address = arena_str(r, r->res.target);
	if (r->final == DIR_USER || r->final == DIR_LIST || r->final == DIR_FORWARD) {
		r->members = mem_grow(r->members, &r->members_cap, r->nout,
				  sizeof(*r->members));
		for (size_t i = 0; i < r->nout; i++) {
			r->members[i].fullname = arena_str(r, r->out[i].fullname);
			r->members[i].address = arena_str(r, r->out[i].address);
		}
		e.members = r->members;
		e.nmembers = r->nout;
	}
	r->expand_cb(&e, r->arg);
}

/* A list's own identity, salted so it cannot collide with a mailbox. */
static bool list_first_visit(struct dir_request *r, const char *key)
{
	return seen_insert(r, str_hash_nocase(key, strlen(key)) ^ 0x9e3779b97f4a7c15ULL);
}

static bool push_members(struct dir_request *r)
{
	struct frame *f;

	if (!list_first_visit(r, arena_str(r, r->res.key)))
		return true;	/* a cycle or a repeat: nothing new there */
	if (r->depth == DIR_EXPAND_DEPTH_MAX)
		return false;
	f = &r->stack[r->depth++];
	f->next = r->res.members_first;
	f->end = r->res.members_first + r->res.nmembers;
	return true;
}

/* Start the chain on the next member still to visit; ST_DONE when none. */
static void next_member(struct dir_request *r)
{
	while (r->depth > 0 && r->final == DIR_LIST) {
		struct frame *f = &r->stack[r->depth - 1];
		const char *m, *at;
		size_t off;

		if (f->next == f->end) {
			r->depth--;
			continue;
		}
		off = r->member_offs[f->next++];
		if (++r->visits > DIR_EXPAND_VISITS_MAX) {
			r->final = DIR_TOO_LARGE;
			break;
		}
		m = arena_str(r, off);
		at = strrchr(m, '@');
		if (at != NULL && !directory_domain_is_local(r->dir, at + 1, strlen(at + 1))) {
			add_member(r, NO_STRING, off);	/* a remote address */
			continue;
		}
		/* A member is an address: a bare one is in the default domain,
		 * so "smith" finds smith@<first domain> as well as "smith". */
		if (at == NULL ? query_set(r, m, strlen(m), default_domain(r),
					   strlen(default_domain(r)), false)
			       : query_set(r, m, (size_t)(at - m), at + 1,
					   strlen(at + 1), false))
			return;
		log_event(LOG_LEVEL_WARN, "event=expn_skip member=\"%s\" reason=too_long", m);
	}
	r->state = ST_DONE;
}

static void expand_member_result(struct dir_request *r, enum dir_status st)
{
	switch (st) {
	case DIR_USER:
		add_member(r, r->res.fullname,
			   arena_add_address(r, r->res.key, r->domain));
		break;
	case DIR_FORWARD:
		add_member(r, NO_STRING, r->res.target);
		break;
	case DIR_LIST:
		if (!push_members(r))
			r->final = DIR_TOO_LARGE;
		break;
	case DIR_TEMPFAIL:
		r->final = DIR_TEMPFAIL;
		break;
	default:
		/* Moved or unknown members receive nothing: not shown. */
		log_event(LOG_LEVEL_WARN, "event=expn_skip member=\"%s\" reason=%s",
			  r->q.address != NULL ? r->q.address : r->q.local,
			  st == DIR_MOVED ? "moved" : "unknown");
		break;
	}
	next_member(r);
}

/* EXPN of a user or a forward is a list of one (RFC 821 3.3). */
static void expand_top_result(struct dir_request *r, enum dir_status st)
{
	r->top = false;
	r->final = st;
	if (st == DIR_USER)
		add_member(r, r->res.fullname,
			   arena_add_address(r, r->res.key, r->domain));
	else if (st == DIR_FORWARD)
		add_member(r, NO_STRING, r->res.target);
	if (st == DIR_LIST) {
		push_members(r);
		next_member(r);
		return;
	}
	r->state = ST_DONE;
}

/* --- the chain walk -------------------------------------------------------- */

/* A forward to an address in one of our own domains is not "not local":
 * it is a list of one, so the address is looked up (and delivered to)
 * here like any list member. */
static bool forward_is_local(const struct dir_request *r)
{
	const char *target = arena_str(r, r->res.target);
	const char *at = target != NULL ? strrchr(target, '@') : NULL;

	return at != NULL && directory_domain_is_local(r->dir, at + 1, strlen(at + 1));
}

static enum dir_status forward_as_list(struct dir_request *r)
{
	r->member_offs = mem_grow(r->member_offs, &r->member_offs_cap, r->nmember_offs + 1,
			      sizeof(*r->member_offs));
	r->res.members_first = r->nmember_offs;
	r->member_offs[r->nmember_offs++] = r->res.target;
	r->res.nmembers = 1;
	r->res.status = DIR_LIST;
	return DIR_LIST;
}

static void chain_step(struct dir_request *r)
{
	enum dir_status st = r->res.status;

	if (r->cancelled) {
		r->state = ST_DONE;
		return;
	}
	if (st == DIR_NOTFOUND || st == DIR_TEMPFAIL) {
		r->saw_tempfail |= st == DIR_TEMPFAIL;
		if (r->link + 1 < r->dir->nchain) {
			r->link++;
			r->state = ST_ASK;
			return;
		}
		st = r->saw_tempfail ? DIR_TEMPFAIL : DIR_NOTFOUND;
	}
	if (st == DIR_FORWARD && forward_is_local(r))
		st = forward_as_list(r);
	if (r->mode == MODE_LOOKUP) {
		r->final = st;
		r->state = ST_DONE;
	} else if (r->top) {
		expand_top_result(r, st);
	} else {
		expand_member_result(r, st);
	}
}

static void request_finish(struct dir_request *r)
{
	if (r->mode == MODE_LOOKUP)
		finish_lookup(r, r->final);
	else
		finish_expand(r);
	request_release(r);
}

static void request_run(struct dir_request *r)
{
	r->running = true;
	for (;;) {
		if (r->state == ST_ASK) {
			struct chain_link *l = &r->dir->chain[r->link];

			if (r->dir->nchain == 0) {
				r->res.status = DIR_NOTFOUND;
				r->res.key = NO_STRING;
				r->state = ST_GOT;
			} else {
				ask_link(r, l);
				if (r->state == ST_WAIT) {
					r->running = false;
					return;	/* it answers later */
				}
			}
		}
		if (r->state == ST_GOT)
			chain_step(r);
		if (r->state == ST_DONE) {
			r->running = false;
			request_finish(r);
			return;
		}
	}
}

static struct dir_request *request_start(struct directory *dir,
					 enum request_mode mode,
					 const struct lookup_arg *q)
{
	struct dir_request *r = request_get(dir);

	r->mode = mode;
	r->top = true;
	r->final = DIR_NOTFOUND;
	r->res.key = NO_STRING;
	r->res.fullname = r->res.target = NO_STRING;
	str_copy(r->query, sizeof(r->query), q->text, q->textlen);
	if (q->domain != NULL &&
	    !directory_domain_is_local(dir, q->domain, q->domainlen)) {
		r->final = DIR_NOT_LOCAL;
		r->state = ST_DONE;
	} else if (!query_set(r, q->local, q->locallen, q->domain, q->domainlen,
			      q->domain == NULL)) {
		r->state = ST_DONE;	/* longer than any key: not found */
	}
	return r;
}

/* Run r; hand back the handle only while it is still outstanding. */
static struct dir_request *request_launch(struct dir_request *r)
{
	if (r->state == ST_DONE) {
		request_finish(r);
		return NULL;
	}
	request_run(r);
	return r->state == ST_WAIT ? r : NULL;
}

struct dir_request *directory_lookup(struct directory *dir,
				     const struct lookup_arg *q,
				     directory_lookup_fn *cb, void *arg)
{
	struct dir_request *r = request_start(dir, MODE_LOOKUP, q);

	r->lookup_cb = cb;
	r->arg = arg;
	return request_launch(r);
}

struct dir_request *directory_expand(struct directory *dir,
				     const struct lookup_arg *q,
				     directory_expand_fn *cb, void *arg)
{
	struct dir_request *r = request_start(dir, MODE_EXPAND, q);

	r->expand_cb = cb;
	r->arg = arg;
	return request_launch(r);
}

void directory_cancel(struct dir_request *req)
{
	if (req != NULL)
		req->cancelled = true;
}

/* --- the chain itself ------------------------------------------------------ */

static const struct backend_ops *const backends[] = {
	&backend_table_ops,
	&backend_aliases_ops,
	&backend_lmdb_ops,
	&backend_passwd_ops,
	&backend_pgsql_ops,
};

#define NBACKENDS (sizeof(backends) / sizeof(backends[0]))

/* "table, aliases, ..." for the error naming an unknown backend. */
static void backend_names(char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < NBACKENDS && used < size; i++) {
		int n = snprintf(buf + used, size - used, "%s%s", i ? ", " : "",
				 backends[i]->name);
		if (n < 0)
			break;
		used += (size_t)n;
	}
}

static const struct backend_ops *backend_find(const char *name)
{
	for (size_t i = 0; i < NBACKENDS; i++)
		if (strcmp(backends[i]->name, name) == 0)
			return backends[i];
	return NULL;
}

struct directory *directory_new(const struct config *cfg)
{
	struct directory *dir = calloc(1, sizeof(*dir));

	if (dir == NULL)
		abort();
	dir->cfg = cfg;
	return dir;
}

void directory_append(struct directory *dir, const struct backend_ops *ops,
		      struct backend *be)
{
	directory_append_cached(dir, ops, be, NULL);
}

void directory_append_cached(struct directory *dir, const struct backend_ops *ops,
			     struct backend *be, const struct dircache_params *cache)
{
	if (dir->nchain == CONFIG_DIRECTORIES_MAX)
		abort();	/* config.c enforces the bound */
	dir->chain[dir->nchain].ops = ops;
	dir->chain[dir->nchain].be = be;
	dir->chain[dir->nchain].cache = cache != NULL ? dircache_new(cache) : NULL;
	dir->nchain++;
}

const struct dircache *directory_cache(const struct directory *dir, size_t link)
{
	return link < dir->nchain ? dir->chain[link].cache : NULL;
}

/* An error in the directive's own arguments ("table: expected one PATH")
 * is the config file's: say where in it. */
static void locate_args_error(const struct config *cfg,
			      const struct config_directory *cd,
			      const char *name, char *err, size_t errsize)
{
	size_t n = strlen(name);
	char msg[512];

	if (strncmp(err, name, n) != 0 || err[n] != ':')
		return;	/* it names its own file already */
	str_copy(msg, sizeof(msg), err, strlen(err));
	snprintf(err, errsize, "%s:%u: directory %s", cfg->path, cd->line, msg);
}

/* Open the backend of cd with the cache's words taken out of its line.
 * Returns 1 when the line asks for a cache (its parameters in cache_r),
 * 0 when not, -1 with a message in err. */
static int open_backend(const struct backend_ops *ops, const struct config *cfg,
			const struct config_directory *cd, struct backend **be_r,
			struct dircache_params *cache_r, char *err, size_t errsize)
{
	size_t size = strlen(cd->args) + 1;
	char *args = malloc(size), msg[512];
	int cached;

	if (args == NULL)
		abort();
	cached = dircache_take_params(cd->args, args, size, cache_r, err, errsize);
	if (cached < 0) {
		str_copy(msg, sizeof(msg), err, strlen(err));
		snprintf(err, errsize, "%s:%u: directory %s: %s", cfg->path, cd->line,
			 ops->name, msg);
	} else if (ops->open(args, cfg->base_dir, be_r, err, errsize) < 0) {
		locate_args_error(cfg, cd, ops->name, err, errsize);
		cached = -1;
	}
	free(args);
	return cached;
}

static int open_one(struct directory *dir, const struct config *cfg,
		    const struct config_directory *cd, char *err, size_t errsize)
{
	const struct backend_ops *ops = backend_find(cd->type);
	struct dircache_params cache;
	struct backend *be = NULL;
	int cached;

	if (ops == NULL) {
		char known[256];

		backend_names(known, sizeof(known));
		snprintf(err, errsize, "%s:%u: directory: unknown backend '%s' (known: %s)",
			 cfg->path, cd->line, cd->type, known);
		return -1;
	}
	cached = open_backend(ops, cfg, cd, &be, &cache, err, errsize);
	if (cached < 0)
		return -1;
	directory_append_cached(dir, ops, be, cached ? &cache : NULL);
	if (ops->count != NULL)
		log_event(LOG_LEVEL_INFO, "event=directory_open backend=%s entries=%zu",
			  ops->name, ops->count(be));
	else
		log_event(LOG_LEVEL_INFO, "event=directory_open backend=%s", ops->name);
	return 0;
}

int directory_open(const struct config *cfg, struct directory **dir_r,
		   char *err, size_t errsize)
{
	struct directory *dir = directory_new(cfg);

	for (size_t i = 0; i < cfg->ndirectories; i++) {
		if (open_one(dir, cfg, &cfg->directories[i], err, errsize) < 0) {
			directory_free(&dir);
			return -1;
		}
	}
	*dir_r = dir;
	return 0;
}

int directory_attach(struct directory *dir, struct event_base *base,
		     char *err, size_t errsize)
{
	for (size_t i = 0; i < dir->nchain; i++) {
		const struct chain_link *l = &dir->chain[i];

		if (l->ops->attach != NULL && l->ops->attach(l->be, base, err, errsize) < 0)
			return -1;
	}
	dir->attached = true;
	return 0;
}

/* What the cache of link l (position i) did, then the cache itself. A
 * directory that never served (porterd -t, a reload refused) says
 * nothing. */
static void cache_release(struct chain_link *l, size_t i, bool served)
{
	struct dircache_stats st;

	if (l->cache == NULL)
		return;
	dircache_stats(l->cache, &st);
	if (served)
		log_event(LOG_LEVEL_INFO, "event=directory_cache backend=%s hits=%llu "
			  "misses=%llu entries=%zu position=%zu", l->ops->name,
			  (unsigned long long)st.hits, (unsigned long long)st.misses,
			  st.entries, i + 1);
	dircache_free(&l->cache);
}

void directory_free(struct directory **dirp)
{
	struct directory *dir = *dirp;

	if (dir == NULL)
		return;
	for (size_t i = 0; i < dir->nchain; i++)
		dir->chain[i].ops->close(&dir->chain[i].be);
	/* After the backends: a lookup they answer as they close may reach
	 * its cache. */
	for (size_t i = 0; i < dir->nchain; i++)
		cache_release(&dir->chain[i], i, dir->attached);
	while (dir->all != NULL) {
		struct dir_request *r = dir->all;
		dir->all = r->next_all;
		request_free(r);
	}
	free(dir);
	*dirp = NULL;
}

size_t directory_count(const struct directory *dir)
{
	size_t n = 0;

	for (size_t i = 0; i < dir->nchain; i++)
		if (dir->chain[i].ops->count != NULL)
			n += dir->chain[i].ops->count(dir->chain[i].be);
	return n;
}

bool directory_domain_is_local(const struct directory *dir, const char *domain,
			       size_t len)
{
	const struct config *cfg = dir->cfg;

	for (size_t i = 0; i < cfg->ndomains; i++)
		if (str_eq_nocase(cfg->domains[i], strlen(cfg->domains[i]), domain, len))
			return true;
	return false;
}
