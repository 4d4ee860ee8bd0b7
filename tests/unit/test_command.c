/* Command line parser: every verb, case, blanks, control bytes, and the
 * VRFY/EXPN argument forms. */
#include "testutil.h"

#include "porterd/command.h"

static const struct {
	const char *line;
	enum command_status status;
	enum verb verb;
	const char *arg;
} parse_rows[] = {
	{ "HELO client.example", COMMAND_OK, VERB_HELO, "client.example" },
	{ "EHLO client.example", COMMAND_OK, VERB_EHLO, "client.example" },
	{ "MAIL FROM:<a@b>", COMMAND_OK, VERB_MAIL, "FROM:<a@b>" },
	{ "RCPT TO:<a@b>", COMMAND_OK, VERB_RCPT, "TO:<a@b>" },
	{ "DATA", COMMAND_OK, VERB_DATA, "" },
	{ "RSET", COMMAND_OK, VERB_RSET, "" },
	{ "VRFY jones", COMMAND_OK, VERB_VRFY, "jones" },
	{ "EXPN example-people", COMMAND_OK, VERB_EXPN, "example-people" },
	{ "HELP", COMMAND_OK, VERB_HELP, "" },
	{ "NOOP", COMMAND_OK, VERB_NOOP, "" },
	{ "QUIT", COMMAND_OK, VERB_QUIT, "" },
	{ "vrfy jones", COMMAND_OK, VERB_VRFY, "jones" },
	{ "VrFy Jones", COMMAND_OK, VERB_VRFY, "Jones" },
	{ "VRFY   Quincy Smith  ", COMMAND_OK, VERB_VRFY, "Quincy Smith" },
	{ "VRFY\tjones", COMMAND_OK, VERB_VRFY, "jones" },
	{ "  NOOP", COMMAND_OK, VERB_NOOP, "" },
	{ "NOOP ", COMMAND_OK, VERB_NOOP, "" },
	{ "", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "   ", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "VRFYjones", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "XYZZY", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "VRF", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "STARTTLS", COMMAND_UNKNOWN, VERB_NOOP, NULL },
	{ "VRFY jo\rnes", COMMAND_BAD_CHARACTERS, VERB_NOOP, NULL },
	{ "VRFY \x1b[31m", COMMAND_BAD_CHARACTERS, VERB_NOOP, NULL },
	{ "NOOP \x7f", COMMAND_BAD_CHARACTERS, VERB_NOOP, NULL },
	{ "VRFY j\xc3\xb6rg", COMMAND_OK, VERB_VRFY, "j\xc3\xb6rg" },
};

START_TEST(test_parse_rows)
{
	const char *line = parse_rows[_i].line;
	struct command cmd;
	enum command_status st = command_parse(line, strlen(line), &cmd);

	ck_assert_msg(st == parse_rows[_i].status, "row %d '%s': status %d", _i, line, st);
	if (st == COMMAND_OK) {
		ck_assert_int_eq(cmd.verb, parse_rows[_i].verb);
		ck_assert_uint_eq(cmd.arglen, strlen(parse_rows[_i].arg));
		ck_assert(memcmp(cmd.arg, parse_rows[_i].arg, cmd.arglen) == 0);
	}
}
END_TEST

START_TEST(test_nul_byte)
{
	static const char line[] = "VRFY jo\0nes";
	struct command cmd;

	ck_assert_int_eq(command_parse(line, sizeof(line) - 1, &cmd),
			 COMMAND_BAD_CHARACTERS);
}
END_TEST

/* Every byte value at every position of a long line, where the word-wide
 * screen and the byte-wise tail both see it: controls (but tab) refused,
 * everything else, 8-bit included, left to the rest of the parse. */
START_TEST(test_control_byte_each_position)
{
	char line[40];
	struct command cmd;

	for (unsigned c = 0; c < 256; c++) {
		bool control = (c < 0x20 && c != '\t') || c == 0x7f;

		for (size_t pos = 5; pos < sizeof(line); pos++) {
			memcpy(line, "NOOP ", 5);
			memset(line + 5, 'x', sizeof(line) - 5);
			line[pos] = (char)c;
			ck_assert_msg((command_parse(line, sizeof(line), &cmd) ==
				       COMMAND_BAD_CHARACTERS) == control,
				      "byte 0x%02x at %zu", c, pos);
		}
	}
}
END_TEST

START_TEST(test_verb_names)
{
	ck_assert_str_eq(command_verb_name(VERB_VRFY), "VRFY");
	ck_assert_str_eq(command_verb_name(VERB_EXPN), "EXPN");
	ck_assert_str_eq(command_verb_name(VERB_MAIL), "MAIL");
}
END_TEST

static const struct {
	const char *arg;
	enum lookup_arg_status status;
	const char *text, *local, *domain;	/* domain NULL: a bare name */
	bool smtputf8, has_8bit;
} arg_rows[] = {
	{ "jones", LOOKUP_ARG_OK, "jones", "jones", NULL, false, false },
	{ "JONES", LOOKUP_ARG_OK, "JONES", "JONES", NULL, false, false },
	{ "jones@example.test", LOOKUP_ARG_OK, "jones@example.test", "jones", "example.test", false, false },
	{ "<jones@example.test>", LOOKUP_ARG_OK, "jones@example.test", "jones", "example.test", false, false },
	{ "<@relay.example,@r2.example:jones@example.test>", LOOKUP_ARG_OK, "jones@example.test", "jones", "example.test", false, false },
	{ "Fred Jones", LOOKUP_ARG_OK, "Fred Jones", "Fred Jones", NULL, false, false },
	{ "Quincy Smith", LOOKUP_ARG_OK, "Quincy Smith", "Quincy Smith", NULL, false, false },
	{ "<jones>", LOOKUP_ARG_OK, "jones", "jones", NULL, false, false },
	{ "jones SMTPUTF8", LOOKUP_ARG_OK, "jones", "jones", NULL, true, false },
	{ "<j\xc3\xb6rg@example.test> smtputf8", LOOKUP_ARG_OK, "j\xc3\xb6rg@example.test", "j\xc3\xb6rg", "example.test", true, true },
	{ "j\xc3\xb6rg", LOOKUP_ARG_OK, "j\xc3\xb6rg", "j\xc3\xb6rg", NULL, false, true },
	{ "a\"b@c\"@example.test", LOOKUP_ARG_OK, "a\"b@c\"@example.test", "a\"b@c\"", "example.test", false, false },
	/* a quoted local part: an address, as RCPT reads one */
	{ "\"help desk\"@example.test", LOOKUP_ARG_OK, "\"help desk\"@example.test",
	  "\"help desk\"", "example.test", false, false },
	{ "<\"help desk\"@example.test>", LOOKUP_ARG_OK, "\"help desk\"@example.test",
	  "\"help desk\"", "example.test", false, false },
	{ "\"jones\"@example.test", LOOKUP_ARG_OK, "\"jones\"@example.test",
	  "jones", "example.test", false, false },
	{ "\"j\\ones\"@example.test", LOOKUP_ARG_OK, "\"j\\ones\"@example.test",
	  "\"j\\ones\"", "example.test", false, false },
	{ "\"a@b\"@example.test", LOOKUP_ARG_OK, "\"a@b\"@example.test",
	  "\"a@b\"", "example.test", false, false },
	{ "\"help desk\"", LOOKUP_ARG_OK, "\"help desk\"", "\"help desk\"", NULL, false, false },
	{ "\"help desk\"@example test", LOOKUP_ARG_OK, "\"help desk\"@example test",
	  "\"help desk\"@example test", NULL, false, false },
	{ "\"help desk\"@", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "\"a\"@b@example.test", LOOKUP_ARG_OK, "\"a\"@b@example.test", "\"a\"@b",
	  "example.test", false, false },
	{ "\"\"@example.test", LOOKUP_ARG_OK, "\"\"@example.test", "\"\"", "example.test", false, false },
	{ "", LOOKUP_ARG_EMPTY, NULL, NULL, NULL, false, false },
	{ "<>", LOOKUP_ARG_EMPTY, NULL, NULL, NULL, false, false },
	{ "<jones", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "jones>", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "<jo<nes>", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "@example.test", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "jones@", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "<@relay.example>", LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	/* 65-octet local part, 64 is the limit */
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test",
	  LOOKUP_ARG_SYNTAX, NULL, NULL, NULL, false, false },
	{ "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test",
	  LOOKUP_ARG_OK, "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@example.test",
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "example.test", false, false },
};

static void assert_part(const char *got, size_t len, const char *want, int row)
{
	if (want == NULL) {
		ck_assert_msg(got == NULL, "row %d: expected no part", row);
		return;
	}
	ck_assert_msg(got != NULL, "row %d: missing part '%s'", row, want);
	ck_assert_msg(len == strlen(want) && memcmp(got, want, len) == 0,
		      "row %d: got '%.*s', want '%s'", row, (int)len, got, want);
}

START_TEST(test_lookup_arg_rows)
{
	const char *a = arg_rows[_i].arg;
	struct lookup_arg r;
	enum lookup_arg_status st = command_parse_lookup_arg(a, strlen(a), &r);

	ck_assert_msg(st == arg_rows[_i].status, "row %d '%s': status %d", _i, a, st);
	if (st != LOOKUP_ARG_OK)
		return;
	assert_part(r.text, r.textlen, arg_rows[_i].text, _i);
	assert_part(r.local, r.locallen, arg_rows[_i].local, _i);
	assert_part(r.domain, r.domainlen, arg_rows[_i].domain, _i);
	ck_assert_int_eq(r.smtputf8, arg_rows[_i].smtputf8);
	ck_assert_int_eq(r.has_8bit, arg_rows[_i].has_8bit);
}
END_TEST

START_TEST(test_long_domain_and_path)
{
	char arg[400];
	struct lookup_arg r;

	/* a 256-octet domain is over the 255 limit */
	memset(arg, 'd', sizeof(arg));
	memcpy(arg, "u@", 2);
	ck_assert_int_eq(command_parse_lookup_arg(arg, 2 + 256, &r), LOOKUP_ARG_SYNTAX);
	/* a free-text name longer than a path is refused too */
	memset(arg, 'n', sizeof(arg));
	ck_assert_int_eq(command_parse_lookup_arg(arg, 257, &r), LOOKUP_ARG_SYNTAX);
	ck_assert_int_eq(command_parse_lookup_arg(arg, 256, &r), LOOKUP_ARG_OK);
}
END_TEST

static const struct {
	const char *name;
	bool valid;
} helo_rows[] = {
	{ "client.example", true },
	{ "localhost", true },
	{ "my_host.example", true },
	{ "[127.0.0.1]", true },
	{ "[IPv6:::1]", true },
	{ "", false },
	{ "two words", false },
	{ "a@b", false },
	{ "[]", false },
	{ "[1.2.3.4", false },
	{ "caf\xc3\xa9.example", false },
};

START_TEST(test_helo_rows)
{
	const char *n = helo_rows[_i].name;

	ck_assert_msg(command_valid_helo(n, strlen(n)) == helo_rows[_i].valid,
		      "'%s'", n);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("command");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_parse_rows, 0, sizeof(parse_rows) / sizeof(parse_rows[0]));
	tcase_add_test(tc, test_nul_byte);
	tcase_add_test(tc, test_control_byte_each_position);
	tcase_add_test(tc, test_verb_names);
	tcase_add_loop_test(tc, test_lookup_arg_rows, 0, sizeof(arg_rows) / sizeof(arg_rows[0]));
	tcase_add_test(tc, test_long_domain_and_path);
	tcase_add_loop_test(tc, test_helo_rows, 0, sizeof(helo_rows) / sizeof(helo_rows[0]));
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
