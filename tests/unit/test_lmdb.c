/*
 * test_lmdb — porterd-makemap's build and the `lmdb` directory backend:
 * a map made from a table answers every query exactly as the table
 * backend does for that table (keys of every kind, free-text names), a
 * map rebuilt while open is seen without a restart, a bad replacement
 * keeps the old map, and every broken file is refused with a precise
 * message or, at lookup, answered as a temporary failure.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <lmdb.h>
#include <stdarg.h>
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
#include "testutil.h"

#define ERR_MAX 1024
#define ANSWER_MAX 8192
#define PATH_MAX_TEST 512
#define WORDS_MAX 20

static const struct backend_ops *const lmdb = &backend_lmdb_ops;
static const struct backend_ops *const table = &backend_table_ops;

/* ---- answers as lines ---- */

struct answer {
	int calls;
	char text[ANSWER_MAX];
};

static void members_format(const struct dir_result *r, char *out, size_t size)
{
	size_t len = 0;

	out[0] = '\0';
	for (size_t i = 0; i < r->nmembers; i++) {
		int n = snprintf(out + len, size - len, "%s%s", i ? "," : "",
				 r->members[i]);

		ck_assert_int_ge(n, 0);
		ck_assert_uint_lt(len + (size_t)n, size);
		len += (size_t)n;
	}
}

/* Fields an answer must not carry for its status are asserted empty. */
static void answer_done(const struct dir_result *r, void *arg)
{
	struct answer *a = arg;
	char members[ANSWER_MAX / 2];

	a->calls++;
	if (r->status != DIR_USER)
		ck_assert_ptr_null(r->fullname);
	if (r->status != DIR_LIST) {
		ck_assert_ptr_null(r->members);
		ck_assert_uint_eq(r->nmembers, 0);
	}
	if (r->status != DIR_FORWARD && r->status != DIR_MOVED)
		ck_assert_ptr_null(r->target);
	switch (r->status) {
	case DIR_USER:
		snprintf(a->text, sizeof(a->text), "user %s name=%s", r->key,
			 r->fullname != NULL ? r->fullname : "(none)");
		break;
	case DIR_LIST:
		members_format(r, members, sizeof(members));
		snprintf(a->text, sizeof(a->text), "list %s members=%s",
			 r->key, members);
		break;
	case DIR_FORWARD:
	case DIR_MOVED:
		snprintf(a->text, sizeof(a->text), "%s %s target=%s",
			 r->status == DIR_FORWARD ? "forward" : "moved",
			 r->key, r->target);
		break;
	case DIR_AMBIGUOUS:
	case DIR_NOTFOUND:
	case DIR_TEMPFAIL:
		ck_assert_ptr_null(r->key);
		snprintf(a->text, sizeof(a->text), "%s",
			 r->status == DIR_AMBIGUOUS ? "ambiguous" :
			 r->status == DIR_NOTFOUND ? "notfound" : "tempfail");
		break;
	default:
		snprintf(a->text, sizeof(a->text), "status %d", (int)r->status);
		break;
	}
}

static const char *ask(const struct backend_ops *ops, struct backend *be,
		       const char *address, const char *local, bool by_name,
		       struct answer *a)
{
	struct dir_query q = { .address = address, .local = local,
			       .by_name = by_name };

	memset(a, 0, sizeof(*a));
	ops->lookup(be, &q, answer_done, a);
	ck_assert_int_eq(a->calls, 1);
	return a->text;
}

/* Rows that differ, gathered so that one run shows every wrong row. */
struct report {
	char text[16384];
	size_t len;
	int wrong;
	int rows;
};

static void report_add(struct report *r, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void report_add(struct report *r, const char *fmt, ...)
{
	size_t room = sizeof(r->text) - r->len;
	va_list ap;
	int n;

	r->wrong++;
	va_start(ap, fmt);
	n = vsnprintf(r->text + r->len, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		r->len += (size_t)n < room ? (size_t)n : room - 1;
}

static void report_check(const struct report *r)
{
	ck_assert_msg(r->wrong == 0, "%d of %d rows wrong:\n%s", r->wrong,
		      r->rows, r->text);
}

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

static struct backend *open_ok(const struct backend_ops *ops, const char *path)
{
	struct backend *be = NULL;
	char err[ERR_MAX] = "";

	ck_assert_msg(ops->open(path, "/nonexistent-base", &be, err,
				sizeof(err)) == 0, "open %s: %s", path, err);
	ck_assert_ptr_nonnull(be);
	return be;
}

/* The message open fails with, or "(opened)". */
static const char *open_error(const char *args, const char *base_dir,
			      char *err, size_t errsize)
{
	struct backend *be = (struct backend *)&be;

	err[0] = '\0';
	if (lmdb->open(args, base_dir, &be, err, errsize) == 0) {
		lmdb->close(&be);
		return "(opened)";
	}
	ck_assert_ptr_null(be);
	return err;
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

/* Ask both backends the same; a row differs when their answers do. */
static void compare(struct backend *tb, struct backend *lb, const char *address,
		    const char *local, bool by_name, struct report *r)
{
	struct answer ta, la;

	r->rows++;
	ask(table, tb, address, local, by_name, &ta);
	ask(lmdb, lb, address, local, by_name, &la);
	if (strcmp(ta.text, la.text) != 0)
		report_add(r, "(%s, \"%s\", %s): table \"%s\", lmdb \"%s\"\n",
			   address ? address : "NULL", local,
			   by_name ? "by_name" : "key only", ta.text, la.text);
}

static void compare_upper(struct backend *tb, struct backend *lb,
			  const char *s, struct report *r)
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
			const char *key, struct report *r)
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
			 const char *name, struct report *r)
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
	struct report r = { .len = 0 };

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
	report_check(&r);
	ck_assert_int_gt(r.rows, 50);
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

static void expect_open_error(const char *path, const char *want_fmt)
{
	char err[ERR_MAX], want[ERR_MAX];

	snprintf(want, sizeof(want), want_fmt, path);
	ck_assert_str_eq(open_error(path, NULL, err, sizeof(err)), want);
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

	ck_assert_str_eq(open_error("", NULL, err, sizeof(err)),
			 "lmdb: expected one PATH");
	ck_assert_str_eq(open_error("a b", NULL, err, sizeof(err)),
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
	char map[PATH_MAX_TEST];

	map_make("t", "jones user Fred Jones\nbob forward bob@x.example\n", map);
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "2", 1);
	expect_open_error(map, "%s: map format 2, this porterd reads format 1: "
			  "make it again with porterd-makemap");
	raw_put(map, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "one", 3);
	expect_open_error(map, "%s: not a porterd map (no meta record)");
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

START_TEST(test_wrong_database_kind)
{
	char p[PATH_MAX_TEST];

	wpath(p, "odd.lmdb");
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_FORMAT, "1", 1);
	raw_put(p, LMDBMAP_DB_META, 0, LMDBMAP_META_ENTRIES, "0", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "k", "u", 1);
	raw_put(p, LMDBMAP_DB_KEYS, 0, "k", NULL, 0);
	raw_put(p, LMDBMAP_DB_FULLNAMES, MDB_DUPSORT, "n", "k", 1);
	raw_put(p, LMDBMAP_DB_WORDS, 0, "w", "k", 1);
	expect_open_error(p, "%s: not a porterd map (a wrong 'words' database)");
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
	open_error(map, NULL, err, sizeof(err));
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

	map_make("t", "jones user Fred Jones\nbob forward bob@x.example\n"
		 "staff list jones, bob\nann user Ann Other\n", map);
	raw_put(map, LMDBMAP_DB_KEYS, 0, "jones", "xFred\0", 6);
	raw_put(map, LMDBMAP_DB_KEYS, 0, "bob", "fbob@x.example", 14);
	raw_put(map, LMDBMAP_DB_KEYS, 0, "staff", "ljones\0\0", 8);
	raw_put(map, LMDBMAP_DB_KEYS, 0, "ann", "", 0);
	raw_put(map, LMDBMAP_DB_WORDS, MDB_DUPSORT, "ghost", "nokey", 5);
	raw_put(map, LMDBMAP_DB_WORDS, MDB_DUPSORT, "staffer", "staff", 5);
	ck_assert_ptr_nonnull(log);
	log_init(LOG_LEVEL_INFO, log);
	be = open_ok(lmdb, map);
	ck_assert_str_eq(ask(lmdb, be, NULL, "jones", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "bob", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "staff", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "ann", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "ghost", true, &a), "tempfail");
	ck_assert_str_eq(ask(lmdb, be, NULL, "staffer", true, &a), "tempfail");
	/* The backend still answers what is whole. */
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

/* A lookup from inside done cannot share the live transaction; the
 * answer being given stays intact. */
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

/* The layout porterd-makemap(8) documents, read with LMDB itself. */
static void raw_get(MDB_txn *txn, MDB_env *env, const char *db, const char *key,
		    char *out, size_t size)
{
	MDB_dbi dbi;
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key }, v;

	(void)env;
	ck_assert_int_eq(mdb_dbi_open(txn, db, 0, &dbi), 0);
	ck_assert_int_eq(mdb_get(txn, dbi, &k, &v), 0);
	ck_assert_uint_lt(v.mv_size, size);
	memcpy(out, v.mv_data, v.mv_size);
	out[v.mv_size] = '\0';
	for (size_t i = 0; i < v.mv_size; i++)
		if (out[i] == '\0')
			out[i] = '|';	/* NULs shown */
}

static void raw_dups(MDB_txn *txn, const char *db, const char *key, char *out,
		     size_t size)
{
	MDB_dbi dbi;
	MDB_cursor *c;
	MDB_val k = { .mv_size = strlen(key), .mv_data = (void *)key }, v;
	size_t len = 0;
	int rc;

	ck_assert_int_eq(mdb_dbi_open(txn, db, MDB_DUPSORT, &dbi), 0);
	ck_assert_int_eq(mdb_cursor_open(txn, dbi, &c), 0);
	out[0] = '\0';
	for (rc = mdb_cursor_get(c, &k, &v, MDB_SET); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT_DUP)) {
		int n = snprintf(out + len, size - len, "%s%.*s", len ? "," : "",
				 (int)v.mv_size, (const char *)v.mv_data);

		ck_assert(n > 0 && (size_t)n < size - len);
		len += (size_t)n;
	}
	mdb_cursor_close(c);
}

START_TEST(test_layout)
{
	char map[PATH_MAX_TEST], v[256];
	MDB_env *env;
	MDB_txn *txn;

	map_make("t", "jones user Fred Jones\nsmith@example.test user Fred Smith\n"
		 "staff list jones, far@elsewhere.example\nnoname user\n"
		 "bob forward bob@x.example\nalice moved alice@y.example\n", map);
	ck_assert_int_eq(mdb_env_create(&env), 0);
	ck_assert_int_eq(mdb_env_set_maxdbs(env, 8), 0);
	ck_assert_int_eq(mdb_env_open(env, map, MDB_NOSUBDIR | MDB_NOLOCK |
				      MDB_RDONLY, 0), 0);
	ck_assert_int_eq(mdb_txn_begin(env, NULL, MDB_RDONLY, &txn), 0);
	raw_get(txn, env, "meta", "format", v, sizeof(v));
	ck_assert_str_eq(v, "1");
	raw_get(txn, env, "meta", "entries", v, sizeof(v));
	ck_assert_str_eq(v, "6");
	raw_get(txn, env, "keys", "jones", v, sizeof(v));
	ck_assert_str_eq(v, "uFred Jones|");
	raw_get(txn, env, "keys", "noname", v, sizeof(v));
	ck_assert_str_eq(v, "u");
	raw_get(txn, env, "keys", "staff", v, sizeof(v));
	ck_assert_str_eq(v, "ljones|far@elsewhere.example|");
	raw_get(txn, env, "keys", "bob", v, sizeof(v));
	ck_assert_str_eq(v, "fbob@x.example|");
	raw_get(txn, env, "keys", "alice", v, sizeof(v));
	ck_assert_str_eq(v, "malice@y.example|");
	raw_dups(txn, "words", "fred", v, sizeof(v));
	ck_assert_str_eq(v, "jones,smith@example.test");
	raw_dups(txn, "fullnames", "fred smith", v, sizeof(v));
	ck_assert_str_eq(v, "smith@example.test");
	mdb_txn_abort(txn);
	mdb_env_close(env);
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
	tcase_add_test(tc, test_wrong_database_kind);
	tcase_add_test(tc, test_truncated_map);
	suite_add_tcase(s, tc);
	tc = tcase_create("makemap");
	tcase_add_checked_fixture(tc, workdir_setup, workdir_teardown);
	tcase_add_test(tc, test_layout);
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
