/*
 * pgsql — the `pgsql` directory backend: users and lists looked up in
 * PostgreSQL with libpq, asynchronously on the event loop.
 *
 * It must never block the loop: connections are made with PQconnectStart
 * and PQconnectPoll driven by socket events, to addresses only (libpq
 * resolves a host name synchronously, so open refuses one), and queries
 * go out with PQsendQueryParams on non-blocking connections and come back
 * through PQconsumeInput, PQisBusy and PQgetResult. It must never mistake
 * an unreachable or slow database for "no such user": every lookup is
 * answered within `timeout`, DIR_TEMPFAIL when no definite answer came.
 * Client text reaches the server only as bound parameters, never as SQL.
 *
 * A pool of connections each serves one lookup at a time, and lookups
 * wait in a bounded queue. A connection that fails is made again after a
 * backoff that doubles (at once when it had been up, as when the server
 * closes idle connections); a lookup whose connection died under it is
 * tried once more. While every connection waits out its backoff, lookups
 * are answered DIR_TEMPFAIL at once rather than at their deadline.
 */
#include "porterd/pgsql.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "porterd/command.h"
#include "porterd/config.h"
#include "porterd/log.h"
#include "porterd/strutil.h"
#include "porterd/textscan.h"

#define PGSQL_TEXT_OID 25	/* pg_type "text": both parameters are text */
#define PGSQL_NULL SIZE_MAX	/* a cell that is SQL NULL */

/* ---- parameters ---- */

enum param_id {
	PARAM_CONNINFO,
	PARAM_QUERY_USER,
	PARAM_QUERY_LIST,
	PARAM_QUERY_NAME,
	PARAM_TIMEOUT,
	PARAM_POOL,
	PARAM__COUNT
};

static const char *const param_names[PARAM__COUNT] = {
	[PARAM_CONNINFO] = "conninfo",
	[PARAM_QUERY_USER] = "query_user",
	[PARAM_QUERY_LIST] = "query_list",
	[PARAM_QUERY_NAME] = "query_name",
	[PARAM_TIMEOUT] = "timeout",
	[PARAM_POOL] = "pool",
};

#define PARAM_KNOWN "conninfo, query_user, query_list, query_name, timeout, pool"
#define PARAM_REQUIRED "conninfo, query_user and query_list are required"

static int param_find(const char *name, size_t len)
{
	for (int i = 0; i < PARAM__COUNT; i++)
		if (strlen(param_names[i]) == len &&
		    memcmp(param_names[i], name, len) == 0)
			return i;
	return -1;
}

/* A bare value: up to the next blank, no '"' in it. */
static int value_bare(const char **s, const char *name, char **value_r,
		      char *err, size_t errsize)
{
	const char *e = *s;

	while (*e != '\0' && !text_is_blank(*e)) {
		if (*e == '"')
			return str_error(err, errsize, "pgsql: %s: '\"' inside "
					 "an unquoted value (quote the whole "
					 "value)", name);
		e++;
	}
	*value_r = strndup(*s, (size_t)(e - *s));
	*s = e;
	return 0;
}

/* A quoted value at *s (on its opening quote): \" and \\ are escapes. */
static int value_quoted(const char **s, const char *name, char **value_r,
			char *err, size_t errsize)
{
	const char *p = *s + 1;
	char *out = malloc(strlen(p) + 1), *w = out;

	if (out == NULL)
		return str_error(err, errsize, "pgsql: out of memory");
	for (; *p != '"'; p++) {
		if (*p == '\0' || (*p == '\\' && p[1] == '\0')) {
			free(out);
			return str_error(err, errsize, "pgsql: %s: unterminated "
					 "quoted value", name);
		}
		if (*p == '\\' && p[1] != '"' && p[1] != '\\') {
			unsigned char c = (unsigned char)p[1];

			free(out);
			if (c > ' ' && c < 0x7f)
				return str_error(err, errsize, "pgsql: %s: unknown "
					"escape '\\%c' in a quoted value (only \\\" "
					"and \\\\)", name, c);
			return str_error(err, errsize, "pgsql: %s: unknown escape "
					 "(backslash before octet 0x%02x) in a quoted "
					 "value (only \\\" and \\\\)", name, c);
		}
		if (*p == '\\')
			p++;
		*w++ = *p;
	}
	*w = '\0';
	p++;
	if (*p != '\0' && !text_is_blank(*p)) {
		free(out);
		return str_error(err, errsize, "pgsql: %s: text right after "
				 "the closing quote", name);
	}
	*value_r = out;
	*s = p;
	return 0;
}

/* The value of name at *s (just after '='), unquoted into a new string. */
static int value_read(const char **s, const char *name, char **value_r,
		      char *err, size_t errsize)
{
	int rc = **s == '"' ? value_quoted(s, name, value_r, err, errsize)
			    : value_bare(s, name, value_r, err, errsize);

	if (rc < 0)
		return -1;
	if (*value_r == NULL)
		return str_error(err, errsize, "pgsql: out of memory");
	if (**value_r == '\0') {
		free(*value_r);
		*value_r = NULL;
		return str_error(err, errsize, "pgsql: %s: empty value", name);
	}
	return 0;
}

/* Every NAME=VALUE of args into given[], each at most once. */
static int params_split(const char *args, char *given[PARAM__COUNT],
			char *err, size_t errsize)
{
	const char *s = args != NULL ? args : "";

	for (;;) {
		const char *name, *eq;
		int id;

		s = text_skip_blanks_str(s);
		if (*s == '\0')
			return 0;
		name = s;
		for (eq = s; *eq != '\0' && *eq != '=' && !text_is_blank(*eq); eq++)
			;
		if (*eq != '=' || eq == name)
			return str_error(err, errsize, "pgsql: expected NAME=VALUE, "
					 "got " QUOTED, SHOWN(name, strcspn(name, " \t")));
		id = param_find(name, (size_t)(eq - name));
		if (id < 0)
			return str_error(err, errsize, "pgsql: unknown parameter "
					 QUOTED " (known: " PARAM_KNOWN ")",
					 SHOWN(name, (size_t)(eq - name)));
		if (given[id] != NULL)
			return str_error(err, errsize, "pgsql: %s given twice",
					 param_names[id]);
		s = eq + 1;
		if (value_read(&s, param_names[id], &given[id], err, errsize) < 0)
			return -1;
	}
}

static int pool_parse(const char *v, unsigned *pool_r, char *err, size_t errsize)
{
	size_t len = strlen(v);
	uint64_t n;

	if (len > 3 || !str_parse_digits(v, len, &n) || n < 1 ||
	    n > PGSQL_POOL_MAX)
		return str_error(err, errsize, "pgsql: pool: " QUOTED " is not a "
				 "number from 1 to %d", SHOWN(v, len), PGSQL_POOL_MAX);
	*pool_r = (unsigned)n;
	return 0;
}

static int timeout_parse(const char *v, uint64_t *secs_r, char *err,
			 size_t errsize)
{
	if (!config_parse_seconds(v, secs_r) || *secs_r < PGSQL_TIMEOUT_MIN ||
	    *secs_r > PGSQL_TIMEOUT_MAX)
		return str_error(err, errsize, "pgsql: timeout: " QUOTED " is not "
				 "a time from %ds to %ds (a number with s, m or h)",
				 SHOWN(v, strlen(v)), PGSQL_TIMEOUT_MIN,
				 PGSQL_TIMEOUT_MAX);
	return 0;
}

/* An address libpq connects to without resolving anything: an IP
 * address, a socket directory ('/') or an abstract socket ('@'). */
static bool host_is_address(const char *h, size_t len)
{
	char buf[64];
	unsigned char addr[16];

	if (len > 0 && (h[0] == '/' || h[0] == '@'))
		return true;
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, h, len);
	buf[len] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 ||
	       inet_pton(AF_INET6, buf, addr) == 1;
}

static bool is_set(const char *s)
{
	return s != NULL && *s != '\0';
}

/* A host list ("a,b") whose every element connects without resolving. */
static int hosts_check(const char *host, char *err, size_t errsize)
{
	for (const char *h = host;;) {
		size_t len = strcspn(h, ",");

		if (len > 0 && !host_is_address(h, len))
			return str_error(err, errsize, "pgsql: conninfo: host "
				QUOTED " is a name, which libpq would resolve while "
				"every session waits: give its address in hostaddr= "
				"(host= may stay, for TLS) or a socket directory",
				SHOWN(h, len));
		if (h[len] == '\0')
			return 0;
		h += len + 1;
	}
}

/*
 * conninfo must parse, and must not make libpq resolve a name: a host
 * with no hostaddr, given in conninfo or (when conninfo names neither)
 * in PGHOST, is an address or a socket directory.
 */
static int conninfo_check(const char *conninfo, char *err, size_t errsize)
{
	char *msg = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &msg);
	const char *host = NULL, *hostaddr = NULL;
	int rc = 0;

	if (opts == NULL) {
		size_t n = msg != NULL ? strcspn(msg, "\n") : 0;

		str_error(err, errsize, "pgsql: conninfo: %.*s", (int)n,
			  msg != NULL ? msg : "out of memory");
		PQfreemem(msg);
		return -1;
	}
	for (const PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			hostaddr = o->val;
	}
	if (!is_set(host) && !is_set(hostaddr)) {
		host = getenv("PGHOST");
		hostaddr = getenv("PGHOSTADDR");
	}
	if (!is_set(hostaddr) && is_set(host))
		rc = hosts_check(host, err, errsize);
	PQconninfoFree(opts);
	return rc;
}

void pgsql_params_clear(struct pgsql_params *p)
{
	free(p->conninfo);
	free(p->query_user);
	free(p->query_list);
	free(p->query_name);
	memset(p, 0, sizeof(*p));
}

/* Required parameters, numbers and conninfo, in that order. */
static int params_check(char *given[PARAM__COUNT], struct pgsql_params *p,
			char *err, size_t errsize)
{
	static const enum param_id required[] = {
		PARAM_CONNINFO, PARAM_QUERY_USER, PARAM_QUERY_LIST,
	};

	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++)
		if (given[required[i]] == NULL)
			return str_error(err, errsize, "pgsql: missing %s=VALUE ("
					 PARAM_REQUIRED ")",
					 param_names[required[i]]);
	p->timeout = PGSQL_TIMEOUT_DEFAULT;
	p->pool = PGSQL_POOL_DEFAULT;
	if (given[PARAM_TIMEOUT] != NULL &&
	    timeout_parse(given[PARAM_TIMEOUT], &p->timeout, err, errsize) < 0)
		return -1;
	if (given[PARAM_POOL] != NULL &&
	    pool_parse(given[PARAM_POOL], &p->pool, err, errsize) < 0)
		return -1;
	return conninfo_check(given[PARAM_CONNINFO], err, errsize);
}

int pgsql_params_parse(const char *args, struct pgsql_params *p, char *err,
		       size_t errsize)
{
	char *given[PARAM__COUNT] = { NULL };
	int rc;

	memset(p, 0, sizeof(*p));
	rc = params_split(args, given, err, errsize);
	if (rc == 0)
		rc = params_check(given, p, err, errsize);
	if (rc == 0) {
		p->conninfo = given[PARAM_CONNINFO];
		p->query_user = given[PARAM_QUERY_USER];
		p->query_list = given[PARAM_QUERY_LIST];
		p->query_name = given[PARAM_QUERY_NAME];
		given[PARAM_CONNINFO] = given[PARAM_QUERY_USER] = NULL;
		given[PARAM_QUERY_LIST] = given[PARAM_QUERY_NAME] = NULL;
	}
	for (int i = 0; i < PARAM__COUNT; i++)
		free(given[i]);
	return rc;
}

/* ---- rows ---- */

void pgsql_rows_reset(struct pgsql_rows *r)
{
	r->len = 0;
	r->ncells = 0;
	r->nrows = 0;
	r->too_many = false;
}

static size_t rows_text_add(struct pgsql_rows *r, const char *v, size_t len)
{
	size_t off = r->len;

	if (v == NULL)
		return PGSQL_NULL;
	r->text = mem_grow(r->text, &r->cap, r->len + len + 1, 1);
	memcpy(r->text + off, v, len);
	r->text[off + len] = '\0';
	r->len += len + 1;
	return off;
}

void pgsql_rows_add(struct pgsql_rows *r, const char *v0, size_t len0,
		    const char *v1, size_t len1)
{
	size_t need = (v0 != NULL ? len0 + 1 : 0) + (v1 != NULL ? len1 + 1 : 0);

	if (r->too_many || r->nrows == PGSQL_ROWS_MAX ||
	    need > PGSQL_RESULT_MAX - r->len) {
		r->too_many = true;
		return;
	}
	r->cells = mem_grow(r->cells, &r->cells_cap, r->ncells + 2, sizeof(*r->cells));
	r->cells[r->ncells++] = rows_text_add(r, v0, len0);
	r->cells[r->ncells++] = rows_text_add(r, v1, len1);
	r->nrows++;
}

static char *rows_cell(const struct pgsql_rows *r, size_t row, int col)
{
	size_t off = r->cells[row * 2 + (size_t)col];

	return off == PGSQL_NULL ? NULL : r->text + off;
}

const char *pgsql_rows_value(const struct pgsql_rows *r, size_t row, int col)
{
	return row < r->nrows && (col == 0 || col == 1) ? rows_cell(r, row, col)
							: NULL;
}

void pgsql_rows_free(struct pgsql_rows *r)
{
	free(r->text);
	free(r->cells);
	free(r->members);
	memset(r, 0, sizeof(*r));
}

/* ---- from rows to an answer ---- */

#define WHY_TOO_MANY "more rows or longer values than porterd keeps"

/* Lowercase s in place; false when it is no address a reply may carry. */
static bool address_clean(char *s)
{
	size_t len = 0;
	bool at = false;

	for (char *c = s; *c != '\0'; c++, len++) {
		unsigned char u = (unsigned char)*c;

		if (u <= ' ' || u == 0x7f || u == '<' || u == '>' || u == ',' ||
		    (u == '@' && at))
			return false;
		at |= u == '@';
		*c = str_lower_char(*c);
	}
	return len > 0 && len <= ADDRESS_PATH_MAX && s[0] != '@' &&
	       s[len - 1] != '@';
}

/* A full name fit for a reply line: control characters and runs of white
 * space become one space, trimmed; NULL when nothing is left. */
static const char *name_clean(char *s)
{
	char *w = s;
	bool space = false;

	if (s == NULL)
		return NULL;
	for (const char *c = s; *c != '\0'; c++) {
		unsigned char u = (unsigned char)*c;

		if (u <= ' ' || u == 0x7f) {
			space = w != s;
			continue;
		}
		if (space)
			*w++ = ' ';
		space = false;
		*w++ = *c;
	}
	*w = '\0';
	return w == s ? NULL : s;
}

/* Values left out of one answer: logged once, with the first of them,
 * however many there were. */
struct skipped {
	size_t count;
	const char *first;
};

static void skipped_add(struct skipped *sk, const char *value)
{
	if (sk->count++ == 0)
		sk->first = value;
}

static void skipped_log(const struct skipped *sk, const char *query)
{
	char esc[LOG_VALUE_MAX];

	if (sk->count == 0)
		return;
	log_event(LOG_LEVEL_WARN, "event=pgsql_skip query=%s values=%zu "
		  "first=\"%s\" reason=not_an_address", query, sk->count,
		  log_escape(esc, sizeof(esc), sk->first, strlen(sk->first)));
}

enum dir_status pgsql_answer_user(struct pgsql_rows *rows, const char *key,
				  struct dir_result *res, const char **why_r)
{
	*res = (struct dir_result){ .status = DIR_NOTFOUND };
	*why_r = NULL;
	if (rows->too_many || rows->nrows > 1) {
		*why_r = rows->too_many ? WHY_TOO_MANY
					: "query_user returned more than one row";
		res->status = DIR_TEMPFAIL;
	} else if (rows->nrows == 1) {
		res->status = DIR_USER;
		res->key = key;
		res->fullname = name_clean(rows_cell(rows, 0, 0));
	}
	return res->status;
}

static bool member_is_remote(const char *m, const char *const *domains,
			     size_t ndomains)
{
	const char *at = strchr(m, '@');

	if (at == NULL)
		return false;
	for (size_t i = 0; i < ndomains; i++)
		if (str_eq_nocase(at + 1, strlen(at + 1), domains[i],
				  strlen(domains[i])))
			return false;
	return true;
}

/* Split v on commas and blanks into rows->members after *n of them. */
static void members_split(struct pgsql_rows *rows, char *v, size_t *n,
			  struct skipped *sk)
{
	for (;;) {
		char *t;
		bool last;

		while (*v == ',' || text_is_blank(*v) || *v == '\r' || *v == '\n')
			v++;
		if (*v == '\0')
			return;
		t = v + strcspn(v, ", \t\r\n");
		last = *t == '\0';
		*t = '\0';
		if (address_clean(v)) {
			rows->members = mem_grow(rows->members, &rows->members_cap,
					     *n + 1, sizeof(*rows->members));
			rows->members[(*n)++] = v;
		} else {
			skipped_add(sk, v);
		}
		if (last)
			return;
		v = t + 1;
	}
}

enum dir_status pgsql_answer_list(struct pgsql_rows *rows, const char *key,
				  const char *const *domains, size_t ndomains,
				  struct dir_result *res, const char **why_r)
{
	struct skipped sk = { 0, NULL };
	size_t n = 0;

	*res = (struct dir_result){ .status = DIR_NOTFOUND };
	*why_r = NULL;
	for (size_t i = 0; i < rows->nrows && !rows->too_many; i++) {
		char *v = rows_cell(rows, i, 0);

		if (v != NULL)
			members_split(rows, v, &n, &sk);
	}
	skipped_log(&sk, "query_list");
	if (rows->too_many || n > PGSQL_ROWS_MAX) {
		*why_r = WHY_TOO_MANY;
		res->status = DIR_TEMPFAIL;
	} else if (n == 1 && member_is_remote(rows->members[0], domains, ndomains)) {
		res->status = DIR_FORWARD;
		res->key = key;
		res->target = rows->members[0];
	} else if (n > 0) {
		res->status = DIR_LIST;
		res->key = key;
		res->members = rows->members;
		res->nmembers = n;
	}
	return res->status;
}

enum dir_status pgsql_answer_name(struct pgsql_rows *rows,
				  struct dir_result *res, const char **why_r)
{
	struct skipped sk = { 0, NULL };
	const char *first = NULL;
	size_t first_row = 0;

	*res = (struct dir_result){ .status = DIR_NOTFOUND };
	*why_r = NULL;
	for (size_t i = 0; i < rows->nrows && res->status != DIR_AMBIGUOUS; i++) {
		char *a = rows_cell(rows, i, 0);

		if (a == NULL)
			continue;
		if (!address_clean(a)) {
			skipped_add(&sk, a);
		} else if (first == NULL) {
			first = a;
			first_row = i;
		} else if (strcmp(first, a) != 0) {
			res->status = DIR_AMBIGUOUS;
		}
	}
	skipped_log(&sk, "query_name");
	if (res->status == DIR_AMBIGUOUS)
		return res->status;
	if (rows->too_many) {
		*why_r = WHY_TOO_MANY;
		res->status = DIR_TEMPFAIL;
	} else if (first != NULL) {
		res->status = DIR_USER;
		res->key = first;
		res->fullname = name_clean(rows_cell(rows, first_row, 1));
	}
	return res->status;
}

/* ---- the backend ---- */

enum slot_state {
	SLOT_DOWN,		/* not connected, nothing pending */
	SLOT_BACKOFF,		/* waiting to connect again */
	SLOT_CONNECTING,
	SLOT_IDLE,
	SLOT_BUSY,		/* a job's query is out */
};

enum job_step { STEP_USER, STEP_LIST, STEP_NAME };

static const char *const step_names[] = {
	[STEP_USER] = "query_user",
	[STEP_LIST] = "query_list",
	[STEP_NAME] = "query_name",
};

struct slot;

/* One lookup, from lookup() to its answer. */
struct job {
	struct backend *be;
	TAILQ_ENTRY(job) link;	/* the queue */
	struct job *next_free;
	struct slot *slot;	/* serving it; NULL while queued */
	struct event *deadline;
	backend_done_fn *done;
	void *arg;
	enum job_step step;
	bool by_name;		/* query_name may be asked */
	bool retried;		/* a connection died under it once */
	bool failed;		/* the server answered an error */
	char local[ADDRESS_PATH_MAX + 1];	/* $1: the local part */
	char text[ADDRESS_PATH_MAX + 1];	/* $1 of query_name */
	char domain[ADDRESS_DOMAIN_MAX + 1];	/* $2 */
	bool has_domain;
	char key[ADDRESS_PATH_MAX + 1 + ADDRESS_DOMAIN_MAX + 1];
	const char *const *domains;
	size_t ndomains;
	struct pgsql_rows rows;
	char error[LOG_VALUE_MAX];	/* the server's message, escaped */
};

/* One pooled connection. */
struct slot {
	struct backend *be;
	unsigned index;
	enum slot_state state;
	PGconn *pg;
	struct event *io;	/* reassigned whenever the socket may change */
	bool io_added;
	struct event *timer;	/* backoff, or the connect deadline */
	struct job *job;
	unsigned backoff_ms;	/* the next wait before connecting */
	bool flushing;		/* the query is not all sent yet */
	bool down_logged;	/* failures since it was last up go to debug */
};

TAILQ_HEAD(job_queue, job);

struct backend {
	struct pgsql_params p;
	struct event_base *base;	/* NULL until attach */
	struct slot *slots;
	struct job_queue queue;
	size_t nqueued;
	struct job *free_jobs;
	bool closing;
};

static void slot_connect(struct slot *s);
static void slot_failed(struct slot *s, const char *why);
static void pool_dispatch(struct backend *be);

static const struct dir_result tempfail = { .status = DIR_TEMPFAIL };

static struct timeval ms_timeval(unsigned ms)
{
	return (struct timeval){ .tv_sec = ms / 1000,
				 .tv_usec = (suseconds_t)(ms % 1000) * 1000 };
}

/* ---- jobs ---- */

static void job_deadline_cb(evutil_socket_t fd, short what, void *arg);

static struct job *job_get(struct backend *be)
{
	struct job *job = be->free_jobs;

	if (job != NULL) {
		be->free_jobs = job->next_free;
		return job;
	}
	job = calloc(1, sizeof(*job));
	if (job == NULL || (job->deadline = evtimer_new(be->base, job_deadline_cb,
							 job)) == NULL)
		abort();	/* bounded by PGSQL_QUEUE_MAX and the pool */
	job->be = be;
	return job;
}

static void job_release(struct job *job)
{
	job->next_free = job->be->free_jobs;
	job->be->free_jobs = job;
}

static void job_free(struct job *job)
{
	event_free(job->deadline);
	pgsql_rows_free(&job->rows);
	free(job);
}

/* A free-text name as query_name gets it: words one space apart. */
static void text_words(char *dst, const char *src)
{
	bool space = false;
	char *w = dst;

	for (; *src != '\0'; src++) {
		if (text_is_blank(*src)) {
			space = w != dst;
			continue;
		}
		if (space)
			*w++ = ' ';
		space = false;
		*w++ = *src;
	}
	*w = '\0';
}

static void job_setup(struct job *job, const struct dir_query *q,
		      backend_done_fn *done, void *arg)
{
	const char *at = q->address != NULL ? strrchr(q->address, '@') : NULL;
	const char *domain = at != NULL ? at + 1
			   : q->ndomains > 0 ? q->domains[0] : NULL;

	job->done = done;
	job->arg = arg;
	job->step = STEP_USER;
	job->by_name = q->by_name && q->address == NULL;
	job->retried = false;
	job->slot = NULL;
	job->domains = q->domains;
	job->ndomains = q->ndomains;
	str_copy(job->local, sizeof(job->local), q->local, strlen(q->local));
	text_words(job->text, job->local);
	job->has_domain = domain != NULL;
	if (domain != NULL)
		str_copy(job->domain, sizeof(job->domain), domain, strlen(domain));
	snprintf(job->key, sizeof(job->key), "%s%s%s", job->local,
		 domain != NULL ? "@" : "", domain != NULL ? job->domain : "");
}

static void job_enqueue(struct job *job, bool front)
{
	struct backend *be = job->be;

	if (front)
		TAILQ_INSERT_HEAD(&be->queue, job, link);
	else
		TAILQ_INSERT_TAIL(&be->queue, job, link);
	be->nqueued++;
}

static void job_dequeue(struct job *job)
{
	TAILQ_REMOVE(&job->be->queue, job, link);
	job->be->nqueued--;
}

/* Answer job (detached from queue and slot) and recycle it. */
static void job_finish(struct job *job, const struct dir_result *res)
{
	evtimer_del(job->deadline);
	job->done(res, job->arg);
	job_release(job);
}

/* Its connection died under job: once more on a fresh one, else TEMPFAIL. */
static void job_on_dead_connection(struct job *job)
{
	job->slot = NULL;
	if (job->retried) {
		job_finish(job, &tempfail);
		return;
	}
	job->retried = true;
	job_enqueue(job, true);
}

static void job_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	struct job *job = arg;
	struct backend *be = job->be;
	struct slot *s = job->slot;

	(void)fd;
	(void)what;
	log_event(LOG_LEVEL_WARN, "event=pgsql_timeout query=%s timeout=%llus "
		  "waiting=%s", step_names[job->step],
		  (unsigned long long)be->p.timeout,
		  s != NULL ? "answer" : "connection");
	if (s != NULL) {
		/* Its late answer must not be taken for the next query's, and
		 * PQcancel() would block the loop: drop the connection. */
		s->job = NULL;
		job->slot = NULL;
		slot_failed(s, "query timed out");
	} else {
		job_dequeue(job);
	}
	job_finish(job, &tempfail);
	pool_dispatch(be);
}

/* ---- the pool ---- */

static struct slot *pool_idle(struct backend *be)
{
	for (unsigned i = 0; i < be->p.pool; i++)
		if (be->slots[i].state == SLOT_IDLE)
			return &be->slots[i];
	return NULL;
}

/* True while every connection waits out a backoff: nothing could answer
 * before one of them tries again. */
static bool pool_unreachable(const struct backend *be)
{
	for (unsigned i = 0; i < be->p.pool; i++)
		if (be->slots[i].state != SLOT_BACKOFF)
			return false;
	return true;
}

static void pool_fail_if_unreachable(struct backend *be)
{
	struct job *job;

	if (!pool_unreachable(be))
		return;
	while ((job = TAILQ_FIRST(&be->queue)) != NULL) {
		job_dequeue(job);
		job_finish(job, &tempfail);
	}
}

/* ---- one connection ---- */

static void slot_io_cb(evutil_socket_t fd, short what, void *arg);

/* Watch the connection's socket for what. Always re-added: libpq may
 * have closed the socket and opened another with the same number. */
static bool slot_watch(struct slot *s, short what)
{
	int fd = PQsocket(s->pg);

	if (s->io_added) {
		event_del(s->io);
		s->io_added = false;
	}
	if (fd < 0)
		return false;
	event_assign(s->io, s->be->base, fd, (short)(what | EV_PERSIST),
		     slot_io_cb, s);
	if (event_add(s->io, NULL) != 0)
		return false;
	s->io_added = true;
	return true;
}

/* Back to nothing: no events, no connection, no job. */
static void slot_reset(struct slot *s)
{
	if (s->io_added) {
		event_del(s->io);
		s->io_added = false;
	}
	if (s->timer != NULL)
		evtimer_del(s->timer);
	if (s->pg != NULL) {
		PQfinish(s->pg);
		s->pg = NULL;
	}
	s->job = NULL;
	s->flushing = false;
	s->state = SLOT_DOWN;
}

static void slot_log_down(struct slot *s, const char *why)
{
	char esc[LOG_VALUE_MAX];
	size_t len = strlen(why);

	while (len > 0 && (why[len - 1] == '\n' || text_is_blank(why[len - 1])))
		len--;
	log_event(s->down_logged ? LOG_LEVEL_DEBUG : LOG_LEVEL_WARN,
		  "event=pgsql_down slot=%u error=\"%s\"", s->index,
		  log_escape(esc, sizeof(esc), why, len));
	s->down_logged = true;
}

/*
 * The connection failed or was dropped. One that had been up is made
 * again at once (servers close idle connections); one that never came
 * up waits out a backoff that doubles. A job on it is tried once more.
 */
static void slot_failed(struct slot *s, const char *why)
{
	struct backend *be = s->be;
	struct job *job = s->job;
	bool was_up = s->state == SLOT_IDLE || s->state == SLOT_BUSY;

	slot_log_down(s, why);
	slot_reset(s);
	if (job != NULL)
		job_on_dead_connection(job);
	if (was_up && !be->closing) {
		slot_connect(s);
	} else if (!be->closing) {
		struct timeval tv = ms_timeval(s->backoff_ms);

		s->state = SLOT_BACKOFF;
		evtimer_add(s->timer, &tv);
		s->backoff_ms = s->backoff_ms * 2 > PGSQL_BACKOFF_MAX_MS
				? PGSQL_BACKOFF_MAX_MS : s->backoff_ms * 2;
	}
	pool_fail_if_unreachable(be);
	pool_dispatch(be);
}

static void notice_log(void *arg, const char *message)
{
	char esc[LOG_VALUE_MAX];

	(void)arg;
	log_event(LOG_LEVEL_INFO, "event=pgsql_notice message=\"%s\"",
		  log_escape(esc, sizeof(esc), message, strcspn(message, "\n")));
}

static void slot_connect(struct slot *s)
{
	struct timeval tv = { .tv_sec = (time_t)s->be->p.timeout };

	s->pg = PQconnectStart(s->be->p.conninfo);
	if (s->pg == NULL) {
		slot_failed(s, "out of memory");
		return;
	}
	/* Notices go to the log, never as bare lines to stderr. */
	PQsetNoticeProcessor(s->pg, notice_log, NULL);
	if (PQstatus(s->pg) == CONNECTION_BAD) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	s->state = SLOT_CONNECTING;
	evtimer_add(s->timer, &tv);
	if (!slot_watch(s, EV_WRITE))
		slot_failed(s, "no socket to watch");
}

static void slot_up(struct slot *s)
{
	evtimer_del(s->timer);
	if (PQsetnonblocking(s->pg, 1) != 0) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	if (!slot_watch(s, EV_READ)) {
		slot_failed(s, "no socket to watch");
		return;
	}
	log_event(s->down_logged ? LOG_LEVEL_WARN : LOG_LEVEL_INFO,
		  "event=pgsql_up slot=%u", s->index);
	s->state = SLOT_IDLE;
	s->backoff_ms = PGSQL_BACKOFF_MIN_MS;
	s->down_logged = false;
	pool_dispatch(s->be);
}

static void slot_connect_step(struct slot *s)
{
	switch (PQconnectPoll(s->pg)) {
	case PGRES_POLLING_READING:
		if (!slot_watch(s, EV_READ))
			slot_failed(s, "no socket to watch");
		break;
	case PGRES_POLLING_WRITING:
		if (!slot_watch(s, EV_WRITE))
			slot_failed(s, "no socket to watch");
		break;
	case PGRES_POLLING_OK:
		slot_up(s);
		break;
	default:
		slot_failed(s, PQerrorMessage(s->pg));
		break;
	}
}

/* Send what is left of the query; read meanwhile, as libpq asks. */
static void slot_flush(struct slot *s)
{
	int rc = PQflush(s->pg);

	if (rc < 0) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	s->flushing = rc > 0;
	if (!slot_watch(s, s->flushing ? EV_READ | EV_WRITE : EV_READ))
		slot_failed(s, "no socket to watch");
}

static const char *step_sql(const struct backend *be, enum job_step step)
{
	switch (step) {
	case STEP_USER:
		return be->p.query_user;
	case STEP_LIST:
		return be->p.query_list;
	default:
		return be->p.query_name;
	}
}

/* The job's current step, as one query with $1 and $2 bound as text. */
static void slot_send(struct slot *s)
{
	static const Oid types[2] = { PGSQL_TEXT_OID, PGSQL_TEXT_OID };
	struct job *job = s->job;
	const char *values[2] = {
		job->step == STEP_NAME ? job->text : job->local,
		job->has_domain ? job->domain : NULL,
	};

	pgsql_rows_reset(&job->rows);
	job->failed = false;
	if (!PQsendQueryParams(s->pg, step_sql(s->be, job->step), 2, types,
			       values, NULL, NULL, 0)) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	/* Rows one at a time, so the bounds on rows hold libpq's memory too;
	 * where it is refused, all rows come at once and are bounded after. */
	(void)PQsetSingleRowMode(s->pg);
	slot_flush(s);
}

static void slot_start(struct slot *s, struct job *job)
{
	s->job = job;
	job->slot = s;
	s->state = SLOT_BUSY;
	slot_send(s);
}

static void result_take(struct job *job, const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	int ncols = PQnfields(res);

	if (st != PGRES_SINGLE_TUPLE && st != PGRES_TUPLES_OK) {
		const char *msg = st == PGRES_COMMAND_OK
				  ? "the query returns no rows"
				  : PQresultErrorMessage(res);

		if (!job->failed)
			log_escape(job->error, sizeof(job->error), msg,
				   strcspn(msg, "\n"));
		job->failed = true;
		return;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		const char *v[2] = { NULL, NULL };
		size_t len[2] = { 0, 0 };

		for (int c = 0; c < 2 && c < ncols; c++) {
			if (PQgetisnull(res, i, c))
				continue;
			v[c] = PQgetvalue(res, i, c);
			len[c] = (size_t)PQgetlength(res, i, c);
		}
		pgsql_rows_add(&job->rows, v[0], len[0], v[1], len[1]);
	}
}

/* The job is answered: the connection takes the next one. */
static void slot_finish(struct slot *s, const struct dir_result *res)
{
	struct job *job = s->job;

	s->job = NULL;
	job->slot = NULL;
	s->state = SLOT_IDLE;
	job_finish(job, res);
	pool_dispatch(s->be);
}

/* All results of the step's query are in: answer, or ask the next. */
static void slot_step_done(struct slot *s)
{
	struct job *job = s->job;
	struct dir_result res;
	const char *why = NULL;

	if (PQstatus(s->pg) == CONNECTION_BAD) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	if (job->failed) {
		log_event(LOG_LEVEL_ERR, "event=pgsql_query_failed query=%s "
			  "error=\"%s\"", step_names[job->step], job->error);
		slot_finish(s, &tempfail);
		return;
	}
	switch (job->step) {
	case STEP_USER:
		if (pgsql_answer_user(&job->rows, job->key, &res, &why) == DIR_NOTFOUND) {
			job->step = STEP_LIST;
			slot_send(s);
			return;
		}
		break;
	case STEP_LIST:
		if (pgsql_answer_list(&job->rows, job->key, job->domains,
				      job->ndomains, &res, &why) == DIR_NOTFOUND &&
		    job->by_name && s->be->p.query_name != NULL) {
			job->step = STEP_NAME;
			slot_send(s);
			return;
		}
		break;
	case STEP_NAME:
		pgsql_answer_name(&job->rows, &res, &why);
		break;
	}
	if (why != NULL)
		log_event(LOG_LEVEL_ERR, "event=pgsql_bad_result query=%s reason=\"%s\"",
			  step_names[job->step], why);
	slot_finish(s, &res);
}

static void slot_busy_io(struct slot *s, short what)
{
	if ((what & EV_READ) && !PQconsumeInput(s->pg)) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	if (s->flushing) {
		slot_flush(s);
		if (s->state != SLOT_BUSY)
			return;
	}
	while (!PQisBusy(s->pg)) {
		PGresult *res = PQgetResult(s->pg);

		if (res == NULL) {
			slot_step_done(s);
			return;
		}
		result_take(s->job, res);
		PQclear(res);
	}
}

/* Nothing is asked: input means the server is closing (or notifying). */
static void slot_idle_io(struct slot *s)
{
	PGnotify *n;

	if (!PQconsumeInput(s->pg) || PQstatus(s->pg) == CONNECTION_BAD) {
		slot_failed(s, PQerrorMessage(s->pg));
		return;
	}
	while ((n = PQnotifies(s->pg)) != NULL)
		PQfreemem(n);
}

static void slot_io_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;

	(void)fd;
	switch (s->state) {
	case SLOT_CONNECTING:
		slot_connect_step(s);
		break;
	case SLOT_IDLE:
		slot_idle_io(s);
		break;
	case SLOT_BUSY:
		slot_busy_io(s, what);
		break;
	default:
		break;
	}
}

static void slot_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct slot *s = arg;
	char why[64];

	(void)fd;
	(void)what;
	if (s->state == SLOT_BACKOFF) {
		s->state = SLOT_DOWN;
		slot_connect(s);
	} else if (s->state == SLOT_CONNECTING) {
		snprintf(why, sizeof(why), "no connection within %llus",
			 (unsigned long long)s->be->p.timeout);
		slot_failed(s, why);
	}
}

/* Hand queued jobs to idle connections, as long as there are both. */
static void pool_dispatch(struct backend *be)
{
	struct job *job;
	struct slot *s;

	while ((job = TAILQ_FIRST(&be->queue)) != NULL &&
	       (s = pool_idle(be)) != NULL) {
		job_dequeue(job);
		slot_start(s, job);
	}
}

/* ---- the vtable ---- */

static void pgsql_close(struct backend **be_p);

static int pgsql_open(const char *args, const char *base_dir,
		      struct backend **be_r, char *err, size_t errsize)
{
	struct backend *be = calloc(1, sizeof(*be));

	(void)base_dir;
	*be_r = NULL;
	if (be == NULL)
		return str_error(err, errsize, "pgsql: out of memory");
	TAILQ_INIT(&be->queue);
	if (pgsql_params_parse(args, &be->p, err, errsize) < 0) {
		free(be);
		return -1;
	}
	*be_r = be;
	return 0;
}

static int pgsql_attach(struct backend *be, struct event_base *base,
			char *err, size_t errsize)
{
	if (be->base != NULL) {
		fprintf(stderr, "pgsql: attached twice\n");
		abort();
	}
	be->base = base;
	be->slots = calloc(be->p.pool, sizeof(*be->slots));
	if (be->slots == NULL)
		return str_error(err, errsize, "pgsql: out of memory");
	for (unsigned i = 0; i < be->p.pool; i++) {
		struct slot *s = &be->slots[i];

		s->be = be;
		s->index = i;
		s->backoff_ms = PGSQL_BACKOFF_MIN_MS;
		s->io = calloc(1, event_get_struct_event_size());
		s->timer = evtimer_new(base, slot_timer_cb, s);
		if (s->io == NULL || s->timer == NULL)
			return str_error(err, errsize, "pgsql: out of memory");
	}
	for (unsigned i = 0; i < be->p.pool; i++)
		slot_connect(&be->slots[i]);
	return 0;
}

static void pgsql_lookup(struct backend *be, const struct dir_query *q,
			 backend_done_fn *done, void *arg)
{
	struct timeval tv = { .tv_sec = (time_t)be->p.timeout };
	struct job *job;

	if (q->local == NULL || q->local[0] == '\0') {
		done(&(struct dir_result){ .status = DIR_NOTFOUND }, arg);
		return;
	}
	if (be->slots == NULL || be->closing || pool_unreachable(be)) {
		done(&tempfail, arg);
		return;
	}
	if (be->nqueued >= PGSQL_QUEUE_MAX) {
		log_event(LOG_LEVEL_WARN, "event=pgsql_queue_full waiting=%zu",
			  be->nqueued);
		done(&tempfail, arg);
		return;
	}
	job = job_get(be);
	job_setup(job, q, done, arg);
	evtimer_add(job->deadline, &tv);
	job_enqueue(job, false);
	pool_dispatch(be);
}


static void pgsql_close(struct backend **be_p)
{
	struct backend *be = *be_p;
	struct job *job;

	if (be == NULL)
		return;
	be->closing = true;
	while ((job = TAILQ_FIRST(&be->queue)) != NULL) {
		job_dequeue(job);
		job_finish(job, &tempfail);
	}
	for (unsigned i = 0; be->slots != NULL && i < be->p.pool; i++) {
		struct slot *s = &be->slots[i];

		if ((job = s->job) != NULL) {
			s->job = NULL;
			job->slot = NULL;
			job_finish(job, &tempfail);
		}
	}
	for (unsigned i = 0; be->slots != NULL && i < be->p.pool; i++) {
		slot_reset(&be->slots[i]);
		free(be->slots[i].io);
		if (be->slots[i].timer != NULL)
			event_free(be->slots[i].timer);
	}
	while ((job = be->free_jobs) != NULL) {
		be->free_jobs = job->next_free;
		job_free(job);
	}
	free(be->slots);
	pgsql_params_clear(&be->p);
	free(be);
	*be_p = NULL;
}

const struct backend_ops backend_pgsql_ops = {
	.name = "pgsql",
	.open = pgsql_open,
	.attach = pgsql_attach,
	.lookup = pgsql_lookup,
	/* no count: a database's rows are not counted */
	.close = pgsql_close,
};
