/*
 * delivery — durable Maildir delivery (maildir(5)), one file per
 * recipient, written on worker threads so that a slow disk never stalls
 * the event loop.
 *
 * It must never:
 *  - report DELIVERY_OK (on which the session says 250) before every copy
 *    has been written and fsynced in tmp/, linked into new/, and new/
 *    itself fsynced;
 *  - leave a partial file in new/: a copy enters new/ only by link()
 *    once complete, and a job that fails removes every copy it made, in
 *    tmp/ and in new/, for all its recipients. The client is told 4xx and
 *    sends the message again, so keeping the copies of the recipients
 *    that worked would deliver to them twice;
 *  - do disk I/O on the loop's thread (base != NULL), or call libevent
 *    from a worker (libevent's thread support is not enabled): a worker
 *    puts its finished job on a mutex-protected list and writes one byte
 *    to a pipe, and the loop runs the callbacks.
 *
 * Group commit: a worker takes every queued job (up to DELIVERY_BATCH) and
 * commits them together. All copies are written and their writeback
 * started first; then each is fsynced (by then the disk is flushing them
 * all, so the fsyncs share journal commits instead of queueing one
 * behind another) and linked; then each new/ directory of the batch is
 * fsynced once. The guarantee per job is unchanged: OK only after its
 * copies and the new/ entries naming them are durable.
 *
 * link(), not rename(), moves a copy into new/: link fails with EEXIST
 * where rename would silently replace a message that has the same name
 * (qmail's rule), and until the tmp/ name is unlinked a failure leaves
 * only names this job made and can remove.
 *
 * Test only: PORTERD_TEST_DELIVERY_PAUSE, when set non-empty in the
 * environment at delivery_new(), makes every copy raise SIGSTOP after its
 * tmp/ file is fsynced and closed and before it is linked, so a test can
 * kill the process at exactly that point. Never set it in production.
 */
/* sync_file_range(2): start writeback without waiting for it. */
#define _GNU_SOURCE

#include "porterd/delivery.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "porterd/log.h"
#include "porterd/strutil.h"

#define DELIVERY_PAUSE_ENV "PORTERD_TEST_DELIVERY_PAUSE"
#define HOST_MAX 64		/* host part of a file name, escapes included */
#define NAME_TRIES 3		/* fresh names tried when one is taken */
#define ADDR_MAX 1024		/* local@domain in a log line */
#define DELIVERY_BATCH 32	/* jobs a worker commits together */

struct rcpt {
	char *local, *domain;	/* as given */
	char *dir;		/* the Maildir, expanded by the worker */
	char name[NAME_MAX + 1];
	int fd;			/* the tmp/ copy, open until fsynced; else -1 */
	bool in_tmp, in_new;	/* names this job must remove if it fails */
};

struct delivery_job {
	struct delivery_job *next;
	struct delivery *owner;
	char *id;
	char *return_line;	/* "Return-Path: <...>\r\n" */
	size_t return_len;
	char *header, *body;
	size_t header_len, body_len;
	char *template;		/* NULL: the delivery's own */
	struct rcpt *rcpts;
	size_t nrcpts, rcpts_cap;
	delivery_done_fn *done;
	void *arg;
	bool cancelled;		/* under owner->lock */
	enum delivery_status status;
};

struct job_list {
	struct delivery_job *head, *tail;
};

struct delivery {
	struct event_base *base;
	char *template;
	char host[HOST_MAX + 1];
	bool test_pause;

	pthread_mutex_t lock;
	pthread_cond_t work;	/* a job was queued, or stopping */
	struct job_list queue, finished;
	bool stopping;
	struct worker *workers;
	unsigned nthreads;

	int wake_fds[2];	/* worker -> loop: finished is not empty */
	struct event *wake_ev;
};

/* Why a job failed: which recipient, doing what, where, and errno (0 when
 * no system call failed, e.g. an unsafe address). */
struct job_error {
	size_t rcpt;
	const char *what;
	char where[PATH_MAX];
	int err;
};

/* Jobs committed together, and how each is faring. */
struct batch {
	size_t n;
	struct delivery_job *jobs[DELIVERY_BATCH];
	struct job_error errors[DELIVERY_BATCH];
	size_t made[DELIVERY_BATCH];	/* recipients with a copy on disk */
	bool failed[DELIVERY_BATCH];
};

/* One new/ directory of a batch, and a job with a copy in it. */
struct dir_use {
	const char *dir;
	size_t job, rcpt;
};

struct worker {
	pthread_t thread;
	struct delivery *d;
	struct batch batch;
};

/* Q<counter> of the file names: unique within the process, all threads. */
static atomic_ulong name_counter;

static bool fail(struct job_error *e, const char *what, const char *where,
		 int err)
{
	e->what = what;
	snprintf(e->where, sizeof(e->where), "%s", where);
	e->err = err;
	return false;
}

static void list_append(struct job_list *l, struct delivery_job *job)
{
	job->next = NULL;
	if (l->tail != NULL)
		l->tail->next = job;
	else
		l->head = job;
	l->tail = job;
}

static struct delivery_job *list_take(struct job_list *l)
{
	struct delivery_job *head = l->head;

	l->head = l->tail = NULL;
	return head;
}

/* --- jobs ------------------------------------------------------------------ */

struct delivery_job *delivery_job_new(const char *id, const char *return_path)
{
	struct delivery_job *job = calloc(1, sizeof(*job));
	const char *rp = return_path != NULL ? return_path : "";
	size_t size = strlen(rp) + sizeof("Return-Path: <>\r\n");

	if (job == NULL)
		return NULL;
	job->id = strdup(id != NULL ? id : "");
	job->return_line = malloc(size);
	if (job->id == NULL || job->return_line == NULL) {
		delivery_job_free(&job);
		return NULL;
	}
	job->return_len = (size_t)snprintf(job->return_line, size,
					   "Return-Path: <%s>\r\n", rp);
	return job;
}

bool delivery_job_add_rcpt(struct delivery_job *job, const char *local,
			   const char *domain)
{
	char *l = strdup(local), *d = strdup(domain);
	struct rcpt *r;

	if (l != NULL && d != NULL && job->nrcpts == job->rcpts_cap) {
		size_t cap = job->rcpts_cap ? job->rcpts_cap * 2 : 4;
		struct rcpt *grown = realloc(job->rcpts, cap * sizeof(*grown));

		if (grown != NULL) {
			job->rcpts = grown;
			job->rcpts_cap = cap;
		}
	}
	if (l == NULL || d == NULL || job->nrcpts == job->rcpts_cap) {
		free(l);
		free(d);
		return false;
	}
	r = &job->rcpts[job->nrcpts++];
	memset(r, 0, sizeof(*r));
	r->fd = -1;
	r->local = l;
	r->domain = d;
	return true;
}

bool delivery_job_set_header(struct delivery_job *job, const char *text,
			     size_t len)
{
	char *copy = malloc(len + 1);

	if (copy == NULL)
		return false;
	if (len > 0)
		memcpy(copy, text, len);
	copy[len] = '\0';
	free(job->header);
	job->header = copy;
	job->header_len = len;
	return true;
}

void delivery_job_set_body(struct delivery_job *job, char *body, size_t len)
{
	if (job->body != body)
		free(job->body);
	job->body = body;
	job->body_len = len;
}

static bool template_is_valid(const char *t);

bool delivery_job_set_maildir(struct delivery_job *job, const char *template)
{
	char *copy;

	if (!template_is_valid(template) || (copy = strdup(template)) == NULL)
		return false;
	free(job->template);
	job->template = copy;
	return true;
}

void delivery_job_free(struct delivery_job **jobp)
{
	struct delivery_job *job = *jobp;

	if (job == NULL)
		return;
	for (size_t i = 0; i < job->nrcpts; i++) {
		if (job->rcpts[i].fd >= 0)
			close(job->rcpts[i].fd);
		free(job->rcpts[i].local);
		free(job->rcpts[i].domain);
		free(job->rcpts[i].dir);
	}
	free(job->rcpts);
	free(job->template);
	free(job->id);
	free(job->return_line);
	free(job->header);
	free(job->body);
	free(job);
	*jobp = NULL;
}

/* --- paths ----------------------------------------------------------------- */

/* A substituted value must stay one path component below the template:
 * not empty, no '/', not "." or ".." nor any other name starting with '.'.
 * A NUL cannot hide inside: values are C strings, cut at the first one. */
static bool value_is_safe(const char *s)
{
	return s[0] != '\0' && s[0] != '.' && strchr(s, '/') == NULL;
}

/* Append n bytes of s (lowercased when asked) to buf; false if too long. */
static bool append(char *buf, size_t size, size_t *len, const char *s,
		   size_t n, bool lower)
{
	if (n >= size - *len)
		return false;
	for (size_t i = 0; i < n; i++)
		buf[*len + i] = lower ? str_lower_char(s[i]) : s[i];
	*len += n;
	buf[*len] = '\0';
	return true;
}

/* What the template text at t stands for: sets *v and *n, returns the
 * number of template bytes used. */
static size_t template_piece(const char *t, const struct rcpt *r,
			     const char **v, size_t *n)
{
	*v = t;
	*n = 1;
	if (t[0] != '%' || (t[1] != 'u' && t[1] != 'd' && t[1] != '%'))
		return 1;
	if (t[1] != '%')
		*v = t[1] == 'u' ? r->local : r->domain;
	*n = t[1] == '%' ? 1 : strlen(*v);
	return 2;
}

static bool rcpt_expand(const char *template, struct rcpt *r, struct job_error *e)
{
	char buf[PATH_MAX];
	size_t len = 0;

	if (!value_is_safe(r->local))
		return fail(e, "unsafe local part", r->local, 0);
	if (!value_is_safe(r->domain))
		return fail(e, "unsafe domain", r->domain, 0);
	buf[0] = '\0';
	for (const char *t = template; *t != '\0';) {
		const char *v;
		size_t n, used = template_piece(t, r, &v, &n);

		if (!append(buf, sizeof(buf), &len, v, n, v != t))
			return fail(e, "expand", template, ENAMETOOLONG);
		t += used;
	}
	while (len > 1 && buf[len - 1] == '/')
		buf[--len] = '\0';
	r->dir = strdup(buf);
	return r->dir != NULL ? true : fail(e, "expand", buf, ENOMEM);
}

/* dir "/" sub, or dir "/" sub "/" name when name is not NULL. */
static bool path_join(char *buf, const char *dir, const char *sub,
		      const char *name)
{
	int n = name != NULL ? snprintf(buf, PATH_MAX, "%s/%s/%s", dir, sub, name)
			     : snprintf(buf, PATH_MAX, "%s/%s", dir, sub);

	return n > 0 && n < PATH_MAX;
}

/* Length of the parent of path[0..len): "a/b" 1, "/a" 1 ("/"), "a" 0 (cwd). */
static size_t parent_len(const char *path, size_t len)
{
	while (len > 1 && path[len - 1] == '/')
		len--;
	while (len > 0 && path[len - 1] != '/')
		len--;
	while (len > 1 && path[len - 1] == '/')
		len--;
	return len;
}

static bool fsync_dir(const char *path, struct job_error *e)
{
	int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return fail(e, "open directory", path, errno);
	if (fsync(fd) < 0) {
		int err = errno;

		close(fd);
		return fail(e, "fsync directory", path, err);
	}
	if (close(fd) < 0 && errno != EINTR)
		return fail(e, "close directory", path, errno);
	return true;
}

static bool fsync_parent(const char *path, struct job_error *e)
{
	char parent[PATH_MAX];
	size_t len = parent_len(path, strlen(path));

	if (len == 0)
		return fsync_dir(".", e);
	memcpy(parent, path, len);
	parent[len] = '\0';
	return fsync_dir(parent, e);
}

/*
 * path was just made by mkdir, or found made (EEXIST). Either way its
 * parent is fsynced: a racing thread that made it may not have fsynced
 * yet, and no job may succeed on an entry a crash could take back.
 */
static bool dir_settle(const char *path, struct job_error *e)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return fail(e, "stat", path, errno);
	if (!S_ISDIR(st.st_mode))
		return fail(e, "mkdir", path, ENOTDIR);
	return fsync_parent(path, e);
}

/* mkdir -p, mode 0700. path is cut and restored in place, not copied, so
 * the recursion (one level per missing component) stays small. */
static bool mkdir_p(char *path, struct job_error *e)
{
	size_t plen;
	char saved;
	bool ok;

	if (mkdir(path, 0700) == 0 || errno == EEXIST)
		return dir_settle(path, e);
	if (errno != ENOENT)
		return fail(e, "mkdir", path, errno);
	plen = parent_len(path, strlen(path));
	if (plen == 0 || (plen == 1 && path[0] == '/'))
		return fail(e, "mkdir", path, ENOENT);
	saved = path[plen];
	path[plen] = '\0';
	ok = mkdir_p(path, e);
	path[plen] = saved;
	if (!ok)
		return false;
	if (mkdir(path, 0700) < 0 && errno != EEXIST)
		return fail(e, "mkdir", path, errno);
	return dir_settle(path, e);
}

/* Called when tmp/ or new/ turned out missing: make the Maildir whole. */
static bool maildir_create(const char *dir, struct job_error *e)
{
	static const char *const subs[] = { "tmp", "new", "cur" };
	char path[PATH_MAX];

	snprintf(path, sizeof(path), "%s", dir);
	if (!mkdir_p(path, e))
		return false;
	for (size_t i = 0; i < sizeof(subs) / sizeof(subs[0]); i++) {
		if (!path_join(path, dir, subs[i], NULL))
			return fail(e, "mkdir", dir, ENAMETOOLONG);
		if (mkdir(path, 0700) < 0 && errno != EEXIST)
			return fail(e, "mkdir", path, errno);
	}
	/* Also when another thread made them: see dir_settle(). */
	return fsync_dir(dir, e);
}

/* --- one copy -------------------------------------------------------------- */

/* maildir(5): '/' and ':' in the host name become \057 and \072. */
static void host_init(char *out, size_t size)
{
	char raw[256];
	size_t o = 0;

	if (gethostname(raw, sizeof(raw)) < 0 || raw[0] == '\0')
		snprintf(raw, sizeof(raw), "localhost");
	raw[sizeof(raw) - 1] = '\0';
	for (const char *s = raw; *s != '\0'; s++) {
		const char *piece = *s == '/' ? "\\057" : *s == ':' ? "\\072" : NULL;
		size_t n = piece != NULL ? 4 : 1;

		if (o + n >= size)
			break;
		memcpy(out + o, piece != NULL ? piece : s, n);
		o += n;
	}
	out[o] = '\0';
}

/* <seconds>.M<microseconds>P<pid>Q<counter>.<host> */
static bool name_make(const struct delivery *d, char *name, size_t size)
{
	unsigned long q = atomic_fetch_add(&name_counter, 1) + 1;
	struct timespec ts;
	int n;

	if (clock_gettime(CLOCK_REALTIME, &ts) < 0)
		return false;
	n = snprintf(name, size, "%lld.M%06ldP%ldQ%lu.%s", (long long)ts.tv_sec,
		     ts.tv_nsec / 1000, (long)getpid(), q, d->host);
	return n > 0 && (size_t)n < size;
}

/* Create tmp/NAME under a fresh name; path gets its name. */
static int copy_open(const struct delivery *d, struct rcpt *r, char *path,
		     struct job_error *e)
{
	bool created = false;
	int tries = 0, fd, err;

	do {
		if (!name_make(d, r->name, sizeof(r->name)) ||
		    !path_join(path, r->dir, "tmp", r->name)) {
			fail(e, "name", r->dir, ENAMETOOLONG);
			return -1;
		}
		fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
		err = errno;
		if (fd < 0 && err == ENOENT && !created) {
			created = true;
			if (!maildir_create(r->dir, e))
				return -1;
			continue;
		}
		if (fd < 0 && err != EEXIST && err != EINTR)
			break;
	} while (fd < 0 && ++tries < NAME_TRIES);
	if (fd < 0)
		fail(e, "open", path, err);
	else
		r->in_tmp = true;
	return fd;
}

/* writev until everything is out, through short writes and EINTR. */
static int write_all(int fd, struct iovec *iov, int iovcnt)
{
	for (;;) {
		ssize_t n;

		while (iovcnt > 0 && iov->iov_len == 0) {
			iov++;
			iovcnt--;
		}
		if (iovcnt == 0)
			return 0;
		n = writev(fd, iov, iovcnt);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		for (; iovcnt > 0 && (size_t)n >= iov->iov_len; iov++, iovcnt--)
			n -= (ssize_t)iov->iov_len;
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
}

/* Write the message to fd and start its writeback; fd stays open for
 * copy_sync(). */
static bool copy_write(const struct delivery_job *job, int fd,
		       const char *path, struct job_error *e)
{
	struct iovec iov[3] = {
		{ job->return_line, job->return_len },
		{ job->header, job->header_len },
		{ job->body, job->body_len },
	};

	if (write_all(fd, iov, 3) < 0)
		return fail(e, "write", path, errno);
	/* Only a head start for the fsync to come: an error shows there. */
	(void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
	return true;
}

/* fsync and close the copy (closed in every case). */
static bool copy_sync(struct rcpt *r, const char *path, struct job_error *e)
{
	int fd = r->fd;

	r->fd = -1;
	if (fsync(fd) < 0) {
		int err = errno;

		close(fd);
		return fail(e, "fsync", path, err);
	}
	/* EINTR: Linux has closed fd anyway, and the data is on disk. */
	if (close(fd) < 0 && errno != EINTR)
		return fail(e, "close", path, errno);
	return true;
}

static bool copy_link(struct rcpt *r, const char *tmp, const char *new,
		      struct job_error *e)
{
	int rc = link(tmp, new);

	if (rc < 0 && errno == ENOENT) {
		if (!maildir_create(r->dir, e))
			return false;
		rc = link(tmp, new);
	}
	if (rc < 0)
		return fail(e, "link", new, errno);
	r->in_new = true;
	return true;
}

/* Phase 1 for one recipient: its copy written into tmp/, fd kept. */
static bool rcpt_write(const struct delivery *d, const struct delivery_job *job,
		       struct rcpt *r, struct job_error *e)
{
	char tmp[PATH_MAX];

	r->fd = copy_open(d, r, tmp, e);
	return r->fd >= 0 && copy_write(job, r->fd, tmp, e);
}

/* Phase 2: the copy durable in tmp/, then named in new/ (whose own
 * fsync is phase 3, once per directory of the batch). */
static bool rcpt_publish(const struct delivery *d, struct rcpt *r,
			 struct job_error *e)
{
	char tmp[PATH_MAX], new[PATH_MAX];

	path_join(tmp, r->dir, "tmp", r->name);	/* fitted at copy_open() */
	if (!copy_sync(r, tmp, e))
		return false;
	if (d->test_pause)
		raise(SIGSTOP);
	if (!path_join(new, r->dir, "new", r->name))
		return fail(e, "name", r->dir, ENAMETOOLONG);
	if (!copy_link(r, tmp, new, e))
		return false;
	if (unlink(tmp) < 0)
		return fail(e, "unlink", tmp, errno);
	r->in_tmp = false;
	return true;
}

/* --- whole jobs ------------------------------------------------------------ */

static const char *esc(char *buf, const char *s)
{
	return log_escape(buf, LOG_VALUE_MAX, s, strlen(s));
}

static void undo_name(const struct delivery_job *job, const struct rcpt *r,
		      const char *sub)
{
	char path[PATH_MAX], id[LOG_VALUE_MAX], p[LOG_VALUE_MAX], why[128];

	/* The name was made from these parts before: it fits. */
	path_join(path, r->dir, sub, r->name);
	if (unlink(path) == 0)
		return;
	/* ENOENT in new/: a reader took it to cur/; the client's retry
	 * will make a duplicate, which SMTP allows. */
	log_event(LOG_LEVEL_WARN, "event=delivery_undo_failed id=%s path=\"%s\" error=\"%s\"",
		  esc(id, job->id), esc(p, path), str_errno(errno, why, sizeof(why)));
}

/*
 * Remove every name the job made. The unlinks are not fsynced: a crash
 * may bring a removed copy back, but it was complete and fsynced, so the
 * worst case is a duplicate after the client's retry, never a partial
 * message or a loss.
 */
static void job_undo(struct delivery_job *job)
{
	for (size_t i = 0; i < job->nrcpts; i++) {
		struct rcpt *r = &job->rcpts[i];

		if (r->fd >= 0) {
			close(r->fd);
			r->fd = -1;
		}
		if (r->in_new)
			undo_name(job, r, "new");
		if (r->in_tmp)
			undo_name(job, r, "tmp");
		r->in_new = r->in_tmp = false;
	}
}

static void log_rcpt(enum log_level level, const struct delivery_job *job,
		     const struct rcpt *r, const char *event, const char *key,
		     const char *value)
{
	char addr[ADDR_MAX], id[LOG_VALUE_MAX], a[LOG_VALUE_MAX], v[LOG_VALUE_MAX];

	snprintf(addr, sizeof(addr), "%s@%s", r->local, r->domain);
	log_event(level, "event=%s id=%s rcpt=\"%s\" %s=\"%s\"", event,
		  esc(id, job->id), esc(a, addr), key, esc(v, value));
}

static void log_delivered(const struct delivery_job *job)
{
	char path[PATH_MAX];

	for (size_t i = 0; i < job->nrcpts; i++) {
		const struct rcpt *r = &job->rcpts[i];

		path_join(path, r->dir, "new", r->name);
		log_rcpt(LOG_LEVEL_INFO, job, r, "delivered", "path", path);
	}
}

/* One line per recipient: the one that failed says why; made is how
 * many had a copy on disk (now removed). */
static void log_failed(const struct delivery_job *job,
		       const struct job_error *e, size_t made)
{
	char why[PATH_MAX + 256], text[128];

	if (e->err == 0)
		snprintf(why, sizeof(why), "%s: %s", e->what, e->where);
	else
		snprintf(why, sizeof(why), "%s %s: %s", e->what, e->where,
			 str_errno(e->err, text, sizeof(text)));
	for (size_t i = 0; i < job->nrcpts; i++) {
		const char *reason = i == e->rcpt ? why
			: i < made ? "copy removed: another recipient failed"
			: "not attempted: another recipient failed";

		log_rcpt(LOG_LEVEL_WARN, job, &job->rcpts[i], "delivery_failed",
			 "error", reason);
	}
}

/* Every path first, so an unsafe address fails before any disk work. */
static bool expand_all(const struct delivery *d, struct delivery_job *job,
		       struct job_error *e)
{
	for (e->rcpt = 0; e->rcpt < job->nrcpts; e->rcpt++)
		if (!rcpt_expand(job->template != NULL ? job->template : d->template,
				 &job->rcpts[e->rcpt], e))
			return false;
	return true;
}

/* Phase 1 for a job: every path, then every copy written. */
static void job_write(const struct delivery *d, struct batch *b, size_t j)
{
	struct delivery_job *job = b->jobs[j];
	struct job_error *e = &b->errors[j];

	if (!expand_all(d, job, e)) {
		b->failed[j] = true;
		return;
	}
	for (e->rcpt = 0; e->rcpt < job->nrcpts; e->rcpt++) {
		if (!rcpt_write(d, job, &job->rcpts[e->rcpt], e)) {
			b->made[j] = e->rcpt;
			b->failed[j] = true;
			return;
		}
	}
	b->made[j] = job->nrcpts;
}

static void job_publish(const struct delivery *d, struct batch *b, size_t j)
{
	struct delivery_job *job = b->jobs[j];
	struct job_error *e = &b->errors[j];

	for (e->rcpt = 0; e->rcpt < job->nrcpts; e->rcpt++) {
		if (!rcpt_publish(d, &job->rcpts[e->rcpt], e)) {
			b->failed[j] = true;
			return;
		}
	}
}

static int dir_use_cmp(const void *a, const void *b)
{
	return strcmp(((const struct dir_use *)a)->dir, ((const struct dir_use *)b)->dir);
}

/* Every (directory, job) pair of the jobs still standing, by directory. */
static struct dir_use *dir_uses(const struct batch *b, size_t *n_r)
{
	size_t n = 0, k = 0;
	struct dir_use *uses;

	for (size_t j = 0; j < b->n; j++)
		n += b->failed[j] ? 0 : b->jobs[j]->nrcpts;
	uses = calloc(n > 0 ? n : 1, sizeof(*uses));
	if (uses == NULL)
		return NULL;
	for (size_t j = 0; j < b->n; j++)
		for (size_t i = 0; !b->failed[j] && i < b->jobs[j]->nrcpts; i++)
			uses[k++] = (struct dir_use){ b->jobs[j]->rcpts[i].dir, j, i };
	qsort(uses, n, sizeof(*uses), dir_use_cmp);
	*n_r = n;
	return uses;
}

/* Phase 3: fsync each new/ directory once; a failure fails every job
 * with a copy there. */
/* Job j failed as e says, at recipient rcpt, unless it had failed before. */
static void batch_fail(struct batch *b, size_t j, const struct job_error *e,
		       size_t rcpt)
{
	if (b->failed[j])
		return;
	b->failed[j] = true;
	b->errors[j] = *e;
	b->errors[j].rcpt = rcpt;
}

static void batch_sync_dirs(struct batch *b)
{
	struct job_error e = { .err = 0 };
	char path[PATH_MAX];
	size_t n = 0;
	struct dir_use *uses = dir_uses(b, &n);

	if (uses == NULL) {	/* out of memory: nothing is known durable */
		fail(&e, "fsync directory", "(no memory)", ENOMEM);
		for (size_t j = 0; j < b->n; j++)
			batch_fail(b, j, &e, 0);
		return;
	}
	for (size_t k = 0; k < n; k++) {
		if (k > 0 && strcmp(uses[k].dir, uses[k - 1].dir) == 0)
			continue;
		path_join(path, uses[k].dir, "new", NULL);
		if (fsync_dir(path, &e))
			continue;
		for (size_t m = k; m < n && strcmp(uses[m].dir, uses[k].dir) == 0; m++)
			batch_fail(b, uses[m].job, &e, uses[m].rcpt);
	}
	free(uses);
}

static void batch_run(const struct delivery *d, struct batch *b)
{
	for (size_t j = 0; j < b->n; j++) {
		b->failed[j] = false;
		b->made[j] = 0;
		b->errors[j] = (struct job_error){ .err = 0 };
		job_write(d, b, j);
	}
	for (size_t j = 0; j < b->n; j++)
		if (!b->failed[j])
			job_publish(d, b, j);
	batch_sync_dirs(b);
	for (size_t j = 0; j < b->n; j++) {
		struct delivery_job *job = b->jobs[j];

		if (!b->failed[j]) {
			log_delivered(job);
			job->status = DELIVERY_OK;
			continue;
		}
		job_undo(job);
		log_failed(job, &b->errors[j], b->made[j]);
		job->status = b->errors[j].err == ENOSPC || b->errors[j].err == EDQUOT
			      ? DELIVERY_NOSPACE : DELIVERY_TEMPFAIL;
	}
}

/* Without workers (base NULL): a batch of one, now. */
static enum delivery_status job_run(const struct delivery *d,
				    struct delivery_job *job)
{
	struct batch *b = malloc(sizeof(*b));
	enum delivery_status st = DELIVERY_TEMPFAIL;

	if (b != NULL) {
		b->n = 1;
		b->jobs[0] = job;
		batch_run(d, b);
		st = job->status;
		free(b);
	}
	return st;
}

/* --- workers and completions ----------------------------------------------- */

/* Wait for work; take every queued job, up to a batch. 0: stopping. */
static size_t queue_pop_batch(struct delivery *d, struct batch *b)
{
	pthread_mutex_lock(&d->lock);
	while (d->queue.head == NULL && !d->stopping)
		pthread_cond_wait(&d->work, &d->lock);
	for (b->n = 0; b->n < DELIVERY_BATCH && d->queue.head != NULL; b->n++) {
		b->jobs[b->n] = d->queue.head;
		d->queue.head = d->queue.head->next;
	}
	if (d->queue.head == NULL)
		d->queue.tail = NULL;
	pthread_mutex_unlock(&d->lock);
	return b->n;
}

static void loop_wake(struct delivery *d)
{
	static const char byte = 1;
	ssize_t n;

	do
		n = write(d->wake_fds[1], &byte, 1);
	while (n < 0 && errno == EINTR);
	/* EAGAIN: the pipe is full, so a wake-up is pending anyway. */
	if (n < 0 && errno != EAGAIN) {
		log_event(LOG_LEVEL_ERR, "event=delivery_wake_failed errno=%d", errno);
		abort();
	}
}

/*
 * Only the job that makes finished non-empty writes to the pipe: the loop
 * drains the pipe before it takes the list, so a job added after the take
 * finds the list empty and writes again. No wake-up is lost.
 */
static void job_finished(struct delivery *d, struct delivery_job *job)
{
	bool was_empty;

	pthread_mutex_lock(&d->lock);
	was_empty = d->finished.head == NULL;
	list_append(&d->finished, job);
	pthread_mutex_unlock(&d->lock);
	if (was_empty)
		loop_wake(d);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	while (queue_pop_batch(w->d, &w->batch) > 0) {
		batch_run(w->d, &w->batch);
		for (size_t j = 0; j < w->batch.n; j++)
			job_finished(w->d, w->batch.jobs[j]);
	}
	return NULL;
}

static void job_complete(struct delivery_job *job)
{
	struct delivery *d = job->owner;
	bool cancelled;

	pthread_mutex_lock(&d->lock);
	cancelled = job->cancelled;
	pthread_mutex_unlock(&d->lock);
	if (!cancelled)
		job->done(job->status, job->arg);
	delivery_job_free(&job);
}

/* On the loop. cancelled is read just before each callback, so one
 * callback may still cancel a job later in the same batch. */
static void wake_cb(evutil_socket_t fd, short what, void *arg)
{
	struct delivery *d = arg;
	struct delivery_job *job, *next;
	char buf[64];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	pthread_mutex_lock(&d->lock);
	job = list_take(&d->finished);
	pthread_mutex_unlock(&d->lock);
	for (; job != NULL; job = next) {
		next = job->next;
		job_complete(job);
	}
}

static void jobs_free(struct delivery_job *job)
{
	while (job != NULL) {
		struct delivery_job *next = job->next;

		delivery_job_free(&job);
		job = next;
	}
}

static bool fd_setup(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0 &&
	       fcntl(fd, F_SETFD, FD_CLOEXEC) == 0;
}

static bool threads_start(struct delivery *d, unsigned workers)
{
	sigset_t all, old;

	if (pipe(d->wake_fds) < 0 || !fd_setup(d->wake_fds[0]) ||
	    !fd_setup(d->wake_fds[1]))
		return false;
	d->wake_ev = event_new(d->base, d->wake_fds[0], EV_READ | EV_PERSIST,
			       wake_cb, d);
	if (d->wake_ev == NULL || event_add(d->wake_ev, NULL) < 0)
		return false;
	d->workers = calloc(workers, sizeof(*d->workers));
	if (d->workers == NULL)
		return false;
	/* Workers take no signals: they are for the loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	while (d->nthreads < workers) {
		struct worker *w = &d->workers[d->nthreads];

		w->d = d;
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0)
			break;
		d->nthreads++;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return d->nthreads == workers;
}

/* Queued jobs are still delivered: the workers leave only once the queue
 * is empty. */
static void threads_stop(struct delivery *d)
{
	if (d->nthreads == 0)
		return;
	pthread_mutex_lock(&d->lock);
	d->stopping = true;
	pthread_cond_broadcast(&d->work);
	pthread_mutex_unlock(&d->lock);
	for (unsigned i = 0; i < d->nthreads; i++)
		pthread_join(d->workers[i].thread, NULL);
	d->nthreads = 0;
}

/* --- the module ------------------------------------------------------------ */

/* The template is trusted, but a typo ("%U") must not reach a path. */
static bool template_is_valid(const char *t)
{
	if (t == NULL || t[0] == '\0')
		return false;
	for (; *t != '\0'; t++) {
		if (*t != '%')
			continue;
		if (t[1] != 'u' && t[1] != 'd' && t[1] != '%')
			return false;
		t++;
	}
	return true;
}

static bool sync_init(struct delivery *d)
{
	if (pthread_mutex_init(&d->lock, NULL) != 0)
		return false;
	if (pthread_cond_init(&d->work, NULL) != 0) {
		pthread_mutex_destroy(&d->lock);
		return false;
	}
	return true;
}

struct delivery *delivery_new(struct event_base *base, const char *template,
			      unsigned workers)
{
	struct delivery *d;
	const char *pause = getenv(DELIVERY_PAUSE_ENV);

	if (!template_is_valid(template) || (base != NULL && workers == 0)) {
		log_event(LOG_LEVEL_ERR, "event=delivery_config error=\"%s\"",
			  template_is_valid(template) ? "no workers"
						      : "bad maildir template");
		return NULL;
	}
	d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->wake_fds[0] = d->wake_fds[1] = -1;
	if (!sync_init(d)) {
		free(d);
		return NULL;
	}
	d->base = base;
	d->test_pause = pause != NULL && pause[0] != '\0';
	host_init(d->host, sizeof(d->host));
	d->template = strdup(template);
	if (d->template == NULL || (base != NULL && !threads_start(d, workers)))
		delivery_free(&d);
	return d;
}

/* On the loop's thread, and never from inside a done callback: the batch
 * being dispatched is not the module's to free any more. */
void delivery_free(struct delivery **dp)
{
	struct delivery *d = *dp;

	if (d == NULL)
		return;
	threads_stop(d);
	if (d->wake_ev != NULL)
		event_free(d->wake_ev);
	for (int i = 0; i < 2; i++)
		if (d->wake_fds[i] >= 0)
			close(d->wake_fds[i]);
	jobs_free(list_take(&d->finished));
	jobs_free(list_take(&d->queue));
	pthread_cond_destroy(&d->work);
	pthread_mutex_destroy(&d->lock);
	free(d->workers);
	free(d->template);
	free(d);
	*dp = NULL;
}

struct delivery_job *delivery_submit(struct delivery *d,
				     struct delivery_job *job,
				     delivery_done_fn *done, void *arg)
{
	job->owner = d;
	job->done = done;
	job->arg = arg;
	if (d->base == NULL) {
		job->status = job_run(d, job);
		done(job->status, arg);
		delivery_job_free(&job);
		return NULL;
	}
	pthread_mutex_lock(&d->lock);
	list_append(&d->queue, job);
	pthread_cond_signal(&d->work);
	pthread_mutex_unlock(&d->lock);
	return job;
}

void delivery_cancel(struct delivery_job *job)
{
	if (job == NULL)
		return;
	pthread_mutex_lock(&job->owner->lock);
	job->cancelled = true;
	pthread_mutex_unlock(&job->owner->lock);
}
