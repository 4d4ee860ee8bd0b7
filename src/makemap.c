/*
 * makemap — compile a porterd table file into an LMDB map for the `lmdb`
 * backend (the layout is in lmdbmap.h).
 *
 * It must never leave a half-written map where a reader could open it:
 * the map is built in a new file beside the output and renamed over it
 * only once it is complete and on disk. It must never accept a table the
 * `table` backend refuses: the table is read by that backend's parser.
 *
 * Large tables: the records and the slot table that finds them are two
 * values, each one run of pages, written straight into the room LMDB
 * reserves for them (MDB_RESERVE), with no copy made first. The name
 * indexes are written in their key order with MDB_APPENDDUP in large
 * transactions, so LMDB fills their pages left to right, never searching
 * or splitting; the sorting is done in memory first.
 */
#include "porterd/makemap.h"

#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "porterd/command.h"
#include "porterd/lmdbmap.h"
#include "porterd/strutil.h"
#include "porterd/table.h"

#define MAKEMAP_BATCH 1000000		/* puts in one write transaction */
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
	uint32_t ref;		/* the user's table entry */
};

struct builder {
	struct makemap *m;
	char *err;
	size_t errsize;
	struct backend *table;
	size_t nkeys;
	uint32_t *loc;		/* each table entry's record locator */
	size_t records_size;
	size_t buckets;		/* of the slot table */
	size_t slots_size;
	unsigned char *taken;	/* slots taken in each bucket */
	struct item *fullnames, *words;
	size_t nfullnames, nwords;
	char *lower;		/* lowercase copies of all full names */
	uint32_t pair_value;	/* the locator of the pair being written */
	char meta_format[16], meta_entries[32];
	int fd;			/* the file being built, while tmp_live */
	MDB_env *env;
	MDB_dbi dbi[DB__COUNT];
	size_t mapsize;
};

/* Fills the key and value of record i of a step; 0 or an errno value. */
typedef int item_fn(struct builder *b, size_t i, MDB_val *k, MDB_val *v);
/* Writes record i's value where MDB_RESERVE put it. */
typedef void fill_fn(struct builder *b, size_t i, void *data);

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
 * LMDB's default order (memcmp over the shorter, then the shorter first),
 * then the entry's place, which is its locator's order: the order
 * MDB_APPENDDUP needs. The zero padding of a short prefix sorts it first,
 * as LMDB does, because no text holds a NUL.
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

static size_t record_size(size_t keylen, size_t valuelen)
{
	size_t n = LMDBMAP_RECORD_HEAD + keylen + valuelen;

	return (n + LMDBMAP_RECORD_ALIGN - 1) / LMDBMAP_RECORD_ALIGN *
	       LMDBMAP_RECORD_ALIGN;
}

/* Where each entry's record goes, in table order, and their total. */
static int records_plan(struct builder *b)
{
	uint64_t off = 0;

	b->nkeys = table_entry_count(b->table);
	if (b->nkeys >= UINT32_MAX)
		return EFBIG;
	b->loc = calloc(b->nkeys > 0 ? b->nkeys : 1, sizeof(*b->loc));
	if (b->loc == NULL)
		return ENOMEM;
	for (size_t i = 0; i < b->nkeys; i++) {
		struct dir_result r;
		size_t vlen;

		table_entry_get(b->table, i, &r);
		vlen = value_size(&r);
		if (strlen(r.key) > ADDRESS_PATH_MAX)
			return EINVAL;	/* the table never holds one */
		if (vlen > UINT32_MAX)
			return EFBIG;
		b->loc[i] = (uint32_t)(off / LMDBMAP_RECORD_ALIGN + 1);
		off += record_size(strlen(r.key), vlen);
		if (off > LMDBMAP_RECORDS_MAX)
			return EFBIG;
	}
	b->records_size = (size_t)off;
	return 0;
}

/* Every record, at out (the reserved "records" value). */
static void records_fill(struct builder *b, unsigned char *out)
{
	size_t off = 0;

	for (size_t i = 0; i < b->nkeys; i++) {
		struct dir_result r;
		unsigned char *p = out + off;
		uint32_t vlen;
		uint16_t klen;
		size_t size;

		table_entry_get(b->table, i, &r);
		klen = (uint16_t)strlen(r.key);
		for (size_t c = 0; c < klen; c++)
			p[LMDBMAP_RECORD_HEAD + c] = (unsigned char)str_lower_char(r.key[c]);
		vlen = (uint32_t)value_write(&r, p + LMDBMAP_RECORD_HEAD + klen);
		memcpy(p, &vlen, sizeof(vlen));
		memcpy(p + sizeof(vlen), &klen, sizeof(klen));
		size = record_size(klen, vlen);
		memset(p + LMDBMAP_RECORD_HEAD + klen + vlen, 0,
		       size - LMDBMAP_RECORD_HEAD - klen - vlen);
		if (off / LMDBMAP_RECORD_ALIGN + 1 != b->loc[i]) {
			fprintf(stderr, "makemap: record %zu not where planned\n", i);
			abort();
		}
		off += size;
	}
}

/* The buckets for n keys: LMDBMAP_BUCKET_LOAD a bucket, or the number a
 * test asks for, but never too few to hold them all. */
static size_t buckets_for(const struct makemap *m, size_t n)
{
	size_t least = (n + LMDBMAP_BUCKET_SLOTS - 1) / LMDBMAP_BUCKET_SLOTS;
	size_t want = m->buckets > 0 ? m->buckets
				     : (n + LMDBMAP_BUCKET_LOAD - 1) / LMDBMAP_BUCKET_LOAD;

	if (want < least)
		want = least;
	if (want > UINT32_MAX)
		want = UINT32_MAX;	/* lmdbmap_bucket's bound */
	return want > 0 ? want : 1;
}

/* The slot table's size, and room to count the slots taken. */
static int slots_plan(struct builder *b)
{
	b->buckets = buckets_for(b->m, b->nkeys);
	b->slots_size = sizeof(struct lmdbmap_slots) +
			b->buckets * LMDBMAP_BUCKET_SIZE;
	b->taken = calloc(b->buckets, 1);
	return b->taken == NULL ? ENOMEM : 0;
}

/* The hash table of the keys at out (the reserved "slots" value), in
 * table order, each in the first free slot from its home bucket on. */
static void slots_fill(struct builder *b, unsigned char *out)
{
	struct lmdbmap_slots head = { .buckets = b->buckets,
				      .entries = b->nkeys };
	unsigned char *bucket0 = out + sizeof(head);
	char key[ADDRESS_PATH_MAX + 1];

	memset(out, 0, b->slots_size);
	memset(b->taken, 0, b->buckets);
	for (size_t i = 0; i < b->nkeys; i++) {
		struct dir_result r;
		size_t len, d = 0;
		uint64_t h, at;
		uint32_t tag;
		unsigned char *slot;

		table_entry_get(b->table, i, &r);
		len = strlen(r.key);
		/* records_plan saw that every key fits. */
		str_lower_copy(key, sizeof(key), r.key, len);
		h = lmdbmap_hash(key, len);
		at = lmdbmap_bucket(h, b->buckets);
		/* There are slots for every key: a free one is found. */
		while (b->taken[at] == LMDBMAP_BUCKET_SLOTS) {
			at = at + 1 == b->buckets ? 0 : at + 1;
			d++;
		}
		slot = bucket0 + at * LMDBMAP_BUCKET_SIZE +
		       b->taken[at]++ * LMDBMAP_SLOT_SIZE;
		tag = lmdbmap_tag(h);
		memcpy(slot, &tag, sizeof(tag));
		memcpy(slot + sizeof(tag), &b->loc[i], sizeof(b->loc[i]));
		if (d > head.max_probe)
			head.max_probe = d;
	}
	memcpy(out, &head, sizeof(head));
	b->m->buckets_made = b->buckets;
	b->m->max_probe = head.max_probe;
	b->m->full_buckets = 0;
	for (size_t i = 0; i < b->buckets; i++)
		b->m->full_buckets += b->taken[i] == LMDBMAP_BUCKET_SLOTS;
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

/* The pairs of one user's name, lowercased at *lower. */
static void name_add(struct builder *b, const char *name, size_t entry,
		     char **lower)
{
	size_t len = strlen(name);
	char *s = *lower;

	for (size_t i = 0; i <= len; i++)
		s[i] = str_lower_char(name[i]);
	*lower += len + 1;
	b->fullnames[b->nfullnames++] = item_make(s, index_len(len), entry);
	while (*s != '\0') {
		size_t n = strcspn(s, " ");

		if (n > 0)
			b->words[b->nwords++] = item_make(s, index_len(n), entry);
		s += n + (s[n] == ' ');
	}
}

static int names_collect(struct builder *b)
{
	size_t octets, nwords;
	char *lower;

	names_measure(b, &octets, &nwords);
	b->lower = malloc(octets > 0 ? octets : 1);
	b->fullnames = calloc(b->nkeys > 0 ? b->nkeys : 1, sizeof(*b->fullnames));
	b->words = calloc(nwords > 0 ? nwords : 1, sizeof(*b->words));
	if (b->lower == NULL || b->fullnames == NULL || b->words == NULL)
		return ENOMEM;
	lower = b->lower;
	for (size_t i = 0; i < b->nkeys; i++) {
		const char *name = entry_fullname(b->table, i);

		if (name != NULL)
			name_add(b, name, i, &lower);
	}
	b->nfullnames = items_sort_unique(b->fullnames, b->nfullnames);
	b->nwords = items_sort_unique(b->words, b->nwords);
	return 0;
}

/* ---- the records as LMDB puts them ---- */

/* "records" then "slots", their order in the database. */
static int keys_item(struct builder *b, size_t i, MDB_val *k, MDB_val *v)
{
	const char *key = i == 0 ? LMDBMAP_KEYS_RECORDS : LMDBMAP_KEYS_SLOTS;

	*k = (MDB_val){ .mv_size = strlen(key), .mv_data = (void *)key };
	*v = (MDB_val){ .mv_size = i == 0 ? b->records_size : b->slots_size };
	return 0;
}

static void keys_fill(struct builder *b, size_t i, void *data)
{
	if (i == 0)
		records_fill(b, data);
	else
		slots_fill(b, data);
}

static int pair_item(struct builder *b, const struct item *p, MDB_val *k,
		     MDB_val *v)
{
	b->pair_value = b->loc[p->ref];
	*k = (MDB_val){ .mv_size = p->len, .mv_data = (void *)p->text };
	*v = (MDB_val){ .mv_size = sizeof(b->pair_value),
			.mv_data = &b->pair_value };
	return 0;
}

static int fullname_item(struct builder *b, size_t i, MDB_val *k, MDB_val *v)
{
	return pair_item(b, &b->fullnames[i], k, v);
}

static int word_item(struct builder *b, size_t i, MDB_val *k, MDB_val *v)
{
	return pair_item(b, &b->words[i], k, v);
}

static int meta_item(struct builder *b, size_t i, MDB_val *k, MDB_val *v)
{
	const char *key = i == 0 ? LMDBMAP_META_FORMAT : LMDBMAP_META_ENTRIES;
	const char *val = i == 0 ? b->meta_format : b->meta_entries;

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

static int put_batch(struct builder *b, const struct step *s, size_t from,
		     size_t to)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(b->env, NULL, 0, &txn);

	for (size_t i = from; i < to && rc == 0; i++) {
		MDB_val k, v;

		rc = s->item(b, i, &k, &v);
		if (rc == 0)
			rc = mdb_put(txn, b->dbi[s->db], &k, &v, s->flags);
		if (rc == 0 && s->fill != NULL)
			s->fill(b, i, v.mv_data);
	}
	if (rc != 0) {
		mdb_txn_abort(txn);
		return rc;
	}
	return mdb_txn_commit(txn);
}

static int step_run(struct builder *b, const struct step *s)
{
	size_t from = 0;

	while (from < s->n) {
		size_t to = s->n - from > MAKEMAP_BATCH ? from + MAKEMAP_BATCH
							: s->n;
		int rc = put_batch(b, s, from, to);

		if (rc == MDB_MAP_FULL)
			rc = map_grow(b);
		else if (rc == 0)
			from = to;
		if (rc != 0)
			return rc;
	}
	return 0;
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
		rc = mdb_dbi_open(txn, names[d], MDB_CREATE |
				  (d == DB_FULLNAMES || d == DB_WORDS
				   ? LMDBMAP_NAME_FLAGS : 0), &b->dbi[d]);
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
		{ DB_KEYS, MDB_RESERVE, 2, keys_item, keys_fill },
		{ DB_FULLNAMES, MDB_APPENDDUP, b->nfullnames, fullname_item, NULL },
		{ DB_WORDS, MDB_APPENDDUP, b->nwords, word_item, NULL },
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

/* The map size to start from: room for the usual expansion of a table
 * (a map is some four times the text); too little only costs a restart
 * of one transaction. */
static size_t mapsize_estimate(const struct makemap *m)
{
	long page = sysconf(_SC_PAGESIZE);
	size_t size = m->initial_mapsize, unit = page > 0 ? (size_t)page : 4096;
	struct stat st;

	if (size == 0) {
		size = MAKEMAP_MAPSIZE_MIN;
		if (stat(m->table_path, &st) == 0 &&
		    (uint64_t)st.st_size < SIZE_MAX / 16)
			size += (size_t)st.st_size * 6;
	}
	return (size + unit - 1) / unit * unit;
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
	b->fd = mkstemp(m->tmp_path);
	if (b->fd < 0) {
		snprintf(b->err, b->errsize, "%s: cannot create %s: %s",
			 m->out_path, m->tmp_path, strerror(errno));
		return -1;
	}
	m->tmp_live = 1;
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

	b->mapsize = mapsize_estimate(b->m);
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
	free(b->loc);
	free(b->taken);
	free(b->fullnames);
	free(b->words);
	free(b->lower);
	backend_table_ops.close(&b->table);
}

static int build(struct builder *b)
{
	int rc;

	if (paths_check(b) < 0 ||
	    table_open_path(b->m->table_path, &b->table, b->err, b->errsize) < 0)
		return -1;
	rc = records_plan(b);
	if (rc == 0)
		rc = slots_plan(b);
	if (rc == 0)
		rc = names_collect(b);
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
	rc = build(&b);
	if (rc == 0) {
		m->entries = b.nkeys;
		m->fullnames = b.nfullnames;
		m->words = b.nwords;
		m->mapsize = b.mapsize;
	}
	builder_free(&b);
	return rc;
}

bool makemap_default_output(const char *table_path, char *buf, size_t size)
{
	int n = snprintf(buf, size, "%s.lmdb", table_path);

	return n > 0 && (size_t)n < size;
}
