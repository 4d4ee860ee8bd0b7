/*
 * backend — the contract every address directory backend keeps.
 *
 * A backend answers one query at a time through a callback: immediately for
 * in-memory backends (table), later for network ones. It answers in
 * distinct values: a definite answer, "not found", or a temporary failure
 * that must never be mistaken for "not found". Backends are registered by
 * name in directory.c's static array; the session never sees them.
 */
#ifndef PORTERD_BACKEND_H
#define PORTERD_BACKEND_H

#include <stdbool.h>
#include <stddef.h>

enum dir_status {
	DIR_USER,	/* a mailbox here (fullname may be NULL) */
	DIR_LIST,	/* a list: members */
	DIR_FORWARD,	/* not local: will forward to target (VRFY 251) */
	DIR_MOVED,	/* not local: please try target (VRFY 551) */
	DIR_AMBIGUOUS,	/* a free-text name matched several users (553) */
	DIR_NOTFOUND,	/* nothing matched */
	DIR_TEMPFAIL,	/* the backend cannot answer now */
	DIR_NOT_LOCAL,	/* the query's domain is not ours (set by directory) */
	DIR_TOO_LARGE,	/* an expansion exceeded its bounds (set by directory) */
};

/*
 * One query. Strings are lowercase and NUL-terminated; they stay valid
 * until the backend calls done.
 *   address  "local@domain" when the client gave a (local) domain, else NULL
 *   local    the local part, or the client's whole text for a bare name
 *   by_name  true when free-text matching on full names is allowed (the
 *            client gave no domain); the key is tried first, names second
 *   domains  the local domains (ndomains, lowercase); the first is a bare
 *            name's. A backend that keys on (local part, domain) or tells
 *            a remote list member from a local one needs them.
 */
struct dir_query {
	const char *address;
	const char *local;
	bool by_name;
	const char *const *domains;
	size_t ndomains;
};

/*
 * One answer; every pointer is valid only during the done callback.
 *   key       the matched key as stored (e.g. "jones", "smith@example.test")
 *   fullname  DIR_USER: the full name, or NULL
 *   target    DIR_FORWARD, DIR_MOVED: the address to forward to / try
 *   members   DIR_LIST: nmembers member addresses or keys, in table order
 */
struct dir_result {
	enum dir_status status;
	const char *key;
	const char *fullname;
	const char *target;
	const char *const *members;
	size_t nmembers;
};

typedef void backend_done_fn(const struct dir_result *res, void *arg);

struct backend;
struct event_base;

struct backend_ops {
	const char *name;	/* the word after "directory" in porterd.conf */
	/*
	 * Open from the rest of the directive line (args), resolving relative
	 * paths against base_dir. On failure return -1 with a message in err:
	 * "PATH:LINE: ..." for an error in a file the backend reads, or
	 * "<name>: ..." for an error in args, which the directory prefixes
	 * with the config file and line of the directive.
	 */
	int (*open)(const char *args, const char *base_dir,
		    struct backend **be_r, char *err, size_t errsize);
	/*
	 * Optional (NULL for backends that answer at once): bind to the event
	 * loop that will run every lookup; a network backend starts
	 * connecting here, not in open, because open also runs for
	 * `porterd -t` and to validate a reload away from the loop. Called
	 * once, on the loop's thread, before the first lookup; lookup and
	 * close then run on that thread only. Returns -1 with a message in
	 * err when the backend cannot run at all.
	 */
	int (*attach)(struct backend *be, struct event_base *base,
		      char *err, size_t errsize);
	/* Answer q through done(res, arg), now or later, exactly once. */
	void (*lookup)(struct backend *be, const struct dir_query *q,
		       backend_done_fn *done, void *arg);
	/* Number of entries, for the log line at load; NULL for a backend
	 * that cannot know (a database): the line then leaves it out. */
	size_t (*count)(const struct backend *be);
	/* Release everything. A lookup still outstanding is answered
	 * DIR_TEMPFAIL before close returns. */
	void (*close)(struct backend **be);
};

/* The built-in backends. */
extern const struct backend_ops backend_table_ops;
extern const struct backend_ops backend_aliases_ops;
extern const struct backend_ops backend_lmdb_ops;
extern const struct backend_ops backend_passwd_ops;
extern const struct backend_ops backend_pgsql_ops;

#endif
