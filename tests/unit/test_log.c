/* Log lines: client text is escaped so it can neither split nor forge a
 * line, and each event is one key=value line. */
#include "testutil.h"

#include "porterd/log.h"

static const struct {
	const char *in;
	size_t len;
	const char *out;
} escape_rows[] = {
	{ "jones", 5, "jones" },
	{ "Quincy Smith", 12, "Quincy Smith" },
	{ "a\"b\\c", 5, "a\\x22b\\x5cc" },
	{ "x\r\nevent=forged", 15, "x\\x0d\\x0aevent=forged" },
	{ "\x00\x1f\x7f", 3, "\\x00\\x1f\\x7f" },
	{ "j\xc3\xb6rg", 5, "j\\xc3\\xb6rg" },
	{ "", 0, "" },
};

START_TEST(test_escape_rows)
{
	char buf[LOG_VALUE_MAX];

	ck_assert_str_eq(log_escape(buf, sizeof(buf), escape_rows[_i].in, escape_rows[_i].len),
			 escape_rows[_i].out);
}
END_TEST

START_TEST(test_escape_cut)
{
	char in[1000], buf[LOG_VALUE_MAX];
	size_t n;

	memset(in, 'a', sizeof(in));
	log_escape(buf, sizeof(buf), in, sizeof(in));
	n = strlen(buf);
	ck_assert_uint_lt(n, sizeof(buf));
	ck_assert_str_eq(buf + n - 3, "...");
	/* an escape is never cut in half */
	memset(in, '\n', sizeof(in));
	log_escape(buf, sizeof(buf), in, sizeof(in));
	n = strlen(buf);
	ck_assert_str_eq(buf + n - 7, "\\x0a...");
	/* too small a buffer gives an empty string, not an overrun */
	ck_assert_str_eq(log_escape(buf, 4, "abc", 3), "");
}
END_TEST

START_TEST(test_event_line_and_level)
{
	char line[256] = "";
	FILE *f = tmpfile();

	ck_assert_ptr_nonnull(f);
	log_init(LOG_LEVEL_INFO, f);
	log_event(LOG_LEVEL_INFO, "event=vrfy code=%d", 250);
	log_event(LOG_LEVEL_DEBUG, "event=hidden");
	rewind(f);
	ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
	ck_assert_str_eq(line, "porterd: level=info event=vrfy code=250\n");
	ck_assert_ptr_null(fgets(line, sizeof(line), f));
	ck_assert_int_eq(log_get_level(), LOG_LEVEL_INFO);
	log_init(LOG_LEVEL_INFO, NULL);
	fclose(f);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");

	tcase_add_loop_test(tc, test_escape_rows, 0, sizeof(escape_rows) / sizeof(escape_rows[0]));
	tcase_add_test(tc, test_escape_cut);
	tcase_add_test(tc, test_event_line_and_level);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
