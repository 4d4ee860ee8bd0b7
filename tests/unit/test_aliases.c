/*
 * test_aliases — the `aliases` directory backend: what every syntax form
 * of an aliases(5) file answers, every load error with its exact message,
 * :include: files (nested, missing, looping, too deep), and the answers
 * of a directory with a table behind the aliases: members found through
 * the chain, forwards, lists, programs and files standing for the alias
 * itself, cycles and deep nesting bounded.
 */
#include "fixture.h"

#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>

#include "porterd/backend.h"
#include "backendtest.h"

#define ERR_MAX 1024
#define ANSWER_MAX 4096

static const struct backend_ops *const ops = &backend_aliases_ops;

/* ---- helpers ---- */

/* A member as a row states it: the mailbox token's mark shown as ^A. */
static void member_append(char *out, size_t size, size_t *len, const char *m)
{
	int n = snprintf(out + *len, size - *len, "%s%s", *len ? "," : "",
			 m[0] == '\001' ? "^A" : "");

	ck_assert_int_ge(n, 0);
	*len += (size_t)n;
	n = snprintf(out + *len, size - *len, "%s", m + (m[0] == '\001'));
	ck_assert_int_ge(n, 0);
	*len += (size_t)n;
	ck_assert_uint_lt(*len, size);
}

struct alias_answer {
	int calls;
	char text[ANSWER_MAX];
};

/* One answer as a line, as the rows of these tests state it (a user has
 * no full name here); fields an answer must not carry are asserted empty. */
static void alias_answer_done(const struct dir_result *r, void *arg)
{
	struct alias_answer *a = arg;
	char members[ANSWER_MAX / 2] = "";
	size_t len = 0;

	a->calls++;
	ck_assert_ptr_null(r->fullname);
	if (r->status != DIR_LIST)
		ck_assert_uint_eq(r->nmembers, 0);
	if (r->status != DIR_FORWARD)
		ck_assert_ptr_null(r->target);
	switch (r->status) {
	case DIR_USER:
		snprintf(a->text, sizeof(a->text), "user %s", r->key);
		break;
	case DIR_LIST:
		for (size_t i = 0; i < r->nmembers; i++)
			member_append(members, sizeof(members), &len, r->members[i]);
		snprintf(a->text, sizeof(a->text), "list %s members=%s", r->key,
			 members);
		break;
	case DIR_FORWARD:
		snprintf(a->text, sizeof(a->text), "forward %s target=%s",
			 r->key, r->target);
		break;
	case DIR_NOTFOUND:
		ck_assert_ptr_null(r->key);
		snprintf(a->text, sizeof(a->text), "notfound");
		break;
	default:
		snprintf(a->text, sizeof(a->text), "status %d", (int)r->status);
		break;
	}
}

static const char *alias_ask(struct backend *be, const char *local,
			     struct alias_answer *a)
{
	struct dir_query q = { .local = local, .by_name = true };

	memset(a, 0, sizeof(*a));
	ops->lookup(be, &q, alias_answer_done, a);
	ck_assert_int_eq(a->calls, 1);
	return a->text;
}

/* A directory of files for one test, removed at the end. */
static char tmpdir[64];

/* Write text to tmpdir/name; returns the path in a static buffer. */
static const char *tmp_write(const char *name, const char *text)
{
	static char path[256];

	return temp_dir_write(tmpdir, name, text, path, sizeof(path));
}

/* ---- every syntax form, and what it answers ---- */

static const char forms_text[] =
	"# Debian-style aliases: name: target, target\n"
	"mailer-daemon: postmaster\n"
	"postmaster:    root\n"
	"Root: Alice\n"
	"staff: alice, bob carol,\n"
	"\tdave@elsewhere.example\n"
	"# a comment inside an entry does not end it\n"
	"\t<Erin@Example.Test>\n"
	"\n"
	"   # nor does an indented comment or a blank line\n"
	"        frank\n"
	"bob: bob@elsewhere.example\n"
	"carol: <Carol@Elsewhere.Example>\n"
	"\"with space\": alice\n"
	"\"quoted\": alice\n"
	"support: |/usr/bin/ticket --queue x, alice\n"
	"archive: /var/archive/mbox\n"
	"pipe-only: \"|/usr/bin/x a, b\"\n"
	"keep: keep, keep@elsewhere.example\n"
	"self: \\self\n"
	"direct: \\Jones, \"\\with space\"\n"
	"spanning: |/usr/bin/a\n"
	"\t--flag, alice\n"
	"progquote: |/usr/bin/x \"a,b\", alice\n"
	"twoprogs: |/usr/bin/a, /var/b, |/usr/bin/c\n"
	"quotedaddr: \"John Smith\"@elsewhere.example\n"
	"two: a@elsewhere.example, b@elsewhere.example\n"
	"colon : alice\n"
	"tabs:\talice\tbob\n"
	"crlf: alice\r\n"
	"commas: ,,alice,,bob,,\n"
	"j\xc3\xb6rg: j\xc3\xb6rg@elsewhere.example, m\xc3\xbcller\n"
	"hash#name: alice\n"
	"last: \"quoted\", alice";

#define FORMS_ALIASES 26

static const struct {
	const char *local;
	const char *want;
} forms_rows[] = {
	{ "mailer-daemon", "list mailer-daemon members=postmaster" },
	{ "postmaster", "list postmaster members=root" },
	/* names and targets are lowercase; queries match in any case */
	{ "root", "list root members=alice" },
	{ "ROOT", "list root members=alice" },
	/* continuation lines, comments and blank lines inside an entry */
	{ "staff", "list staff members=alice,bob,carol,dave@elsewhere.example,"
		   "erin@example.test,frank" },
	/* one address written alone is a forward */
	{ "bob", "forward bob target=bob@elsewhere.example" },
	{ "carol", "forward carol target=carol@elsewhere.example" },
	{ "quotedaddr", "forward quotedaddr target=\"john smith\"@elsewhere.example" },
	{ "two", "list two members=a@elsewhere.example,b@elsewhere.example" },
	/* quoted names: matched by content, shown quoted when they must be */
	{ "with space", "list \"with space\" members=alice" },
	{ "\"with space\"", "list \"with space\" members=alice" },
	{ "\"with\\ space\"", "list \"with space\" members=alice" },
	{ "quoted", "list quoted members=alice" },
	{ "\"quoted\"", "list quoted members=alice" },
	/* programs and files are the alias itself, their text kept nowhere */
	{ "support", "list support members=^Asupport,alice" },
	{ "archive", "user archive" },
	{ "pipe-only", "user pipe-only" },
	{ "twoprogs", "user twoprogs" },
	{ "progquote", "list progquote members=^Aprogquote,alice" },
	/* a program runs on over a continuation line to the next comma */
	{ "spanning", "list spanning members=^Aspanning,alice" },
	/* its own name, or \name, is a mailbox; \other is other's mailbox */
	{ "keep", "list keep members=^Akeep,keep@elsewhere.example" },
	{ "self", "user self" },
	{ "direct", "list direct members=^Ajones,^A\"with space\"" },
	/* mailbox tokens: answered as users, for declared mailboxes only */
	{ "\001jones", "user jones" },
	{ "\001\"with space\"", "user \"with space\"" },
	{ "\001support", "user support" },
	{ "\001keep", "user keep" },
	{ "\001alice", "notfound" },
	{ "\001root", "notfound" },
	{ "\\jones", "notfound" },
	{ "\001", "notfound" },
	/* white space, commas, CRLF, 8-bit, '#' inside a name */
	{ "colon", "list colon members=alice" },
	{ "tabs", "list tabs members=alice,bob" },
	{ "crlf", "list crlf members=alice" },
	{ "commas", "list commas members=alice,bob" },
	{ "j\xc3\xb6rg", "list j\xc3\xb6rg members=j\xc3\xb6rg@elsewhere.example,"
			 "m\xc3\xbcller" },
	{ "hash#name", "list hash#name members=alice" },
	{ "last", "list last members=quoted,alice" },
	/* targets are not names; nothing else matches */
	{ "alice", "notfound" },
	{ "frank", "notfound" },
	{ "nobody", "notfound" },
	{ "", "notfound" },
	{ "\"\"", "notfound" },
	{ "root@example.test", "notfound" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
	  "notfound" },
};

START_TEST(test_forms)
{
	char *path = write_temp_file(forms_text);
	struct backend *be = open_ok(ops, path);
	struct report r = { .len = 0 };

	for (size_t i = 0; i < NROWS(forms_rows); i++) {
		struct alias_answer a;

		if (strcmp(alias_ask(be, forms_rows[i].local, &a), forms_rows[i].want) != 0)
			report_add(&r, "row %zu (\"%s\"): got \"%s\", want \"%s\"\n",
				   i, forms_rows[i].local, a.text, forms_rows[i].want);
	}
	ck_assert_uint_eq(ops->count(be), FORMS_ALIASES);
	report_check(&r);
	ops->close(&be);
	ck_assert_ptr_null(be);
	unlink(path);
	free(path);
}
END_TEST

/* A lookup with no local part (never sent by the directory) is not found. */
START_TEST(test_null_local)
{
	char *path = write_temp_file("root: alice\n");
	struct backend *be = open_ok(ops, path);
	struct dir_query q = { .local = NULL };
	struct alias_answer a = { 0 };

	ops->lookup(be, &q, alias_answer_done, &a);
	ck_assert_str_eq(a.text, "notfound");
	ops->close(&be);
	unlink(path);
	free(path);
}
END_TEST

/* Empty files and files of comments load, and answer nothing. */
START_TEST(test_empty_files)
{
	static const char *const texts[] = { "", "\n\n", "# only\n  # comments\n" };

	for (size_t i = 0; i < NROWS(texts); i++) {
		char *path = write_temp_file(texts[i]);
		struct backend *be = open_ok(ops, path);
		struct alias_answer a;

		ck_assert_uint_eq(ops->count(be), 0);
		ck_assert_str_eq(alias_ask(be, "root", &a), "notfound");
		ops->close(&be);
		unlink(path);
		free(path);
	}
}
END_TEST

/* ---- every load error, exactly ---- */

static const struct {
	const char *text;
	const char *want;	/* %s is the file's path */
} error_rows[] = {
	{ "  alice\n", "%s:1: continuation line before any alias" },
	{ "root alice\n", "%s:1: missing ':' after 'root'" },
	{ "root\n", "%s:1: missing ':' after 'root'" },
	{ ": alice\n", "%s:1: missing name before ':'" },
	{ "root@example.test: alice\n",
	  "%s:1: bad name 'root@example.test': a name is a local part: no '@'" },
	{ "a..b: x\n", "%s:1: bad name 'a..b': misplaced '.' (quote the name)" },
	{ ".a: x\n", "%s:1: bad name '.a': misplaced '.' (quote the name)" },
	{ "a,b: x\n", "%s:1: bad name 'a,b': a character that must be quoted" },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa: x\n",
	  "%s:1: bad name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': longer than 64 octets" },
	{ "\"abc: x\n", "%s:1: unbalanced '\"' in a name" },
	{ "\"\": x\n", "%s:1: bad name '\"\"': empty" },
	{ "\"a\\b\": x\n", "%s:1: bad name '\"a\\b\"': '\\' in a quoted name" },
	{ "\"a\tb\": x\n", "%s:1: bad name '\"a\tb\"': tab in a quoted name" },
	{ "\"a@b c\": x\n", "%s:1: bad name '\"a@b c\"': a name is a local part: no '@'" },
	{ "\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa b\": x\n",
	  "%s:1: bad name '\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...': longer than 64 octets" },
	{ "root:\n", "%s:1: alias 'root' has no targets" },
	{ "root:  \n# a comment\n\nnext: x\n", "%s:1: alias 'root' has no targets" },
	{ "a: x\nroot: ,, ,\n", "%s:2: alias 'root' has no targets" },
	{ "root: alice\nbob: x\nROOT: carol\n",
	  "%s:3: duplicate alias 'root' (first on line 1)" },
	{ "\"root\": a\nroot: b\n", "%s:2: duplicate alias 'root' (first on line 1)" },
	/* a duplicate before a bad line is the first error in the file */
	{ "a: x\na: y\nb: @bad\n", "%s:2: duplicate alias 'a' (first on line 1)" },
	{ "b: @bad\na: x\na: y\n",
	  "%s:1: alias 'b': bad address '@bad': empty local part" },
	{ "root: x@\n", "%s:1: alias 'root': bad address 'x@': empty domain" },
	{ "root: a@b@c\n", "%s:1: alias 'root': bad address 'a@b@c': more than one '@'" },
	{ "root: <a@b\n", "%s:1: alias 'root': bad address '<a@b': unbalanced '<' or '>'" },
	{ "root: \"a\"@b\"c\n", "%s:1: alias 'root': bad address '\"a\"@b\"c': misplaced '\"'" },
	{ "root: a\"b\n", "%s:1: alias 'root': misplaced '\"' in 'a\"b'" },
	{ "root: \"abc\n", "%s:1: alias 'root': unbalanced '\"'" },
	{ "root: \"a\"b\n", "%s:1: alias 'root': text after a closing '\"'" },
	{ "root: alice # the admin\n",
	  "%s:1: alias 'root': '#' begins a comment only at the start of a line" },
	{ "root: \\\n", "%s:1: alias 'root': bad mailbox '\\': empty" },
	{ "root: \\a@b\n",
	  "%s:1: alias 'root': bad mailbox '\\a@b': a name is a local part: no '@'" },
	{ "root: <>\n", "%s:1: alias 'root': empty target '<>'" },
	{ "root: \"\"\n", "%s:1: alias 'root': empty target '\"\"'" },
	{ "root: bad.name.\n",
	  "%s:1: alias 'root': bad target 'bad.name.': misplaced '.' (quote the name)" },
	{ "root: alice\n  bob@\n", "%s:2: alias 'root': bad address 'bob@': empty domain" },
	{ "root: a\001b\n", "%s:1: control character 0x01 in column 8" },
	{ "root: a\rb\n", "%s:1: control character 0x0d in column 8" },
	{ "root: :include:\n", "%s:1: alias 'root': empty :include: path" },
	{ "root: \":include: \"\n", "%s:1: alias 'root': empty :include: path" },
	/* a program's quote left open: said so, its text not shown */
	{ "root: |/usr/bin/secret \"open\n",
	  "%s:1: alias 'root': unbalanced '\"'" },
	{ "root: x@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaa\n",
	  "%s:1: alias 'root': bad address 'x@aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...':"
	  " longer than 256 octets" },
};

START_TEST(test_error_rows)
{
	struct report r = { .len = 0 };

	for (size_t i = 0; i < NROWS(error_rows); i++) {
		char *path = write_temp_file(error_rows[i].text);
		char err[ERR_MAX], want[ERR_MAX];

		snprintf(want, sizeof(want), error_rows[i].want, path);
		if (strcmp(open_error(ops, path, NULL, err, sizeof(err)), want) != 0)
			report_add(&r, "row %zu: got \"%s\", want \"%s\"\n", i, err, want);
		unlink(path);
		free(path);
	}
	report_check(&r);
}
END_TEST

/* No error message ever carries a program's or a file target's text. */
START_TEST(test_errors_hide_programs)
{
	char *path = write_temp_file("support: |/usr/bin/secret-program, /var/secret-file, @x\n");
	char err[ERR_MAX];

	open_error(ops, path, NULL, err, sizeof(err));
	ck_assert_ptr_nonnull(strstr(err, "bad address '@x'"));
	ck_assert_ptr_null(strstr(err, "secret"));
	unlink(path);
	free(path);
}
END_TEST

START_TEST(test_open_args)
{
	char err[ERR_MAX], want[ERR_MAX];

	ck_assert_str_eq(open_error(ops, "", NULL, err, sizeof(err)),
			 "aliases: expected one PATH");
	ck_assert_str_eq(open_error(ops, NULL, NULL, err, sizeof(err)),
			 "aliases: expected one PATH");
	ck_assert_str_eq(open_error(ops, "a b", NULL, err, sizeof(err)),
			 "aliases: expected one PATH");
	ck_assert_str_eq(open_error(ops, "/nonexistent/aliases", NULL, err, sizeof(err)),
			 "/nonexistent/aliases: No such file or directory");
	ck_assert_str_eq(open_error(ops, "/tmp", NULL, err, sizeof(err)),
			 "/tmp: not a regular file");
	/* a relative path is taken from base_dir */
	ck_assert_str_eq(open_error(ops, "  aliases  ", "/nonexistent-base/", err, sizeof(err)),
			 "/nonexistent-base/aliases: No such file or directory");
	temp_dir_make(tmpdir, "aliases");
	tmp_write("aliases", "root: alice\n");
	snprintf(want, sizeof(want), "%s", tmpdir);
	ck_assert_str_eq(open_error(ops, "aliases", want, err, sizeof(err)), "(opened)");
	temp_dir_remove(tmpdir);
}
END_TEST

/* ---- :include: ---- */

START_TEST(test_includes)
{
	char outer[128], aliases[1024];
	struct backend *be;
	struct report r = { .len = 0 };
	static const struct {
		const char *local, *want;
	} rows[] = {
		{ "list", "list list members=alice,bob@elsewhere.example,carol" },
		{ "quoted", "list quoted members=alice,bob@elsewhere.example,carol" },
		{ "upper", "list upper members=alice,bob@elsewhere.example,carol" },
		/* an address alone in an :include: file is a list, not a forward */
		{ "solo", "list solo members=bob@elsewhere.example" },
		/* nested; relative paths are from the aliases file's directory */
		{ "nested", "list nested members=inner,outer" },
		{ "empty", "list empty members=" },
		/* programs and files in an :include: file: the alias itself;
		 * a program ends with its line */
		{ "progs", "list progs members=^Aprogs,zed" },
		{ "mixed", "list mixed members=first,alice,bob@elsewhere.example,carol,last" },
		{ "twice", "list twice members=alice,bob@elsewhere.example,carol,"
			   "alice,bob@elsewhere.example,carol" },
	};

	temp_dir_make(tmpdir, "aliases");
	tmp_write("members.txt", "# subscribers\nalice\n\n  bob@Elsewhere.Example, carol\n");
	tmp_write("solo.txt", "bob@elsewhere.example\n");
	tmp_write("inner.txt", "inner\n");
	snprintf(outer, sizeof(outer), "%s/outer.txt", tmpdir);
	tmp_write("outer.txt", ":include:inner.txt\nouter\n");
	tmp_write("empty.txt", "# nobody yet\n");
	tmp_write("progs.txt", "|/usr/bin/x\n/var/file\nzed\n");
	snprintf(aliases, sizeof(aliases),
		 "list: :include:members.txt\n"
		 "quoted: \":include:members.txt\"\n"
		 "upper: :INCLUDE: members.txt \n"
		 "solo: :include:solo.txt\n"
		 "nested: :include:%s\n"
		 "empty: :include:empty.txt\n"
		 "progs: :include:progs.txt\n"
		 "mixed: first, :include:members.txt, last\n"
		 "twice: :include:members.txt, :include:members.txt\n", outer);
	be = open_ok(ops, tmp_write("aliases", aliases));
	for (size_t i = 0; i < NROWS(rows); i++) {
		struct alias_answer a;

		if (strcmp(alias_ask(be, rows[i].local, &a), rows[i].want) != 0)
			report_add(&r, "\"%s\": got \"%s\", want \"%s\"\n",
				   rows[i].local, a.text, rows[i].want);
	}
	report_check(&r);
	ck_assert_uint_eq(ops->count(be), NROWS(rows));
	ops->close(&be);
	temp_dir_remove(tmpdir);
}
END_TEST

/* Open tmpdir/aliases holding text; the error must be want, where %1$s
 * is tmpdir. */
static void expect_include_error(const char *text, const char *want_fmt)
{
	char err[ERR_MAX], want[ERR_MAX];
	const char *path = tmp_write("aliases", text);

	snprintf(want, sizeof(want), want_fmt, tmpdir, tmpdir, tmpdir);
	ck_assert_str_eq(open_error(ops, path, NULL, err, sizeof(err)), want);
}

START_TEST(test_include_errors)
{
	char name[256], text[64];

	temp_dir_make(tmpdir, "aliases");
	snprintf(name, sizeof(name), "%s/sub", tmpdir);
	ck_assert_int_eq(mkdir(name, 0700), 0);
	expect_include_error("a: x\nb: :include:nope.txt\n",
			     "%s/aliases:2: alias 'b': :include: %s/nope.txt: "
			     "No such file or directory");
	expect_include_error("a: :include:sub\n",
			     "%s/aliases:1: alias 'a': :include: %s/sub: not a regular file");
	/* an error in an :include: file names that file and its line */
	tmp_write("bad.txt", "alice\n# fine so far\n@x\n");
	expect_include_error("a: :include:bad.txt\n",
			     "%s/bad.txt:3: alias 'a': bad address '@x': empty local part");
	/* loops: the aliases file itself, and two files naming each other */
	expect_include_error("a: x, :include:aliases\n",
			     "%s/aliases:1: alias 'a': :include: %s/aliases: "
			     "a loop, it is being read");
	tmp_write("loopa.txt", "one\n:include:loopb.txt\n");
	tmp_write("loopb.txt", "two\n:include:loopa.txt\n");
	expect_include_error("a: :include:loopa.txt\n",
			     "%s/loopb.txt:2: alias 'a': :include: %s/loopa.txt: "
			     "a loop, it is being read");
	/* nested deeper than 8 files: d0 .. d8 */
	for (int i = 0; i <= 8; i++) {
		snprintf(name, sizeof(name), "d%d.txt", i);
		snprintf(text, sizeof(text), "m%d\n:include:d%d.txt\n", i, i + 1);
		tmp_write(name, text);
	}
	expect_include_error("a: :include:d0.txt\n",
			     "%s/d7.txt:2: alias 'a': :include: files nested more than 8 deep");
	/* eight deep is fine */
	tmp_write("d7.txt", "m7\n");
	expect_include_error("a: :include:d0.txt\n", "(opened)");
	/* a duplicate in the aliases file comes before an :include: error later */
	expect_include_error("a: x\na: y\nb: :include:nope.txt\n",
			     "%s/aliases:2: duplicate alias 'a' (first on line 1)");
	temp_dir_remove(tmpdir);
}
END_TEST

/* "a: :include:big.txt" n times, for tmpdir/aliases. */
static const char *include_times(char *text, size_t size, int n)
{
	size_t o = (size_t)snprintf(text, size, "a:");

	for (int i = 0; i < n; i++)
		o += (size_t)snprintf(text + o, size - o, " :include:big.txt,");
	ck_assert_uint_lt(o, size);
	return text;
}

/*
 * :include: files read in all, each time a file is included, stop at
 * 16 MiB: lines naming one file from another multiply what is read, and
 * without a bound a few kilobytes of aliases took gigabytes to load.
 */
START_TEST(test_include_octets_bound)
{
	const size_t mib = 1 << 20;
	char *big = malloc(mib + 1), text[1024], path[256];
	static const char *const want =
		"%s/aliases:1: alias 'a': :include: %s/big.txt: "
		"more than 16 MiB of :include: files in all";
	int fd;

	ck_assert_ptr_nonnull(big);
	temp_dir_make(tmpdir, "aliases");
	/* 1 MiB of comment lines: read, and nothing kept from them */
	for (size_t i = 0; i < mib; i += 64) {
		memset(big + i, 'x', 64);
		big[i] = '#';
		big[i + 63] = '\n';
	}
	big[mib] = '\0';
	tmp_write("big.txt", big);
	free(big);
	expect_include_error(include_times(text, sizeof(text), 16), "(opened)");
	expect_include_error(include_times(text, sizeof(text), 17), want);
	/* a file over the bound by itself (sparse: never read) */
	snprintf(path, sizeof(path), "%s/big.txt", tmpdir);
	fd = open(path, O_WRONLY | O_TRUNC);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, (off_t)(16 * mib + 1)), 0);
	ck_assert_int_eq(close(fd), 0);
	expect_include_error(include_times(text, sizeof(text), 1), want);
	temp_dir_remove(tmpdir);
}
END_TEST

/* ---- through the directory: aliases first, a table behind ---- */

static const char chain_table[] =
	"alice    user   Alice Example\n"
	"jones    user   Fred Jones\n"
	"qsmith   user   Quincy Smith\n"
	"carol    moved  carol@newco.example\n";

static const char chain_aliases[] =
	"postmaster: root\n"
	"root: alice\n"
	"bob: bob@elsewhere.example\n"
	"staff: alice, jones, remote@elsewhere.example\n"
	"all: staff, root, qsmith\n"
	"support: |/usr/bin/ticket --queue x, alice\n"
	"archive: /var/archive/mbox\n"
	"keep: keep, keep@elsewhere.example\n"
	"jones-copy: \\jones, jones@elsewhere.example\n"
	"loop-a: loop-b, jones\n"
	"loop-b: loop-a, qsmith\n"
	"cyc-a: cyc-b\n"
	"cyc-b: cyc-a\n"
	"moved-member: carol, alice\n"
	"full: alice@example.org, jones@example.test\n"
	"\"help desk\": support, qsmith\n";

static struct config *chain_cfg;
static struct directory *chain_dir;
static struct backend *chain_alias_be, *chain_table_be;
static char *chain_alias_path, *chain_table_path;

/* A directory of aliases_text and chain_table, in that order or the
 * other (table_first). */
static void chain_build(const char *aliases_text, bool table_first)
{
	const char *conf = "hostname mail.example.test\n"
			   "domains example.test example.org\n"
			   "directory table /nonexistent\n";
	char err[ERR_MAX];

	log_init(LOG_LEVEL_ERR, stderr);
	ck_assert_msg(config_parse(conf, strlen(conf), "t.conf", &chain_cfg, err,
				   sizeof(err)) == 0, "%s", err);
	chain_alias_path = write_temp_file(aliases_text);
	chain_table_path = write_temp_file(chain_table);
	chain_alias_be = open_ok(ops, chain_alias_path);
	ck_assert_msg(backend_table_ops.open(chain_table_path, NULL, &chain_table_be,
					     err, sizeof(err)) == 0, "%s", err);
	chain_dir = directory_new(chain_cfg);
	if (table_first)
		directory_append(chain_dir, &backend_table_ops, chain_table_be);
	directory_append(chain_dir, ops, chain_alias_be);
	if (!table_first)
		directory_append(chain_dir, &backend_table_ops, chain_table_be);
}

static void chain_setup(void)
{
	chain_build(chain_aliases, false);
}

static void chain_teardown(void)
{
	directory_free(&chain_dir);	/* closes both backends */
	config_unref(&chain_cfg);
	unlink(chain_alias_path);
	unlink(chain_table_path);
	free(chain_alias_path);
	free(chain_table_path);
}

static const struct {
	const char *query;
	enum dir_status status;
	const char *fullname, *address;
} chain_lookup_rows[] = {
	{ "root", DIR_LIST, "(null)", "root@example.test" },
	{ "ROOT", DIR_LIST, "(null)", "root@example.test" },
	{ "root@example.org", DIR_LIST, "(null)", "root@example.org" },
	{ "<Root@Example.Test>", DIR_LIST, "(null)", "root@example.test" },
	{ "bob", DIR_FORWARD, "(null)", "bob@elsewhere.example" },
	/* the alias itself: VRFY answers for it, nothing else */
	{ "archive", DIR_USER, "(null)", "archive@example.test" },
	{ "support", DIR_LIST, "(null)", "support@example.test" },
	{ "help desk", DIR_LIST, "(null)", "\"help desk\"@example.test" },
	/* names the aliases do not have go on down the chain */
	{ "alice", DIR_USER, "Alice Example", "alice@example.test" },
	{ "Alice Example", DIR_USER, "Alice Example", "alice@example.test" },
	{ "carol", DIR_MOVED, "(null)", "carol@newco.example" },
	{ "nobody", DIR_NOTFOUND, "(null)", "(null)" },
	{ "root@elsewhere.example", DIR_NOT_LOCAL, "(null)", "(null)" },
};

START_TEST(test_chain_lookup)
{
	ck_assert_uint_eq(directory_count(chain_dir), 16 + 4);
	fixture_ask(chain_dir, chain_lookup_rows[_i].query, false);
	ck_assert_msg(got.status == chain_lookup_rows[_i].status, "%s: status %d",
		      chain_lookup_rows[_i].query, got.status);
	ck_assert_str_eq(got.fullname, chain_lookup_rows[_i].fullname);
	ck_assert_str_eq(got.address, chain_lookup_rows[_i].address);
}
END_TEST

static const struct {
	const char *query;
	enum dir_status status;
	const char *members;
} chain_expand_rows[] = {
	/* a local target is found through the whole chain, nested too */
	{ "root", DIR_LIST, "Alice Example <alice@example.test>" },
	{ "postmaster", DIR_LIST, "Alice Example <alice@example.test>" },
	{ "staff", DIR_LIST, "Alice Example <alice@example.test>|"
			     "Fred Jones <jones@example.test>|<remote@elsewhere.example>" },
	{ "all", DIR_LIST, "Alice Example <alice@example.test>|"
			   "Fred Jones <jones@example.test>|<remote@elsewhere.example>|"
			   "Quincy Smith <qsmith@example.test>" },
	{ "full", DIR_LIST, "Alice Example <alice@example.org>|"
			    "Fred Jones <jones@example.test>" },
	{ "bob", DIR_FORWARD, "<bob@elsewhere.example>" },
	/* programs and files: the alias itself, never their text */
	{ "support", DIR_LIST, "<support@example.test>|Alice Example <alice@example.test>" },
	{ "support@example.org", DIR_LIST,
	  "<support@example.test>|Alice Example <alice@example.test>" },
	{ "archive", DIR_USER, "<archive@example.test>" },
	{ "help desk", DIR_LIST, "<support@example.test>|Alice Example <alice@example.test>|"
				 "Quincy Smith <qsmith@example.test>" },
	/* its own name and \name: that mailbox, not aliased again */
	{ "keep", DIR_LIST, "<keep@example.test>|<keep@elsewhere.example>" },
	{ "jones-copy", DIR_LIST, "<jones@example.test>|<jones@elsewhere.example>" },
	/* cycles and moved members: bounded, dropped */
	{ "loop-a", DIR_LIST, "Quincy Smith <qsmith@example.test>|"
			      "Fred Jones <jones@example.test>" },
	{ "cyc-a", DIR_LIST, "" },
	{ "moved-member", DIR_LIST, "Alice Example <alice@example.test>" },
	{ "nobody", DIR_NOTFOUND, "" },
};

START_TEST(test_chain_expand)
{
	fixture_ask(chain_dir, chain_expand_rows[_i].query, true);
	ck_assert_msg(got.status == chain_expand_rows[_i].status, "%s: status %d",
		      chain_expand_rows[_i].query, got.status);
	ck_assert_str_eq(got.members, chain_expand_rows[_i].members);
}
END_TEST

/* The mailbox token answers from behind a table as well. */
START_TEST(test_chain_table_first)
{
	chain_teardown();
	chain_build(chain_aliases, true);
	fixture_ask(chain_dir, "support", true);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_str_eq(got.members,
			 "<support@example.test>|Alice Example <alice@example.test>");
	fixture_ask(chain_dir, "jones-copy", true);
	ck_assert_str_eq(got.members, "<jones@example.test>|<jones@elsewhere.example>");
}
END_TEST

/* l0 -> l1 -> ... -> l20 -> alice: deeper than DIR_EXPAND_DEPTH_MAX. */
START_TEST(test_chain_depth_bound)
{
	char text[4096];
	size_t o = 0;

	for (int i = 0; i < 20; i++)
		o += (size_t)snprintf(text + o, sizeof(text) - o, "l%d: l%d\n", i, i + 1);
	snprintf(text + o, sizeof(text) - o, "l20: alice\n");
	chain_teardown();
	chain_build(text, false);
	fixture_ask(chain_dir, "l0", true);
	ck_assert_int_eq(got.status, DIR_TOO_LARGE);
	fixture_ask(chain_dir, "l10", true);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_str_eq(got.members, "Alice Example <alice@example.test>");
}
END_TEST

/* ---- a large file: loaded once, every name found by its index ---- */

#define BIG_ALIASES 200000

START_TEST(test_big_file)
{
	size_t size = (size_t)BIG_ALIASES * 64, o = 0;
	char *text = malloc(size), *path;
	struct backend *be;
	struct alias_answer a;
	char local[32], want[128];

	ck_assert_ptr_nonnull(text);
	for (int i = 0; i < BIG_ALIASES; i++)
		o += (size_t)snprintf(text + o, size - o,
				      "u%d: m%d, x%d@elsewhere.example\n", i, i, i);
	path = write_temp_file(text);
	free(text);
	be = open_ok(ops, path);
	ck_assert_uint_eq(ops->count(be), BIG_ALIASES);
	for (int i = 0; i < BIG_ALIASES; i += 997) {
		snprintf(local, sizeof(local), "U%d", i);
		snprintf(want, sizeof(want),
			 "list u%d members=m%d,x%d@elsewhere.example", i, i, i);
		ck_assert_str_eq(alias_ask(be, local, &a), want);
	}
	ck_assert_str_eq(alias_ask(be, "u200000", &a), "notfound");
	ops->close(&be);
	unlink(path);
	free(path);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("aliases");
	TCase *tc = tcase_create("file");
	TCase *chain = tcase_create("chain");

	tcase_add_test(tc, test_forms);
	tcase_add_test(tc, test_null_local);
	tcase_add_test(tc, test_empty_files);
	tcase_add_test(tc, test_error_rows);
	tcase_add_test(tc, test_errors_hide_programs);
	tcase_add_test(tc, test_open_args);
	tcase_add_test(tc, test_includes);
	tcase_add_test(tc, test_include_errors);
	tcase_add_test(tc, test_include_octets_bound);
	tcase_add_test(tc, test_big_file);
	suite_add_tcase(s, tc);
	tcase_add_checked_fixture(chain, chain_setup, chain_teardown);
	tcase_add_loop_test(chain, test_chain_lookup, 0, NROWS(chain_lookup_rows));
	tcase_add_loop_test(chain, test_chain_expand, 0, NROWS(chain_expand_rows));
	tcase_add_test(chain, test_chain_table_first);
	tcase_add_test(chain, test_chain_depth_bound);
	suite_add_tcase(s, chain);
	return testutil_run(s);
}
