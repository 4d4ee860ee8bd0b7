/*
 * test_passwd — the `passwd` directory backend: which accounts of a
 * passwd(5) file are addresses (uid range, hide_nologin, names that are
 * not local parts, duplicates), the full names GECOS fields give, lookups
 * by account and by free-text name, every parameter error with its exact
 * message, and the real system database.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "porterd/backend.h"
#include "porterd/log.h"
#include "backendtest.h"

#define ERR_MAX 1024

static const struct backend_ops *const ops = &backend_passwd_ops;

/* ---- helpers ---- */

/* A temporary directory for the fixtures of one test. */
static char tmp_dir[64];

static struct backend *open_args(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static struct backend *open_args(const char *fmt, ...)
{
	char args[ERR_MAX], err[ERR_MAX] = "";
	struct backend *be = NULL;
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(args, sizeof(args), fmt, ap);
	va_end(ap);
	ck_assert_msg(ops->open(args, "/nonexistent-base", &be, err,
				sizeof(err)) == 0, "open '%s': %s", args, err);
	ck_assert_ptr_nonnull(be);
	return be;
}

/* ---- the fixture ---- */

static const char fixture_text[] =
	"root:x:0:0:root:/root:/bin/bash\n"
	"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
	"below:x:999:999:Below Range:/home/below:/bin/bash\n"
	"jones:x:1000:1000:Fred Jones,Room 101,555-1234,555-9876,x:/home/jones:/bin/bash\n"
	"smith:x:1001:1001:& Smith:/home/smith:/bin/bash\n"
	"qsmith:x:1002:1002:Quincy Smith,,,:/home/qsmith:/bin/bash\n"
	"anna:x:1003:1003:Anna Gourzenkyinplatz:/home/anna:/bin/bash\n"
	"boris:x:1004:1004:Boris Gourzenkyinplatz:/home/boris:/bin/zsh\n"
	"nameless:x:1005:1005::/home/nameless:/bin/bash\n"
	"commas:x:1006:1006:,,,:/home/commas:/bin/bash\n"
	"blanks:x:1007:1007:  Wide \t  Spaced\x01Name  ,x:/h:/bin/sh\n"
	"amp:x:1008:1008:&-the-& and &,&:/h:/bin/sh\n"
	"fred:x:1009:1009:Account Fred:/h:/bin/sh\n"
	"nologin1:x:1010:1010:No Login One:/:/usr/sbin/nologin\n"
	"nologin2:x:1011:1011:No Login Two:/:/sbin/nologin\n"
	"false1:x:1012:1012:False One:/:/bin/false\n"
	"false2:x:1013:1013:False Two:/:/usr/bin/false\n"
	"almost:x:1014:1014:Almost Nologin:/:/usr/sbin/nologin2\n"
	"noshell:x:1015:1015:No Shell:/:\n"
	"MixedCase:x:1016:1016:Mixed Case:/:/bin/sh\n"
	"first.last:x:1017:1017:First Last:/:/bin/sh\n"
	"machine$:x:1018:1018::/:/bin/sh\n"
	"this line is not a passwd entry and the C library skips it\n"
	"late:x:1019:1019:Late After Garbage:/:/bin/sh\n"
	"top:x:60000:60000:Top Of Range:/:/bin/sh\n"
	"above:x:60001:60001:Above Range:/:/bin/sh\n"
	"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";

/* Addresses the fixture holds with the default range, 1000 to 60000. */
#define FIXTURE_ADDRESSES 21

struct lookup_row {
	const char *address;
	const char *local;
	bool by_name;
	const char *want;
};

static const struct lookup_row default_rows[] = {
	/* the uid range: 1000 to 60000 by default */
	{ NULL, "root", false, "notfound" },
	{ NULL, "daemon", false, "notfound" },
	{ NULL, "below", false, "notfound" },
	{ NULL, "jones", false, "user jones name=Fred Jones" },
	{ NULL, "top", false, "user top name=Top Of Range" },
	{ NULL, "above", false, "notfound" },
	{ NULL, "nobody", false, "notfound" },
	/* GECOS: the first comma-separated field, '&' the login capitalised */
	{ NULL, "smith", false, "user smith name=Smith Smith" },
	{ NULL, "qsmith", false, "user qsmith name=Quincy Smith" },
	{ NULL, "nameless", false, "user nameless name=(none)" },
	{ NULL, "commas", false, "user commas name=(none)" },
	{ NULL, "blanks", false, "user blanks name=Wide Spaced Name" },
	{ NULL, "amp", false, "user amp name=Amp-the-Amp and Amp" },
	{ NULL, "machine$", false, "user machine$ name=(none)" },
	/* without hide_nologin every shell is an address */
	{ NULL, "nologin1", false, "user nologin1 name=No Login One" },
	{ NULL, "false2", false, "user false2 name=False Two" },
	/* a line the C library cannot read does not end the file */
	{ NULL, "late", false, "user late name=Late After Garbage" },
	/* account names: case-insensitive, stored lowercase */
	{ NULL, "mixedcase", false, "user mixedcase name=Mixed Case" },
	{ NULL, "MIXEDCASE", false, "user mixedcase name=Mixed Case" },
	{ NULL, "JONES", false, "user jones name=Fred Jones" },
	{ NULL, "first.last", false, "user first.last name=First Last" },
	/* a full address: the local part is the account */
	{ "jones@example.test", "jones", false, "user jones name=Fred Jones" },
	{ "root@example.test", "root", false, "notfound" },
	/* free-text names only when the query allows them */
	{ NULL, "quincy", false, "notfound" },
	{ NULL, "quincy", true, "user qsmith name=Quincy Smith" },
	{ NULL, "Quincy Smith", true, "user qsmith name=Quincy Smith" },
	{ NULL, "fred jones", true, "user jones name=Fred Jones" },
	{ NULL, "spaced", true, "user blanks name=Wide Spaced Name" },
	{ NULL, "gourzenkyinplatz", true, "ambiguous" },
	{ NULL, "anna gourzenkyinplatz", true,
	  "user anna name=Anna Gourzenkyinplatz" },
	/* the account name first: "fred" is an account, and Fred Jones's */
	{ NULL, "fred", true, "user fred name=Account Fred" },
	{ NULL, "smith", true, "user smith name=Smith Smith" },
	/* names of accounts left out are not matched */
	{ NULL, "below", true, "notfound" },
	{ NULL, "range", true, "user top name=Top Of Range" },
	{ NULL, "nobody here", true, "notfound" },
	/* the words after a comma are not the name */
	{ NULL, "room", true, "notfound" },
};

static struct backend *fixture;
static char fixture_path[128];

static void fixture_setup(void)
{
	temp_dir_make(tmp_dir, "passwd");
	temp_dir_write(tmp_dir, "passwd", fixture_text, fixture_path,
		       sizeof(fixture_path));
	fixture = open_args("file=%s", fixture_path);
}

static void fixture_teardown(void)
{
	ops->close(&fixture);
	ck_assert_ptr_null(fixture);
	temp_dir_remove(tmp_dir);
}

static void check_rows(struct backend *be, const struct lookup_row *rows,
		       size_t n)
{
	struct report r = { .len = 0 };

	for (size_t i = 0; i < n; i++) {
		struct answer a;
		const char *got = ask(ops, be, rows[i].address, rows[i].local,
				      rows[i].by_name, &a);

		if (strcmp(got, rows[i].want) != 0)
			report_add(&r, "  %s%s%s by_name=%d: got '%s', want '%s'\n",
				   rows[i].local, rows[i].address ? " " : "",
				   rows[i].address ? rows[i].address : "",
				   rows[i].by_name, got, rows[i].want);
	}
	report_check(&r);
}

START_TEST(test_default_rows)
{
	check_rows(fixture, default_rows, NROWS(default_rows));
}
END_TEST

START_TEST(test_count)
{
	ck_assert_uint_eq(ops->count(fixture), FIXTURE_ADDRESSES);
	ck_assert_str_eq(ops->name, "passwd");
}
END_TEST

/* ---- the uid range ---- */

static const struct lookup_row range_rows[] = {
	{ NULL, "below", false, "user below name=Below Range" },
	{ NULL, "jones", false, "user jones name=Fred Jones" },
	{ NULL, "smith", false, "notfound" },
	{ NULL, "root", false, "notfound" },
	{ NULL, "daemon", false, "notfound" },
};

START_TEST(test_uid_range)
{
	struct backend *be = open_args("min_uid=999 max_uid=1000 file=%s",
				       fixture_path);

	check_rows(be, range_rows, NROWS(range_rows));
	ck_assert_uint_eq(ops->count(be), 2);
	ops->close(&be);
}
END_TEST

static const struct lookup_row wide_rows[] = {
	{ NULL, "root", false, "user root name=root" },
	{ NULL, "daemon", false, "user daemon name=daemon" },
	{ NULL, "above", false, "user above name=Above Range" },
	{ NULL, "nobody", false, "user nobody name=nobody" },
};

START_TEST(test_uid_range_everything)
{
	struct backend *be = open_args("file=%s min_uid=0 max_uid=4294967294",
				       fixture_path);

	check_rows(be, wide_rows, NROWS(wide_rows));
	ck_assert_uint_eq(ops->count(be), FIXTURE_ADDRESSES + 5);
	ops->close(&be);
}
END_TEST

START_TEST(test_uid_range_one)
{
	struct backend *be = open_args("file=%s min_uid=60000 max_uid=60000",
				       fixture_path);
	struct answer a;

	ck_assert_uint_eq(ops->count(be), 1);
	ck_assert_str_eq(ask(ops, be, NULL, "top", false, &a),
			 "user top name=Top Of Range");
	ops->close(&be);
}
END_TEST

/* ---- hide_nologin ---- */

static const struct lookup_row nologin_rows[] = {
	{ NULL, "nologin1", false, "notfound" },
	{ NULL, "nologin2", false, "notfound" },
	{ NULL, "false1", false, "notfound" },
	{ NULL, "false2", false, "notfound" },
	{ NULL, "no login one", true, "notfound" },
	{ NULL, "almost", false, "user almost name=Almost Nologin" },
	{ NULL, "noshell", false, "user noshell name=No Shell" },
	{ NULL, "boris", false, "user boris name=Boris Gourzenkyinplatz" },
};

START_TEST(test_hide_nologin)
{
	struct backend *be = open_args("file=%s hide_nologin=yes",
				       fixture_path);

	check_rows(be, nologin_rows, NROWS(nologin_rows));
	ck_assert_uint_eq(ops->count(be), FIXTURE_ADDRESSES - 4);
	ops->close(&be);
}
END_TEST

START_TEST(test_hide_nologin_no)
{
	struct backend *be = open_args("hide_nologin=no file=%s",
				       fixture_path);

	ck_assert_uint_eq(ops->count(be), FIXTURE_ADDRESSES);
	ops->close(&be);
}
END_TEST

/* ---- names left out ---- */

static const char odd_names_text[] =
	"good:x:1000:1000:Good One:/:/bin/sh\n"
	"bad name:x:1001:1001:Blank In Name:/:/bin/sh\n"
	"a@b:x:1002:1002:At Sign:/:/bin/sh\n"
	"+nis:x:1003:1003:Compat Plus:/:/bin/sh\n"
	"-minus:x:1004:1004:Compat Minus:/:/bin/sh\n"
	".dot:x:1005:1005:Leading Dot:/:/bin/sh\n"
	"dot.:x:1006:1006:Trailing Dot:/:/bin/sh\n"
	"a..b:x:1007:1007:Double Dot:/:/bin/sh\n"
	"j\xc3\xb6rg:x:1008:1008:Eight Bit:/:/bin/sh\n"
	"sixty-five-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	":x:1009:1009:Too Long:/:/bin/sh\n"
	"sixty-four-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	":x:1010:1010:Just Fits:/:/bin/sh\n"
	"o'brien+tag:x:1011:1011:Atext Only:/:/bin/sh\n"
	"good:x:1012:1012:Second Good:/:/bin/sh\n"
	"GOOD:x:1013:1013:Third Good:/:/bin/sh\n"
	"b@d:x:5:5:Outside Range:/:/bin/sh\n";

static const struct lookup_row odd_rows[] = {
	{ NULL, "good", false, "user good name=Good One" },
	{ NULL, "second good", true, "notfound" },
	{ NULL, "a@b", false, "notfound" },
	{ NULL, "blank", true, "notfound" },
	{ NULL, "compat", true, "notfound" },
	{ NULL, "dot", true, "notfound" },
	{ NULL, "eight", true, "notfound" },
	{ NULL, "too long", true, "notfound" },
	{ NULL, "sixty-four-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
	  false, "user sixty-four-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  " name=Just Fits" },
	{ NULL, "o'brien+tag", false, "user o'brien+tag name=Atext Only" },
};

/* Everything logged while fn runs, with warnings on. */
static void logged(void (*fn)(void *), void *arg, char *out, size_t size)
{
	FILE *f = log_capture_open(LOG_LEVEL_WARN);

	fn(arg);
	log_capture_read(f, out, size);
}

static void open_odd(void *arg)
{
	*(struct backend **)arg = open_args("file=%s/odd", tmp_dir);
}

START_TEST(test_odd_names_left_out)
{
	char path[128], log[2048];
	struct backend *be = NULL;

	temp_dir_write(tmp_dir, "odd", odd_names_text, path, sizeof(path));
	logged(open_odd, &be, log, sizeof(log));
	check_rows(be, odd_rows, NROWS(odd_rows));
	ck_assert_uint_eq(ops->count(be), 3);
	/* one line for all of them; the uid range is not a skip */
	ck_assert_msg(strstr(log, "event=passwd_skip") != NULL &&
		      strchr(log, '\n') == log + strlen(log) - 1, "log: %s", log);
	ck_assert_msg(strstr(log, " bad_name=9 duplicate=2\n") != NULL,
		      "log: %s", log);
	ck_assert_msg(strstr(log, path) != NULL, "log: %s", log);
	ops->close(&be);
}
END_TEST

static void open_fixture(void *arg)
{
	*(struct backend **)arg = open_args("file=%s", fixture_path);
}

START_TEST(test_nothing_skipped_nothing_logged)
{
	struct backend *be = NULL;
	char log[2048];

	logged(open_fixture, &be, log, sizeof(log));
	ck_assert_str_eq(log, "");
	ops->close(&be);
}
END_TEST

START_TEST(test_long_gecos)
{
	static char text[8192];
	char path[128], want[2100];
	struct backend *be;
	struct answer a;
	size_t len;

	/* 1024 octets of name is kept; 1025 is not used at all */
	len = (size_t)snprintf(text, sizeof(text), "fits:x:1000:1:");
	memset(text + len, 'a', 1024);
	len += 1024;
	len += (size_t)snprintf(text + len, sizeof(text) - len,
				":/:/bin/sh\nlong:x:1001:1:");
	memset(text + len, 'b', 1025);
	len += 1025;
	len += (size_t)snprintf(text + len, sizeof(text) - len,
				":/:/bin/sh\namps:x:1002:1:");
	/* 300 '&' of a 4-letter login expand past the bound */
	memset(text + len, '&', 300);
	len += 300;
	snprintf(text + len, sizeof(text) - len, ":/:/bin/sh\n");
	temp_dir_write(tmp_dir, "long", text, path, sizeof(path));
	be = open_args("file=%s", path);
	memset(want, 0, sizeof(want));
	snprintf(want, sizeof(want), "user fits name=");
	memset(want + strlen(want), 'a', 1024);
	ck_assert_str_eq(ask(ops, be, NULL, "fits", false, &a), want);
	ck_assert_str_eq(ask(ops, be, NULL, "long", false, &a),
			 "user long name=(none)");
	ck_assert_str_eq(ask(ops, be, NULL, "amps", false, &a),
			 "user amps name=(none)");
	ops->close(&be);
}
END_TEST

START_TEST(test_empty_file)
{
	char path[128];
	struct backend *be;
	struct answer a;

	temp_dir_write(tmp_dir, "empty", "", path, sizeof(path));
	be = open_args("file=%s", path);
	ck_assert_uint_eq(ops->count(be), 0);
	ck_assert_str_eq(ask(ops, be, NULL, "jones", true, &a), "notfound");
	ops->close(&be);
}
END_TEST

/* ---- parameter errors ---- */

struct error_row {
	const char *args;
	const char *want;
};

static const struct error_row error_rows[] = {
	{ "min_uid=abc", "passwd: min_uid: not a number: 'abc'" },
	{ "min_uid=", "passwd: min_uid: not a number: ''" },
	{ "min_uid=12x", "passwd: min_uid: not a number: '12x'" },
	{ "max_uid=-1", "passwd: max_uid: not a number: '-1'" },
	{ "max_uid=+5", "passwd: max_uid: not a number: '+5'" },
	{ "max_uid=4294967295",
	  "passwd: max_uid: '4294967295' is over 4294967294" },
	{ "min_uid=99999999999999999999999999",
	  "passwd: min_uid: '99999999999999999999999999' is over 4294967294" },
	{ "min_uid=2000 max_uid=1000",
	  "passwd: min_uid 2000 is above max_uid 1000" },
	{ "min_uid=60001", "passwd: min_uid 60001 is above max_uid 60000" },
	{ "max_uid=999", "passwd: min_uid 1000 is above max_uid 999" },
	{ "x=1", "passwd: unknown parameter 'x' "
		 "(known: min_uid, max_uid, hide_nologin, file)" },
	{ "MIN_UID=1", "passwd: unknown parameter 'MIN_UID' "
		       "(known: min_uid, max_uid, hide_nologin, file)" },
	{ "a_parameter_name_that_is_far_too_long_to_show=1",
	  "passwd: unknown parameter 'a_parameter_name_that_is_far_too_long_to...' "
	  "(known: min_uid, max_uid, hide_nologin, file)" },
	{ "min_uid", "passwd: expected name=value, got 'min_uid'" },
	{ "=5", "passwd: expected name=value, got '=5'" },
	{ "/etc/passwd", "passwd: expected name=value, got '/etc/passwd'" },
	{ "min_uid=1 min_uid=2", "passwd: min_uid given twice" },
	{ "file=/a file=/b", "passwd: file given twice" },
	{ "hide_nologin=maybe",
	  "passwd: hide_nologin: expected yes or no, got 'maybe'" },
	{ "hide_nologin=YES",
	  "passwd: hide_nologin: expected yes or no, got 'YES'" },
	{ "hide_nologin=", "passwd: hide_nologin: expected yes or no, got ''" },
	{ "file=", "passwd: file: empty path" },
	{ "file=/nonexistent-dir/passwd",
	  "/nonexistent-dir/passwd: No such file or directory" },
	{ "file=relative", "/nonexistent-base/relative: No such file or directory" },
	{ "file=/", "/: not a regular file" },
	{ "file=/dev/null", "/dev/null: not a regular file" },
	/* the first error in the line is the one reported */
	{ "min_uid=x max_uid=y", "passwd: min_uid: not a number: 'x'" },
};

START_TEST(test_error_rows)
{
	char err[ERR_MAX];

	for (size_t i = 0; i < NROWS(error_rows); i++)
		ck_assert_msg(strcmp(open_error(ops, error_rows[i].args,
						"/nonexistent-base", err,
						sizeof(err)),
				     error_rows[i].want) == 0,
			      "args '%s': got '%s', want '%s'",
			      error_rows[i].args, err, error_rows[i].want);
}
END_TEST

START_TEST(test_error_path_too_long)
{
	static char args[5000], base[4096];
	char err[ERR_MAX];

	/* the path itself */
	memcpy(args, "file=/", 6);
	memset(args + 6, 'p', 4200);
	ck_assert_str_eq(open_error(ops, args, NULL, err, sizeof(err)),
			 "passwd: file: path too long");
	/* a relative path with the base directory in front */
	base[0] = '/';
	memset(base + 1, 'b', sizeof(base) - 2);
	ck_assert_str_eq(open_error(ops, "file=x", base, err, sizeof(err)),
			 "passwd: file: path too long");
}
END_TEST

START_TEST(test_relative_file)
{
	struct backend *be = NULL;
	char err[ERR_MAX] = "";
	char base_slash[80];

	ck_assert_msg(ops->open("file=passwd", tmp_dir, &be, err,
				sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(ops->count(be), FIXTURE_ADDRESSES);
	ops->close(&be);
	snprintf(base_slash, sizeof(base_slash), "%s/", tmp_dir);
	ck_assert_msg(ops->open("  file=passwd\t", base_slash, &be, err,
				sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(ops->count(be), FIXTURE_ADDRESSES);
	ops->close(&be);
}
END_TEST

START_TEST(test_unreadable_file)
{
	char want[256], err[ERR_MAX], args[200];

	if (geteuid() == 0)
		return;	/* root reads any file: nothing to test */
	ck_assert_int_eq(chmod(fixture_path, 0), 0);
	snprintf(args, sizeof(args), "file=%s", fixture_path);
	snprintf(want, sizeof(want), "%s: Permission denied", fixture_path);
	ck_assert_str_eq(open_error(ops, args, NULL, err, sizeof(err)), want);
}
END_TEST

START_TEST(test_close_null)
{
	struct backend *be = NULL;

	ops->close(&be);
	ck_assert_ptr_null(be);
}
END_TEST

/* ---- the real system database ---- */

START_TEST(test_system_accounts)
{
	struct backend *be = open_args("%s", "");
	struct answer a;

	/* root (uid 0) is below the default range */
	ck_assert_str_eq(ask(ops, be, NULL, "root", false, &a), "notfound");
	ops->close(&be);

	be = open_args("min_uid=0");
	ck_assert_int_eq(strncmp(ask(ops, be, NULL, "root", false, &a),
				 "user root name=", 15), 0);
	ck_assert_str_eq(ask(ops, be, "root@example.test", "root", false, &a),
			 a.text);
	ck_assert_uint_ge(ops->count(be), 1);
	ops->close(&be);

	be = open_args("min_uid=0 max_uid=0 hide_nologin=yes");
	ck_assert_uint_le(ops->count(be), 1);
	ops->close(&be);
}
END_TEST

static Suite *passwd_suite(void)
{
	Suite *s = suite_create("passwd");
	TCase *tc;

	tc = tcase_create("fixture");
	tcase_add_checked_fixture(tc, fixture_setup, fixture_teardown);
	tcase_add_test(tc, test_default_rows);
	tcase_add_test(tc, test_count);
	tcase_add_test(tc, test_uid_range);
	tcase_add_test(tc, test_uid_range_everything);
	tcase_add_test(tc, test_uid_range_one);
	tcase_add_test(tc, test_hide_nologin);
	tcase_add_test(tc, test_hide_nologin_no);
	tcase_add_test(tc, test_odd_names_left_out);
	tcase_add_test(tc, test_nothing_skipped_nothing_logged);
	tcase_add_test(tc, test_long_gecos);
	tcase_add_test(tc, test_empty_file);
	tcase_add_test(tc, test_relative_file);
	tcase_add_test(tc, test_unreadable_file);
	suite_add_tcase(s, tc);

	tc = tcase_create("errors");
	tcase_add_test(tc, test_error_rows);
	tcase_add_test(tc, test_error_path_too_long);
	tcase_add_test(tc, test_close_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("system");
	tcase_add_test(tc, test_system_accounts);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_init(LOG_LEVEL_ERR, stderr);
	return testutil_run(passwd_suite());
}
