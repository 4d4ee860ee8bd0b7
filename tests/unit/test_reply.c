/* Reply framing and the catalogue: exact bytes on the wire. */
#include "testutil.h"

#include "porterd/reply.h"

static struct capture cap;

START_TEST(test_single_line)
{
	struct reply_sink sink = capture_sink(&cap);

	reply_send(&sink, REPLY_OK, NULL);
	ck_assert_str_eq(cap.buf, "250 2.0.0 Ok\r\n");
}
END_TEST

START_TEST(test_arguments_in_order)
{
	struct reply_sink sink = capture_sink(&cap);

	reply_emit(&sink, REPLY_GREETING, false, "mail.example.test", "porterd", NULL);
	reply_emit(&sink, REPLY_EHLO_FIRST, true, "mx", "client", "127.0.0.1");
	reply_emit(&sink, REPLY_VRFY_NAMED, false, "Fred Jones", "jones@example.test", NULL);
	ck_assert_str_eq(cap.buf,
			 "220 mail.example.test ESMTP porterd\r\n"
			 "250-mx Hello client [127.0.0.1]\r\n"
			 "250 2.1.5 Fred Jones <jones@example.test>\r\n");
}
END_TEST

START_TEST(test_missing_argument_is_empty)
{
	struct reply_sink sink = capture_sink(&cap);

	reply_send(&sink, REPLY_DISABLED, NULL);
	ck_assert_str_eq(cap.buf, "502 5.5.1  command is disabled\r\n");
}
END_TEST

START_TEST(test_free_lines)
{
	struct reply_sink sink = capture_sink(&cap);

	reply_line(&sink, 250, NULL, true, "PIPELINING");
	reply_line(&sink, 214, "2.0.0", false, "text");
	ck_assert_str_eq(cap.buf, "250-PIPELINING\r\n214 2.0.0 text\r\n");
}
END_TEST

START_TEST(test_long_argument_is_cut)
{
	struct reply_sink sink = capture_sink(&cap);
	char arg[2000];

	memset(arg, 'x', sizeof(arg) - 1);
	arg[sizeof(arg) - 1] = '\0';
	reply_send(&sink, REPLY_UNKNOWN_USER, arg);
	ck_assert_uint_eq(cap.len, REPLY_LINE_MAX);
	ck_assert(memcmp(cap.buf, "550 5.1.1 <xxx", 14) == 0);
	ck_assert(memcmp(cap.buf + cap.len - 3, "x\r\n", 3) == 0);
}
END_TEST

/* Every catalogue entry carries a code its situation allows, and every
 * reply except the greeting and HELO/EHLO has an enhanced status code
 * whose class matches the reply's (RFC 3463). */
START_TEST(test_catalogue_consistent)
{
	for (int id = 0; id < REPLY__COUNT; id++) {
		struct reply_sink sink = capture_sink(&cap);
		int code = reply_code((enum reply_id)id);

		ck_assert_int_ge(code, 200);
		ck_assert_int_le(code, 599);
		reply_emit(&sink, (enum reply_id)id, false, "a", "b", "c");
		ck_assert_int_eq(cap.buf[3], ' ');
		/* RFC 2034: not on the greeting, HELO/EHLO, or 3yz replies */
		if (id == REPLY_GREETING || id == REPLY_HELO || id == REPLY_EHLO_FIRST ||
		    code / 100 == 3)
			continue;
		ck_assert_msg(cap.buf[4] == cap.buf[0] && cap.buf[5] == '.',
			      "entry %d lacks a matching enhanced code: %s", id, cap.buf);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("reply");
	TCase *tc = tcase_create("framing");

	tcase_add_test(tc, test_single_line);
	tcase_add_test(tc, test_arguments_in_order);
	tcase_add_test(tc, test_missing_argument_is_empty);
	tcase_add_test(tc, test_free_lines);
	tcase_add_test(tc, test_long_argument_is_cut);
	tcase_add_test(tc, test_catalogue_consistent);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
