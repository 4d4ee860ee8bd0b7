/*
 * lmdb — the `lmdb` directory backend: a map compiled from a table file
 * by porterd-makemap (the layout is in lmdbmap.h), read through LMDB's
 * memory map and answered synchronously, with the answers the `table`
 * backend gives for the same table.
 *
 * It must never answer "not found" for a map it cannot read: an LMDB
 * error or a malformed record at lookup is a temporary failure. It must
 * never need a restart or a signal to see a rebuilt map: porterd-makemap
 * renames a new file over the old one, and the backend notices (one
 * stat(2) of the path, at most once a second, on a lookup) and opens it,
 * keeping the old map when the new one will not open.
 *
 * Locking: a map is opened MDB_RDONLY | MDB_NOLOCK. LMDB's lock file
 * only coordinates readers with a writer of the same file, and a map is
 * never written in place: makemap writes a new file and renames it, so
 * a reader's file never has a writer. Without the lock file nothing is
 * created beside the map (its directory need not be writable by the
 * daemon's user), and the same file may be open twice in one process
 * (the old backend and the one a reload is loading) without the fcntl
 * lock trouble LMDB warns of.
 */
#include "porterd/backend.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "porterd/command.h"
#include "porterd/lmdbmap.h"
#include "porterd/log.h"
#include "porterd/strutil.h"

#define LMDB_PATH_MAX 4096		/* resolved path octets, with NUL */
#define LMDB_KEY_MAX ADDRESS_PATH_MAX	/* as the table's keys */
#define LMDB_QUERY_WORDS_MAX 16		/* as the table: longer never match */
#define LMDB_CHECK_MS 1000		/* how often the path is looked at */
#define LMDB_META_MAX 31		/* octets of a meta value */
#define LMDB_ERR_MAX 512
/* A record the layout does not allow: LMDB read it, but it is not ours. */
#define LMDB_BAD_RECORD (MDB_LAST_ERRCODE + 1)

/* One open map file, and what each lookup reuses of it. */
struct map {
	MDB_env *env;
	MDB_txn *txn;		/* read-only; reset between lookups */
	MDB_cursor *fullnames_cur, *words_cur;
	MDB_dbi keys, fullnames, words;
	size_t entries;
	dev_t dev;		/* the file it is, to notice a new one */
	ino_t ino;
};

/* A file at the path, as a stat(2) tells it apart from another. */
struct file_id {
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
};

/* Free-text query words, pointing into the query. */
struct query_words {
	const char *word[LMDB_QUERY_WORDS_MAX];
	size_t len[LMDB_QUERY_WORDS_MAX];
	size_t n;
};

struct backend {
	char *path;
	struct map map;
	int64_t checked_ms;	/* when the path was last looked at */
	bool path_gone;		/* logged that the path is gone */
	bool failed;		/* failed_id is a file that would not open */
	struct file_id failed_id;
	int64_t error_logged_ms;
	bool busy;		/* a lookup's transaction is live */
	bool cursors_ready;	/* renewed for the live transaction */
	char key[LMDB_KEY_MAX + 1];	/* the key just read */
	char found[LMDB_KEY_MAX + 1];	/* a name match's key */
	char text[COMMAND_LINE_MAX];	/* a query, lowercased */
	const char **members;	/* the answer's list members */
	size_t members_cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void lmdb_error(char *err, size_t errsize, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void lmdb_error(char *err, size_t errsize, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errsize, fmt, ap);
	va_end(ap);
}

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* ---- opening a map ---- */

static void map_close(struct map *m)
{
	if (m->fullnames_cur != NULL)
		mdb_cursor_close(m->fullnames_cur);
	if (m->words_cur != NULL)
		mdb_cursor_close(m->words_cur);
	if (m->txn != NULL)
		mdb_txn_abort(m->txn);
	if (m->env != NULL)
		mdb_env_close(m->env);
	*m = (struct map){ 0 };
}

/* A file LMDB cannot use, said the way a person would look for it. */
static const char *env_open_problem(int rc)
{
	switch (rc) {
	case MDB_INVALID:
		return "not an LMDB map";
	case MDB_VERSION_MISMATCH:
		return "written by an incompatible LMDB version";
	default:
		return mdb_strerror(rc);
	}
}

/*
 * Every page the map refers to must be in the file: LMDB reads it
 * through mmap(2), and a page past the end of a truncated file would
 * kill the process with SIGBUS instead of answering an error.
 */
static int map_check_size(struct map *m, const char *path, char *err,
			  size_t errsize)
{
	MDB_envinfo info;
	MDB_stat st;
	struct stat fst;
	int fd;

	if (mdb_env_get_fd(m->env, &fd) != 0 || fstat(fd, &fst) < 0) {
		lmdb_error(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	m->dev = fst.st_dev;
	m->ino = fst.st_ino;
	mdb_env_info(m->env, &info);
	mdb_env_stat(m->env, &st);
	if ((uint64_t)fst.st_size / st.ms_psize < (uint64_t)info.me_last_pgno + 1) {
		lmdb_error(err, errsize,
			   "%s: truncated: %jd octets, the map needs %" PRIu64,
			   path, (intmax_t)fst.st_size,
			   ((uint64_t)info.me_last_pgno + 1) * st.ms_psize);
		return -1;
	}
	return 0;
}

static int map_open_env(struct map *m, const char *path, char *err,
			size_t errsize)
{
	struct stat st;
	int rc;

	if (stat(path, &st) < 0) {
		lmdb_error(err, errsize, "%s: %s", path, strerror(errno));
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		lmdb_error(err, errsize, "%s: %s", path, !S_ISREG(st.st_mode)
			   ? "not a regular file" : "empty file, not an LMDB map");
		return -1;
	}
	rc = mdb_env_create(&m->env);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(m->env, LMDBMAP_MAXDBS);
	if (rc == 0)
		rc = mdb_env_open(m->env, path, MDB_RDONLY | MDB_NOSUBDIR |
				  MDB_NOLOCK | MDB_NOTLS, 0);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, env_open_problem(rc));
		return -1;
	}
	return map_check_size(m, path, err, errsize);
}

static int map_open_db(struct map *m, const char *path, const char *name,
		       unsigned flags, MDB_dbi *dbi_r, char *err, size_t errsize)
{
	unsigned got;
	int rc = mdb_dbi_open(m->txn, name, flags, dbi_r);

	if (rc == 0 && mdb_dbi_flags(m->txn, *dbi_r, &got) == 0 &&
	    (got & MDB_DUPSORT) != (flags & MDB_DUPSORT))
		rc = MDB_INCOMPATIBLE;
	if (rc == MDB_NOTFOUND || rc == MDB_INCOMPATIBLE) {
		lmdb_error(err, errsize, "%s: not a porterd map (%s '%s' database)",
			   path, rc == MDB_NOTFOUND ? "no" : "a wrong", name);
		return -1;
	}
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		return -1;
	}
	return 0;
}

/* A decimal meta value; false when missing or not a number. */
static bool meta_number(struct map *m, MDB_dbi meta, const char *name,
			uint64_t *n_r)
{
	MDB_val k = { .mv_size = strlen(name), .mv_data = (void *)name }, v;
	char buf[LMDB_META_MAX + 1];
	char *end;

	if (mdb_get(m->txn, meta, &k, &v) != 0 || v.mv_size == 0 ||
	    v.mv_size > LMDB_META_MAX)
		return false;
	memcpy(buf, v.mv_data, v.mv_size);
	buf[v.mv_size] = '\0';
	if (buf[0] < '0' || buf[0] > '9')
		return false;
	errno = 0;
	*n_r = strtoull(buf, &end, 10);
	return errno == 0 && *end == '\0';
}

/* The meta record: a format this code reads, and the entries there are. */
static int map_check_meta(struct map *m, const char *path, MDB_dbi meta,
			  char *err, size_t errsize)
{
	uint64_t format, entries;
	MDB_stat st;

	if (!meta_number(m, meta, LMDBMAP_META_FORMAT, &format) ||
	    !meta_number(m, meta, LMDBMAP_META_ENTRIES, &entries)) {
		lmdb_error(err, errsize, "%s: not a porterd map (no meta record)",
			   path);
		return -1;
	}
	if (format != LMDBMAP_FORMAT) {
		lmdb_error(err, errsize,
			   "%s: map format %" PRIu64 ", this porterd reads format %d: "
			   "make it again with porterd-makemap", path, format,
			   LMDBMAP_FORMAT);
		return -1;
	}
	if (mdb_stat(m->txn, m->keys, &st) != 0 || st.ms_entries != entries) {
		lmdb_error(err, errsize,
			   "%s: damaged map: %" PRIu64 " entries in its meta record, "
			   "%zu keys", path, entries, st.ms_entries);
		return -1;
	}
	m->entries = st.ms_entries;
	return 0;
}

static int map_open(struct map *m, const char *path, char *err, size_t errsize)
{
	MDB_dbi meta;
	int rc;

	*m = (struct map){ 0 };
	if (map_open_env(m, path, err, errsize) < 0)
		goto fail;
	rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &m->txn);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		goto fail;
	}
	if (map_open_db(m, path, LMDBMAP_DB_META, 0, &meta, err, errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_KEYS, 0, &m->keys, err, errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_FULLNAMES, MDB_DUPSORT,
			&m->fullnames, err, errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_WORDS, MDB_DUPSORT, &m->words,
			err, errsize) < 0 ||
	    map_check_meta(m, path, meta, err, errsize) < 0)
		goto fail;
	/* Only a commit keeps the handles opened in a transaction; the
	 * lookups' transaction is a new one, begun once and reused. */
	rc = mdb_txn_commit(m->txn);
	m->txn = NULL;
	if (rc == 0)
		rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &m->txn);
	if (rc == 0)
		rc = mdb_cursor_open(m->txn, m->fullnames, &m->fullnames_cur);
	if (rc == 0)
		rc = mdb_cursor_open(m->txn, m->words, &m->words_cur);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		goto fail;
	}
	mdb_txn_reset(m->txn);
	return 0;
fail:
	map_close(m);
	return -1;
}

/* ---- seeing a new map ---- */

static struct file_id file_id_of(const struct stat *st)
{
	return (struct file_id){ .dev = st->st_dev, .ino = st->st_ino,
				 .size = st->st_size, .mtime = st->st_mtim };
}

static bool file_id_eq(const struct file_id *a, const struct file_id *b)
{
	return a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
	       a->mtime.tv_sec == b->mtime.tv_sec &&
	       a->mtime.tv_nsec == b->mtime.tv_nsec;
}

static void log_reopen_failed(const struct backend *be, const char *why)
{
	char esc[LOG_VALUE_MAX], path[LOG_VALUE_MAX];

	log_event(LOG_LEVEL_ERR,
		  "event=lmdb_reopen_failed path=\"%s\" error=\"%s\" kept=old",
		  log_escape(path, sizeof(path), be->path, strlen(be->path)),
		  log_escape(esc, sizeof(esc), why, strlen(why)));
}

/*
 * A file other than the open one at the path is a new map: open it, and
 * swap it in only when it opened whole. A file that would not open is
 * logged once and not tried again until the path changes.
 */
static void map_refresh(struct backend *be)
{
	int64_t now = now_ms();
	char err[LMDB_ERR_MAX];
	struct file_id id;
	struct stat st;
	struct map fresh;

	if (now - be->checked_ms < LMDB_CHECK_MS)
		return;
	be->checked_ms = now;
	if (stat(be->path, &st) < 0) {
		if (!be->path_gone)
			log_reopen_failed(be, strerror(errno));
		be->path_gone = true;
		return;
	}
	be->path_gone = false;
	id = file_id_of(&st);
	if ((st.st_dev == be->map.dev && st.st_ino == be->map.ino) ||
	    (be->failed && file_id_eq(&id, &be->failed_id)))
		return;
	if (map_open(&fresh, be->path, err, sizeof(err)) < 0) {
		log_reopen_failed(be, err);
		be->failed = true;
		be->failed_id = id;
		return;
	}
	map_close(&be->map);
	be->map = fresh;
	be->failed = false;
	log_event(LOG_LEVEL_INFO, "event=lmdb_reopen path=\"%s\" entries=%zu",
		  log_escape(err, sizeof(err), be->path, strlen(be->path)),
		  be->map.entries);
}

/* ---- records ---- */

/* Copy s (len octets) lowercased into buf; false when it does not fit. */
static bool lower_into(char *buf, size_t size, const char *s, size_t len)
{
	return len > 0 && str_lower_copy(buf, size, s, len);
}

static int members_reserve(struct backend *be, size_t n)
{
	size_t cap = be->members_cap ? be->members_cap : 64;
	const char **m;

	if (n <= be->members_cap)
		return 0;
	while (cap < n)
		cap *= 2;
	m = realloc(be->members, cap * sizeof(*m));
	if (m == NULL)
		return ENOMEM;
	be->members = m;
	be->members_cap = cap;
	return 0;
}

/* [s, s + len) is one or more non-empty strings, each ending in a NUL;
 * returns how many, 0 when it is not. */
static size_t strings_count(const char *s, size_t len)
{
	size_t n = 0;

	if (len == 0 || s[len - 1] != '\0')
		return 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '\0')
			continue;
		if (i == 0 || s[i - 1] == '\0')
			return 0;
		n++;
	}
	return n;
}

static int list_decode(struct backend *be, const char *s, size_t len,
		       struct dir_result *res)
{
	size_t n = strings_count(s, len);

	if (n == 0)
		return LMDB_BAD_RECORD;
	if (members_reserve(be, n) != 0)
		return ENOMEM;
	for (size_t i = 0; i < n; i++) {
		be->members[i] = s;
		s += strlen(s) + 1;
	}
	res->members = be->members;
	res->nmembers = n;
	return 0;
}

/* A value of keys (lmdbmap.h) into res, whose key is be->key. */
static int value_decode(struct backend *be, const MDB_val *v,
			struct dir_result *res)
{
	const char *s = (const char *)v->mv_data + 1;
	size_t len = v->mv_size - 1;

	if (v->mv_size == 0)
		return LMDB_BAD_RECORD;
	res->key = be->key;
	switch (*(const char *)v->mv_data) {
	case LMDBMAP_KIND_USER:
		res->status = DIR_USER;
		if (len > 0 && strings_count(s, len) != 1)
			return LMDB_BAD_RECORD;
		res->fullname = len > 0 ? s : NULL;
		return 0;
	case LMDBMAP_KIND_LIST:
		res->status = DIR_LIST;
		return list_decode(be, s, len, res);
	case LMDBMAP_KIND_FORWARD:
	case LMDBMAP_KIND_MOVED:
		res->status = *(const char *)v->mv_data == LMDBMAP_KIND_FORWARD
			      ? DIR_FORWARD : DIR_MOVED;
		if (strings_count(s, len) != 1)
			return LMDB_BAD_RECORD;
		res->target = s;
		return 0;
	default:
		return LMDB_BAD_RECORD;
	}
}

/* The record of key s (NUL-terminated, any case) into be->key and v. */
static int key_get(struct backend *be, const char *s, MDB_val *v)
{
	size_t len = strnlen(s, LMDB_KEY_MAX + 1);
	MDB_val k = { .mv_size = len, .mv_data = be->key };

	if (!lower_into(be->key, sizeof(be->key), s, len))
		return MDB_NOTFOUND;
	return mdb_get(be->map.txn, be->map.keys, &k, v);
}

/* The user a name index points at (a key as stored) into res. */
static int user_get(struct backend *be, const MDB_val *key,
		    struct dir_result *res)
{
	MDB_val k = { .mv_size = key->mv_size, .mv_data = be->key }, v;
	int rc;

	if (key->mv_size == 0 || key->mv_size > LMDB_KEY_MAX)
		return LMDB_BAD_RECORD;
	memcpy(be->key, key->mv_data, key->mv_size);
	be->key[key->mv_size] = '\0';
	*res = (struct dir_result){ .status = DIR_NOTFOUND };
	rc = mdb_get(be->map.txn, be->map.keys, &k, &v);
	if (rc == 0)
		rc = value_decode(be, &v, res);
	if (rc == 0 && (res->status != DIR_USER || res->fullname == NULL))
		rc = LMDB_BAD_RECORD;	/* an index points at no named user */
	return rc == MDB_NOTFOUND ? LMDB_BAD_RECORD : rc;
}

/* ---- name matching, as the table backend does it ---- */

/* Split text on white space; false when it has no word or too many. */
static bool query_split(const char *text, struct query_words *q)
{
	q->n = 0;
	for (;;) {
		size_t len;

		while (is_blank(*text))
			text++;
		if (*text == '\0')
			break;
		for (len = 0; text[len] != '\0' && !is_blank(text[len]); len++)
			;
		if (q->n == LMDB_QUERY_WORDS_MAX)
			return false;
		q->word[q->n] = text;
		q->len[q->n++] = len;
		text += len;
	}
	return q->n > 0;
}

static bool name_has_word(const char *name, const char *w, size_t len)
{
	for (;;) {
		const char *sp = strchr(name, ' ');
		size_t n = sp != NULL ? (size_t)(sp - name) : strlen(name);

		if (str_eq_nocase(name, n, w, len))
			return true;
		if (sp == NULL)
			return false;
		name = sp + 1;
	}
}

static bool name_has_words(const char *name, const struct query_words *q)
{
	for (size_t i = 0; i < q->n; i++)
		if (!name_has_word(name, q->word[i], q->len[i]))
			return false;
	return true;
}

static int cursors_ready(struct backend *be)
{
	int rc = 0;

	if (!be->cursors_ready) {
		rc = mdb_cursor_renew(be->map.txn, be->map.fullnames_cur);
		if (rc == 0)
			rc = mdb_cursor_renew(be->map.txn, be->map.words_cur);
		be->cursors_ready = rc == 0;
	}
	return rc;
}

static size_t index_len(size_t len)
{
	return len < LMDBMAP_INDEX_KEY_MAX ? len : LMDBMAP_INDEX_KEY_MAX;
}

/*
 * Walk the users an index key points at; keep those whose full name
 * passes match (NULL: all do, the key being whole). Two decide: *st_r is
 * DIR_AMBIGUOUS; one is DIR_USER in res; none DIR_NOTFOUND.
 */
static int index_walk(struct backend *be, MDB_cursor *cur, MDB_val *k,
		      bool (*match)(const char *name, const void *arg),
		      const void *arg, enum dir_status *st_r,
		      struct dir_result *res)
{
	struct dir_result r;
	MDB_val v;
	int rc = mdb_cursor_get(cur, k, &v, MDB_SET);

	*st_r = DIR_NOTFOUND;
	while (rc == 0) {
		rc = user_get(be, &v, &r);
		if (rc != 0)
			return rc;
		if (match == NULL || match(r.fullname, arg)) {
			if (*st_r == DIR_USER) {
				*st_r = DIR_AMBIGUOUS;
				return 0;
			}
			*st_r = DIR_USER;
			*res = r;
			/* be->key is the next user's once the walk goes on. */
			memcpy(be->found, be->key, sizeof(be->found));
			res->key = be->found;
		}
		rc = mdb_cursor_get(cur, k, &v, MDB_NEXT_DUP);
	}
	return rc == MDB_NOTFOUND ? 0 : rc;
}

static bool name_is(const char *name, const void *arg)
{
	const char *text = arg;

	return str_eq_nocase(name, strlen(name), text, strlen(text));
}

static bool name_has(const char *name, const void *arg)
{
	return name_has_words(name, arg);
}

/* Users whose full name is the query's words, one space apart. */
static int names_match_exact(struct backend *be, const struct query_words *q,
			     enum dir_status *st_r, struct dir_result *res)
{
	size_t len = 0;
	MDB_val k;

	*st_r = DIR_NOTFOUND;
	for (size_t i = 0; i < q->n; i++) {
		if (len + (i > 0) + q->len[i] >= sizeof(be->text))
			return 0;
		if (i > 0)
			be->text[len++] = ' ';
		memcpy(be->text + len, q->word[i], q->len[i]);
		len += q->len[i];
	}
	be->text[len] = '\0';
	str_lower_inplace(be->text);
	k = (MDB_val){ .mv_size = index_len(len), .mv_data = be->text };
	/* A key cut to the index's bound may stand for longer names. */
	return index_walk(be, be->map.fullnames_cur, &k,
			  len >= LMDBMAP_INDEX_KEY_MAX ? name_is : NULL,
			  be->text, st_r, res);
}

/* The query word with the fewest users; *k_r empty when a word is in no
 * name at all. */
static int words_rarest(struct backend *be, const struct query_words *q,
			MDB_val *k_r)
{
	size_t best = SIZE_MAX;

	k_r->mv_size = 0;
	for (size_t i = 0; i < q->n; i++) {
		char *w = be->text + (q->word[i] - q->word[0]);
		MDB_val k = { .mv_size = index_len(q->len[i]), .mv_data = w }, v;
		size_t count;
		int rc;

		rc = mdb_cursor_get(be->map.words_cur, &k, &v, MDB_SET);
		if (rc == MDB_NOTFOUND) {
			k_r->mv_size = 0;
			return 0;
		}
		if (rc == 0)
			rc = mdb_cursor_count(be->map.words_cur, &count);
		if (rc != 0)
			return rc;
		if (count < best) {
			best = count;
			k.mv_data = w;
			*k_r = k;
		}
	}
	return 0;
}

/*
 * Users whose name holds every query word: two distinct ones decide. The
 * walk is along the rarest word's users only, and stops at the second.
 */
static int names_match_words(struct backend *be, const struct query_words *q,
			     enum dir_status *st_r, struct dir_result *res)
{
	size_t span = (size_t)(q->word[q->n - 1] + q->len[q->n - 1] - q->word[0]);
	MDB_val k;
	int rc;

	*st_r = DIR_NOTFOUND;
	/* The words, lowercased where they stand, for the index's keys. A
	 * query longer than a command line never comes from a session. */
	if (!str_lower_copy(be->text, sizeof(be->text), q->word[0], span))
		return 0;
	rc = words_rarest(be, q, &k);
	if (rc != 0 || k.mv_size == 0)
		return rc;
	return index_walk(be, be->map.words_cur, &k, name_has, q, st_r, res);
}

static int names_match(struct backend *be, const char *text,
		       struct dir_result *res)
{
	struct query_words q;
	enum dir_status st;
	int rc;

	if (!query_split(text, &q))
		return 0;
	rc = cursors_ready(be);
	if (rc == 0)
		rc = names_match_exact(be, &q, &st, res);
	if (rc == 0 && st == DIR_NOTFOUND)
		rc = names_match_words(be, &q, &st, res);
	if (rc == 0 && st != DIR_USER)
		*res = (struct dir_result){ .status = st };
	return rc;
}

/* ---- the vtable ---- */

static void log_lookup_error(struct backend *be, int rc)
{
	int64_t now = now_ms();
	char path[LOG_VALUE_MAX], key[LOG_VALUE_MAX];

	/* A broken map fails every lookup: one line a second says it. */
	if (be->error_logged_ms != 0 && now - be->error_logged_ms < LMDB_CHECK_MS)
		return;
	be->error_logged_ms = now;
	log_event(LOG_LEVEL_ERR,
		  "event=lmdb_lookup_failed path=\"%s\" key=\"%s\" error=\"%s\"",
		  log_escape(path, sizeof(path), be->path, strlen(be->path)),
		  log_escape(key, sizeof(key), be->key, strlen(be->key)),
		  rc == LMDB_BAD_RECORD ? "malformed record" : mdb_strerror(rc));
}

/* The key, then the local part, then full names, as the table does. */
static int lookup_in_txn(struct backend *be, const struct dir_query *q,
			 struct dir_result *res)
{
	MDB_val v;
	int rc = MDB_NOTFOUND;

	if (q->address != NULL)
		rc = key_get(be, q->address, &v);
	if (rc == MDB_NOTFOUND && q->local != NULL)
		rc = key_get(be, q->local, &v);
	if (rc == 0)
		return value_decode(be, &v, res);
	if (rc != MDB_NOTFOUND)
		return rc;
	if (q->address == NULL && q->by_name && q->local != NULL)
		return names_match(be, q->local, res);
	return 0;
}

static void lmdb_lookup(struct backend *be, const struct dir_query *q,
			backend_done_fn *done, void *arg)
{
	struct dir_result res = { .status = DIR_NOTFOUND };
	int rc;

	if (be->busy) {
		/* Asked again from inside done: the answer being given still
		 * reads the transaction, so this one cannot have it. */
		res.status = DIR_TEMPFAIL;
		done(&res, arg);
		return;
	}
	map_refresh(be);
	rc = mdb_txn_renew(be->map.txn);
	if (rc == 0) {
		be->busy = true;
		be->cursors_ready = false;
		rc = lookup_in_txn(be, q, &res);
	}
	if (rc != 0) {
		log_lookup_error(be, rc);
		res = (struct dir_result){ .status = DIR_TEMPFAIL };
	}
	/* The answer's strings point into the map: done runs first. */
	done(&res, arg);
	if (be->busy) {
		mdb_txn_reset(be->map.txn);
		be->busy = false;
	}
}

static size_t lmdb_count(const struct backend *be)
{
	return be->map.entries;
}

/* The one path in args, resolved against base_dir when relative. */
static int lmdb_resolve(const char *args, const char *base_dir, char *path,
			size_t pathsize, char *err, size_t errsize)
{
	const char *s = args != NULL ? args : "", *t, *rest;
	int n;

	while (is_blank(*s))
		s++;
	for (t = s; *t != '\0' && !is_blank(*t); t++)
		;
	for (rest = t; is_blank(*rest); rest++)
		;
	if (t == s || *rest != '\0') {
		lmdb_error(err, errsize, "lmdb: expected one PATH");
		return -1;
	}
	if (*s == '/' || base_dir == NULL || *base_dir == '\0')
		n = snprintf(path, pathsize, "%.*s", (int)(t - s), s);
	else
		n = snprintf(path, pathsize, "%s%s%.*s", base_dir,
			     base_dir[strlen(base_dir) - 1] == '/' ? "" : "/",
			     (int)(t - s), s);
	if (n < 0 || (size_t)n >= pathsize) {
		lmdb_error(err, errsize, "lmdb: path too long");
		return -1;
	}
	return 0;
}

static void lmdb_close(struct backend **be_p)
{
	struct backend *be = *be_p;

	if (be == NULL)
		return;
	map_close(&be->map);
	free(be->members);
	free(be->path);
	free(be);
	*be_p = NULL;
}

static int lmdb_open(const char *args, const char *base_dir,
		     struct backend **be_r, char *err, size_t errsize)
{
	char path[LMDB_PATH_MAX];
	struct backend *be;

	*be_r = NULL;
	if (lmdb_resolve(args, base_dir, path, sizeof(path), err, errsize) < 0)
		return -1;
	be = calloc(1, sizeof(*be));
	if (be == NULL || (be->path = strdup(path)) == NULL) {
		free(be);
		lmdb_error(err, errsize, "%s: %s", path, strerror(ENOMEM));
		return -1;
	}
	if (map_open(&be->map, path, err, errsize) < 0) {
		lmdb_close(&be);
		return -1;
	}
	be->checked_ms = now_ms();
	*be_r = be;
	return 0;
}

const struct backend_ops backend_lmdb_ops = {
	.name = "lmdb",
	.open = lmdb_open,
	.lookup = lmdb_lookup,
	.count = lmdb_count,
	.close = lmdb_close,
};
