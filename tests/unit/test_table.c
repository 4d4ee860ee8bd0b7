/*
 * test_table — the `table` directory backend: what each kind of entry
 * answers, how free-text names match, every load error with its exact
 * message, and a generated table large enough to exercise the indexes.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "porterd/backend.h"
#include "porterd/table.h"
#include "backendtest.h"

#define ERR_MAX 1024

static const struct backend_ops *const ops = &backend_table_ops;

/* ---- helpers ---- */

/* Open must fail with exactly want, %s standing for the path. */
static void expect_open_error(const char *args, const char *base_dir,
			      const char *path, const char *want)
{
	char err[ERR_MAX], expected[ERR_MAX];

	snprintf(expected, sizeof(expected), want, path);
	ck_assert_str_eq(open_error(ops, args, base_dir, err, sizeof(err)),
			 expected);
}

/* ---- lookups in a table with every kind and form ---- */

static const char fixture_text[] =
	"# porterd example directory\n"
	"# key                  kind     value\n"
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
	"\n"
	"   \t \n"
	"# a blank line and a white-space line above\n"
	"carol                  forward  <Carol@Elsewhere.Example>\n"
	"dave                   MOVED    Dave@Newco.Example # trailing comment\n"
	"agourz                 user     Anna Gourzenkyinplatz\n"
	"bgourz                 user     Boris Gourzenkyinplatz\n"
	"hash                   user     Fred#1 Hash\n"
	"same1                  user     Same Name\n"
	"same2                  user     same   name\n"
	"cont                   user     First\n"
	"# a comment inside an entry does not end it\n"
	"    Second\n"
	"late                   user\n"
	"                       Late Name\n"
	"postmaster\tlist\troot\t# tab separated\n"
	"sixteen                user     w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12"
	" w13 w14 w15 w16\n"
	"8bit                   user     J\xc3\xbcrgen M\xc3\xbcller\n"
	"hh                     user     Humbert Humbert\n";

#define FIXTURE_ENTRIES 25

struct lookup_row {
	const char *address;
	const char *local;
	bool by_name;
	const char *want;
};

static const struct lookup_row lookup_rows[] = {
	/* every kind, by bare key */
	{ NULL, "jones", true, "user jones name=Fred Jones" },
	{ NULL, "example-people", true,
	  "list example-people members=jones,smith,qsmith,postel@usc-isif.example" },
	{ NULL, "bob", false, "forward bob target=bob@elsewhere.example" },
	{ NULL, "alice", false, "moved alice target=alice@newco.example" },
	{ NULL, "hostmaster", false, "user hostmaster name=(none)" },
	/* case-insensitive keys, stored lowercase */
	{ NULL, "HostMaster", false, "user hostmaster name=(none)" },
	{ NULL, "long.name", false,
	  "user long.name name=Wilhelmina Gertrude Fitzgerald" },
	{ NULL, "dave", false, "moved dave target=dave@newco.example" },
	/* white space collapsed, continuation lines, comments */
	{ NULL, "qasmith", false, "user qasmith name=Quincy Adams Smith" },
	{ NULL, "staff", false,
	  "list staff members=jones,qsmith,alice@example.test,bob" },
	{ NULL, "carol", false, "forward carol target=carol@elsewhere.example" },
	{ NULL, "cont", false, "user cont name=First Second" },
	{ NULL, "late", false, "user late name=Late Name" },
	{ NULL, "postmaster", false, "list postmaster members=root" },
	{ NULL, "hash", false, "user hash name=Fred#1 Hash" },
	{ NULL, "8bit", false, "user 8bit name=J\xc3\xbcrgen M\xc3\xbcller" },
	/* qualified and bare keys */
	{ "jones@example.test", "jones", false, "user jones name=Fred Jones" },
	{ "jones@other.test", "jones", false,
	  "user jones@other.test name=Other Jones" },
	{ "smith@example.test", "smith", false,
	  "user smith@example.test name=Fred Smith" },
	{ "smith@other.test", "smith", false, "notfound" },
	{ "all-staff@example.test", "all-staff", false,
	  "list all-staff members=example-people,hostmaster" },
	{ "alice@example.test", "alice", false,
	  "moved alice target=alice@newco.example" },
	{ "postel@usc-isif.example", "postel", false, "notfound" },
	{ NULL, "smith@example.test", false,
	  "user smith@example.test name=Fred Smith" },
	/* names are only for a query without domain that allows them */
	{ "adams@example.test", "adams", true, "notfound" },
	{ NULL, "quincy smith", false, "notfound" },
	{ NULL, "smith", false, "notfound" },
	/* exact full names, then words */
	{ NULL, "quincy smith", true, "user qsmith name=Quincy Smith" },
	{ NULL, " Quincy \t SMITH ", true, "user qsmith name=Quincy Smith" },
	{ NULL, "smith", true, "ambiguous" },
	{ NULL, "quincy", true, "ambiguous" },
	{ NULL, "fred", true, "ambiguous" },
	{ NULL, "adams", true, "user qasmith name=Quincy Adams Smith" },
	{ NULL, "smith adams", true, "user qasmith name=Quincy Adams Smith" },
	{ NULL, "quincy adams smith", true,
	  "user qasmith name=Quincy Adams Smith" },
	{ NULL, "gourzenkyinplatz", true, "ambiguous" },
	{ NULL, "anna gourzenkyinplatz", true,
	  "user agourz name=Anna Gourzenkyinplatz" },
	{ NULL, "boris", true, "user bgourz name=Boris Gourzenkyinplatz" },
	{ NULL, "gertrude", true,
	  "user long.name name=Wilhelmina Gertrude Fitzgerald" },
	{ NULL, "same name", true, "ambiguous" },
	{ NULL, "fred#1", true, "user hash name=Fred#1 Hash" },
	{ NULL, "j\xc3\xbcrgen", true,
	  "user 8bit name=J\xc3\xbcrgen M\xc3\xbcller" },
	{ NULL, "first second", true, "user cont name=First Second" },
	/* a word twice in one name is still one user */
	{ NULL, "humbert", true, "user hh name=Humbert Humbert" },
	{ NULL, "w16 w15 w14 w13 w12 w11 w10 w9 w8 w7 w6 w5 w4 w3 w2 w1", true,
	  "user sixteen name=w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14"
	  " w15 w16" },
	/* whole words only, every word, at most 16 words */
	{ NULL, "smit", true, "notfound" },
	{ NULL, "fred quincy", true, "notfound" },
	{ NULL, "jones smith", true, "notfound" },
	{ NULL, "w1 w2 w3 w4 w5 w6 w7 w8 w9 w10 w11 w12 w13 w14 w15 w16 w1",
	  true, "notfound" },
	{ NULL, "nobody", true, "notfound" },
	{ NULL, "", true, "notfound" },
	{ NULL, " \t ", true, "notfound" },
	/* list members and targets are not keys */
	{ NULL, "root", true, "notfound" },
	{ NULL, "bob@elsewhere.example", true, "notfound" },
};

static char *fixture_path;
static struct backend *fixture;

static void fixture_setup(void)
{
	fixture_path = write_temp_file(fixture_text);
	fixture = open_ok(ops, fixture_path);
}

static void fixture_teardown(void)
{
	ops->close(&fixture);
	ck_assert_ptr_null(fixture);
	unlink(fixture_path);
	free(fixture_path);
	fixture_path = NULL;
}

START_TEST(test_lookup_rows)
{
	struct report r = { .len = 0 };

	for (size_t i = 0; i < NROWS(lookup_rows); i++) {
		const struct lookup_row *row = &lookup_rows[i];
		struct answer a;

		if (strcmp(ask(ops, fixture, row->address, row->local,
			       row->by_name, &a), row->want) != 0)
			report_add(&r, "row %zu (%s, \"%s\", %s): got \"%s\","
				   " want \"%s\"\n", i,
				   row->address ? row->address : "NULL",
				   row->local,
				   row->by_name ? "by_name" : "key only",
				   a.text, row->want);
	}
	report_check(&r);
}
END_TEST

START_TEST(test_count)
{
	ck_assert_uint_eq(ops->count(fixture), FIXTURE_ENTRIES);
}
END_TEST

/* Answers point into the backend and stay valid until close. */
static void pointer_done(const struct dir_result *r, void *arg)
{
	*(struct dir_result *)arg = *r;
}

START_TEST(test_result_pointers_stay_valid)
{
	struct dir_query q1 = { .local = "example-people" };
	struct dir_query q2 = { .local = "jones" };
	struct dir_result r1, r2;

	ops->lookup(fixture, &q1, pointer_done, &r1);
	ops->lookup(fixture, &q2, pointer_done, &r2);
	ck_assert_int_eq(r1.status, DIR_LIST);
	ck_assert_uint_eq(r1.nmembers, 4);
	ck_assert_str_eq(r1.key, "example-people");
	ck_assert_str_eq(r1.members[3], "postel@usc-isif.example");
	ck_assert_str_eq(r2.fullname, "Fred Jones");
}
END_TEST

/* ---- tables that load, and what they answer ---- */

struct load_row {
	const char *text;
	size_t entries;
	const char *local;	/* looked up by name, after the key */
	const char *want;
};

static const struct load_row load_rows[] = {
	{ "", 0, "jones", "notfound" },
	{ "# only a comment\n\n   \n", 0, "jones", "notfound" },
	{ "jones user Fred Jones", 1, "jones", "user jones name=Fred Jones" },
	{ "jones user Fred Jones\r\nbob forward b@x.example\r\n", 2, "jones",
	  "user jones name=Fred Jones" },
	{ "jones user Fred Jones\r\nbob forward b@x.example\r\n", 2, "bob",
	  "forward bob target=b@x.example" },
	{ "jones\tuser\tFred\t\tJones\t\n", 1, "fred jones",
	  "user jones name=Fred Jones" },
	{ "a user\n#\n\n  A\n\t\n   B # c\n", 1, "a", "user a name=A B" },
	{ "l list a,,b ,c,\n , d\n", 1, "l", "list l members=a,b,c,d" },
	{ "f forward , <F@X.Example> ,\n", 1, "f",
	  "forward f target=f@x.example" },
	{ "f forward\n  f@x.example\n", 1, "f",
	  "forward f target=f@x.example" },
	{ "l list a#b #c\n", 1, "l", "list l members=a#b" },
	{ "l list\n a\n  b\n", 1, "l", "list l members=a,b" },
	{ "k user Name\nl list x\n", 2, "name", "user k name=Name" },
	{ "k user Name\nk@example.test user Other\n", 2, "k@example.test",
	  "user k@example.test name=Other" },
	{ "u user Deb\xc3\xb6rah\n", 1, "u",
	  "user u name=Deb\xc3\xb6rah" },
};

static void load_row_check(size_t i, const struct load_row *row,
			   struct report *r)
{
	char *path = write_temp_file(row->text);
	struct backend *be = NULL;
	char err[ERR_MAX] = "";
	struct answer a;

	if (ops->open(path, NULL, &be, err, sizeof(err)) < 0) {
		report_add(r, "row %zu: %s\n", i, err);
	} else {
		if (ops->count(be) != row->entries)
			report_add(r, "row %zu: %zu entries, want %zu\n", i,
				   ops->count(be), row->entries);
		if (strcmp(ask(ops, be, NULL, row->local, true, &a), row->want))
			report_add(r, "row %zu: got \"%s\", want \"%s\"\n",
				   i, a.text, row->want);
		ops->close(&be);
		ck_assert_ptr_null(be);
	}
	unlink(path);
	free(path);
}

START_TEST(test_load_rows)
{
	struct report r = { .len = 0 };

	for (size_t i = 0; i < NROWS(load_rows); i++)
		load_row_check(i, &load_rows[i], &r);
	report_check(&r);
}
END_TEST

/* Keys and members of exactly 256 octets are fine; 257 are not. */
START_TEST(test_key_length_limit)
{
	char key[257], text[1024], want[600];
	char *path;
	struct backend *be;
	struct answer a;

	memset(key, 'k', 256);
	key[256] = '\0';
	snprintf(text, sizeof(text), "%s user Long Key\nl list %s\n", key,
		 key);
	path = write_temp_file(text);
	be = open_ok(ops, path);
	snprintf(want, sizeof(want), "user %s name=Long Key", key);
	ck_assert_str_eq(ask(ops, be, NULL, key, false, &a), want);
	snprintf(want, sizeof(want), "list l members=%s", key);
	ck_assert_str_eq(ask(ops, be, NULL, "l", false, &a), want);
	ops->close(&be);
	unlink(path);
	free(path);
}
END_TEST

/*
 * Keys, names and targets of every length up to past what the key index
 * keeps beside a key, answered the same whichever way it keeps them.
 */
#define LENGTHS_MAX 140

static void lengths_fill(char *s, char c, size_t n)
{
	memset(s, c, n);
	s[n] = '\0';
}

START_TEST(test_answer_lengths)
{
	size_t size = (size_t)LENGTHS_MAX * 3 * (LENGTHS_MAX + 64), len = 0;
	char *text = malloc(size), *path;
	char name[LENGTHS_MAX + 1], key[LENGTHS_MAX + 1], want[600], q[600];
	struct backend *be;
	struct answer a;

	ck_assert_ptr_nonnull(text);
	for (size_t n = 1; n <= LENGTHS_MAX; n++) {
		lengths_fill(name, 'N', n);
		lengths_fill(key, 'k', n);
		len += (size_t)snprintf(text + len, size - len,
			"u%03zu user %s\nf%03zu forward %s@x.example\n"
			"%s user K%zu\n", n, name, n, name, key, n);
		ck_assert_uint_lt(len, size);
	}
	path = write_temp_file(text);
	be = open_ok(ops, path);
	for (size_t n = 1; n <= LENGTHS_MAX; n++) {
		lengths_fill(name, 'N', n);
		lengths_fill(key, 'k', n);
		snprintf(q, sizeof(q), "U%03zu", n);
		snprintf(want, sizeof(want), "user u%03zu name=%s", n, name);
		ck_assert_str_eq(ask(ops, be, NULL, q, false, &a), want);
		snprintf(q, sizeof(q), "f%03zu", n);
		lengths_fill(name, 'n', n);
		snprintf(want, sizeof(want), "forward f%03zu target=%s@x.example",
			 n, name);
		ck_assert_str_eq(ask(ops, be, NULL, q, false, &a), want);
		lengths_fill(q, 'K', n);
		snprintf(want, sizeof(want), "user %s name=K%zu", key, n);
		ck_assert_str_eq(ask(ops, be, NULL, q, false, &a), want);
		snprintf(q, sizeof(q), "%sx", key);
		ck_assert_str_eq(ask(ops, be, NULL, q, false, &a), "notfound");
	}
	ops->close(&be);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

/* ---- load errors, each with its exact message ---- */

#define K40 "kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk"
#define K256 K40 K40 K40 K40 K40 K40 "kkkkkkkkkkkkkkkk"

struct error_row {
	const char *text;
	size_t len;		/* 0: strlen(text) */
	const char *want;	/* %s is the path */
};

static const struct error_row error_rows[] = {
	{ "jones usr Fred Jones\n", 0,
	  "%s:1: unknown kind 'usr' (expected user, list, forward or moved)" },
	{ "# header\n\njones\n", 0,
	  "%s:3: missing kind after 'jones' (expected user, list, forward or moved)" },
	{ "jones # user Fred\n", 0,
	  "%s:1: missing kind after 'jones' (expected user, list, forward or moved)" },
	{ "a@b@c user X\n", 0,
	  "%s:1: bad key 'a@b@c': more than one '@'" },
	{ "@example.test user X\n", 0,
	  "%s:1: bad key '@example.test': empty local part" },
	{ "jones@ user X\n", 0, "%s:1: bad key 'jones@': empty domain" },
	{ K256 "k user X\n", 0,
	  "%s:1: bad key '" K40 "...': longer than 256 octets" },
	{ "staff list\nbob forward b@x.example\n", 0,
	  "%s:1: list 'staff' has no members" },
	{ "a user A\nstaff list # nobody yet\n", 0,
	  "%s:2: list 'staff' has no members" },
	{ "staff list , ,\n", 0, "%s:1: list 'staff' has no members" },
	{ "staff list jones, a@@b\n", 0,
	  "%s:1: list 'staff': bad member 'a@@b': more than one '@'" },
	{ "staff list jones\n  root@\n", 0,
	  "%s:2: list 'staff': bad member 'root@': empty domain" },
	{ "staff list @x.example\n", 0,
	  "%s:1: list 'staff': bad member '@x.example': empty local part" },
	{ "staff list " K256 "k\n", 0,
	  "%s:1: list 'staff': bad member '" K40 "...': longer than 256 octets" },
	{ "bob forward\n", 0, "%s:1: forward 'bob': missing address" },
	{ "bob forward # later\nx user X\n", 0,
	  "%s:1: forward 'bob': missing address" },
	{ "bob forward a@x.example b@y.example\n", 0,
	  "%s:1: forward 'bob': more than one address" },
	{ "bob forward a@x.example,b@y.example\n", 0,
	  "%s:1: forward 'bob': more than one address" },
	{ "alice moved a@x.example\n\n  b@y.example\n", 0,
	  "%s:3: moved 'alice': more than one address" },
	{ "alice moved alice\n", 0,
	  "%s:1: moved 'alice': bad address 'alice': missing '@'" },
	{ "alice moved @newco.example\n", 0,
	  "%s:1: moved 'alice': bad address '@newco.example': empty local part" },
	{ "alice moved alice@\n", 0,
	  "%s:1: moved 'alice': bad address 'alice@': empty domain" },
	{ "alice moved <alice@newco.example\n", 0,
	  "%s:1: moved 'alice': bad address '<alice@newco.example': unbalanced '<' or '>'" },
	{ "alice moved <>\n", 0,
	  "%s:1: moved 'alice': bad address '': empty" },
	{ "bob forward a@b@c\n", 0,
	  "%s:1: forward 'bob': bad address 'a@b@c': more than one '@'" },
	{ "# header\n  jones user Fred\n", 0,
	  "%s:2: continuation line before any entry" },
	{ "\tjones user Fred\n", 0, "%s:1: continuation line before any entry" },
	{ "jones user A\nsmith user B\nJONES user C\n", 0,
	  "%s:3: duplicate key 'jones' (first on line 1)" },
	{ "a@x.test user A\nb list a\nA@X.TEST forward c@d.example\n", 0,
	  "%s:3: duplicate key 'a@x.test' (first on line 1)" },
	/* the first error in the file is the one reported */
	{ "jones user A\njones user B\nx usr\n", 0,
	  "%s:2: duplicate key 'jones' (first on line 1)" },
	{ "x usr\njones user A\njones user B\n", 0,
	  "%s:1: unknown kind 'usr' (expected user, list, forward or moved)" },
	{ "l list a\nl list\n", 0,
	  "%s:2: duplicate key 'l' (first on line 1)" },
	{ "jones user Fred\x01Jones\n", 0,
	  "%s:1: control character 0x01 in column 16" },
	{ "jones user Fred\0Jones\n", 22,
	  "%s:1: control character 0x00 in column 16" },
	{ "a user A\njones user Fred\x7f\n", 0,
	  "%s:2: control character 0x7f in column 16" },
	{ "jones user Fred\rJones\n", 0,
	  "%s:1: control character 0x0d in column 16" },
	{ "# comment \x1b[31m\n", 0,
	  "%s:1: control character 0x1b in column 11" },
};

START_TEST(test_error_rows)
{
	struct report r = { .len = 0 };

	for (size_t i = 0; i < NROWS(error_rows); i++) {
		const struct error_row *row = &error_rows[i];
		size_t len = row->len ? row->len : strlen(row->text);
		char *path = write_temp_bytes(row->text, len);
		char err[ERR_MAX], want[ERR_MAX];

		snprintf(want, sizeof(want), row->want, path);
		if (strcmp(open_error(ops, path, "/tmp", err, sizeof(err)), want))
			report_add(&r, "row %zu: got \"%s\"\n"
				   "        want \"%s\"\n", i, err, want);
		unlink(path);
		free(path);
	}
	report_check(&r);
}
END_TEST

START_TEST(test_error_unreadable)
{
	expect_open_error("/nonexistent-porterd/table", NULL,
			  "/nonexistent-porterd/table",
			  "%s: No such file or directory");
	expect_open_error("/tmp", NULL, "/tmp", "%s: not a regular file");
	expect_open_error("table", "/nonexistent-porterd",
			  "/nonexistent-porterd/table",
			  "%s: No such file or directory");
}
END_TEST

START_TEST(test_error_args)
{
	static const char *const bad[] = { "", "   ", "\t", "a b",
					   "/etc/porterd/table extra", NULL };
	char longpath[5000];

	for (size_t i = 0; bad[i] != NULL; i++)
		expect_open_error(bad[i], "/tmp", "", "table: expected one PATH");
	memset(longpath, 'p', sizeof(longpath) - 1);
	longpath[sizeof(longpath) - 1] = '\0';
	expect_open_error(longpath, "/tmp", "", "table: path too long");
	/* fits alone, not once "/tmp/" is in front */
	expect_open_error(longpath + 905, "/tmp", "", "table: path too long");
}
END_TEST

/* Errors are written only within errsize, and open still fails. */
START_TEST(test_error_truncated)
{
	char *path = write_temp_file("jones usr Fred\n");
	struct backend *be = NULL;
	char err[8];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(ops->open(path, NULL, &be, err, 5), -1);
	ck_assert_ptr_null(be);
	ck_assert_uint_eq(strlen(err), 4);
	ck_assert_int_eq(err[5], 'x');
	ck_assert_int_eq(ops->open(path, NULL, &be, NULL, 0), -1);
	ck_assert_ptr_null(be);
	unlink(path);
	free(path);
}
END_TEST

/* ---- paths ---- */

START_TEST(test_relative_path)
{
	char *path = write_temp_file("jones user Fred Jones\n");
	const char *name = strrchr(path, '/') + 1;
	char args[256];
	struct backend *be = NULL;
	char err[ERR_MAX] = "";
	struct answer a;

	/* relative: resolved against base_dir, with or without a slash */
	ck_assert_int_eq(ops->open(name, "/tmp", &be, err, sizeof(err)), 0);
	ck_assert_str_eq(ask(ops, be, NULL, "jones", false, &a),
			 "user jones name=Fred Jones");
	ops->close(&be);
	snprintf(args, sizeof(args), "  %s\t", name);
	ck_assert_int_eq(ops->open(args, "/tmp/", &be, err, sizeof(err)), 0);
	ops->close(&be);
	/* absolute: base_dir is not used */
	ck_assert_int_eq(ops->open(path, "/nonexistent-porterd", &be, err,
				   sizeof(err)), 0);
	ops->close(&be);
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_relative_path_in_messages)
{
	char *path = write_temp_file("ok user Fine\nbad kind\n");
	const char *name = strrchr(path, '/') + 1;
	char missing[ERR_MAX];

	expect_open_error(name, "/tmp", path,
		"%s:2: unknown kind 'kind' (expected user, list, forward or moved)");
	snprintf(missing, sizeof(missing), "/nonexistent-porterd/%s", name);
	expect_open_error(name, "/nonexistent-porterd", missing,
			  "%s: No such file or directory");
	unlink(path);
	free(path);
}
END_TEST

/* ---- a generated table large enough to stress the indexes ---- */

#define BIG_ENTRIES 100000

/* Every tenth entry is a list of the two users before it; the others are
 * users "Given(i % 1000) Family(i)", so given names repeat and family
 * names do not. */
static char *big_table_text(void)
{
	size_t size = (size_t)BIG_ENTRIES * 64, len = 0;
	char *text = malloc(size);

	ck_assert_ptr_nonnull(text);
	for (unsigned i = 0; i < BIG_ENTRIES; i++) {
		int n;

		if (i % 10 == 9)
			n = snprintf(text + len, size - len,
				     "list%06u list user%06u, user%06u\n", i,
				     i - 1, i - 2);
		else
			n = snprintf(text + len, size - len,
				     "user%06u user Given%u Family%u\n", i,
				     i % 1000, i);
		ck_assert_int_gt(n, 0);
		ck_assert_uint_lt(len + (size_t)n, size);
		len += (size_t)n;
	}
	return text;
}

struct big_row {
	const char *local;
	bool by_name;
	const char *want;
};

static const struct big_row big_rows[] = {
	{ "user000000", false, "user user000000 name=Given0 Family0" },
	{ "user099998", false, "user user099998 name=Given998 Family99998" },
	{ "user054321", false, "user user054321 name=Given321 Family54321" },
	{ "list000009", false, "list list000009 members=user000008,user000007" },
	{ "list099999", false, "list list099999 members=user099998,user099997" },
	{ "user000009", true, "notfound" },
	{ "user100000", true, "notfound" },
	{ "family4242", true, "user user004242 name=Given242 Family4242" },
	{ "given242 family4242", true,
	  "user user004242 name=Given242 Family4242" },
	{ "family4242 given242", true,
	  "user user004242 name=Given242 Family4242" },
	{ "given242 family4243", true, "notfound" },
	{ "given242", true, "ambiguous" },
	{ "family99999", true, "notfound" },
	{ "family4242", false, "notfound" },
};

START_TEST(test_big_table)
{
	char *text = big_table_text();
	char *path = write_temp_file(text);
	struct backend *be = open_ok(ops, path);
	struct answer a;

	ck_assert_uint_eq(ops->count(be), BIG_ENTRIES);
	for (size_t i = 0; i < NROWS(big_rows); i++)
		ck_assert_msg(strcmp(ask(ops, be, NULL, big_rows[i].local,
					 big_rows[i].by_name, &a),
				     big_rows[i].want) == 0,
			      "%s: got \"%s\", want \"%s\"", big_rows[i].local,
			      a.text, big_rows[i].want);
	ops->close(&be);
	unlink(path);
	free(path);
	free(text);
}
END_TEST

/* A duplicate deep in a big table is still found, with both lines. */
START_TEST(test_big_table_duplicate)
{
	char *text = big_table_text();
	size_t len = strlen(text);
	char *dup = malloc(len + 64);
	char *path;

	ck_assert_ptr_nonnull(dup);
	snprintf(dup, len + 64, "%sUSER012345 moved x@y.example\n", text);
	path = write_temp_file(dup);
	expect_open_error(path, NULL, path,
		"%s:100001: duplicate key 'user012345' (first on line 12346)");
	unlink(path);
	free(path);
	free(dup);
	free(text);
}
END_TEST

START_TEST(test_close_null)
{
	struct backend *be = NULL;

	ops->close(&be);
	ck_assert_ptr_null(be);
	ck_assert_str_eq(ops->name, "table");
}
END_TEST

/* ---- tables built in memory (table_open_users) ---- */

static struct table_user users[] = {
	{ "Jones", "Fred   Jones" },
	{ "qsmith", "\tQuincy\tSmith " },
	{ "anna", "Anna Gourzenkyinplatz" },
	{ "boris", "Boris Gourzenkyinplatz" },
	{ "nameless", NULL },
	{ "blank", " \t " },
	{ "ctl", "Bad\r\nName\x7f" },
	{ "jones", "Second Jones" },
	{ "JONES", "Third Jones" },
	{ "smith@example.test", "Fred Smith" },
	{ "8bit", "J\xc3\xbcrgen M\xc3\xbcller" },
};

static const struct lookup_row users_rows[] = {
	{ NULL, "jones", false, "user jones name=Fred Jones" },
	{ NULL, "JONES", false, "user jones name=Fred Jones" },
	{ NULL, "qsmith", false, "user qsmith name=Quincy Smith" },
	{ NULL, "quincy smith", true, "user qsmith name=Quincy Smith" },
	{ NULL, "smith", true, "ambiguous" },
	{ NULL, "gourzenkyinplatz", true, "ambiguous" },
	{ NULL, "nameless", false, "user nameless name=(none)" },
	{ NULL, "blank", false, "user blank name=(none)" },
	{ NULL, "ctl", false, "user ctl name=Bad Name" },
	{ NULL, "bad name", true, "user ctl name=Bad Name" },
	{ NULL, "second", true, "notfound" },
	{ NULL, "third jones", true, "notfound" },
	{ "smith@example.test", "smith", false, "user smith@example.test name=Fred Smith" },
	{ NULL, "m\xc3\xbcller", true, "user 8bit name=J\xc3\xbcrgen M\xc3\xbcller" },
};

START_TEST(test_users_lookup)
{
	struct backend *be = NULL;
	char err[ERR_MAX] = "", copy[sizeof(users)];
	size_t dups = 99;

	ck_assert_msg(table_open_users("users", users, NROWS(users), &be,
				       &dups, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(dups, 2);
	ck_assert_uint_eq(ops->count(be), NROWS(users) - 2);
	/* the strings were copied: the caller's may go */
	memcpy(copy, users, sizeof(users));
	for (size_t i = 0; i < NROWS(users); i++)
		users[i] = (struct table_user){ "gone", "Gone" };
	for (size_t i = 0; i < NROWS(users_rows); i++) {
		const struct lookup_row *row = &users_rows[i];
		struct answer a;

		ck_assert_msg(strcmp(ask(ops, be, row->address, row->local,
					 row->by_name, &a), row->want) == 0,
			      "%s: got '%s', want '%s'", row->local, a.text,
			      row->want);
	}
	memcpy(users, copy, sizeof(users));
	ops->close(&be);
	ck_assert_ptr_null(be);
}
END_TEST

START_TEST(test_users_none)
{
	struct backend *be = NULL;
	char err[ERR_MAX] = "";
	struct answer a;
	size_t dups = 99;

	ck_assert_int_eq(table_open_users("none", NULL, 0, &be, &dups, err,
					  sizeof(err)), 0);
	ck_assert_uint_eq(dups, 0);
	ck_assert_uint_eq(ops->count(be), 0);
	ck_assert_str_eq(ask(ops, be, NULL, "jones", true, &a), "notfound");
	ops->close(&be);
}
END_TEST

static const struct {
	const char *key;
	const char *want;
} users_bad_rows[] = {
	{ "", "src: user 2: bad key: empty" },
	{ NULL, "src: user 2: bad key: empty" },
	{ "a b", "src: user 2: bad key: blank or control character" },
	{ "a\tb", "src: user 2: bad key: blank or control character" },
	{ "a\x01", "src: user 2: bad key: blank or control character" },
	{ "a\x7f", "src: user 2: bad key: blank or control character" },
	{ "@x", "src: user 2: bad key: empty local part" },
	{ "x@", "src: user 2: bad key: empty domain" },
	{ "a@b@c", "src: user 2: bad key: more than one '@'" },
};

START_TEST(test_users_bad_keys)
{
	static char long_key[258];
	struct table_user two[2] = { { "ok", "Ok" } };
	struct backend *be = NULL;
	char err[ERR_MAX];
	size_t dups;

	for (size_t i = 0; i < NROWS(users_bad_rows); i++) {
		two[1].key = users_bad_rows[i].key;
		err[0] = '\0';
		ck_assert_int_eq(table_open_users("src", two, 2, &be, &dups, err,
						  sizeof(err)), -1);
		ck_assert_ptr_null(be);
		ck_assert_str_eq(err, users_bad_rows[i].want);
	}
	memset(long_key, 'k', 257);
	two[1].key = long_key;
	ck_assert_int_eq(table_open_users("src", two, 2, &be, &dups, err,
					  sizeof(err)), -1);
	ck_assert_str_eq(err, "src: user 2: bad key: longer than 256 octets");
	long_key[256] = '\0';
	ck_assert_int_eq(table_open_users("src", two, 2, &be, &dups, err,
					  sizeof(err)), 0);
	ops->close(&be);
}
END_TEST

static Suite *table_suite(void)
{
	Suite *s = suite_create("table");
	TCase *tc;

	tc = tcase_create("lookup");
	tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
	tcase_add_test(tc, test_lookup_rows);
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_result_pointers_stay_valid);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_load_rows);
	tcase_add_test(tc, test_key_length_limit);
	tcase_add_test(tc, test_answer_lengths);
	tcase_add_test(tc, test_close_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_error_rows);
	tcase_add_test(tc, test_error_unreadable);
	tcase_add_test(tc, test_error_args);
	tcase_add_test(tc, test_error_truncated);
	suite_add_tcase(s, tc);

	tc = tcase_create("paths");
	tcase_add_test(tc, test_relative_path);
	tcase_add_test(tc, test_relative_path_in_messages);
	suite_add_tcase(s, tc);

	tc = tcase_create("big");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, test_big_table);
	tcase_add_test(tc, test_big_table_duplicate);
	suite_add_tcase(s, tc);

	tc = tcase_create("users");
	tcase_add_test(tc, test_users_lookup);
	tcase_add_test(tc, test_users_none);
	tcase_add_test(tc, test_users_bad_keys);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(table_suite());
}
