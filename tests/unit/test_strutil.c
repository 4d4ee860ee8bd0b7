/* String helpers that every command passes through: str_has_8bit() word by
 * word must agree with the octet-by-octet definition everywhere; numbers
 * and times read the same in the config and in every backend. */
#include "testutil.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/strutil.h"

/* A high-bit octet at every position of every length up to 40, at every
 * alignment of the buffer. */
START_TEST(test_has_8bit_every_position)
{
	char buf[64];

	for (size_t align = 0; align < 8; align++) {
		for (size_t len = 0; len <= 40; len++) {
			char *s = buf + align;

			memset(s, 'a', len);
			ck_assert(!str_has_8bit(s, len));
			for (size_t i = 0; i < len; i++) {
				s[i] = (char)0xc3;
				ck_assert_msg(str_has_8bit(s, len), "len %zu at %zu", len, i);
				ck_assert(!str_has_8bit(s, i));	/* before it: clean */
				s[i] = 'a';
			}
		}
	}
}
END_TEST

/* Octets 0x80..0xff are 8-bit, 0x00..0x7f are not, NUL included. */
START_TEST(test_has_8bit_boundaries)
{
	const char low[] = { 0x00, 0x7f, 0x01, 0x20, 0x7e, 0x00, 0x7f, 0x41, 0x42 };

	ck_assert(!str_has_8bit(low, sizeof(low)));
	ck_assert(str_has_8bit("\x80", 1));
	ck_assert(str_has_8bit("abcdefghijklmno\xff", 16));
}
END_TEST

/* Doubling from 16, never shrinking, contents kept. */
START_TEST(test_mem_grow)
{
	size_t cap = 0;
	int *a = mem_grow(NULL, &cap, 1, sizeof(*a));

	ck_assert_uint_eq(cap, 16);
	for (int i = 0; i < 16; i++)
		a[i] = i;
	a = mem_grow(a, &cap, 16, sizeof(*a));
	ck_assert_uint_eq(cap, 16);
	a = mem_grow(a, &cap, 17, sizeof(*a));
	ck_assert_uint_eq(cap, 32);
	a = mem_grow(a, &cap, 100, sizeof(*a));
	ck_assert_uint_eq(cap, 128);
	a = mem_grow(a, &cap, 5, sizeof(*a));
	ck_assert_uint_eq(cap, 128);
	for (int i = 0; i < 16; i++)
		ck_assert_int_eq(a[i], i);
	free(a);
}
END_TEST

START_TEST(test_errno_text)
{
	char buf[128];

	ck_assert_str_eq(str_errno(ENOENT, buf, sizeof(buf)), strerror(ENOENT));
	ck_assert_ptr_eq(str_errno(ENOSPC, buf, sizeof(buf)), buf);
}
END_TEST

/* Only a hint: any range, aligned or not, leaves the memory as it was. */
START_TEST(test_hint_huge_keeps_contents)
{
	size_t len = (size_t)5 << 20;
	unsigned char *p = malloc(len);

	ck_assert_ptr_nonnull(p);
	memset(p, 0x5a, len);
	mem_hint_huge(p, len);
	mem_hint_huge(p + 1, 100);
	for (size_t i = 0; i < len; i += 4093)
		ck_assert_int_eq(p[i], 0x5a);
	free(p);
}
END_TEST

/* Numbers and times as porterd.conf and the backends' parameters write
 * them: 1 to 9 digits, a time with an optional unit. */
static const struct {
	const char *text;
	bool is_time;
	bool ok;
	uint64_t want;
} parse_rows[] = {
	{ "0", false, true, 0 },
	{ "42", false, true, 42 },
	{ "999999999", false, true, 999999999 },
	{ "1234567890", false, false, 0 },
	{ "", false, false, 0 },
	{ "12x", false, false, 0 },
	{ "-1", false, false, 0 },
	{ "10s", false, false, 0 },
	{ "10", true, true, 10 },
	{ "10s", true, true, 10 },
	{ "2m", true, true, 120 },
	{ "2H", true, true, 7200 },
	{ "999999999h", true, true, 999999999ULL * 3600 },
	{ "s", true, false, 0 },
	{ "", true, false, 0 },
	{ "5d", true, false, 0 },
	{ "500ms", true, false, 0 },
	{ "1234567890s", true, false, 0 },
};

START_TEST(test_parse_rows)
{
	const char *t = parse_rows[_i].text;
	uint64_t v = 7;
	bool ok = parse_rows[_i].is_time ? str_parse_seconds(t, strlen(t), &v)
					 : str_parse_digits(t, strlen(t), &v);

	ck_assert_msg(ok == parse_rows[_i].ok, "'%s': %d", t, ok);
	ck_assert_uint_eq(v, ok ? parse_rows[_i].want : 7);
}
END_TEST

/* Only len octets are read: a number may be part of a longer word. */
START_TEST(test_parse_span)
{
	uint64_t v;

	ck_assert(str_parse_digits("123=4", 3, &v));
	ck_assert_uint_eq(v, 123);
	ck_assert(str_parse_seconds("5m cache", 2, &v));
	ck_assert_uint_eq(v, 300);
}
END_TEST

START_TEST(test_error_message)
{
	char err[8];

	ck_assert_int_eq(str_error(err, sizeof(err), "%s %d", "abc", 12345), -1);
	ck_assert_str_eq(err, "abc 123");
	ck_assert_int_eq(str_error(NULL, 0, "%s", "nowhere"), -1);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("strutil");
	TCase *tc = tcase_create("strutil");

	tcase_add_test(tc, test_has_8bit_every_position);
	tcase_add_test(tc, test_has_8bit_boundaries);
	tcase_add_test(tc, test_mem_grow);
	tcase_add_test(tc, test_errno_text);
	tcase_add_test(tc, test_hint_huge_keeps_contents);
	tcase_add_loop_test(tc, test_parse_rows, 0,
			    sizeof(parse_rows) / sizeof(parse_rows[0]));
	tcase_add_test(tc, test_parse_span);
	tcase_add_test(tc, test_error_message);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
