/*
 * test_lmdb — porterd-makemap's build and the `lmdb` directory backend:
 * a map made from a table answers every query exactly as the table
 * backend does for that table (keys of every kind, free-text names, keys
 * whose hashes collide, buckets packed full, records too long for their
 * bucket), a map's dictionaries are laid out as lmdbmap.h says, a map
 * rebuilt while open is seen without a restart, a bad replacement keeps
 * the old map, and every broken file is refused with a precise message
 * (a map of an earlier format with the advice to make it again) or, at
 * lookup, answered as a temporary failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <lmdb.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "porterd/backend.h"
#include "porterd/lmdbmap.h"
#include "porterd/log.h"
#include "porterd/makemap.h"
#include "porterd/table.h"
#include "backendtest.h"

#define ERR_MAX BACKENDTEST_ERR_MAX
#define ANSWER_MAX BACKENDTEST_ANSWER_MAX
#define PATH_MAX_TEST 512
#define WORDS_MAX 20

static const struct backend_ops *const lmdb = &backend_lmdb_ops;
static const struct backend_ops *const table = &backend_table_ops;

/* ---- the log ---- */

/* Count the lines of the log holding what. */
static int log_count(FILE *log, const char *what)
{
	char line[2048];
	int n = 0;

	fflush(log);
	rewind(log);
	while (fgets(line, sizeof(line), log) != NULL)
		n += strstr(line, what) != NULL;
	return n;
}

/* ---- files ---- */

/* Each test works in a directory of its own, removed at the end. */
static char workdir[64];

static void workdir_setup(void)
{
	log_init(LOG_LEVEL_ERR, stderr);
	snprintf(workdir, sizeof(workdir), "/tmp/porterd-lmdb-XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(workdir));
}

/* Names in the work directory, sorted, one a line: what a build left. */
static void workdir_list(char *out, size_t size)
{
	struct dirent **names;
	int n = scandir(workdir, &names, NULL, alphasort);
	size_t len = 0;

	ck_assert_int_ge(n, 0);
	out[0] = '\0';
	for (int i = 0; i < n; i++) {
		if (names[i]->d_name[0] != '.') {
			int w = snprintf(out + len, size - len, "%s\n",
					 names[i]->d_name);

			if (w > 0 && (size_t)w < size - len)
				len += (size_t)w;
		}
		free(names[i]);
	}
	free(names);
}

static void workdir_teardown(void)
{
	struct dirent **names;
	int n = scandir(workdir, &names, NULL, alphasort);
	char path[PATH_MAX_TEST];

	for (int i = 0; i < n; i++) {
		if (strcmp(names[i]->d_name, ".") != 0 &&
		    strcmp(names[i]->d_name, "..") != 0) {
			snprintf(path, sizeof(path), "%s/%s", workdir,
				 names[i]->d_name);
			ck_assert_int_eq(unlink(path), 0);
		}
		free(names[i]);
	}
	free(names);
	ck_assert_int_eq(rmdir(workdir), 0);
}

static const char *wpath(char *buf, const char *name)
{
	snprintf(buf, PATH_MAX_TEST, "%s/%s", workdir, name);
	return buf;
}

static void file_write(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);

	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	ck_assert_int_eq(close(fd), 0);
}

/* Write table text to NAME and build NAME.lmdb from it through the
 * makemap code; the map's path goes to map_r. */
static void map_make(const char *name, const char *text, char *map_r)
{
	char table_path[PATH_MAX_TEST], err[ERR_MAX] = "";
	struct makemap m = { .table_path = table_path, .out_path = map_r };

	wpath(table_path, name);
	ck_assert_int_lt(snprintf(map_r, PATH_MAX_TEST, "%s.lmdb", table_path),
			 PATH_MAX_TEST);
	file_write(table_path, text, strlen(text));
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "build: %s", err);
	ck_assert_int_eq(m.tmp_live, 0);
}

/* ---- the same answers as the table ---- */

static const char fixture_text[] =
	"# porterd example directory\n"
	"jones                  user     Fred Jones\n"
	"jones@other.test       user     Other Jones\n"
	"smith@example.test     user     Fred Smith\n"
	"qsmith                 user     Quincy Smith\n"
	"qasmith                user     Quincy  Adams\tSmith      # runs collapse\n"
	"example-people         list     jones, smith, qsmith, postel@usc-isif.example\n"
	"all-staff              list     example-people, hostmaster\n"
	"bob                    forward  bob@elsewhere.example\n"
	"alice                  moved    alice@newco.example\n"
	"Hostmaster             user     # no full name\n"
	"Long.Name              User     Wilhelmina\n"
	"\t  Gertrude     Fitzgerald     \n"
	"staff                  list     jones,qsmith\n"
	"                                Alice@Example.Test , bob\n"
	"carol                  forward  <Carol@Elsewhere.Example>\n"
	"dave                   MOVED    Dave@Newco.Example # trailing comment\n"
	"agourz                 user     Anna Gourzenkyinplatz\n"
	"bgourz                 user     Boris Gourzenkyinplatz\n"
	"hash                   user     Fred#1 Hash\n"
	"same1                  user     Same Name\n"
	"same2                  user     same   name\n"
	"cont                   user     First\n"
	"    Second\n"
	"late                   user\n"
	"                       Late Name\n"
	"postmaster\tlist\troot\t# tab separated\n"
	"sixteen                user     w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12"
	" w13 w14 w15 w16\n"
	"8bit                   user     J\xc3\xbcrgen M\xc3\xbcller\n"
	"hh                     user     Humbert Humbert\n"
	"quincy                 user     Someone Else\n"
	"solo                   user     Cher\n"
	"cherfan                user     Cher Fan\n"
	"zz                     user     Zed\n"
	"a                      user     Zed Zed Zed\n";

/* Queries the generated ones miss: odd spacing, case, no such thing. */
static const char *const extra_names[] = {
	" Quincy \t SMITH ", "smit", "fred quincy", "jones smith",
	"w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w1",
	"w16 w15 w14 w13 w12 w11 w10 w9 w8 w7 w6 w5 w4 w3 w2 w1",
	"nobody", "", " \t ", "root", "bob@elsewhere.example", "CHER",
	"cher fan", "fan cher", "zed", "zed zed", "HostMaster", "jones@",
	"smith adams", "quincy adams smith",
};

/* The rows asked of both backends, and those they answer differently. */
struct rows {
	struct report report;
	int asked;
};

/* Ask both backends the same; a row differs when their answers do. */
static void compare(struct backend *tb, struct backend *lb, const char *address,
		    const char *local, bool by_name, struct rows *r)
{
	struct answer ta, la;

	r->asked++;
	ask(table, tb, address, local, by_name, &ta);
	ask(lmdb, lb, address, local, by_name, &la);
	if (strcmp(ta.text, la.text) != 0)
		report_add(&r->report, "(%s, \"%s\", %s): table \"%s\", lmdb \"%s\"\n",
			   address ? address : "NULL", local,
			   by_name ? "by_name" : "key only", ta.text, la.text);
}

static void compare_upper(struct backend *tb, struct backend *lb,
			  const char *s, struct rows *r)
{
	char up[ANSWER_MAX];
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < sizeof(up); i++)
		up[i] = (char)(s[i] >= 'a' && s[i] <= 'z' ? s[i] - 32 : s[i]);
	up[i] = '\0';
	compare(tb, lb, NULL, up, true, r);
}

/* Each key every way it can be asked. */
static void compare_key(struct backend *tb, struct backend *lb,
			const char *key, struct rows *r)
{
	char addr[ANSWER_MAX];

	compare(tb, lb, NULL, key, false, r);
	compare(tb, lb, NULL, key, true, r);
	compare_upper(tb, lb, key, r);
	if (strchr(key, '@') == NULL) {
		snprintf(addr, sizeof(addr), "%s@example.test", key);
		compare(tb, lb, addr, key, false, r);
	}
}

/* A full name, each word of it, and each two words, the later first. */
static void compare_name(struct backend *tb, struct backend *lb,
			 const char *name, struct rows *r)
{
	const char *word[WORDS_MAX];
	int len[WORDS_MAX];
	char q[ANSWER_MAX];
	size_t n = 0;

	compare(tb, lb, NULL, name, true, r);
	compare_upper(tb, lb, name, r);
	for (const char *s = name; *s != '\0' && n < WORDS_MAX; n++) {
		word[n] = s;
		len[n] = (int)strcspn(s, " ");
		s += len[n] + (s[len[n]] == ' ');
	}
	for (size_t i = 0; i < n; i++) {
		snprintf(q, sizeof(q), "%.*s", len[i], word[i]);
		compare(tb, lb, NULL, q, true, r);
		compare(tb, lb, NULL, q, false, r);
		if (i + 1 < n) {
			snprintf(q, sizeof(q), "%.*s %.*s", len[i + 1],
				 word[i + 1], len[i], word[i]);
			compare(tb, lb, NULL, q, true, r);
		}
	}
}

/* Every key and name of the table at path, asked of it and of its map. */
static void compare_all(const char *table_path, const char *map_path)
{
	struct backend *tb = open_ok(table, table_path);
	struct backend *lb = open_ok(lmdb, map_path);
	struct rows r = { .asked = 0 };

	for (size_t i = 0; i < table_entry_count(tb); i++) {
		struct dir_result e;

		table_entry_get(tb, i, &e);
		compare_key(tb, lb, e.key, &r);
		if (e.status == DIR_USER && e.fullname != NULL)
			compare_name(tb, lb, e.fullname, &r);
		for (size_t m = 0; m < e.nmembers; m++)
			compare(tb, lb, NULL, e.members[m], true, &r);
	}
	for (size_t i = 0; i < sizeof(extra_names) / sizeof(extra_names[0]); i++)
		compare(tb, lb, NULL, extra_names[i], true, &r);
	ck_assert_uint_eq(lmdb->count(lb), table->count(tb));
	report_check(&r.report);
	ck_assert_int_gt(r.asked, 50);
	table->close(&tb);
	lmdb->close(&lb);
}

/* Some answers stated, so that both backends cannot be wrong alike. */
static const struct {
	const char *local, *want;
} stated_rows[] = {
	{ "staff", "list staff members=jones,qsmith,alice@example.test,bob" },
	{ "carol", "forward carol target=carol@elsewhere.example" },
	{ "dave", "moved dave target=dave@newco.example" },
	{ "hostmaster", "user hostmaster name=(none)" },
	{ "quincy smith", "user qsmith name=Quincy Smith" },
	{ "quincy", "user quincy name=Someone Else" },	/* the key first */
	{ "smith", "ambiguous" },
	{ "adams", "user qasmith name=Quincy Adams Smith" },
	{ "cher", "user solo name=Cher" },	/* the whole name first */
	{ "fan", "user cherfan name=Cher Fan" },
	{ "zed zed zed", "user a name=Zed Zed Zed" },
	{ "zed zed", "ambiguous" },	/* "Zed" has both words too */
	{ "same name", "ambiguous" },
	{ "fred jones smith", "notfound" },
};

START_TEST(test_same_answers_as_table)
{
	char map[PATH_MAX_TEST], tpath[PATH_MAX_TEST];
	struct backend *be;
	struct answer a;

	map_make("fixture.table", fixture_text, map);
	compare_all(wpath(tpath, "fixture.table"), map);
	be = open_ok(lmdb, map);
	for (size_t i = 0; i < sizeof(stated_rows) / sizeof(stated_rows[0]); i++)
		ck_assert_str_eq(ask(lmdb, be, NULL, stated_rows[i].local, true, &a),
				 stated_rows[i].want);
	lmdb->close(&be);
}
END_TEST

static void repeat(char *out, size_t *len, char c, size_t n)
{
	memset(out + *len, c, n);
	*len += n;
}

static void append(char *out, size_t *len, const char *s)
{
	memcpy(out + *len, s, strlen(s));
	*len += strlen(s);
}

/* Names and words longer than an index key may be: cut keys that two
 * names share must not make one answer for the other. */
START_TEST(test_long_names)
{
	static char text[8192];
	char map[PATH_MAX_TEST], tpath[PATH_MAX_TEST];
	size_t len = 0;

	append(text, &len, "long1 user ");
	repeat(text, &len, 'A', 300);
	append(text, &len, " ");
	repeat(text, &len, 'B', 300);
	append(text, &len, "\nlong2 user ");
	repeat(text, &len, 'A', 300);
	append(text, &len, " ");
	repeat(text, &len, 'B', 299);
	append(text, &len, "C\nlong3 user ");
	repeat(text, &len, 'x', 600);
	append(text, &len, " Tail\nlong4 user ");
	repeat(text, &len, 'x', 550);
	append(text, &len, " Tail\nlong5 user Short Tail\n");
	text[len] = '\0';
	map_make("long.table", text, map);
	compare_all(wpath(tpath, "long.table"), map);
}
END_TEST

/* A table of every kind, with names from a small pool so that words and
 * whole names are shared, large enough for many pages. */
static char *generated_table(size_t n)
{
	static const char *const given[] = { "Fred", "Anna", "Boris", "Quincy",
					     "Jon", "Mary", "Li", "Zoe" };
	static const char *const family[] = { "Smith", "Jones", "Gourz",
					      "Adams", "Li", "Nakamura" };
	size_t cap = n * 96 + 1, len = 0;
	char *text = malloc(cap);

	ck_assert_ptr_nonnull(text);
	for (size_t i = 0; i < n; i++) {
		int w;

		switch (i % 10) {
		case 7:
			w = snprintf(text + len, cap - len,
				     "list%zu list u%zu, u%zu, far%zu@elsewhere.example\n",
				     i, i - 1, i / 2, i);
			break;
		case 8:
			w = snprintf(text + len, cap - len,
				     "fwd%zu forward to%zu@elsewhere.example\n", i, i);
			break;
		case 9:
			w = snprintf(text + len, cap - len,
				     "mv%zu moved to%zu@newco.example\n", i, i);
			break;
		default:
			w = snprintf(text + len, cap - len, "u%zu user %s %s%s\n",
				     i, given[i % 8], family[(i / 8) % 6],
				     i % 3 == 0 ? "" : i % 3 == 1 ? " Jr" : " III");
			break;
		}
		ck_assert(w > 0 && (size_t)w < cap - len);
		len += (size_t)w;
	}
	return text;
}

/* Started far too small, the map grows; what it holds is the same. */
START_TEST(test_generated_table_and_growth)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX] = "";
	char *text = generated_table(3000);
	struct makemap m = { .table_path = tpath, .out_path = map,
			     .initial_mapsize = 64 * 1024 };

	wpath(tpath, "gen.table");
	wpath(map, "gen.lmdb");
	file_write(tpath, text, strlen(text));
	free(text);
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_gt(m.grows, 0);
	ck_assert_uint_eq(m.entries, 3000);
	compare_all(tpath, map);
}
END_TEST

/* ---- a map replaced while open ---- */

static double mono_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000 };

	nanosleep(&ts, NULL);
}

/* Ask every 100 ms, at most limit_ms, until the answer is want; every
 * answer until then must be old. Returns the time it took. */
static long wait_for_answer(struct backend *be, const char *local,
			    const char *old, const char *want, long limit_ms)
{
	struct answer a;
	long waited = 0;

	for (;;) {
		ask(lmdb, be, NULL, local, true, &a);
		if (strcmp(a.text, want) == 0)
			return waited;
		ck_assert_msg(strcmp(a.text, old) == 0,
			      "after %ld ms: \"%s\", neither old nor new", waited,
			      a.text);
		ck_assert_msg(waited < limit_ms, "still \"%s\" after %ld ms",
			      a.text, waited);
		sleep_ms(100);
		waited += 100;
	}
}

/* Keep answering for ms milliseconds; every answer must be want. */
static void answers_for(struct backend *be, const char *local,
			const char *want, long ms)
{
	struct answer a;

	for (long waited = 0; waited <= ms; waited += 100) {
		ck_assert_str_eq(ask(lmdb, be, NULL, local, true, &a), want);
		sleep_ms(100);
	}
}

#define OLD_JONES "user jones name=Fred Jones"
#define NEW_JONES "moved jones target=jones@newco.example"

START_TEST(test_rebuilt_map_seen)
{
	char map[PATH_MAX_TEST], list[1024];
	struct backend *be;
	struct answer a;
	long took;
	double opened;

	map_make("t", "jones user Fred Jones\n", map);
	opened = mono_s();
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, "jones", false, &a), OLD_JONES);
	ck_assert_uint_eq(lmdb->count(be), 1);
	workdir_list(list, sizeof(list));
	ck_assert_str_eq(list, "t\nt.lmdb\n");	/* no lock file beside it */
	map_make("t", "jones moved jones@newco.example\nnew user New One\n", map);
	/* The path is looked at once a second, not at every lookup: within
	 * the second after the open, the old map still answers. */
	ask(lmdb, be, NULL, "jones", false, &a);
	if (mono_s() - opened < 0.8)
		ck_assert_str_eq(a.text, OLD_JONES);
	took = wait_for_answer(be, "jones", OLD_JONES, NEW_JONES, 3000);
	ck_assert_int_le(took, 1500);
	ck_assert_str_eq(ask(lmdb, be, NULL, "new one", true, &a),
			 "user new name=New One");
	ck_assert_uint_eq(lmdb->count(be), 2);
	lmdb->close(&be);
}
END_TEST

START_TEST(test_bad_replacement_keeps_old)
{
	char map[PATH_MAX_TEST], junk[PATH_MAX_TEST];
	FILE *log = tmpfile();
	struct backend *be;

	ck_assert_ptr_nonnull(log);
	log_init(LOG_LEVEL_INFO, log);
	map_make("t", "jones user Fred Jones\n", map);
	be = open_ok(lmdb, map);
	file_write(wpath(junk, "junk"), "not a map at all, but long enough to "
		   "look like one for a moment", 63);
	ck_assert_int_eq(rename(junk, map), 0);
	answers_for(be, "jones", OLD_JONES, 2500);
	ck_assert_int_eq(log_count(log, "event=lmdb_reopen_failed"), 1);
	ck_assert_int_eq(log_count(log, ": not an LMDB map\" kept=old"), 1);
	/* Gone altogether: still the old map, one more line. */
	ck_assert_int_eq(unlink(map), 0);
	answers_for(be, "jones", OLD_JONES, 1500);
	ck_assert_int_eq(log_count(log, "event=lmdb_reopen_failed"), 2);
	ck_assert_int_eq(log_count(log, "No such file or directory"), 1);
	/* A good map again is seen. */
	map_make("t", "jones moved jones@newco.example\n", map);
	wait_for_answer(be, "jones", OLD_JONES, NEW_JONES, 3000);
	ck_assert_int_eq(log_count(log, "event=lmdb_reopen path="), 1);
	lmdb->close(&be);
	log_init(LOG_LEVEL_ERR, stderr);
	fclose(log);
}
END_TEST

/* ---- broken files ---- */

/* Change one record of a map in place, as no porterd tool ever does:
 * val NULL deletes it. */
static void raw_put(const char *path, const char *db, unsigned flags,
		    const char *key, const void *val, size_t vlen)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key };
	MDB_val v = { .mv_size = vlen, .mv_data = (void *)val };

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK, 0644), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, 0, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, db, MDB_CREATE | flags, &dbi), 0);
	if (val != NULL)
		ck_assert_int_eq(mdb_put(txn, dbi, &k, &v, 0), 0);
	else
		ck_assert_int_eq(mdb_del(txn, dbi, &k, NULL), 0);
	ck_assert_int_eq(mdb_txn_commit(txn), 0);
	mdb_env_close(env);
}

/* A copy of the value of key in db (free it), its size in *len_r. */
static unsigned char *raw_value(const char *path, const char *db,
				const char *key, size_t *len_r)
{
	MDB_env *env;
	MDB_txn *txn;
	MDB_dbi dbi;
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key }, v;
	unsigned char *copy;

	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, path, MDB_NOSUBDIR | MDB_NOLOCK |
				      MDB_RDONLY, 0), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
	ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
	copy = malloc(v.mv_size + 1);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, v.mv_data, v.mv_size);
	*len_r = v.mv_size;
	mdb_txn_abort(txn);
	mdb_env_close(env);
	return copy;
}

/* ---- a dictionary, read as lmdbmap.h says ---- */

#define DICT_HEAD sizeof(struct lmdbmap_dict)

/* A copy of the dictionary of db (free it), its size in *len_r. */
static unsigned char *dict_value(const char *map, const char *db, size_t *len_r)
{
	return raw_value(map, db, LMDBMAP_DICT, len_r);
}

static struct lmdbmap_dict dict_head_of(const unsigned char *dict)
{
	struct lmdbmap_dict head;

	memcpy(&head, dict, sizeof(head));
	return head;
}

/* The slot of key, found as lmdbmap.h says; NULL when there is none. */
static const unsigned char *dict_slot(const unsigned char *dict, const char *key)
{
	struct lmdbmap_dict head = dict_head_of(dict);
	uint64_t h = lmdbmap_hash(key, strlen(key)), at;

	at = lmdbmap_bucket(h, head.buckets);
	for (uint64_t d = 0; d <= head.max_probe; d++) {
		for (int i = 0; i < LMDBMAP_BUCKET_SLOTS; i++) {
			const unsigned char *slot = dict + DICT_HEAD +
						    at * LMDBMAP_BUCKET_SIZE +
						    (size_t)i * LMDBMAP_SLOT_SIZE;
			uint32_t tag, loc;

			memcpy(&tag, slot, sizeof(tag));
			memcpy(&loc, slot + sizeof(tag), sizeof(loc));
			if (loc == 0)
				return NULL;
			if (tag == lmdbmap_tag(h))
				return slot;
		}
		at = (at + 1) % head.buckets;
	}
	return NULL;
}

static uint32_t slot_locator(const unsigned char *slot)
{
	uint32_t loc;

	memcpy(&loc, slot + 4, sizeof(loc));
	return loc;
}

/* Octets of the record at rec: head, key and value, unpadded. */
static size_t record_len(const unsigned char *rec)
{
	uint32_t vlen;
	uint16_t klen;

	memcpy(&vlen, rec, sizeof(vlen));
	memcpy(&klen, rec + sizeof(vlen), sizeof(klen));
	return LMDBMAP_RECORD_HEAD + klen + vlen;
}

/* Where the record a locator names starts in the dictionary. */
static size_t record_offset(uint32_t loc)
{
	ck_assert_uint_gt(loc, 0);
	return DICT_HEAD + ((size_t)loc - 1) * LMDBMAP_RECORD_ALIGN;
}

/* The locator of key's record in db's dictionary. */
static uint32_t record_locator(const char *map, const char *db, const char *key)
{
	size_t len;
	unsigned char *dict = dict_value(map, db, &len);
	const unsigned char *slot = dict_slot(dict, key);
	uint32_t loc;

	ck_assert_msg(slot != NULL, "no slot of '%s'", key);
	loc = slot_locator(slot);
	free(dict);
	return loc;
}

/* Overwrite n octets of key's record in db's dictionary, at octet `at`
 * of it (the head is first, then the key, then the value). */
static void record_patch(const char *map, const char *db, const char *key,
			 size_t at, const void *bytes, size_t n)
{
	size_t len;
	unsigned char *dict = dict_value(map, db, &len);
	const unsigned char *slot = dict_slot(dict, key);
	size_t off;

	ck_assert_msg(slot != NULL, "no slot of '%s'", key);
	off = record_offset(slot_locator(slot));
	ck_assert_uint_le(off + at + n, len);
	memcpy(dict + off + at, bytes, n);
	raw_put(map, db, 0, LMDBMAP_DICT, dict, len);
	free(dict);
}

/* Change the locator in key's slot of db's dictionary. */
static void slot_patch(const char *map, const char *db, const char *key,
		       uint32_t loc)
{
	size_t len;
	unsigned char *dict = dict_value(map, db, &len);
	const unsigned char *slot = dict_slot(dict, key);

	ck_assert_msg(slot != NULL, "no slot of '%s'", key);
	memcpy(dict + (slot - dict) + 4, &loc, sizeof(loc));
	raw_put(map, db, 0, LMDBMAP_DICT, dict, len);
	free(dict);
}

/* Change the head of a dictionary, or cut it by `cut` octets. */
static void dict_patch(const char *map, const char *db,
		       const struct lmdbmap_dict *head, size_t cut)
{
	size_t len;
	unsigned char *dict = dict_value(map, db, &len);

	if (head != NULL)
		memcpy(dict, head, sizeof(*head));
	raw_put(map, db, 0, LMDBMAP_DICT, dict, len - cut);
	free(dict);
}

static struct lmdbmap_dict dict_head(const char *map, const char *db)
{
	size_t len;
	unsigned char *dict = dict_value(map, db, &len);
	struct lmdbmap_dict head;

	ck_assert_uint_ge(len, sizeof(head));
	head = dict_head_of(dict);
	free(dict);
	return head;
}

static void expect_open_error(const char *path, const char *want_fmt)
{
	char err[ERR_MAX], want[ERR_MAX];

	snprintf(want, sizeof(want), want_fmt, path);
	ck_assert_str_eq(open_error(lmdb, path, NULL, err, sizeof(err)), want);
}

START_TEST(test_open_errors)
{
	char p[PATH_MAX_TEST], junk[8192];

	expect_open_error(wpath(p, "missing.lmdb"), "%s: No such file or directory");
	file_write(wpath(p, "empty.lmdb"), "", 0);
	expect_open_error(p, "%s: empty file, not an LMDB map");
	memset(junk, 'x', sizeof(junk));
	file_write(wpath(p, "junk.lmdb"), junk, sizeof(junk));
	expect_open_error(p, "%s: not an LMDB map");
	expect_open_error(workdir, "%s: not a regular file");
	/* An LMDB file, but not a map. */
	raw_put(wpath(p, "other.lmdb"), "something", 0, "k", "v", 1);
	expect_open_error(p, "%s: not a porterd map (no 'meta' database)");
}
END_TEST

START_TEST(test_open_errors_args)
{
	char err[ERR_MAX], map[PATH_MAX_TEST];
	struct backend *be = NULL;

	ck_assert_str_eq(open_error(lmdb, "", NULL, err, sizeof(err)),
			 "lmdb: expected one PATH");
	ck_assert_str_eq(open_error(lmdb, "a b", NULL, err, sizeof(err)),
			 "lmdb: expected one PATH");
	/* A relative path is the config directory's. */
	map_make("t", "jones user Fred Jones\n", map);
	ck_assert_int_eq(lmdb->open(" t.lmdb ", workdir, &be, err, sizeof(err)), 0);
	ck_assert_uint_eq(lmdb->count(be), 1);
	lmdb->close(&be);
	ck_assert_ptr_null(be);
	lmdb->close(&be);	/* closing nothing is harmless */
}
END_TEST

START_TEST(test_wrong_format_version)
{
	char map[PATH_MAX_TEST], p[PATH_MAX_TEST];
	static const char *const want =
		"%s: map format %s, this porterd reads format 3: "
		"make it again with porterd-makemap";
	char want1[ERR_MAX], want2[ERR_MAX], want4[ERR_MAX];
	uint32_t loc = 1;

	snprintf(want1, sizeof(want1), want, "%s", "1");
	snprintf(want2, sizeof(want2), want, "%s", "2");
	snprintf(want4, sizeof(want4), want, "%s", "4");
	map_make("t", "jones user Fred Jones\nbob forward bob@x.example\n", map);
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "4", 1);
	expect_open_error(map, want4);
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "one", 3);
	expect_open_error(map, "%s: not a porterd map (no meta record)");
	/* A map of the second format: its keys' records and slot table two
	 * values, its name indexes B-trees of locators. */
	wpath(p, "format2.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "2", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "1", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "records", "\x0c\0\0\0\x05\0jonesuFred Jones", 23);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "slots", "", 0);
	raw_put(p, LMDBMAP_DB_FULLNAMES, MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
		"fred jones", &loc, sizeof(loc));
	raw_put(p, LMDBMAP_DB_WORDS, MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
		"fred", &loc, sizeof(loc));
	expect_open_error(p, want2);
	/* A map of the first format, whose keys database held the records
	 * themselves: its format is what is said wrong, not its shape. */
	wpath(p, "format1.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "1", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "1", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "jones", "uFred Jones", 12);
	raw_put(p, LMDBMAP_DB_FULLNAMES, MDB_DUPSORT, "fred jones", "jones", 5);
	raw_put(p, LMDBMAP_DB_WORDS, MDB_DUPSORT, "fred", "jones", 5);
	expect_open_error(p, want1);
}
END_TEST

START_TEST(test_damaged_meta)
{
	char map[PATH_MAX_TEST];

	map_make("t", "jones user Fred Jones\nbob forward bob@x.example\n", map);
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "5", 1);
	expect_open_error(map, "%s: damaged map: 5 entries in its meta record, 2 keys");
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, NULL, 0);
	expect_open_error(map, "%s: not a porterd map (no meta record)");
}
END_TEST

/* A dictionary whose head does not add up is refused at open: a lookup
 * then trusts its shape. */
/* A dictionary head that says buckets and overflow its 496 octets do
 * not hold: the map is refused, saying so. */
static void expect_head_refused(const char *map, const char *db,
				struct lmdbmap_dict *head, uint64_t buckets,
				uint64_t overflow)
{
	char want[ERR_MAX];

	head->buckets = buckets;
	head->overflow = overflow;
	dict_patch(map, db, head, 0);
	snprintf(want, sizeof(want), "%%s: damaged map: the '%s' dictionary: "
		 "496 octets, not the %llu buckets and %llu octets after them "
		 "its head says", db, (unsigned long long)buckets,
		 (unsigned long long)overflow);
	expect_open_error(map, want);
}

START_TEST(test_damaged_dict)
{
	static const char text[] = "jones user Fred Jones\nbob forward bob@x.example\n";
	static const char *const dbs[] = { LMDBMAP_DB_KEYS, LMDBMAP_DB_FULLNAMES,
					   LMDBMAP_DB_WORDS };
	char map[PATH_MAX_TEST], want[ERR_MAX];
	struct lmdbmap_dict head;

	for (size_t d = 0; d < 3; d++) {
		const char *db = dbs[d];

		map_make("t", text, map);
		head = dict_head(map, db);
		ck_assert_uint_eq(head.buckets, 1);
		ck_assert_uint_eq(head.overflow, 0);
		expect_head_refused(map, db, &head, 2, 0);
		expect_head_refused(map, db, &head, 0, 0);
		expect_head_refused(map, db, &head, 1, 8);
		map_make("t", text, map);
		dict_patch(map, db, NULL, 8);
		snprintf(want, sizeof(want), "%%s: damaged map: the '%s' dictionary: "
			 "488 octets, too few for one bucket", db);
		expect_open_error(map, want);
		map_make("t", text, map);
		head = dict_head(map, db);
		head.max_probe = 1;
		dict_patch(map, db, &head, 0);
		snprintf(want, sizeof(want), "%%s: damaged map: the '%s' dictionary: "
			 "keys 1 buckets past their home, of 1", db);
		expect_open_error(map, want);
		map_make("t", text, map);
		raw_put(map, db, 0, LMDBMAP_DICT, NULL, 0);
		snprintf(want, sizeof(want), "%%s: damaged map: no '%s' dictionary", db);
		expect_open_error(map, want);
	}
	map_make("t", text, map);
	head = dict_head(map, LMDBMAP_DB_KEYS);
	head.entries = 3;
	dict_patch(map, LMDBMAP_DB_KEYS, &head, 0);
	expect_open_error(map, "%s: damaged map: 2 entries in its meta record, 3 keys");
}
END_TEST

START_TEST(test_wrong_database_kind)
{
	char p[PATH_MAX_TEST];
	uint32_t loc = 1;

	wpath(p, "odd.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "3", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "0", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "k", "u", 1);
	raw_put(p, LMDBMAP_DB_FULLNAMES, 0, "n", &loc, sizeof(loc));
	raw_put(p, LMDBMAP_DB_WORDS, MDB_DUPSORT, "w", "k", 1);
	expect_open_error(p, "%s: not a porterd map (a wrong 'words' database)");
	/* Name indexes of sorted locators, as the second format had them. */
	wpath(p, "odd2.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "3", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "0", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "k", "u", 1);
	raw_put(p, LMDBMAP_DB_FULLNAMES, MDB_DUPSORT | MDB_DUPFIXED | MDB_INTEGERDUP,
		"n", &loc, sizeof(loc));
	expect_open_error(p, "%s: not a porterd map (a wrong 'fullnames' database)");
	/* Plain databases without a dictionary. */
	wpath(p, "odd3.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "3", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "0", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "k", "u", 1);
	raw_put(p, LMDBMAP_DB_FULLNAMES, 0, "n", "k", 1);
	raw_put(p, LMDBMAP_DB_WORDS, 0, "w", "k", 1);
	expect_open_error(p, "%s: damaged map: no 'keys' dictionary");
}
END_TEST

/* A file cut short would be read past its end through the memory map. */
START_TEST(test_truncated_map)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX], want[ERR_MAX];
	char *text = generated_table(2000);
	struct stat st;

	map_make("t", text, map);
	free(text);
	wpath(tpath, "t");
	ck_assert_int_eq(stat(map, &st), 0);
	ck_assert_int_gt(st.st_size, 16 * 4096);
	ck_assert_int_eq(truncate(map, 16 * 4096), 0);
	snprintf(want, sizeof(want), "%s: truncated: 65536 octets, the map needs ", map);
	open_error(lmdb, map, NULL, err, sizeof(err));
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0, "got: %s", err);
}
END_TEST

/* A record the map should not hold is a temporary failure, never a
 * "no such user". */
START_TEST(test_bad_records_tempfail)
{
	char map[PATH_MAX_TEST];
	FILE *log = tmpfile();
	struct backend *be;
	struct answer a;
	uint32_t loc, zero = 0, six = 6;
	uint16_t klen = 0xffff;
	const size_t v = LMDBMAP_RECORD_HEAD;	/* where a key starts */

	map_make("t", "jones user Fred Jones\nbob forward bob@x.example\n"
		 "staff list jones, bob\nann user Ann Other\nzed user Zed\n"
		 "kim user Kim\ngh user Ghost Person\nst user Staffer Person\n"
		 "lu user Lucy Lu\n", map);
	record_patch(map, "keys", "jones", v + 5, "x", 1);	/* no such kind */
	record_patch(map, "keys", "bob", v + 3 + 14, "x", 1);	/* no NUL at the end */
	record_patch(map, "keys", "staff", v + 5 + 7, "", 1);	/* an empty member */
	record_patch(map, "keys", "zed", 4, &klen, sizeof(klen));	/* past the end */
	record_patch(map, "keys", "ann", 0, &zero, sizeof(zero));	/* no value */
	slot_patch(map, "keys", "kim", UINT32_MAX);	/* past the dictionary */
	/* Name indexes naming no user, or a list, or not locators. */
	loc = 0x7fffffff;
	record_patch(map, "words", "ghost", v + 5, &loc, sizeof(loc));
	loc = record_locator(map, "keys", "staff");
	record_patch(map, "words", "staffer", v + 7, &loc, sizeof(loc));
	record_patch(map, "words", "person", 0, &six, sizeof(six));
	record_patch(map, "fullnames", "lucy lu", v + 7, &zero, sizeof(zero));
	ck_assert_ptr_nonnull(log);
	log_init(LOG_LEVEL_INFO, log);
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, "jones", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "bob", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "staff", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "ann", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "zed", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "kim", false, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "ghost", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "staffer", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "person", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "lucy lu", true, &a), "tempfail");
	/* The backend still answers what is whole. */
	ck_assert_str_eq(ask(lmdb, be, NULL, "lu", true, &a), "user lu name=Lucy Lu");
	ck_assert_str_eq(ask(lmdb, be, NULL, "lucy", true, &a), "user lu name=Lucy Lu");
	ck_assert_str_eq(ask(lmdb, be, NULL, "nobody", true, &a), "notfound");
	ck_assert_str_eq(ask(lmdb, be, NULL, "other", true, &a), "tempfail");
	/* A broken map fails every lookup: one line a second says so. */
	ck_assert_int_eq(log_count(log, "event=lmdb_lookup_failed"), 1);
	ck_assert_int_eq(log_count(log, "key=\"jones\" error=\"malformed record\""), 1);
	lmdb->close(&be);
	log_init(LOG_LEVEL_ERR, stderr);
	fclose(log);
}
END_TEST

/* A lookup from inside done would overwrite the answer being given: it
 * fails, and that answer stays intact. */
struct nested {
	struct backend *be;
	struct answer inner;
	char outer[ANSWER_MAX];
};

static void nested_done(const struct dir_result *r, void *arg)
{
	struct nested *n = arg;
	struct dir_query q = { .local = "bob", .by_name = true };
	struct answer outer = { 0 };

	lmdb->lookup(n->be, &q, answer_done, &n->inner);
	answer_done(r, &outer);
	snprintf(n->outer, sizeof(n->outer), "%s", outer.text);
}

START_TEST(test_nested_lookup)
{
	char map[PATH_MAX_TEST];
	struct dir_query q = { .local = "staff", .by_name = true };
	struct nested n = { 0 };
	struct answer a;

	map_make("t", "staff list jones, bob\nbob forward bob@x.example\n", map);
	n.be = open_ok(lmdb, map);
	lmdb->lookup(n.be, &q, nested_done, &n);
	ck_assert_str_eq(n.inner.text, "tempfail");
	ck_assert_str_eq(n.outer, "list staff members=jones,bob");
	ck_assert_str_eq(ask(lmdb, n.be, NULL, "bob", true, &a),
			 "forward bob target=bob@x.example");
	lmdb->close(&n.be);
}
END_TEST

/* ---- makemap ---- */

/* A value of a record as text, NULs shown as '|'. */
static void value_show(const unsigned char *v, size_t len, char *out,
		       size_t size)
{
	ck_assert_uint_lt(len, size);
	for (size_t i = 0; i < len; i++)
		out[i] = v[i] == '\0' ? '|' : (char)v[i];
	out[len] = '\0';
}

enum { DICT_KEYS, DICT_FULLNAMES, DICT_WORDS, DICTS };

/* The map's dictionaries where LMDB has them, read with LMDB itself. */
struct layout {
	MDB_env *env;
	MDB_txn *txn;
	const unsigned char *dict[DICTS];
	size_t len[DICTS];
	struct lmdbmap_dict head[DICTS];
};

static void layout_open(struct layout *l, const char *map)
{
	static const char *const dbs[DICTS] = { LMDBMAP_DB_KEYS,
		LMDBMAP_DB_FULLNAMES, LMDBMAP_DB_WORDS };

	ck_assert_int_eq(mdb_env_create(&l->env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(l->env, 8), 0);
	ck_assert_int_eq(mdb_env_open(l->env, map, MDB_NOSUBDIR | MDB_NOLOCK |
				      MDB_RDONLY, 0), 0);
	ck_assert_int_eq(mdb_txn_begin(l->env, NULL, MDB_RDONLY, &l->txn), 0);
	for (int d = 0; d < DICTS; d++) {
		MDB_dbi dbi;
		MDB_val k = { .mv_size = 4, .mv_data = "dict" }, v;

		ck_assert_int_eq(mdb_dbi_open(l->txn, dbs[d], 0, &dbi), 0);
		ck_assert_int_eq(mdb_get(l->txn, dbi, &k, &v), 0);
		l->dict[d] = v.mv_data;
		l->len[d] = v.mv_size;
		ck_assert_uint_ge(l->len[d], DICT_HEAD + LMDBMAP_BUCKET_SIZE);
		l->head[d] = dict_head_of(l->dict[d]);
		ck_assert_uint_eq(l->len[d], DICT_HEAD + l->head[d].buckets *
				  LMDBMAP_BUCKET_SIZE + l->head[d].overflow);
		for (int i = 0; i < 26; i++)
			ck_assert_uint_eq(l->head[d].zero[i], 0);
	}
}

static void layout_close(struct layout *l)
{
	mdb_txn_abort(l->txn);
	mdb_env_close(l->env);
}

static void raw_get(const struct layout *l, const char *db, const char *key,
		    char *out, size_t size)
{
	MDB_dbi dbi;
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key }, v;

	ck_assert_int_eq(mdb_dbi_open(l->txn, db, 0, &dbi), 0);
	ck_assert_int_eq(mdb_get(l->txn, dbi, &k, &v), 0);
	value_show(v.mv_data, v.mv_size, out, size);
}

/* The record of the keys' dictionary a locator names: "key=value". */
static void layout_record(const struct layout *l, uint32_t loc, char *out,
			  size_t size)
{
	size_t off = record_offset(loc), klen;
	const unsigned char *r = l->dict[DICT_KEYS] + off;
	uint16_t k;

	ck_assert_uint_le(off + LMDBMAP_RECORD_HEAD, l->len[DICT_KEYS]);
	ck_assert_uint_le(off + record_len(r), l->len[DICT_KEYS]);
	memcpy(&k, r + 4, sizeof(k));
	klen = k;
	ck_assert_uint_lt(klen + 1, size);
	memcpy(out, r + LMDBMAP_RECORD_HEAD, klen);
	out[klen] = '=';
	value_show(r + LMDBMAP_RECORD_HEAD + klen,
		   record_len(r) - LMDBMAP_RECORD_HEAD - klen, out + klen + 1,
		   size - klen - 1);
}

/* Key found as porterd-makemap(8) says: its record, "" for none. */
static void layout_find(const struct layout *l, const char *key, char *out,
			size_t size)
{
	const unsigned char *slot = dict_slot(l->dict[DICT_KEYS], key);

	out[0] = '\0';
	if (slot != NULL)
		layout_record(l, slot_locator(slot), out, size);
}

/* A name index's users for key, each shown as the key of its record,
 * in the order it holds them: by locator. */
static void layout_users(const struct layout *l, int d, const char *key,
			 char *out, size_t size)
{
	const unsigned char *slot = dict_slot(l->dict[d], key), *r;
	size_t len = 0, off;
	uint32_t vlen, prev = 0;
	uint16_t klen;

	ck_assert_ptr_nonnull(slot);
	off = record_offset(slot_locator(slot));
	r = l->dict[d] + off;
	ck_assert_uint_le(off + record_len(r), l->len[d]);
	memcpy(&vlen, r, sizeof(vlen));
	memcpy(&klen, r + 4, sizeof(klen));
	ck_assert(klen == strlen(key) && memcmp(r + 6, key, klen) == 0);
	ck_assert_uint_eq(vlen % 4, 0);
	out[0] = '\0';
	for (size_t i = 0; i < vlen / 4; i++) {
		char rec[256];
		uint32_t loc;
		int n;

		memcpy(&loc, r + LMDBMAP_RECORD_HEAD + klen + i * 4, sizeof(loc));
		ck_assert_uint_gt(loc, prev);
		prev = loc;
		layout_record(l, loc, rec, sizeof(rec));
		*strchr(rec, '=') = '\0';
		n = snprintf(out + len, size - len, "%s%s", len ? "," : "", rec);
		ck_assert(n > 0 && (size_t)n < size - len);
		len += (size_t)n;
	}
}

/*
 * Every bucket of dictionary d as lmdbmap.h says: its slots' records
 * that lie inline lie one after another from the end of its slots, in
 * slot order, each padded with zeros; the rest lie one after another in
 * the overflow area, bucket after bucket. Returns the records inline.
 */
static size_t layout_check_buckets(const struct layout *l, int d)
{
	const unsigned char *region = l->dict[d] + DICT_HEAD;
	uint64_t overflow = l->head[d].buckets * LMDBMAP_BUCKET_SIZE;
	size_t inline_records = 0, n = 0;

	for (uint64_t b = 0; b < l->head[d].buckets; b++) {
		uint64_t inl = b * LMDBMAP_BUCKET_SIZE + 64;

		for (int k = 0; k < LMDBMAP_BUCKET_SLOTS; k++) {
			uint32_t loc;
			uint64_t off, *at;

			memcpy(&loc, region + b * LMDBMAP_BUCKET_SIZE + k * 8 + 4,
			       sizeof(loc));
			if (loc == 0)
				break;
			n++;
			off = ((uint64_t)loc - 1) * LMDBMAP_RECORD_ALIGN;
			at = off == inl ? &inl : &overflow;
			ck_assert_msg(off == *at, "bucket %" PRIu64 " slot %d", b, k);
			inline_records += at == &inl;
			*at += record_len(region + off);
			for (; *at % LMDBMAP_RECORD_ALIGN != 0; (*at)++)
				ck_assert_uint_eq(region[*at], 0);
			if (at == &inl)
				ck_assert_uint_le(inl, (b + 1) * LMDBMAP_BUCKET_SIZE);
		}
	}
	ck_assert_uint_eq(n, l->head[d].entries);
	ck_assert_uint_eq(overflow, l->len[d] - DICT_HEAD);
	return inline_records;
}

static const struct {
	const char *key, *record;
} layout_rows[] = {
	{ "jones", "jones=uFred Jones|" },
	{ "smith@example.test", "smith@example.test=uFred Smith|" },
	{ "staff", "staff=ljones|far@elsewhere.example|" },
	{ "noname", "noname=u" },
	{ "bob", "bob=fbob@x.example|" },
	{ "alice", "alice=malice@y.example|" },
	{ "nobody", "" },
	{ "Jones", "" },	/* keys are stored, and hashed, lowercase */
};

START_TEST(test_layout)
{
	char map[PATH_MAX_TEST], v[256];
	struct layout l;

	map_make("t", "jones user Fred Jones\nsmith@example.test user Fred Smith\n"
		 "staff list jones, far@elsewhere.example\nnoname user\n"
		 "bob forward bob@x.example\nalice moved alice@y.example\n", map);
	layout_open(&l, map);
	raw_get(&l, "meta", "format", v, sizeof(v));
	ck_assert_str_eq(v, "3");
	raw_get(&l, "meta", "entries", v, sizeof(v));
	ck_assert_str_eq(v, "6");
	/* Two buckets for six keys, their head 240 octets, every record
	 * in its bucket. */
	ck_assert_uint_eq(l.head[DICT_KEYS].buckets, 2);
	ck_assert_uint_eq(l.head[DICT_KEYS].entries, 6);
	ck_assert_uint_eq(l.head[DICT_KEYS].overflow, 0);
	ck_assert_uint_eq(l.len[DICT_KEYS], 240 + 2 * 256);
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_KEYS), 6);
	for (size_t i = 0; i < sizeof(layout_rows) / sizeof(layout_rows[0]); i++) {
		layout_find(&l, layout_rows[i].key, v, sizeof(v));
		ck_assert_str_eq(v, layout_rows[i].record);
	}
	ck_assert_uint_eq(l.head[DICT_WORDS].entries, 3);	/* fred, jones, smith */
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_WORDS), 3);
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_FULLNAMES), 2);
	layout_users(&l, DICT_WORDS, "smith", v, sizeof(v));
	ck_assert_str_eq(v, "smith@example.test");
	layout_users(&l, DICT_FULLNAMES, "fred jones", v, sizeof(v));
	ck_assert_str_eq(v, "jones");
	layout_users(&l, DICT_WORDS, "fred", v, sizeof(v));
	ck_assert_msg(strcmp(v, "jones,smith@example.test") == 0 ||
		      strcmp(v, "smith@example.test,jones") == 0, "%s", v);
	ck_assert_ptr_null(dict_slot(l.dict[DICT_WORDS], "Fred"));
	layout_close(&l);
}
END_TEST

/* In a dictionary large enough for LMDB's overflow pages, every bucket
 * starts a multiple of its size into the file: four whole cache lines
 * of one page. Records that do not fit their bucket overflow, and are
 * found all the same. */
START_TEST(test_layout_large)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX] = "";
	char *text = generated_table(3000);
	struct makemap m = { .table_path = tpath, .out_path = map };
	struct layout l;

	wpath(tpath, "large.table");
	wpath(map, "large.lmdb");
	file_write(tpath, text, strlen(text));
	free(text);
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "%s", err);
	layout_open(&l, map);
	for (int d = DICT_KEYS; d <= DICT_FULLNAMES; d++) {
		ck_assert_uint_gt(l.len[d], 4096);
		ck_assert_uint_eq(((uintptr_t)l.dict[d] + DICT_HEAD) %
				  LMDBMAP_BUCKET_SIZE, 0);
	}
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_KEYS), m.inline_records);
	ck_assert_uint_eq(l.head[DICT_KEYS].buckets, m.buckets_made);
	layout_check_buckets(&l, DICT_FULLNAMES);
	layout_check_buckets(&l, DICT_WORDS);
	/* Given and family names shared by hundreds: long lists of users,
	 * past any bucket. */
	ck_assert_uint_gt(l.head[DICT_WORDS].overflow, 0);
	layout_close(&l);
}
END_TEST

/* Records too long for their bucket's inline area (long full names,
 * long lists, a word in many names) lie in the overflow area; each is
 * answered as the table answers it. */
START_TEST(test_overflow_records)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX] = "";
	struct makemap m = { .table_path = tpath, .out_path = map };
	size_t cap = 256 * 1024, len = 0;
	char *text = malloc(cap);
	struct backend *be;
	struct answer a;
	struct layout l;

	ck_assert_ptr_nonnull(text);
	for (int i = 0; i < 200; i++) {
		int w;

		if (i % 4 == 0)
			w = snprintf(text + len, cap - len, "long%d user Common Given%d "
				     "%0*d Family%d\n", i, i, 40 + i, i, i);
		else if (i % 4 == 1)
			w = snprintf(text + len, cap - len, "list%d list m%d-a@example.test, "
				     "m%d-b@example.test, m%d-c@example.test, "
				     "m%d-d@example.test, m%d-e@example.test, "
				     "m%d-f@example.test, m%d-g@example.test\n",
				     i, i, i, i, i, i, i, i);
		else
			w = snprintf(text + len, cap - len, "u%d user Common Person%d\n", i, i);
		ck_assert(w > 0 && (size_t)w < cap - len);
		len += (size_t)w;
	}
	wpath(tpath, "overflow.table");
	wpath(map, "overflow.lmdb");
	file_write(tpath, text, len);
	free(text);
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_gt(m.inline_records, 0);
	ck_assert_uint_lt(m.inline_records, m.entries);
	layout_open(&l, map);
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_KEYS), m.inline_records);
	ck_assert_uint_gt(l.head[DICT_KEYS].overflow, 0);
	ck_assert_uint_lt(layout_check_buckets(&l, DICT_FULLNAMES),
			  l.head[DICT_FULLNAMES].entries);
	ck_assert_uint_lt(layout_check_buckets(&l, DICT_WORDS),
			  l.head[DICT_WORDS].entries);
	layout_close(&l);
	compare_all(tpath, map);
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, "list5", true, &a),
			 "list list5 members=m5-a@example.test,m5-b@example.test,"
			 "m5-c@example.test,m5-d@example.test,m5-e@example.test,"
			 "m5-f@example.test,m5-g@example.test");
	ck_assert_str_eq(ask(lmdb, be, NULL, "common", true, &a), "ambiguous");
	ck_assert_str_eq(ask(lmdb, be, NULL, "common person7", true, &a),
			 "user u7 name=Common Person7");
	lmdb->close(&be);
}
END_TEST

/* The hash is part of the format: these never change within one. */
static const struct {
	const char *key;
	uint64_t hash;
} hash_rows[] = {
	{ "", 0x9ca066f1a4ab2eeaULL },
	{ "a", 0x1fb654d728fbe0b2ULL },
	{ "jones", 0x8922427a5296cd80ULL },
	{ "postmaster", 0x5990506a925b53baULL },
	{ "smith@example.test", 0xb30b74db95b1d524ULL },
	{ "abcdefgh", 0x50fd47a6156e35fcULL },
	{ "abcdefghi", 0x866b3d926fcd6724ULL },
};

START_TEST(test_hash_fixed)
{
	for (size_t i = 0; i < sizeof(hash_rows) / sizeof(hash_rows[0]); i++)
		ck_assert_msg(lmdbmap_hash(hash_rows[i].key,
					   strlen(hash_rows[i].key)) == hash_rows[i].hash,
			      "hash of \"%s\"", hash_rows[i].key);
	ck_assert_uint_eq(lmdbmap_bucket(0, 7), 0);
	ck_assert_uint_eq(lmdbmap_bucket(UINT64_MAX, 7), 6);
	ck_assert_uint_eq(lmdbmap_tag(0x1234567890abcdefULL), 0x90abcdefU);
}
END_TEST

struct twin {
	uint32_t tag;
	uint32_t i;
};

static int twin_cmp(const void *pa, const void *pb)
{
	const struct twin *a = pa, *b = pb;

	if (a->tag != b->tag)
		return a->tag < b->tag ? -1 : 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/* Two keys "c<N>" whose hashes have the same tag: a quarter of a million
 * keys hold some eight such pairs. */
static void tag_twins(char *a, char *b, size_t size)
{
	enum { KEYS = 1 << 18 };
	struct twin *t = calloc(KEYS, sizeof(*t));
	bool found = false;
	char k[32];

	ck_assert_ptr_nonnull(t);
	for (uint32_t i = 0; i < KEYS; i++) {
		int n = snprintf(k, sizeof(k), "c%u", i);

		t[i] = (struct twin){ lmdbmap_tag(lmdbmap_hash(k, (size_t)n)), i };
	}
	qsort(t, KEYS, sizeof(*t), twin_cmp);
	for (size_t i = 1; i < KEYS && !found; i++) {
		if (t[i].tag != t[i - 1].tag)
			continue;
		snprintf(a, size, "c%u", t[i - 1].i);
		snprintf(b, size, "c%u", t[i].i);
		found = true;
	}
	free(t);
	ck_assert(found);
}

/* Two keys in one bucket under one tag: each finds its own record, and a
 * missing key whose tag is an existing one's is not found. */
START_TEST(test_tag_collision)
{
	char a[32], b[32], text[256], map[PATH_MAX_TEST], tpath[PATH_MAX_TEST];
	char want[128];
	struct backend *be;
	struct answer ans;
	struct layout l;
	uint32_t tag[2];

	tag_twins(a, b, sizeof(a));
	ck_assert_str_ne(a, b);
	for (int order = 0; order < 2; order++) {
		/* Four keys: one bucket. */
		snprintf(text, sizeof(text), "%s user Twin One\n%s user Twin Two\n"
			 "other user Other One\ntwins list %s, %s\n",
			 order ? b : a, order ? a : b, a, b);
		map_make("twins", text, map);
		layout_open(&l, map);
		ck_assert_uint_eq(l.head[DICT_KEYS].buckets, 1);
		memcpy(&tag[0], l.dict[DICT_KEYS] + DICT_HEAD, sizeof(tag[0]));
		memcpy(&tag[1], l.dict[DICT_KEYS] + DICT_HEAD + 8, sizeof(tag[1]));
		ck_assert_uint_eq(tag[0], tag[1]);
		layout_close(&l);
		be = open_ok(lmdb, map);
		snprintf(want, sizeof(want), "user %s name=Twin One", order ? b : a);
		ck_assert_str_eq(ask(lmdb, be, NULL, order ? b : a, false, &ans), want);
		snprintf(want, sizeof(want), "user %s name=Twin Two", order ? a : b);
		ck_assert_str_eq(ask(lmdb, be, NULL, order ? a : b, false, &ans), want);
		lmdb->close(&be);
		compare_all(wpath(tpath, "twins"), map);
	}
	snprintf(text, sizeof(text), "%s user Twin One\n", a);
	map_make("single", text, map);
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, b, false, &ans), "notfound");
	snprintf(want, sizeof(want), "user %s name=Twin One", a);
	ck_assert_str_eq(ask(lmdb, be, NULL, a, false, &ans), want);
	lmdb->close(&be);
}
END_TEST

/* As few buckets as can hold the keys: every bucket is full, keys lie
 * far from home, and a missing key's search ends only at max_probe. */
START_TEST(test_crowded_slots)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX] = "";
	char *text = generated_table(3000);
	struct makemap m = { .table_path = tpath, .out_path = map, .buckets = 1 };
	struct layout l;

	wpath(tpath, "crowded.table");
	wpath(map, "crowded.lmdb");
	file_write(tpath, text, strlen(text));
	free(text);
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(m.buckets_made, 3000 / LMDBMAP_BUCKET_SLOTS);
	ck_assert_uint_eq(m.full_buckets, m.buckets_made);
	ck_assert_uint_gt(m.max_probe, 8);
	/* Eight records do not fit one bucket's inline area; a key's
	 * record goes with its slot, in the bucket it probed to. */
	ck_assert_uint_lt(m.inline_records, m.entries * 3 / 4);
	layout_open(&l, map);
	ck_assert_uint_eq(layout_check_buckets(&l, DICT_KEYS), m.inline_records);
	layout_close(&l);
	compare_all(tpath, map);
	/* The usual table, half full: few buckets full, none far, nearly
	 * every record in its bucket. */
	m.buckets = 0;
	ck_assert_msg(makemap_build(&m, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_ge(m.buckets_made, 3000 / LMDBMAP_BUCKET_LOAD);
	ck_assert_uint_lt(m.full_buckets, m.buckets_made / 8);
	ck_assert_uint_lt(m.max_probe, 8);
	ck_assert_uint_gt(m.inline_records, m.entries * 85 / 100);
	compare_all(tpath, map);
}
END_TEST

/* A table error is the table backend's own message; nothing is left. */
START_TEST(test_makemap_table_error)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], want[ERR_MAX];
	char err[ERR_MAX] = "", list[1024];
	struct backend *be = NULL;
	struct makemap m = { .table_path = tpath, .out_path = map };
	static const char bad[] = "jones user Fred Jones\nbad usr x\n";

	wpath(tpath, "bad.table");
	wpath(map, "bad.lmdb");
	file_write(tpath, bad, strlen(bad));
	ck_assert_int_eq(makemap_build(&m, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s:2: unknown kind 'usr' (expected user, "
		 "list, forward or moved)", tpath);
	ck_assert_str_eq(err, want);
	ck_assert_int_eq(table->open(tpath, NULL, &be, want, sizeof(want)), -1);
	ck_assert_str_eq(err, want);
	workdir_list(list, sizeof(list));
	ck_assert_str_eq(list, "bad.table\n");
	ck_assert_int_eq(m.tmp_live, 0);
}
END_TEST

/* A failed build leaves the map there untouched. */
START_TEST(test_makemap_error_keeps_old_map)
{
	char map[PATH_MAX_TEST], tpath[PATH_MAX_TEST], err[ERR_MAX], list[1024];
	struct makemap m = { .table_path = tpath, .out_path = map };
	struct backend *be;
	struct answer a;

	map_make("t", "jones user Fred Jones\n", map);
	file_write(wpath(tpath, "t"), "jones user A\njones user B\n", 26);
	ck_assert_int_eq(makemap_build(&m, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, ":2: duplicate key 'jones' (first on line 1)") != NULL,
		      "%s", err);
	workdir_list(list, sizeof(list));
	ck_assert_str_eq(list, "t\nt.lmdb\n");
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, "jones", true, &a), OLD_JONES);
	lmdb->close(&be);
}
END_TEST

START_TEST(test_makemap_file_errors)
{
	char tpath[PATH_MAX_TEST], map[PATH_MAX_TEST], err[ERR_MAX], want[ERR_MAX];
	char list[1024];
	struct makemap m = { .table_path = tpath, .out_path = map };

	/* No table. */
	wpath(tpath, "none.table");
	wpath(map, "none.lmdb");
	ck_assert_int_eq(makemap_build(&m, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: No such file or directory", tpath);
	ck_assert_str_eq(err, want);
	/* No directory for the map. */
	file_write(wpath(tpath, "t"), "jones user Fred Jones\n", 22);
	wpath(map, "no-such-dir/t.lmdb");
	ck_assert_int_eq(makemap_build(&m, err, sizeof(err)), -1);
	ck_assert_int_lt(snprintf(want, sizeof(want), "%s: cannot create %s.tmp-",
				  map, map), ERR_MAX);
	ck_assert_msg(strncmp(err, want, strlen(want)) == 0 &&
		      strstr(err, ": No such file or directory") != NULL, "%s", err);
	/* The map over its own table. */
	m.out_path = tpath;
	ck_assert_int_eq(makemap_build(&m, err, sizeof(err)), -1);
	snprintf(want, sizeof(want), "%s: is the table itself", tpath);
	ck_assert_str_eq(err, want);
	workdir_list(list, sizeof(list));
	ck_assert_str_eq(list, "t\n");
}
END_TEST

START_TEST(test_makemap_output_mode)
{
	char map[PATH_MAX_TEST], out[PATH_MAX_TEST];
	mode_t old = umask(027);
	struct stat st;

	map_make("t", "jones user Fred Jones\n", map);
	umask(old);
	ck_assert_int_eq(stat(map, &st), 0);
	ck_assert_uint_eq(st.st_mode & 07777, 0640);
	ck_assert(makemap_default_output("dir/x.table", out, sizeof(out)));
	ck_assert_str_eq(out, "dir/x.table.lmdb");
	ck_assert(!makemap_default_output("dir/x.table", out, 10));
}
END_TEST

static Suite *lmdb_suite(void)
{
	Suite *s = suite_create("lmdb");
	TCase *tc = tcase_create("answers");

	tcase_add_checked_fixture(tc, workdir_setup, workdir_teardown);
	tcase_add_test(tc, test_same_answers_as_table);
	tcase_add_test(tc, test_long_names);
	tcase_add_test(tc, test_generated_table_and_growth);
	tcase_add_test(tc, test_bad_records_tempfail);
	tcase_add_test(tc, test_nested_lookup);
	tcase_add_test(tc, test_tag_collision);
	tcase_add_test(tc, test_crowded_slots);
	suite_add_tcase(s, tc);
	tc = tcase_create("replaced");
	tcase_add_checked_fixture(tc, workdir_setup, workdir_teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_rebuilt_map_seen);
	tcase_add_test(tc, test_bad_replacement_keeps_old);
	suite_add_tcase(s, tc);
	tc = tcase_create("open");
	tcase_add_checked_fixture(tc, workdir_setup, workdir_teardown);
	tcase_add_test(tc, test_open_errors);
	tcase_add_test(tc, test_open_errors_args);
	tcase_add_test(tc, test_wrong_format_version);
	tcase_add_test(tc, test_damaged_meta);
	tcase_add_test(tc, test_damaged_dict);
	tcase_add_test(tc, test_wrong_database_kind);
	tcase_add_test(tc, test_truncated_map);
	suite_add_tcase(s, tc);
	tc = tcase_create("makemap");
	tcase_add_checked_fixture(tc, workdir_setup, workdir_teardown);
	tcase_add_test(tc, test_layout);
	tcase_add_test(tc, test_layout_large);
	tcase_add_test(tc, test_overflow_records);
	tcase_add_test(tc, test_hash_fixed);
	tcase_add_test(tc, test_makemap_table_error);
	tcase_add_test(tc, test_makemap_error_keeps_old_map);
	tcase_add_test(tc, test_makemap_file_errors);
	tcase_add_test(tc, test_makemap_output_mode);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(lmdb_suite());
}
