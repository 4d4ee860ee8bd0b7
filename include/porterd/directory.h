/*
 * directory — the ordered chain of backends, and what VRFY, EXPN (and
 * later RCPT) ask of it. The first definite answer wins; a temporary
 * failure of an earlier backend is not hidden by "not found" from a later
 * one. Lookups and expansions complete through a callback, now or later.
 *
 * Steady state allocates nothing per request: request contexts are kept on
 * a free list and their scratch space is reused.
 */
#ifndef PORTERD_DIRECTORY_H
#define PORTERD_DIRECTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "porterd/backend.h"
#include "porterd/command.h"

struct config;
struct event_base;
struct directory;
struct dir_request;
struct dircache;
struct dircache_params;

/* Bounds on one EXPN: nesting depth, distinct mailboxes, entries visited. */
#define DIR_EXPAND_DEPTH_MAX 16
#define DIR_EXPAND_MEMBERS_MAX 10000
#define DIR_EXPAND_VISITS_MAX 100000

/*
 * The answer to one lookup, valid during the callback only.
 *   DIR_USER     fullname (or NULL) and address "local@domain"
 *   DIR_LIST     address "list@domain"
 *   DIR_FORWARD, DIR_MOVED  address is the target
 *   others       address is NULL
 */
struct dir_answer {
	enum dir_status status;
	const char *query;	/* the client's text, as given, brackets removed */
	const char *fullname;
	const char *address;
};

struct dir_member {
	const char *fullname;	/* NULL when none is known */
	const char *address;
};

/*
 * The answer to one expansion, valid during the callback only. When status
 * is DIR_LIST or DIR_USER or DIR_FORWARD, members holds every distinct
 * mailbox, nested lists flattened, in first-seen order.
 */
struct dir_expansion {
	enum dir_status status;
	const char *query;	/* the client's text, as given, brackets removed */
	const char *address;	/* DIR_MOVED: where to try instead */
	const struct dir_member *members;
	size_t nmembers;
};

typedef void directory_lookup_fn(const struct dir_answer *a, void *arg);
typedef void directory_expand_fn(const struct dir_expansion *e, void *arg);

/* Open every backend the config names, in order. */
int directory_open(const struct config *cfg, struct directory **dir_r,
		   char *err, size_t errsize);

/* An empty chain for cfg's domains; backends are added with
 * directory_append() (tests use it to add their own backends). */
struct directory *directory_new(const struct config *cfg);
void directory_append(struct directory *dir, const struct backend_ops *ops,
		      struct backend *be);
/* The same with an answer cache as cache says in front of be (NULL: none);
 * directory_open() adds one for a line with cache_ttl=. */
void directory_append_cached(struct directory *dir, const struct backend_ops *ops,
			     struct backend *be, const struct dircache_params *cache);

/* The answer cache of the backend at position link (0: the first), or
 * NULL when it has none. directory_free() logs what each cache did. */
const struct dircache *directory_cache(const struct directory *dir, size_t link);

/* Bind every backend to the loop that will run the lookups (see
 * backend_ops.attach); before the first lookup, on the loop's thread. */
int directory_attach(struct directory *dir, struct event_base *base,
		     char *err, size_t errsize);

void directory_free(struct directory **dir);

/* Total entries over the backends that count theirs (a database does
 * not), for the log line at reload. */
size_t directory_count(const struct directory *dir);

/* True when domain (len octets, any case) is one of ours. */
bool directory_domain_is_local(const struct directory *dir,
			       const char *domain, size_t len);

/*
 * Start a lookup or an expansion of q. When it completes before returning,
 * the callback has run and NULL is returned; otherwise the returned handle
 * may be passed to directory_cancel() until the callback runs.
 */
struct dir_request *directory_lookup(struct directory *dir,
				     const struct lookup_arg *q,
				     directory_lookup_fn *cb, void *arg);
struct dir_request *directory_expand(struct directory *dir,
				     const struct lookup_arg *q,
				     directory_expand_fn *cb, void *arg);

/* The callback will not run; the request is released when its backend
 * answers. */
void directory_cancel(struct dir_request *req);

#endif
