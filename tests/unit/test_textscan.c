/*
 * test_textscan — words of a backend's arguments, the one PATH of a file
 * backend resolved against the config's directory, and the entry lines
 * a file's entries are counted by.
 */
#include "testutil.h"

#include <stdbool.h>
#include <string.h>

#include "porterd/textscan.h"

#define NROWS(rows) (sizeof(rows) / sizeof((rows)[0]))


/* Every word of args, one space apart. */
START_TEST(test_words)
{
	static const struct {
		const char *args, *want;
	} rows[] = {
		{ "", "" },
		{ " \t ", "" },
		{ "a", "a" },
		{ "  min_uid=1\tfile=x  ", "min_uid=1 file=x" },
		{ "a,b  c", "a,b c" },
	};

	for (size_t i = 0; i < NROWS(rows); i++) {
		char out[64] = "";
		const char *s = rows[i].args, *e;

		for (; (s = text_next_word(s, &e)) != NULL; s = e)
			snprintf(out + strlen(out), sizeof(out) - strlen(out),
				 "%s%.*s", out[0] != '\0' ? " " : "",
				 (int)(e - s), s);
		ck_assert_msg(strcmp(out, rows[i].want) == 0, "'%s': got '%s'",
			      rows[i].args, out);
	}
}
END_TEST

static const struct {
	const char *args, *base_dir;
	size_t pathsize;
	const char *want;	/* the path, or the error */
} path_rows[] = {
	{ "/etc/aliases", "/conf", 64, "/etc/aliases" },
	{ "  aliases\t", "/conf", 64, "/conf/aliases" },
	{ "aliases", "/conf/", 64, "/conf/aliases" },
	{ "aliases", "/", 64, "/aliases" },
	{ "aliases", "", 64, "aliases" },
	{ "aliases", NULL, 64, "aliases" },
	{ "sub/x.table", ".", 64, "./sub/x.table" },
	{ NULL, "/conf", 64, "table: expected one PATH" },
	{ " ", "/conf", 64, "table: expected one PATH" },
	{ "a b", "/conf", 64, "table: expected one PATH" },
	/* the result and its NUL must fit */
	{ "/1234567", NULL, 9, "/1234567" },
	{ "/12345678", NULL, 9, "table: path too long" },
	{ "12", "/abcd", 9, "/abcd/12" },
	{ "123", "/abcd", 9, "table: path too long" },
};

START_TEST(test_path_arg)
{
	char path[64] = "", err[64] = "";
	int rc = text_path_arg("table", path_rows[_i].args, path_rows[_i].base_dir,
			       path, path_rows[_i].pathsize, err, sizeof(err));

	ck_assert_str_eq(rc == 0 ? path : err, path_rows[_i].want);
	ck_assert_int_eq(rc == 0, strchr(path_rows[_i].want, ':') == NULL);
}
END_TEST

/* Blank, empty and comment lines start no entry; the last line may lack
 * its newline. */
START_TEST(test_count_entry_lines)
{
	static const struct {
		const char *text;
		size_t want;
	} rows[] = {
		{ "", 0 },
		{ "a\n", 1 },
		{ "a", 1 },
		{ "a\nb\n\n", 2 },
		{ "# c\n\tcont\n x\n\r\nkey v\r\n", 1 },
		{ "a: b\n  c\n#d\ne: f", 2 },
	};

	for (size_t i = 0; i < NROWS(rows); i++) {
		const char *t = rows[i].text;

		ck_assert_msg(text_count_entry_lines(t, strlen(t)) == rows[i].want,
			      "row %zu", i);
	}
}
END_TEST

START_TEST(test_shown)
{
	char buf[128];
	const char *long_token = "0123456789012345678901234567890123456789x";

	snprintf(buf, sizeof(buf), QUOTED, SHOWN("key", (size_t)3));
	ck_assert_str_eq(buf, "'key'");
	snprintf(buf, sizeof(buf), QUOTED, SHOWN(long_token, strlen(long_token)));
	ck_assert_str_eq(buf, "'0123456789012345678901234567890123456789...'");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("textscan");
	TCase *tc = tcase_create("textscan");

	tcase_add_test(tc, test_words);
	tcase_add_loop_test(tc, test_path_arg, 0, NROWS(path_rows));
	tcase_add_test(tc, test_count_entry_lines);
	tcase_add_test(tc, test_shown);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
