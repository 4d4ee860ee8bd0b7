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
 * Cost: a key reads one bucket of memory whatever the size of the map
 * (map format 3, lmdbmap.h): it is hashed, the four lines of its bucket
 * asked for at once, the tags of its slots compared, and the record a
 * matching tag names read, as a rule from the same bucket, already on
 * its way: one trip to memory, for a key there or not, with no search
 * and no LMDB call. A full name or a word of one is found the same way
 * in its own dictionary, then each user it names by its locator. Where
 * the dictionaries lie in the memory map is learnt once, when the map is
 * opened, in a read transaction that stays open while the map is.
 *
 * Locking: a map is opened MDB_RDONLY | MDB_NOLOCK. LMDB's lock file
 * only coordinates readers with a writer of the same file, and a map is
 * never written in place: makemap writes a new file and renames it, so
 * a reader's file never has a writer, and a read transaction left open
 * holds nothing back. Without the lock file nothing is created beside
 * the map (its directory need not be writable by the daemon's user), and
 * the same file may be open twice in one process (the old backend and
 * the one a reload is loading) without the fcntl lock trouble LMDB warns
 * of.
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
#include "porterd/lmdbdict.h"
#include "porterd/lmdbmap.h"
#include "porterd/log.h"
#include "porterd/namequery.h"
#include "porterd/strutil.h"
#include "porterd/textscan.h"

#define LMDB_PATH_MAX 4096		/* resolved path octets, with NUL */
#define LMDB_KEY_MAX ADDRESS_PATH_MAX	/* as the table's keys */
#define LMDB_CHECK_MS 1000		/* how often the path is looked at */
#define LMDB_META_MAX 31		/* octets of a meta value */
#define LMDB_ERR_MAX 512
/* A record the layout does not allow: LMDB read it, but it is not ours. */
#define LMDB_BAD_RECORD (MDB_LAST_ERRCODE + 1)

/* One open map file: where its dictionaries are. */
struct map {
	MDB_env *env;
	MDB_txn *txn;		/* read-only, open while the map is */
	struct lmdbdict keys, fullnames, words;
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

struct backend {
	char *path;
	struct map map;
	int64_t checked_ms;	/* when the path was last looked at */
	bool path_gone;		/* logged that the path is gone */
	bool failed;		/* failed_id is a file that would not open */
	struct file_id failed_id;
	int64_t error_logged_ms;
	bool busy;		/* an answer is being given */
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

/* ---- opening a map ---- */

static void map_close(struct map *m)
{
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
	/* Not MDB_NORDAHEAD (MADV_RANDOM): a map not yet in the page cache
	 * comes in by readahead's large reads, some ten times faster than
	 * page by page, and lookups are as fast either way once it is in.
	 * Only a map larger than memory would lose by it. */
	if (rc == 0)
		rc = mdb_env_open(m->env, path, MDB_RDONLY | MDB_NOSUBDIR |
				  MDB_NOLOCK | MDB_NOTLS, 0);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, env_open_problem(rc));
		return -1;
	}
	return map_check_size(m, path, err, errsize);
}

/* A database of the map, which is a plain one: sorted duplicates or
 * integer keys are another program's. */
static int map_open_db(struct map *m, const char *path, const char *name,
		       MDB_dbi *dbi_r, char *err, size_t errsize)
{
	unsigned got;
	int rc = mdb_dbi_open(m->txn, name, 0, dbi_r);

	if (rc == 0 && mdb_dbi_flags(m->txn, *dbi_r, &got) == 0 &&
	    (got & (MDB_DUPSORT | MDB_INTEGERKEY | MDB_REVERSEKEY)) != 0)
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

/*
 * The meta record: a format this code reads, and the entries there are.
 * It is read before anything else of the map, so that a map of another
 * format, whatever it holds, is refused for that.
 */
static int map_check_meta(struct map *m, const char *path, char *err,
			  size_t errsize)
{
	uint64_t format, entries;
	MDB_dbi meta;

	if (map_open_db(m, path, LMDBMAP_DB_META, &meta, err, errsize) < 0)
		return -1;
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
	if (entries > SIZE_MAX) {
		lmdb_error(err, errsize, "%s: damaged map: %" PRIu64 " entries",
			   path, entries);
		return -1;
	}
	m->entries = (size_t)entries;
	return 0;
}

/*
 * The dictionary of database name, found in the transaction that stays
 * open: its pointers hold as long as it does. A dictionary whose head
 * does not add up is refused here, so that a lookup can trust its shape
 * and need only check each locator it follows.
 */
static int map_find_dict(struct map *m, MDB_dbi dbi, const char *path,
			 const char *name, size_t key_max, struct lmdbdict *d,
			 char *err, size_t errsize)
{
	MDB_val k = { .mv_size = strlen(LMDBMAP_DICT),
		      .mv_data = (void *)LMDBMAP_DICT }, v;
	char why[LMDB_ERR_MAX / 2];
	int rc = mdb_get(m->txn, dbi, &k, &v);

	if (rc == MDB_NOTFOUND) {
		lmdb_error(err, errsize, "%s: damaged map: no '%s' dictionary",
			   path, name);
		return -1;
	}
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		return -1;
	}
	if (!lmdbdict_open(d, v.mv_data, v.mv_size, key_max, why, sizeof(why))) {
		lmdb_error(err, errsize, "%s: damaged map: the '%s' dictionary: %s",
			   path, name, why);
		return -1;
	}
	return 0;
}

static int map_find_dicts(struct map *m, const MDB_dbi dbi[3],
			  const char *path, char *err, size_t errsize)
{
	if (map_find_dict(m, dbi[0], path, LMDBMAP_DB_KEYS, LMDB_KEY_MAX,
			  &m->keys, err, errsize) < 0 ||
	    map_find_dict(m, dbi[1], path, LMDBMAP_DB_FULLNAMES,
			  LMDBMAP_INDEX_KEY_MAX, &m->fullnames, err, errsize) < 0 ||
	    map_find_dict(m, dbi[2], path, LMDBMAP_DB_WORDS,
			  LMDBMAP_INDEX_KEY_MAX, &m->words, err, errsize) < 0)
		return -1;
	if (m->keys.entries != m->entries) {
		lmdb_error(err, errsize,
			   "%s: damaged map: %zu entries in its meta record, "
			   "%" PRIu64 " keys", path, m->entries, m->keys.entries);
		return -1;
	}
	return 0;
}

static int map_open(struct map *m, const char *path, char *err, size_t errsize)
{
	MDB_dbi dbi[3];
	int rc;

	*m = (struct map){ 0 };
	if (map_open_env(m, path, err, errsize) < 0)
		goto fail;
	rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &m->txn);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		goto fail;
	}
	if (map_check_meta(m, path, err, errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_KEYS, &dbi[0], err, errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_FULLNAMES, &dbi[1], err,
			errsize) < 0 ||
	    map_open_db(m, path, LMDBMAP_DB_WORDS, &dbi[2], err, errsize) < 0)
		goto fail;
	/* Only a commit keeps the handles opened in a transaction; the
	 * lookups' transaction is a new one, open until the map is closed. */
	rc = mdb_txn_commit(m->txn);
	m->txn = NULL;
	if (rc == 0)
		rc = mdb_txn_begin(m->env, NULL, MDB_RDONLY, &m->txn);
	if (rc != 0) {
		lmdb_error(err, errsize, "%s: %s", path, mdb_strerror(rc));
		goto fail;
	}
	if (map_find_dicts(m, dbi, path, err, errsize) < 0)
		goto fail;
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

/* A record's value (lmdbmap.h) into res, whose key is be->key. */
static int value_decode(struct backend *be, const struct lmdbdict_record *r,
			struct dir_result *res)
{
	const char *s = r->value + 1;
	size_t len = r->valuelen - 1;

	if (r->valuelen == 0)
		return LMDB_BAD_RECORD;
	res->key = be->key;
	switch (r->value[0]) {
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
		res->status = r->value[0] == LMDBMAP_KIND_FORWARD
			      ? DIR_FORWARD : DIR_MOVED;
		if (strings_count(s, len) != 1)
			return LMDB_BAD_RECORD;
		res->target = s;
		return 0;
	default:
		return LMDB_BAD_RECORD;
	}
}

/* A dictionary's answer as the lookups' codes: a damaged record is a
 * temporary failure, never "not found". */
static int dict_status_rc(enum lmdbdict_status st)
{
	return st == LMDBDICT_FOUND ? 0
	       : st == LMDBDICT_NOTFOUND ? MDB_NOTFOUND : LMDB_BAD_RECORD;
}

/* The record of key s (NUL-terminated, any case), which goes to be->key. */
static int key_get(struct backend *be, const char *s, struct lmdbdict_record *r)
{
	size_t len = strnlen(s, LMDB_KEY_MAX + 1);

	if (!lower_into(be->key, sizeof(be->key), s, len))
		return MDB_NOTFOUND;
	return dict_status_rc(lmdbdict_find(&be->map.keys, be->key, len, r));
}

/* The user a name index points at (a locator) into res. */
static int user_get(struct backend *be, uint32_t loc, struct dir_result *res)
{
	struct lmdbdict_record r;
	int rc = dict_status_rc(lmdbdict_record_at(&be->map.keys, loc, &r));

	if (rc != 0)
		return rc;
	memcpy(be->key, r.key, r.keylen);
	be->key[r.keylen] = '\0';
	*res = (struct dir_result){ .status = DIR_NOTFOUND };
	rc = value_decode(be, &r, res);
	if (rc == 0 && (res->status != DIR_USER || res->fullname == NULL))
		rc = LMDB_BAD_RECORD;	/* an index points at no named user */
	return rc;
}

/* ---- name matching, as the table backend does it ---- */

static size_t index_len(size_t len)
{
	return len < LMDBMAP_INDEX_KEY_MAX ? len : LMDBMAP_INDEX_KEY_MAX;
}

/* The users a name index's record names: how many, 0 when its value is
 * not a list of locators. */
static size_t index_users(const struct lmdbdict_record *ix)
{
	return ix->valuelen % LMDBMAP_LOCATOR_SIZE == 0
	       ? ix->valuelen / LMDBMAP_LOCATOR_SIZE : 0;
}

/*
 * Walk the users a name index's record names; keep those whose full
 * name passes match (NULL: all do, the key being whole). Two decide:
 * *st_r is DIR_AMBIGUOUS; one is DIR_USER in res; none DIR_NOTFOUND.
 */
static int index_walk(struct backend *be, const struct lmdbdict_record *ix,
		      bool (*match)(const char *name, const void *arg),
		      const void *arg, enum dir_status *st_r,
		      struct dir_result *res)
{
	size_t n = index_users(ix);
	struct dir_result r;

	*st_r = DIR_NOTFOUND;
	if (n == 0)
		return LMDB_BAD_RECORD;
	for (size_t i = 0; i < n; i++) {
		uint32_t loc;
		int rc;

		memcpy(&loc, ix->value + i * LMDBMAP_LOCATOR_SIZE, sizeof(loc));
		rc = user_get(be, loc, &r);
		if (rc != 0)
			return rc;
		if (match != NULL && !match(r.fullname, arg))
			continue;
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
	return 0;
}

static bool name_is(const char *name, const void *arg)
{
	const char *text = arg;

	return str_eq_nocase(name, strlen(name), text, strlen(text));
}

static bool name_has(const char *name, const void *arg)
{
	return name_query_in(name, arg);
}

/* Users whose full name is the query's words, one space apart. */
static int names_match_exact(struct backend *be, const struct name_query *q,
			     enum dir_status *st_r, struct dir_result *res)
{
	struct lmdbdict_record ix;
	size_t len;
	int rc;

	*st_r = DIR_NOTFOUND;
	if (!name_query_join(q, be->text, sizeof(be->text), &len))
		return 0;
	str_lower_inplace(be->text);
	rc = dict_status_rc(lmdbdict_find(&be->map.fullnames, be->text,
					  index_len(len), &ix));
	if (rc != 0)
		return rc == MDB_NOTFOUND ? 0 : rc;
	/* A key cut to the index's bound may stand for longer names. */
	return index_walk(be, &ix, len >= LMDBMAP_INDEX_KEY_MAX ? name_is : NULL,
			  be->text, st_r, res);
}

/* The index record of the query word with the fewest users; *found_r
 * false when a word is in no name at all. */
static int words_rarest(struct backend *be, const struct name_query *q,
			struct lmdbdict_record *ix_r, bool *found_r)
{
	size_t best = SIZE_MAX;

	*found_r = false;
	for (size_t i = 0; i < q->n; i++) {
		const char *w = be->text + (q->word[i] - q->word[0]);
		struct lmdbdict_record ix;
		int rc = dict_status_rc(lmdbdict_find(&be->map.words, w,
						      index_len(q->len[i]), &ix));

		if (rc == MDB_NOTFOUND) {
			*found_r = false;
			return 0;
		}
		if (rc != 0)
			return rc;
		if (index_users(&ix) == 0)
			return LMDB_BAD_RECORD;
		if (index_users(&ix) < best) {
			best = index_users(&ix);
			*ix_r = ix;
			*found_r = true;
		}
	}
	return 0;
}

/*
 * Users whose name holds every query word: two distinct ones decide. The
 * walk is along the rarest word's users only, and stops at the second.
 */
static int names_match_words(struct backend *be, const struct name_query *q,
			     enum dir_status *st_r, struct dir_result *res)
{
	size_t span = (size_t)(q->word[q->n - 1] + q->len[q->n - 1] - q->word[0]);
	struct lmdbdict_record ix;
	bool found;
	int rc;

	*st_r = DIR_NOTFOUND;
	/* The words, lowercased where they stand, for the index's keys. A
	 * query longer than a command line never comes from a session. */
	if (!str_lower_copy(be->text, sizeof(be->text), q->word[0], span))
		return 0;
	rc = words_rarest(be, q, &ix, &found);
	if (rc != 0 || !found)
		return rc;
	return index_walk(be, &ix, name_has, q, st_r, res);
}

static int names_match(struct backend *be, const char *text,
		       struct dir_result *res)
{
	struct name_query q;
	enum dir_status st;
	int rc;

	if (!name_query_split(text, &q))
		return 0;
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
static int lookup_in_map(struct backend *be, const struct dir_query *q,
			 struct dir_result *res)
{
	struct lmdbdict_record r;
	int rc = MDB_NOTFOUND;

	if (q->address != NULL)
		rc = key_get(be, q->address, &r);
	if (rc == MDB_NOTFOUND && q->local != NULL)
		rc = key_get(be, q->local, &r);
	if (rc == 0)
		return value_decode(be, &r, res);
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
		/* Asked again from inside done: the answer being given
		 * points into the map and this backend's buffers, which this
		 * lookup would overwrite, or close for a new map. */
		res.status = DIR_TEMPFAIL;
		done(&res, arg);
		return;
	}
	map_refresh(be);
	be->busy = true;
	rc = lookup_in_map(be, q, &res);
	if (rc != 0) {
		log_lookup_error(be, rc);
		res = (struct dir_result){ .status = DIR_TEMPFAIL };
	}
	done(&res, arg);
	be->busy = false;
}

static size_t lmdb_count(const struct backend *be)
{
	return be->map.entries;
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
	if (text_path_arg("lmdb", args, base_dir, path, sizeof(path), err,
			  errsize) < 0)
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
