/*
 * makemap — compile a porterd table file into an LMDB map for the `lmdb`
 * backend (the layout is in lmdbmap.h).
 *
 * It must never leave a half-written map where a reader could open it:
 * the map is built in a new file beside the output and renamed over it
 * only once it is complete and on disk. It must never accept a table the
 * `table` backend refuses: the table is read by that backend's parser.
 *
 * Format 3: the keys, the full names and the words are each one hashed
 * dictionary (lmdbdict.h), so that a lookup of any of them is one trip
 * to memory whatever the size of the map. Each dictionary is one value,
 * planned whole in memory first (where every record goes), then written
 * straight into the room LMDB reserves for it (MDB_RESERVE), with no
 * copy made. The name indexes' entries are sorted in memory to gather
 * each name's users.
 */
#include "porterd/makemap.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "porterd/command.h"
#include "porterd/lmdbdict.h"
#include "porterd/lmdbmap.h"
#include "porterd/strutil.h"
#include "porterd/table.h"

#define MAKEMAP_MAPSIZE_MIN (16u << 20)	/* the estimate's floor */
#define MAKEMAP_SUFFIX ".tmp-XXXXXX"

enum map_db { DB_META, DB_KEYS, DB_FULLNAMES, DB_WORDS, DB__COUNT };

/* One (full name or word, user) pair of a name index, in the order it
 * is written. */
struct item {
	uint64_t prefix;	/* the first 8 octets, big-endian: most
				 * comparisons end on it, with no pointer
				 * followed */
	const char *text;
	uint32_t len;
	uint32_t ref;		/* the user's locator */
};

/* A name index: its pairs sorted, gathered by name, as a dictionary. */
struct name_index {
	struct item *items;
	size_t nitems;
	size_t *start;		/* each name's first pair; then nitems */
	size_t nnames;
};

struct builder {
	struct makemap *m;
	char *err;
	size_t errsize;
	struct backend *table;
	size_t nkeys;
	char key[ADDRESS_PATH_MAX + 1];	/* the key just given, lowercase */
	struct name_index fullnames, words;
	char *lower;		/* lowercase copies of all full names */
	/* The dictionaries of DB_KEYS, DB_FULLNAMES and DB_WORDS. */
	struct lmdbdict_source source[DB__COUNT];
	struct lmdbdict_plan plan[DB__COUNT];
	char meta_format[16], meta_entries[32];
	int fd;			/* the file being built, while tmp_live */
	MDB_env *env;
	MDB_dbi dbi[DB__COUNT];
	size_t mapsize;
};

/* Fills the key and value of record i of a step; 0 or an errno value. */
typedef int item_fn(struct builder *b, enum map_db db, size_t i, MDB_val *k,
		    MDB_val *v);
/* Writes record i's value where MDB_RESERVE put it. */
typedef void fill_fn(struct builder *b, enum map_db db, size_t i, void *data);

struct step {
	enum map_db db;
	unsigned flags;
	size_t n;
	item_fn *item;
	fill_fn *fill;		/* with MDB_RESERVE */
};

static void build_error(struct builder *b, const char *what, int rc)
{
	snprintf(b->err, b->errsize, "%s: %s: %s", b->m->out_path, what,
		 mdb_strerror(rc));
}

/* ---- sorting ---- */

static uint64_t sort_prefix(const char *s, size_t len)
{
	uint64_t p = 0;

	for (size_t i = 0; i < 8; i++)
		p = p << 8 | (i < len ? (unsigned char)s[i] : 0);
	return p;
}

static struct item item_make(const char *text, size_t len, size_t ref)
{
	return (struct item){ .prefix = sort_prefix(text, len), .text = text,
			      .len = (uint32_t)len, .ref = (uint32_t)ref };
}

/*
 * By text (memcmp over the shorter, then the shorter first), then by the
 * user's locator: a name's pairs together, its users as a dictionary
 * value lists them. The zero padding of a short prefix sorts it first,
 * because no text holds a NUL.
 */
static int item_cmp(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	int c;

	if (a->prefix != b->prefix)
		return a->prefix < b->prefix ? -1 : 1;
	/* Equal prefixes: a text of at most 8 octets is all in its prefix,
	 * so only two longer texts have more to compare. */
	if (a->len > 8 && b->len > 8) {
		c = memcmp(a->text + 8, b->text + 8,
			   (a->len < b->len ? a->len : b->len) - 8);
		if (c != 0)
			return c;
	}
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	if (a->ref != b->ref)
		return a->ref < b->ref ? -1 : 1;
	return 0;
}

/* Sort, and drop a pair met twice (a word twice in one name). */
static size_t items_sort_unique(struct item *items, size_t n)
{
	size_t out = 0;

	if (n == 0)
		return 0;
	qsort(items, n, sizeof(*items), item_cmp);
	for (size_t i = 1; i < n; i++)
		if (item_cmp(&items[out], &items[i]) != 0)
			items[++out] = items[i];
	return out + 1;
}

/* ---- the records ---- */

/* Octets of an entry's value: the kind byte and the kind's strings. */
static size_t value_size(const struct dir_result *r)
{
	size_t n = 1;

	if (r->status == DIR_LIST)
		for (size_t i = 0; i < r->nmembers; i++)
			n += strlen(r->members[i]) + 1;
	else if (r->status == DIR_USER)
		n += r->fullname != NULL ? strlen(r->fullname) + 1 : 0;
	else
		n += strlen(r->target) + 1;
	return n;
}

static size_t value_put(unsigned char *v, size_t off, const char *s)
{
	size_t n = strlen(s) + 1;

	memcpy(v + off, s, n);
	return off + n;
}

/* An entry's value (lmdbmap.h) at v; its length. */
static size_t value_write(const struct dir_result *r, unsigned char *v)
{
	size_t len = 1;

	switch (r->status) {
	case DIR_USER:
		v[0] = LMDBMAP_KIND_USER;
		if (r->fullname != NULL)
			len = value_put(v, len, r->fullname);
		break;
	case DIR_LIST:
		v[0] = LMDBMAP_KIND_LIST;
		for (size_t i = 0; i < r->nmembers; i++)
			len = value_put(v, len, r->members[i]);
		break;
	default:
		v[0] = r->status == DIR_FORWARD ? LMDBMAP_KIND_FORWARD
						: LMDBMAP_KIND_MOVED;
		len = value_put(v, len, r->target);
		break;
	}
	return len;
}

/* ---- the keys' dictionary ---- */

static const char *key_of(void *arg, size_t i, size_t *len_r)
{
	struct builder *b = arg;
	struct dir_result r;
	size_t len;

	table_entry_get(b->table, i, &r);
	len = strlen(r.key);
	/* The table never holds a key longer: 0 makes the plan refuse it. */
	*len_r = str_lower_copy(b->key, sizeof(b->key), r.key, len) ? len : 0;
	return b->key;
}

static size_t key_value_size(void *arg, size_t i)
{
	struct builder *b = arg;
	struct dir_result r;

	table_entry_get(b->table, i, &r);
	return value_size(&r);
}

static void key_value_write(void *arg, size_t i, unsigned char *out)
{
	struct builder *b = arg;
	struct dir_result r;

	table_entry_get(b->table, i, &r);
	value_write(&r, out);
}

static int keys_plan(struct builder *b)
{
	b->nkeys = table_entry_count(b->table);
	b->source[DB_KEYS] = (struct lmdbdict_source){
		.n = b->nkeys, .arg = b, .key = key_of,
		.value_size = key_value_size, .value_write = key_value_write };
	return lmdbdict_plan(&b->plan[DB_KEYS], &b->source[DB_KEYS],
			     b->m->buckets);
}

/* ---- the name indexes ---- */

static const char *entry_fullname(const struct backend *t, size_t i)
{
	struct dir_result r;

	table_entry_get(t, i, &r);
	return r.status == DIR_USER && r.fullname != NULL && r.fullname[0]
	       ? r.fullname : NULL;
}

static size_t index_len(size_t len)
{
	return len < LMDBMAP_INDEX_KEY_MAX ? len : LMDBMAP_INDEX_KEY_MAX;
}

/* Octets of the lowercase names and the words in them, to size arrays. */
static void names_measure(const struct builder *b, size_t *octets_r,
			  size_t *words_r)
{
	*octets_r = 0;
	*words_r = 0;
	for (size_t i = 0; i < b->nkeys; i++) {
		const char *name = entry_fullname(b->table, i);

		if (name == NULL)
			continue;
		*octets_r += strlen(name) + 1;
		for (const char *c = name; *c != '\0'; c++)
			*words_r += c[0] != ' ' && (c[1] == ' ' || c[1] == '\0');
	}
}

/* The pairs of one user's name, lowercased at *lower; loc is the
 * user's. */
static void name_add(struct builder *b, const char *name, uint32_t loc,
		     char **lower)
{
	size_t len = strlen(name);
	char *s = *lower;

	for (size_t i = 0; i <= len; i++)
		s[i] = str_lower_char(name[i]);
	*lower += len + 1;
	b->fullnames.items[b->fullnames.nitems++] =
		item_make(s, index_len(len), loc);
	while (*s != '\0') {
		size_t n = strcspn(s, " ");

		if (n > 0)
			b->words.items[b->words.nitems++] =
				item_make(s, index_len(n), loc);
		s += n + (s[n] == ' ');
	}
}

static int names_collect(struct builder *b)
{
	size_t octets, nwords;
	char *lower;

	names_measure(b, &octets, &nwords);
	b->lower = malloc(octets > 0 ? octets : 1);
	b->fullnames.items = calloc(b->nkeys > 0 ? b->nkeys : 1,
				    sizeof(*b->fullnames.items));
	b->words.items = calloc(nwords > 0 ? nwords : 1, sizeof(*b->words.items));
	if (b->lower == NULL || b->fullnames.items == NULL ||
	    b->words.items == NULL)
		return ENOMEM;
	lower = b->lower;
	for (size_t i = 0; i < b->nkeys; i++) {
		const char *name = entry_fullname(b->table, i);

		if (name != NULL)
			name_add(b, name, b->plan[DB_KEYS].loc[i], &lower);
	}
	b->fullnames.nitems = items_sort_unique(b->fullnames.items,
						b->fullnames.nitems);
	b->words.nitems = items_sort_unique(b->words.items, b->words.nitems);
	return 0;
}

/* ---- the name indexes' dictionaries ---- */

static bool item_same_name(const struct item *a, const struct item *b)
{
	return a->len == b->len && memcmp(a->text, b->text, a->len) == 0;
}

/* Where each name's pairs start, the pairs being sorted. */
static int index_gather(struct name_index *ix)
{
	size_t n = 0;

	ix->start = calloc(ix->nitems + 1, sizeof(*ix->start));
	if (ix->start == NULL)
		return ENOMEM;
	for (size_t i = 0; i < ix->nitems; i++)
		if (i == 0 || !item_same_name(&ix->items[i - 1], &ix->items[i]))
			ix->start[n++] = i;
	ix->start[n] = ix->nitems;
	ix->nnames = n;
	return 0;
}

static const char *name_key(void *arg, size_t i, size_t *len_r)
{
	const struct name_index *ix = arg;
	const struct item *it = &ix->items[ix->start[i]];

	*len_r = it->len;
	return it->text;
}

static size_t name_value_size(void *arg, size_t i)
{
	const struct name_index *ix = arg;

	return (ix->start[i + 1] - ix->start[i]) * LMDBMAP_LOCATOR_SIZE;
}

/* The users' locators, sorted as numbers: the pairs' order. */
static void name_value_write(void *arg, size_t i, unsigned char *out)
{
	const struct name_index *ix = arg;

	for (size_t j = ix->start[i]; j < ix->start[i + 1]; j++) {
		memcpy(out, &ix->items[j].ref, LMDBMAP_LOCATOR_SIZE);
		out += LMDBMAP_LOCATOR_SIZE;
	}
}

static int name_dict_plan(struct builder *b, enum map_db db,
			  struct name_index *ix)
{
	int rc = index_gather(ix);

	if (rc != 0)
		return rc;
	b->source[db] = (struct lmdbdict_source){
		.n = ix->nnames, .arg = ix, .key = name_key,
		.value_size = name_value_size, .value_write = name_value_write };
	return lmdbdict_plan(&b->plan[db], &b->source[db], 0);
}

/* ---- the dictionaries as LMDB puts them ---- */

static int dict_item(struct builder *b, enum map_db db, size_t i, MDB_val *k,
		     MDB_val *v)
{
	(void)i;
	*k = (MDB_val){ .mv_size = strlen(LMDBMAP_DICT),
			.mv_data = (void *)LMDBMAP_DICT };
	*v = (MDB_val){ .mv_size = (size_t)lmdbdict_size(&b->plan[db]) };
	return 0;
}

static void dict_fill(struct builder *b, enum map_db db, size_t i, void *data)
{
	(void)i;
	lmdbdict_write(&b->plan[db], &b->source[db], data);
}

static int meta_item(struct builder *b, enum map_db db, size_t i, MDB_val *k,
		     MDB_val *v)
{
	const char *key = i == 0 ? LMDBMAP_META_FORMAT : LMDBMAP_META_ENTRIES;
	const char *val = i == 0 ? b->meta_format : b->meta_entries;

	(void)db;
	*k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	*v = (MDB_val){ .mv_size = strlen(val), .mv_data = (void *)val };
	return 0;
}

/* ---- writing ---- */

/* The map is full: start again from the last commit with twice the room. */
static int map_grow(struct builder *b)
{
	if (b->mapsize > SIZE_MAX / 2)
		return MDB_MAP_FULL;
	b->mapsize *= 2;
	b->m->grows++;
	return mdb_env_set_mapsize(b->env, b->mapsize);
}

/* A step's records, in one transaction: they are few. */
static int step_put(struct builder *b, const struct step *s)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(b->env, NULL, 0, &txn);

	for (size_t i = 0; i < s->n && rc == 0; i++) {
		MDB_val k, v;

		rc = s->item(b, s->db, i, &k, &v);
		if (rc == 0)
			rc = mdb_put(txn, b->dbi[s->db], &k, &v, s->flags);
		if (rc == 0 && s->fill != NULL)
			s->fill(b, s->db, i, v.mv_data);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

static int step_run(struct builder *b, const struct step *s)
{
	int rc;

	while ((rc = step_put(b, s)) == MDB_MAP_FULL)
		if ((rc = map_grow(b)) != 0)
			break;
	return rc;
}

static int dbs_create_once(struct builder *b)
{
	static const char *const names[DB__COUNT] = {
		[DB_META] = LMDBMAP_DB_META,
		[DB_KEYS] = LMDBMAP_DB_KEYS,
		[DB_FULLNAMES] = LMDBMAP_DB_FULLNAMES,
		[DB_WORDS] = LMDBMAP_DB_WORDS,
	};
	MDB_txn *txn;
	int rc = mdb_txn_begin(b->env, NULL, 0, &txn);

	for (int d = 0; d < DB__COUNT && rc == 0; d++)
		rc = mdb_dbi_open(txn, names[d], MDB_CREATE, &b->dbi[d]);
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

static int dbs_create(struct builder *b)
{
	int rc;

	while ((rc = dbs_create_once(b)) == MDB_MAP_FULL)
		if ((rc = map_grow(b)) != 0)
			break;
	return rc;
}

static int map_write(struct builder *b)
{
	const struct step steps[] = {
		{ DB_KEYS, MDB_RESERVE, 1, dict_item, dict_fill },
		{ DB_FULLNAMES, MDB_RESERVE, 1, dict_item, dict_fill },
		{ DB_WORDS, MDB_RESERVE, 1, dict_item, dict_fill },
		/* Last: a map with it is whole. */
		{ DB_META, 0, 2, meta_item, NULL },
	};
	int rc = dbs_create(b);

	if (rc != 0) {
		build_error(b, "creating the databases", rc);
		return -1;
	}
	snprintf(b->meta_format, sizeof(b->meta_format), "%d", LMDBMAP_FORMAT);
	snprintf(b->meta_entries, sizeof(b->meta_entries), "%zu", b->nkeys);
	for (size_t s = 0; s < sizeof(steps) / sizeof(steps[0]); s++) {
		rc = step_run(b, &steps[s]);
		if (rc != 0) {
			build_error(b, "writing the map", rc);
			return -1;
		}
	}
	return 0;
}

/* The map size to start from: the dictionaries, planned already, and
 * room for LMDB's own pages; too little only costs a restart of one
 * transaction. */
static size_t mapsize_estimate(const struct builder *b)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t size = b->m->initial_mapsize, unit = page > 0 ? (size_t)page : 4096;

	if (size == 0) {
		size = MAKEMAP_MAPSIZE_MIN;
		for (int d = 0; d < DB__COUNT; d++)
			if (b->plan[d].buckets > 0)
				size += (size_t)lmdbdict_size(&b->plan[d]) + unit;
	}
	return (size + unit - 1) / unit * unit;
}

/*
 * mkstemp(3) the new file and mark it live with no signal in between: a
 * signal handled after the file is made but before tmp_live is set
 * would leave it behind (a process preempted as mkstemp returns gets its
 * pending signals first).
 */
static int tmp_open_live(struct makemap *m)
{
	sigset_t all, old;
	int fd, saved;

	sigfillset(&all);
	sigprocmask(SIG_BLOCK, &all, &old);
	fd = mkstemp(m->tmp_path);
	saved = errno;
	if (fd >= 0)
		m->tmp_live = 1;
	sigprocmask(SIG_SETMASK, &old, NULL);
	errno = saved;
	return fd;
}

/* The new file beside the output, as the umask would make any file. */
static int tmp_create(struct builder *b)
{
	struct makemap *m = b->m;
	mode_t mask;
	int n = snprintf(m->tmp_path, sizeof(m->tmp_path), "%s" MAKEMAP_SUFFIX,
			 m->out_path);

	if (n < 0 || (size_t)n >= sizeof(m->tmp_path)) {
		snprintf(b->err, b->errsize, "%s: path too long", m->out_path);
		return -1;
	}
	b->fd = tmp_open_live(m);
	if (b->fd < 0) {
		snprintf(b->err, b->errsize, "%s: cannot create %s: %s",
			 m->out_path, m->tmp_path, strerror(errno));
		return -1;
	}
	/* The program is single-threaded: reading the umask is safe. */
	mask = umask(0);
	umask(mask);
	if (fchmod(b->fd, 0666 & ~mask) < 0) {
		snprintf(b->err, b->errsize, "%s: %s", m->tmp_path,
			 strerror(errno));
		return -1;
	}
	return 0;
}

static int env_open(struct builder *b)
{
	int rc = mdb_env_create(&b->env);

	b->mapsize = mapsize_estimate(b);
	if (rc == 0)
		rc = mdb_env_set_maxdbs(b->env, LMDBMAP_MAXDBS);
	if (rc == 0)
		rc = mdb_env_set_mapsize(b->env, b->mapsize);
	/* No lock file: nothing else opens this file until it is renamed
	 * into place, and then only to read it. Syncing is done once, at
	 * the end. */
	if (rc == 0)
		rc = mdb_env_open(b->env, b->m->tmp_path, MDB_NOSUBDIR |
				  MDB_NOLOCK | MDB_NOSYNC, 0600);
	if (rc != 0) {
		build_error(b, "opening the new map", rc);
		return -1;
	}
	return 0;
}

static int dir_sync(const char *path)
{
	char dir[MAKEMAP_PATH_MAX];
	const char *slash = strrchr(path, '/');
	int fd, rc = 0;

	if (slash == NULL)
		snprintf(dir, sizeof(dir), ".");
	else
		snprintf(dir, sizeof(dir), "%.*s",
			 (int)(slash == path ? 1 : slash - path), path);
	fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || fsync(fd) < 0)
		rc = errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* On disk, then in place, then the directory entry on disk. */
static int map_commit(struct builder *b)
{
	struct makemap *m = b->m;
	int rc = mdb_env_sync(b->env, 1);

	if (rc != 0) {
		build_error(b, "syncing the map", rc);
		return -1;
	}
	mdb_env_close(b->env);
	b->env = NULL;
	rc = fsync(b->fd) < 0 ? errno : 0;
	if (close(b->fd) < 0 && rc == 0)
		rc = errno;
	b->fd = -1;
	if (rc != 0) {
		snprintf(b->err, b->errsize, "%s: %s", m->tmp_path, strerror(rc));
		return -1;
	}
	if (rename(m->tmp_path, m->out_path) < 0) {
		snprintf(b->err, b->errsize, "%s: cannot rename %s over it: %s",
			 m->out_path, m->tmp_path, strerror(errno));
		return -1;
	}
	m->tmp_live = 0;
	rc = dir_sync(m->out_path);
	if (rc != 0) {
		snprintf(b->err, b->errsize,
			 "%s: in place, but syncing its directory failed: %s",
			 m->out_path, strerror(rc));
		return -1;
	}
	return 0;
}

/* The map must not be the table it is made from. */
static int paths_check(struct builder *b)
{
	struct stat st_table, st_out;

	if (stat(b->m->out_path, &st_out) == 0 &&
	    stat(b->m->table_path, &st_table) == 0 &&
	    st_out.st_dev == st_table.st_dev && st_out.st_ino == st_table.st_ino) {
		snprintf(b->err, b->errsize, "%s: is the table itself",
			 b->m->out_path);
		return -1;
	}
	return 0;
}

static void builder_free(struct builder *b)
{
	if (b->env != NULL)
		mdb_env_close(b->env);
	if (b->fd >= 0)
		close(b->fd);
	if (b->m->tmp_live) {
		unlink(b->m->tmp_path);
		b->m->tmp_live = 0;
	}
	for (int d = 0; d < DB__COUNT; d++)
		lmdbdict_plan_free(&b->plan[d]);
	free(b->fullnames.items);
	free(b->fullnames.start);
	free(b->words.items);
	free(b->words.start);
	free(b->lower);
	backend_table_ops.close(&b->table);
}

static int build(struct builder *b)
{
	int rc;

	if (paths_check(b) < 0 ||
	    table_open_path(b->m->table_path, &b->table, b->err, b->errsize) < 0)
		return -1;
	rc = keys_plan(b);
	if (rc == 0)
		rc = names_collect(b);
	if (rc == 0)
		rc = name_dict_plan(b, DB_FULLNAMES, &b->fullnames);
	if (rc == 0)
		rc = name_dict_plan(b, DB_WORDS, &b->words);
	if (rc != 0) {
		snprintf(b->err, b->errsize, "%s: %s", b->m->table_path,
			 rc == EFBIG ? "too large for a map" : strerror(rc));
		return -1;
	}
	if (tmp_create(b) < 0 || env_open(b) < 0 || map_write(b) < 0 ||
	    map_commit(b) < 0)
		return -1;
	return 0;
}

int makemap_build(struct makemap *m, char *err, size_t errsize)
{
	struct builder b = { .m = m, .err = err, .errsize = errsize, .fd = -1 };
	int rc;

	m->tmp_live = 0;
	m->grows = 0;
	m->buckets_made = 0;
	m->full_buckets = 0;
	m->max_probe = 0;
	m->inline_records = 0;
	rc = build(&b);
	if (rc == 0) {
		const struct lmdbdict_plan *keys = &b.plan[DB_KEYS];

		m->entries = b.nkeys;
		m->fullnames = b.fullnames.nitems;
		m->words = b.words.nitems;
		m->mapsize = b.mapsize;
		m->buckets_made = keys->buckets;
		m->full_buckets = keys->full_buckets;
		m->max_probe = keys->max_probe;
		m->inline_records = keys->inline_records;
	}
	builder_free(&b);
	return rc;
}

bool makemap_default_output(const char *table_path, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s.lmdb", table_path);

	return n > 0 && (size_t)n < size;
}
