/*
 * Session dialogues, asserted reply by reply: every command, the RFC 821
 * section 3.3 examples, line framing, pipelining, and lookups that
 * answer later.
 */
#include "fixture.h"

#include <dirent.h>

#include "porterd/delivery.h"
#include "porterd/ratelimit.h"
#include "porterd/session.h"

static struct capture cap;
static struct config *cfg;
static char *table_path;
static struct session *sess;
static struct delivery *delivery;
static struct session_env env;
static uint64_t clock_ms;	/* the rate limiter's clock, moved by tests */
static int resumes;

static uint64_t test_now_ms(void)
{
	return clock_ms;
}

static void on_resume(void *arg)
{
	(void)arg;
	resumes++;
}

static const char *client = "192.0.2.1";	/* untrusted by default */

static struct session *start_session(const char *extra)
{
	struct session_io io = { .resume = on_resume };

	cfg = fixture_config(extra, &table_path);
	io.sink = capture_sink(&cap);
	io.arg = NULL;
	resumes = 0;
	delivery = delivery_new(NULL, cfg->maildir, 0);	/* synchronous */
	ck_assert_ptr_nonnull(delivery);
	env = (struct session_env){ .delivery = delivery, .now_ms = test_now_ms };
	sess = session_new(cfg, &env, client, &io);
	ck_assert_ptr_nonnull(sess);
	session_start(sess);
	ck_assert_str_eq(cap.buf, "220 mail.example.test ESMTP porterd\r\n");
	cap.len = 0;
	cap.buf[0] = '\0';
	return sess;
}

static void end_session(void)
{
	session_free(&sess);
	ck_assert_ptr_null(sess);
	delivery_free(&delivery);
	ratelimit_free(&env.ratelimit);
	fixture_free(&cfg, &table_path);
}

/* Feed input, which must all be consumed, and expect exactly reply. */
static void exchange(const char *input, const char *reply)
{
	size_t used = session_feed(sess, input, strlen(input));

	ck_assert_msg(used == strlen(input), "consumed %zu of %zu of '%s'", used,
		      strlen(input), input);
	ck_assert_msg(strcmp(cap.buf, reply) == 0, "sent '%s'\n got '%s'\nwant '%s'",
		      input, cap.buf, reply);
	cap.len = 0;
	cap.buf[0] = '\0';
}

/* --- one command, one reply, default config -------------------------------- */

static const struct {
	const char *input, *reply;
} rows[] = {
	/* RFC 821 section 3.3, example 3, with this directory's cast */
	{ "VRFY Smith\r\n", "553 5.1.4 User ambiguous\r\n" },
	{ "VRFY Jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY bob\r\n", "251 2.1.5 User not local; will forward to <bob@elsewhere.example>\r\n" },
	{ "VRFY Nobody\r\n", "550 5.1.1 <Nobody>: no such user here\r\n" },
	{ "VRFY alice\r\n", "551 5.1.6 User not local; please try <alice@newco.example>\r\n" },
	{ "VRFY Gourzenkyinplatz\r\n", "553 5.1.4 User ambiguous\r\n" },
	/* argument forms */
	{ "VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY JONES\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY jones@example.test\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY <jones@example.test>\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY <Jones@Example.TEST>\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY jones@example.org\r\n", "250 2.1.5 Fred Jones <jones@example.org>\r\n" },
	{ "VRFY Fred Jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY Quincy Smith\r\n", "250 2.1.5 Quincy Smith <qsmith@example.test>\r\n" },
	{ "VRFY quincy   SMITH\r\n", "250 2.1.5 Quincy Smith <qsmith@example.test>\r\n" },
	{ "VRFY Fred\r\n", "553 5.1.4 User ambiguous\r\n" },
	{ "VRFY smith@example.test\r\n", "250 2.1.5 Fred Smith <smith@example.test>\r\n" },
	{ "VRFY smith@example.org\r\n", "550 5.1.1 <smith@example.org>: no such user here\r\n" },
	{ "VRFY anna\r\n", "250 2.1.5 Anna Gourzenkyinplatz <anna@example.test>\r\n" },
	{ "VRFY nameless\r\n", "250 2.1.5 <nameless@example.test>\r\n" },
	{ "VRFY example-people\r\n", "250 2.1.5 <example-people@example.test>\r\n" },
	{ "VRFY jones@elsewhere.example\r\n", "550 5.1.2 <jones@elsewhere.example>: domain is not local here\r\n" },
	{ "VRFY Postmaster\r\n", "250 2.1.5 Postmaster <postmaster@example.test>\r\n" },
	{ "VRFY jones SMTPUTF8\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n" },
	{ "VRFY <>\r\n", "501 5.5.4 Syntax: VRFY address\r\n" },
	{ "VRFY <jones\r\n", "501 5.5.4 Syntax: VRFY address\r\n" },
	{ "VRFY j\xc3\xb6rg\r\n", "553 5.6.7 Non-ASCII argument requires the SMTPUTF8 parameter\r\n" },
	{ "VRFY <j\xc3\xb6rg@example.test> SMTPUTF8\r\n", "250 2.1.5 J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@example.test>\r\n" },
	/* RFC 821 section 3.3, example 4, and the rest of EXPN */
	{ "EXPN Example-People\r\n",
	  "250-2.1.5 Fred Jones <jones@example.test>\r\n"
	  "250-2.1.5 Fred Smith <smith@example.test>\r\n"
	  "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
	  "250-2.1.5 <postel@usc-isif.example>\r\n"
	  "250 2.1.5 <fonebone@usc-isiq.example>\r\n" },
	{ "EXPN all-staff\r\n",
	  "250-2.1.5 Fred Jones <jones@example.test>\r\n"
	  "250-2.1.5 Fred Smith <smith@example.test>\r\n"
	  "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
	  "250-2.1.5 <postel@usc-isif.example>\r\n"
	  "250-2.1.5 <fonebone@usc-isiq.example>\r\n"
	  "250-2.1.5 Postmaster <postmaster@example.test>\r\n"
	  "250 2.1.5 <bob@elsewhere.example>\r\n" },
	{ "EXPN loop-a\r\n",
	  "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
	  "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "EXPN <loop-b@example.org>\r\n",
	  "250-2.1.5 Fred Jones <jones@example.test>\r\n"
	  "250 2.1.5 Quincy Smith <qsmith@example.test>\r\n" },
	{ "EXPN jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "EXPN bob\r\n", "250 2.1.5 <bob@elsewhere.example>\r\n" },
	{ "EXPN alice\r\n", "550 5.1.6 User not local; please try <alice@newco.example>\r\n" },
	{ "EXPN Smith\r\n", "550 5.1.4 User ambiguous\r\n" },
	{ "EXPN nosuch\r\n", "550 5.1.1 <nosuch>: no such user here\r\n" },
	{ "EXPN ghosts\r\n", "550 5.1.1 <ghosts>: list has no members here\r\n" },
	{ "EXPN staff@elsewhere.example\r\n", "550 5.1.2 <staff@elsewhere.example>: domain is not local here\r\n" },
	{ "EXPN\r\n", "501 5.5.4 Syntax: EXPN list\r\n" },
	{ "EXPN \xff\r\n", "553 5.6.7 Non-ASCII argument requires the SMTPUTF8 parameter\r\n" },
	/* non-ASCII answers go only to clients that asked with SMTPUTF8 */
	{ "VRFY fwd8\r\n", "553 5.6.7 The answer is not ASCII; ask again with the SMTPUTF8 parameter\r\n" },
	{ "VRFY fwd8 SMTPUTF8\r\n", "251 2.1.5 User not local; will forward to <m\xc3\xbcller@elsewhere.example>\r\n" },
	{ "EXPN intl\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "EXPN intl SMTPUTF8\r\n", "250-2.1.5 J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@example.test>\r\n"
				  "250 2.1.5 Fred Jones <jones@example.test>\r\n" },
	{ "EXPN fwd8\r\n", "553 5.6.7 The answer is not ASCII; ask again with the SMTPUTF8 parameter\r\n" },
	{ "VRFY J\xc3\xb6rg SMTPUTF8\r\n", "250 2.1.5 J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@example.test>\r\n" },
	/* the other commands */
	{ "HELO client.example\r\n", "250 mail.example.test\r\n" },
	{ "HELO\r\n", "501 5.5.4 Syntax: HELO hostname\r\n" },
	{ "HELO two words\r\n", "501 5.5.4 Syntax: HELO hostname\r\n" },
	{ "EHLO\r\n", "501 5.5.4 Syntax: EHLO hostname\r\n" },
	{ "NOOP\r\n", "250 2.0.0 Ok\r\n" },
	{ "noop anything at all\r\n", "250 2.0.0 Ok\r\n" },
	{ "RSET\r\n", "250 2.0.0 Ok\r\n" },
	{ "RSET now\r\n", "501 5.5.4 Syntax: RSET\r\n" },
	{ "HELP\r\n", "214-2.0.0 Commands: HELO EHLO MAIL RCPT DATA VRFY EXPN NOOP RSET HELP QUIT\r\n"
		      "214 2.0.0 End of HELP info; see porterd(8)\r\n" },
	{ "QUIT now\r\n", "501 5.5.4 Syntax: QUIT\r\n" },
	{ "MAIL FROM:<a@example.test>\r\n", "503 5.5.1 Error: send HELO/EHLO first\r\n" },
	{ "RCPT TO:<jones@example.test>\r\n", "503 5.5.1 Error: need MAIL command\r\n" },
	{ "DATA\r\n", "503 5.5.1 Error: need RCPT command\r\n" },
	{ "VRFY j\xc3\xb6rg SMTPUTF8\r\n", "250 2.1.5 J\xc3\xb6rg M\xc3\xbcller <j\xc3\xb6rg@example.test>\r\n" },
	{ "VRFY j\xc3\xb6rgen SMTPUTF8\r\n", "550 5.1.1 <j\xc3\xb6rgen>: no such user here\r\n" },
	{ "XYZZY\r\n", "500 5.5.2 Error: command not recognized\r\n" },
	{ "\r\n", "500 5.5.2 Error: command not recognized\r\n" },
	{ "VRFY jo\rnes\r\n", "500 5.5.2 Error: control characters in command\r\n" },
	{ "NOOP\n", "250 2.0.0 Ok\r\n" },
};

START_TEST(test_rows)
{
	start_session(NULL);
	exchange(rows[_i].input, rows[_i].reply);
	end_session();
}
END_TEST

START_TEST(test_ehlo_advertises)
{
	start_session(NULL);
	exchange("EHLO client.example\r\n",
		 "250-mail.example.test Hello client.example [192.0.2.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-VRFY\r\n"
		 "250-EXPN\r\n"
		 "250 HELP\r\n");
	/* a second EHLO starts afresh and answers the same way */
	exchange("ehlo [192.0.2.1]\r\n",
		 "250-mail.example.test Hello [192.0.2.1] [192.0.2.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-VRFY\r\n"
		 "250-EXPN\r\n"
		 "250 HELP\r\n");
	end_session();
}
END_TEST

START_TEST(test_disabled_not_advertised)
{
	start_session("vrfy off\nexpn off\n");
	exchange("EHLO client.example\r\n",
		 "250-mail.example.test Hello client.example [192.0.2.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250 HELP\r\n");
	exchange("VRFY jones\r\n", "502 5.5.1 VRFY command is disabled\r\n");
	exchange("EXPN example-people\r\n", "502 5.5.1 EXPN command is disabled\r\n");
	end_session();
}
END_TEST

START_TEST(test_vrfy_252_reveals_nothing)
{
	const char *generic = "252 2.5.0 Cannot VRFY user; send some mail, I'll try my best\r\n";

	start_session("vrfy 252\nexpn on\n");
	exchange("EHLO client.example\r\n",
		 "250-mail.example.test Hello client.example [192.0.2.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-VRFY\r\n"
		 "250-EXPN\r\n"
		 "250 HELP\r\n");
	exchange("VRFY jones\r\n", generic);
	exchange("VRFY Nobody\r\n", generic);
	exchange("VRFY Smith\r\n", generic);
	exchange("VRFY\r\n", "501 5.5.4 Syntax: VRFY address\r\n");
	/* registries verify the role addresses: those get the truth */
	exchange("VRFY postmaster\r\n", "250 2.1.5 Postmaster <postmaster@example.test>\r\n");
	exchange("VRFY <PostMaster@example.org>\r\n", "250 2.1.5 Postmaster <postmaster@example.org>\r\n");
	exchange("VRFY abuse\r\n", "550 5.1.1 <abuse>: no such user here\r\n");
	exchange("VRFY postmaster@elsewhere.example\r\n",
		 "550 5.1.2 <postmaster@elsewhere.example>: domain is not local here\r\n");
	end_session();
}
END_TEST

/* A trusted client gets the truth whatever the modes for strangers. */
START_TEST(test_trusted_client_gets_truth)
{
	client = "127.0.0.1";
	start_session("vrfy 252\nexpn off\n");
	client = "192.0.2.1";
	exchange("EHLO c.example\r\n",
		 "250-mail.example.test Hello c.example [127.0.0.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-VRFY\r\n"
		 "250-EXPN\r\n"
		 "250 HELP\r\n");
	exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	exchange("EXPN loop-a\r\n", "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
				     "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

START_TEST(test_untrusted_ipv6_and_trusted_list)
{
	client = "2001:db8::1";
	start_session("vrfy off\nexpn off\ntrusted 192.0.2.0/24 2001:db8::/64\n");
	client = "192.0.2.1";
	exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();

	client = "2001:db8:1::1";
	start_session("vrfy off\nexpn off\ntrusted 192.0.2.0/24 2001:db8::/64\n");
	client = "192.0.2.1";
	/* off means off: even the role addresses */
	exchange("VRFY postmaster\r\n", "502 5.5.1 VRFY command is disabled\r\n");
	exchange("EXPN all-staff\r\n", "502 5.5.1 EXPN command is disabled\r\n");
	end_session();
}
END_TEST

START_TEST(test_quit_closes)
{
	start_session(NULL);
	ck_assert(!session_closing(sess));
	ck_assert_uint_eq(session_feed(sess, "QUIT\r\nNOOP\r\n", 12), 6);
	ck_assert_str_eq(cap.buf, "221 2.0.0 Bye\r\n");
	ck_assert(session_closing(sess));
	/* nothing more is read once closed */
	ck_assert_uint_eq(session_feed(sess, "NOOP\r\n", 6), 0);
	end_session();
}
END_TEST

START_TEST(test_timeout_and_shutdown)
{
	start_session(NULL);
	session_timeout(sess);
	ck_assert_str_eq(cap.buf, "421 4.4.2 mail.example.test Error: timeout exceeded\r\n");
	ck_assert(session_closing(sess));
	end_session();

	start_session(NULL);
	session_shutdown(sess);
	ck_assert_str_eq(cap.buf, "421 4.3.2 mail.example.test Service shutting down\r\n");
	ck_assert(session_closing(sess));
	/* a second stop says nothing more */
	cap.len = 0;
	cap.buf[0] = '\0';
	session_timeout(sess);
	ck_assert_str_eq(cap.buf, "");
	end_session();
}
END_TEST

/* --- line framing ------------------------------------------------------------ */

START_TEST(test_partial_line_waits)
{
	start_session(NULL);
	ck_assert_uint_eq(session_feed(sess, "VRF", 3), 0);
	ck_assert_str_eq(cap.buf, "");
	exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

START_TEST(test_line_too_long_resyncs)
{
	char line[3100];

	start_session(NULL);
	memset(line, 'A', 3000);
	strcpy(line + 3000, "\r\nNOOP\r\n");
	exchange(line, "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
	end_session();
}
END_TEST

START_TEST(test_line_too_long_in_pieces)
{
	char chunk[COMMAND_LINE_MAX];

	start_session(NULL);
	memset(chunk, 'B', sizeof(chunk));
	/* a full window with no end: consumed and discarded */
	ck_assert_uint_eq(session_feed(sess, chunk, sizeof(chunk)), sizeof(chunk));
	ck_assert_uint_eq(session_feed(sess, chunk, 100), 100);
	ck_assert_str_eq(cap.buf, "");
	exchange("tail\r\nVRFY jones\r\n",
		 "500 5.5.2 Line too long\r\n"
		 "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

START_TEST(test_line_limit_exact)
{
	char line[COMMAND_LINE_MAX + 2];

	start_session(NULL);
	/* 2048 octets with the CRLF: accepted */
	memset(line, ' ', sizeof(line));
	memcpy(line, "NOOP", 4);
	memcpy(line + COMMAND_LINE_MAX - 2, "\r\n", 3);
	exchange(line, "250 2.0.0 Ok\r\n");
	/* 2049 octets: too long */
	memset(line, ' ', sizeof(line));
	memcpy(line, "NOOP", 4);
	memcpy(line + COMMAND_LINE_MAX - 1, "\r\n", 3);
	exchange(line, "500 5.5.2 Line too long\r\n");
	end_session();
}
END_TEST

START_TEST(test_nul_byte_in_line)
{
	static const char input[] = "VRFY jo\0nes\r\nNOOP\r\n";

	start_session(NULL);
	ck_assert_uint_eq(session_feed(sess, input, sizeof(input) - 1), sizeof(input) - 1);
	ck_assert_str_eq(cap.buf, "500 5.5.2 Error: control characters in command\r\n"
				  "250 2.0.0 Ok\r\n");
	end_session();
}
END_TEST

START_TEST(test_pipelined_group_in_order)
{
	start_session(NULL);
	exchange("EHLO c.example\r\nVRFY jones\r\nEXPN loop-a\r\nVRFY Smith\r\nNOOP\r\n",
		 "250-mail.example.test Hello c.example [192.0.2.1]\r\n"
		 "250-ENHANCEDSTATUSCODES\r\n"
		 "250-PIPELINING\r\n"
		 "250-SIZE 10485760\r\n"
		 "250-8BITMIME\r\n"
		 "250-SMTPUTF8\r\n"
		 "250-VRFY\r\n"
		 "250-EXPN\r\n"
		 "250 HELP\r\n"
		 "250 2.1.5 Fred Jones <jones@example.test>\r\n"
		 "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
		 "250 2.1.5 Fred Jones <jones@example.test>\r\n"
		 "553 5.1.4 User ambiguous\r\n"
		 "250 2.0.0 Ok\r\n");
	ck_assert_int_eq(resumes, 0);
	end_session();
}
END_TEST

/* --- a backend that answers later ------------------------------------------- */

struct backend {
	backend_done_fn *done;
	void *arg;
	enum dir_status answer;
	int asked;
};

static struct backend late;

static int late_open(const char *args, const char *base, struct backend **be_r,
		     char *err, size_t errsize)
{
	(void)args; (void)base; (void)err; (void)errsize;
	*be_r = &late;
	return 0;
}

static void late_lookup(struct backend *be, const struct dir_query *q,
			backend_done_fn *done, void *arg)
{
	(void)q;
	be->done = done;
	be->arg = arg;
	be->asked++;
}

static size_t late_count(const struct backend *be)
{
	(void)be;
	return 0;
}

static void late_close(struct backend **be)
{
	*be = NULL;
}

static const struct backend_ops late_ops = {
	.name = "late", .open = late_open, .lookup = late_lookup,
	.count = late_count, .close = late_close,
};

/* Put the late backend in front of the fixture table. */
static void chain_late_then_table(void)
{
	struct directory *dir = directory_new(cfg);
	struct backend *be;
	char err[256];

	memset(&late, 0, sizeof(late));
	directory_append(dir, &late_ops, &late);
	ck_assert_int_eq(backend_table_ops.open(table_path, "/", &be, err, sizeof(err)), 0);
	directory_append(dir, &backend_table_ops, be);
	directory_free(&cfg->dir);
	cfg->dir = dir;
}

static void late_answer(enum dir_status status)
{
	struct dir_result res = { .status = status };
	backend_done_fn *done = late.done;

	ck_assert_ptr_nonnull(done);
	late.done = NULL;
	done(&res, late.arg);
}

START_TEST(test_late_answers_keep_order)
{
	static const char input[] = "VRFY jones\r\nVRFY Nobody\r\nNOOP\r\n";
	size_t used;

	start_session(NULL);
	chain_late_then_table();

	used = session_feed(sess, input, sizeof(input) - 1);
	ck_assert_uint_eq(used, 12);	/* only the first command */
	ck_assert(session_blocked(sess));
	ck_assert_str_eq(cap.buf, "");

	late_answer(DIR_NOTFOUND);	/* the table has jones */
	ck_assert(!session_blocked(sess));
	ck_assert_int_eq(resumes, 1);
	ck_assert_str_eq(cap.buf, "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	cap.len = 0;

	used += session_feed(sess, input + used, sizeof(input) - 1 - used);
	ck_assert_uint_eq(used, 25);
	late_answer(DIR_TEMPFAIL);	/* the table does not know Nobody */
	ck_assert_int_eq(resumes, 2);
	exchange(input + used, "252 2.4.3 Cannot verify <Nobody> now; send some mail, I'll try my best\r\n"
			       "250 2.0.0 Ok\r\n");
	end_session();
}
END_TEST

START_TEST(test_late_expansion)
{
	static const char input[] = "EXPN loop-a\r\n";

	start_session(NULL);
	chain_late_then_table();
	ck_assert_uint_eq(session_feed(sess, input, sizeof(input) - 1), sizeof(input) - 1);
	/* loop-a, loop-b, loop-a again (a member, seen as a visited list),
	 * qsmith, jones: each asks the late backend first */
	for (int i = 0; i < 10 && late.done != NULL; i++)
		late_answer(DIR_NOTFOUND);
	ck_assert_int_eq(late.asked, 5);
	ck_assert_str_eq(cap.buf, "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
				  "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

START_TEST(test_late_member_tempfail)
{
	start_session(NULL);
	chain_late_then_table();
	session_feed(sess, "EXPN loop-a\r\n", 13);
	late_answer(DIR_NOTFOUND);
	late_answer(DIR_TEMPFAIL);	/* loop-b: the table knows it, but... */
	ck_assert_str_eq(cap.buf, "");	/* a later definite answer wins */
	late_answer(DIR_TEMPFAIL);	/* loop-a as a member of loop-b */
	late_answer(DIR_TEMPFAIL);	/* qsmith */
	late_answer(DIR_NOTFOUND);	/* jones */
	ck_assert_ptr_null(late.done);
	ck_assert_str_eq(cap.buf, "250-2.1.5 Quincy Smith <qsmith@example.test>\r\n"
				  "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

START_TEST(test_free_while_waiting)
{
	start_session(NULL);
	chain_late_then_table();
	session_feed(sess, "VRFY jones\r\n", 12);
	ck_assert(session_blocked(sess));
	session_free(&sess);
	/* the answer arrives after the client left: nothing is sent */
	late_answer(DIR_NOTFOUND);
	ck_assert_str_eq(cap.buf, "");
	end_session();
}
END_TEST

START_TEST(test_timeout_while_waiting)
{
	start_session(NULL);
	chain_late_then_table();
	session_feed(sess, "VRFY jones\r\n", 12);
	session_timeout(sess);
	ck_assert(!session_blocked(sess));
	late_answer(DIR_NOTFOUND);
	ck_assert_str_eq(cap.buf, "421 4.4.2 mail.example.test Error: timeout exceeded\r\n");
	end_session();
}
END_TEST


/* --- mail transactions ------------------------------------------------------ */

static bool starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* How many messages a Maildir has in new/; the first one's text in buf. */
static int maildir_messages(const char *mailbox, char *buf, size_t size)
{
	char dir[256], path[512];
	struct dirent *de;
	int count = 0;
	DIR *d;

	snprintf(dir, sizeof(dir), "%s/%s/new", fixture_mail_root, mailbox);
	buf[0] = '\0';
	d = opendir(dir);
	if (d == NULL)
		return 0;
	while ((de = readdir(d)) != NULL) {
		FILE *f;
		size_t n;

		if (de->d_name[0] == '.')
			continue;
		if (count++ > 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		f = fopen(path, "r");
		ck_assert_ptr_nonnull(f);
		n = fread(buf, 1, size - 1, f);
		buf[n] = '\0';
		fclose(f);
	}
	closedir(d);
	return count;
}

/* Feed input; the reply must be want, except that "<ID>" in want matches
 * the queue id (17 hex digits). */
static void exchange_queued(const char *input, const char *want)
{
	const char *id = strstr(want, "<ID>");
	size_t used = session_feed(sess, input, strlen(input));

	ck_assert_uint_eq(used, strlen(input));
	ck_assert_ptr_nonnull(id);
	ck_assert_msg(strncmp(cap.buf, want, (size_t)(id - want)) == 0, "got '%s'", cap.buf);
	ck_assert_msg(strspn(cap.buf + (id - want), "0123456789ABCDEF") == 17, "id in '%s'", cap.buf);
	ck_assert_str_eq(cap.buf + (id - want) + 17, id + 4);
	cap.len = 0;
	cap.buf[0] = '\0';
}

#define SHUTTING_DOWN "421 4.3.2 mail.example.test Service shutting down\r\n"

/* A graceful stop: 421 at the next command boundary. */
START_TEST(test_drain_idle)
{
	start_session(NULL);
	exchange("EHLO c.example\r\n", cap.buf);
	cap.len = 0; cap.buf[0] = '\0';
	session_drain(sess);
	ck_assert_str_eq(cap.buf, SHUTTING_DOWN);
	ck_assert(session_closing(sess));
	end_session();
}
END_TEST

/* Inside DATA: the message is read to its end, delivered and answered,
 * then the 421; the command pipelined behind it is not run. */
START_TEST(test_drain_inside_data)
{
	const char *rest = " line\r\n.\r\nNOOP\r\n";
	const char *queued = "250 2.0.0 Ok: queued as ";
	char text[4096];
	size_t used, len;

	start_session(NULL);
	exchange("EHLO c.example\r\n", cap.buf);
	cap.len = 0; cap.buf[0] = '\0';
	exchange("MAIL FROM:<sender@remote.example>\r\n", "250 2.1.0 Ok\r\n");
	exchange("RCPT TO:<jones@example.test>\r\n", "250 2.1.5 Ok\r\n");
	exchange("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	exchange("Subject: drained\r\n\r\nhalf a", "");
	session_drain(sess);
	ck_assert_str_eq(cap.buf, "");
	ck_assert(!session_closing(sess));
	used = session_feed(sess, rest, strlen(rest));
	ck_assert_uint_eq(used, strlen(rest) - strlen("NOOP\r\n"));
	len = strlen(cap.buf);
	ck_assert_msg(strncmp(cap.buf, queued, strlen(queued)) == 0, "got '%s'", cap.buf);
	ck_assert_uint_eq(len, strlen(queued) + 17 + 2 + strlen(SHUTTING_DOWN));
	ck_assert_str_eq(cap.buf + len - strlen(SHUTTING_DOWN), SHUTTING_DOWN);
	ck_assert(session_closing(sess));
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 1);
	ck_assert_ptr_nonnull(strstr(text, "half a line\r\n"));
	end_session();
}
END_TEST

/* A message refused at its end is answered, then the 421. */
START_TEST(test_drain_refused_message)
{
	start_session("max_message_size 1024");
	exchange("HELO c.example\r\n", cap.buf);
	cap.len = 0; cap.buf[0] = '\0';
	exchange("MAIL FROM:<sender@remote.example>\r\n", "250 2.1.0 Ok\r\n");
	exchange("RCPT TO:<jones@example.test>\r\n", "250 2.1.5 Ok\r\n");
	exchange("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	session_drain(sess);
	for (int i = 0; i < 30; i++)
		exchange("Subject: far too long for 1024 octets, line after line\r\n", "");
	exchange(".\r\n", "552 5.3.4 Message size exceeds fixed limit\r\n" SHUTTING_DOWN);
	ck_assert(session_closing(sess));
	end_session();
}
END_TEST

START_TEST(test_mail_delivered)
{
	char text[4096];
	const char *p;

	start_session(NULL);
	exchange("EHLO c.example\r\n", cap.buf);	/* skip the EHLO lines */
	cap.len = 0; cap.buf[0] = '\0';
	exchange("MAIL FROM:<sender@remote.example>\r\n", "250 2.1.0 Ok\r\n");
	exchange("MAIL FROM:<x@remote.example>\r\n", "503 5.5.1 Error: nested MAIL command\r\n");
	exchange("RCPT TO:<Jones@Example.TEST>\r\n", "250 2.1.5 Ok\r\n");
	/* VRFY, EXPN, NOOP and HELP leave the transaction as it is */
	exchange("VRFY qsmith\r\n", "250 2.1.5 Quincy Smith <qsmith@example.test>\r\n");
	exchange("NOOP\r\n", "250 2.0.0 Ok\r\n");
	exchange("DATA\r\n", "354 End data with <CR><LF>.<CR><LF>\r\n");
	exchange_queued("Subject: hello\r\n\r\nfirst line\r\n..stuffed\r\n.\r\n",
			"250 2.0.0 Ok: queued as <ID>\r\n");
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 1);
	ck_assert_int_eq(maildir_messages("example.test/qsmith", text + 2048, 2048), 0);
	ck_assert_msg(starts_with(text, "Return-Path: <sender@remote.example>\r\n"
				  "Received: from c.example ([192.0.2.1])\r\n"
				  "\tby mail.example.test (porterd) with ESMTP id "), "%s", text);
	p = strstr(text, "\r\n\tfor <jones@example.test>;\r\n\t");
	ck_assert_ptr_nonnull(p);
	p = strstr(p, "\r\nSubject: hello\r\n\r\nfirst line\r\n.stuffed\r\n");
	ck_assert_ptr_nonnull(p);
	ck_assert_str_eq(p, "\r\nSubject: hello\r\n\r\nfirst line\r\n.stuffed\r\n");
	/* the transaction is over: a new one may start */
	exchange("RCPT TO:<jones@example.test>\r\n", "503 5.5.1 Error: need MAIL command\r\n");
	end_session();
}
END_TEST

static const struct {
	const char *input, *reply;
} mail_rows[] = {
	{ "MAIL FROM:<>\r\n", "250 2.1.0 Ok\r\n" },
	{ "mail from: <a@remote.example> BODY=8BITMIME SIZE=1000\r\n", "250 2.1.0 Ok\r\n" },
	{ "MAIL FROM:<a@remote.example> SMTPUTF8\r\n", "250 2.1.0 Ok\r\n" },
	{ "MAIL FROM:<a@remote.example> SIZE=10485761\r\n", "552 5.3.4 Message size exceeds fixed limit\r\n" },
	{ "MAIL FROM:<a@remote.example> RET=FULL\r\n", "555 5.5.4 Unsupported parameter\r\n" },
	{ "MAIL FROM:<a@remote.example> BODY=9BIT\r\n", "501 5.5.4 Bad parameter value\r\n" },
	{ "MAIL FROM:a@remote.example\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" },
	{ "MAIL TO:<a@remote.example>\r\n", "501 5.5.4 Syntax: MAIL FROM:<address>\r\n" },
	{ "MAIL FROM:<a..b@remote.example>\r\n", "501 5.1.7 Bad sender address syntax\r\n" },
	{ "MAIL FROM:<aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa@remote.example>\r\n",
	  "553 5.1.7 Sender address too long\r\n" },
	{ "MAIL FROM:<j\xc3\xb6rg@remote.example>\r\n",
	  "553 5.6.7 Non-ASCII argument requires the SMTPUTF8 parameter\r\n" },
	{ "MAIL FROM:<j\xc3\xb6rg@remote.example> SMTPUTF8\r\n", "250 2.1.0 Ok\r\n" },
};

START_TEST(test_mail_rows)
{
	start_session(NULL);
	exchange("HELO c.example\r\n", "250 mail.example.test\r\n");
	exchange(mail_rows[_i].input, mail_rows[_i].reply);
	end_session();
}
END_TEST

static const struct {
	const char *input, *reply;
} rcpt_rows[] = {
	{ "RCPT TO:<jones@example.test>\r\n", "250 2.1.5 Ok\r\n" },
	{ "RCPT TO:<jones@example.org>\r\n", "250 2.1.5 Ok\r\n" },
	{ "RCPT TO:<postmaster>\r\n", "250 2.1.5 Ok\r\n" },
	{ "RCPT TO:<example-people@example.test>\r\n", "250 2.1.5 Ok\r\n" },
	{ "RCPT TO:<nobody@example.test>\r\n", "550 5.1.1 <nobody@example.test>: no such user here\r\n" },
	{ "RCPT TO:<ghosts@example.test>\r\n", "550 5.1.1 <ghosts@example.test>: list has no local members here\r\n" },
	{ "RCPT TO:<bob@example.test>\r\n", "551 5.1.6 User not local; please try <bob@elsewhere.example>\r\n" },
	{ "RCPT TO:<alice@example.test>\r\n", "551 5.1.6 User not local; please try <alice@newco.example>\r\n" },
	{ "RCPT TO:<fwd8@example.test>\r\n", "553 5.6.7 The answer is not ASCII; ask again with the SMTPUTF8 parameter\r\n" },
	{ "RCPT TO:<jones@elsewhere.example>\r\n", "554 5.7.1 <jones@elsewhere.example>: Relay access denied\r\n" },
	{ "RCPT TO:<@relay.example:jones@elsewhere.example>\r\n", "554 5.7.1 <jones@elsewhere.example>: Relay access denied\r\n" },
	{ "RCPT TO:<>\r\n", "501 5.1.3 Bad recipient address syntax\r\n" },
	{ "RCPT TO:<jones@example.test> NOTIFY=NEVER\r\n", "555 5.5.4 Unsupported parameter\r\n" },
	{ "RCPT TO:jones@example.test\r\n", "501 5.5.4 Syntax: RCPT TO:<address>\r\n" },
	{ "DATA\r\n", "554 5.5.1 Error: no valid recipients\r\n" },
	{ "DATA now\r\n", "501 5.5.4 Syntax: DATA\r\n" },
	{ "MAIL FROM:<b@remote.example>\r\n", "503 5.5.1 Error: nested MAIL command\r\n" },
};

START_TEST(test_rcpt_rows)
{
	start_session(NULL);
	exchange("HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n");
	exchange(rcpt_rows[_i].input, rcpt_rows[_i].reply);
	end_session();
}
END_TEST

START_TEST(test_list_recipient_fans_out)
{
	char text[4096];

	start_session(NULL);
	exchange("HELO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<all-staff@example.test>\r\n"
		 "RCPT TO:<jones@example.test>\r\nDATA\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
		 "354 End data with <CR><LF>.<CR><LF>\r\n");
	exchange_queued("hi\r\n.\r\n", "250 2.0.0 Ok: queued as <ID>\r\n");
	/* every local member once; remote members are not relayed */
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 1);
	ck_assert_msg(starts_with(text, "Return-Path: <>\r\nReceived: from c.example ([192.0.2.1])\r\n"
				  "\tby mail.example.test (porterd) with SMTP id "), "%s", text);
	ck_assert_ptr_null(strstr(text, "\tfor <"));	/* several recipients */
	ck_assert_int_eq(maildir_messages("example.test/smith", text, sizeof(text)), 1);
	ck_assert_int_eq(maildir_messages("example.test/qsmith", text, sizeof(text)), 1);
	ck_assert_int_eq(maildir_messages("example.test/postmaster", text, sizeof(text)), 1);
	ck_assert_int_eq(maildir_messages("usc-isif.example/postel", text, sizeof(text)), 0);
	end_session();
}
END_TEST

START_TEST(test_rset_ends_transaction)
{
	char text[256];

	start_session(NULL);
	exchange("HELO c.example\r\nMAIL FROM:<a@remote.example>\r\nRCPT TO:<jones@example.test>\r\n"
		 "RSET\r\nDATA\r\nRCPT TO:<jones@example.test>\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.0.0 Ok\r\n"
		 "503 5.5.1 Error: need RCPT command\r\n503 5.5.1 Error: need MAIL command\r\n");
	/* a new HELO ends a transaction too */
	exchange("MAIL FROM:<a@remote.example>\r\nRCPT TO:<jones@example.test>\r\n"
		 "HELO c.example\r\nDATA\r\n",
		 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 mail.example.test\r\n"
		 "503 5.5.1 Error: need RCPT command\r\n");
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 0);
	end_session();
}
END_TEST

START_TEST(test_max_recipients)
{
	start_session("vrfy on\nexpn on\nmax_recipients 2\n");
	exchange("HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n"
		 "RCPT TO:<jones@example.test>\r\nRCPT TO:<nobody@example.test>\r\n"
		 "RCPT TO:<qsmith@example.test>\r\nRCPT TO:<anna@example.test>\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		 "550 5.1.1 <nobody@example.test>: no such user here\r\n"
		 "250 2.1.5 Ok\r\n452 4.5.3 Error: too many recipients\r\n");
	end_session();
}
END_TEST

/* A bare LF never ends the data: the commands after "<LF>.<LF>" are
 * message text, and the whole message is refused (SMTP smuggling). */
START_TEST(test_smuggling_refused)
{
	char text[256];

	start_session(NULL);
	exchange("HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n"
		 "RCPT TO:<jones@example.test>\r\nDATA\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n"
		 "354 End data with <CR><LF>.<CR><LF>\r\n");
	exchange("text\n.\nMAIL FROM:<evil@remote.example>\r\nRCPT TO:<qsmith@example.test>\r\n"
		 "DATA\r\nforged\r\n.\r\nNOOP\r\n",
		 "554 5.6.0 Message contains a bare CR or LF; lines must end in CRLF\r\n"
		 "250 2.0.0 Ok\r\n");
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 0);
	ck_assert_int_eq(maildir_messages("example.test/qsmith", text, sizeof(text)), 0);
	end_session();
}
END_TEST

START_TEST(test_oversize_refused_in_sync)
{
	char body[3100], text[256];

	start_session("vrfy on\nexpn on\nmax_message_size 1k\n");
	exchange("EHLO c.example\r\n", cap.buf);
	cap.len = 0; cap.buf[0] = '\0';
	exchange("MAIL FROM:<a@remote.example>\r\nRCPT TO:<jones@example.test>\r\nDATA\r\n",
		 "250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n");
	/* 3000 octets in lines of 80, then the end, then a command */
	memset(body, 'x', 3000);
	for (size_t i = 78; i < 3000; i += 80)
		memcpy(body + i, "\r\n", 2);
	memcpy(body + 3000 - 8, "\r\n.\r\nNOOP\r\n", 12);
	exchange(body, "552 5.3.4 Message size exceeds fixed limit\r\n250 2.0.0 Ok\r\n");
	ck_assert_int_eq(maildir_messages("example.test/jones", text, sizeof(text)), 0);
	end_session();
}
END_TEST

START_TEST(test_rcpt_tempfail)
{
	static const char input[] = "HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n"
				    "RCPT TO:<nobody@example.test>\r\nNOOP\r\n";

	start_session(NULL);
	chain_late_then_table();
	session_feed(sess, input, sizeof(input) - 1);
	ck_assert(session_blocked(sess));
	late_answer(DIR_TEMPFAIL);	/* the table does not know nobody */
	ck_assert_str_eq(cap.buf, "250 mail.example.test\r\n250 2.1.0 Ok\r\n"
				  "451 4.3.0 <nobody@example.test>: Temporary lookup failure\r\n");
	end_session();
}
END_TEST

/* --- harvesting limits -------------------------------------------------------- */

START_TEST(test_errors_delay_then_close)
{
	start_session("vrfy on\nexpn on\nerror_soft_limit 2\nerror_hard_limit 4\nerror_delay 2s\n");
	exchange("VRFY nobody1\r\n", "550 5.1.1 <nobody1>: no such user here\r\n");
	ck_assert_uint_eq(session_delay_ms(sess), 0);
	exchange("XYZZY\r\n", "500 5.5.2 Error: command not recognized\r\n");
	ck_assert_uint_eq(session_delay_ms(sess), 0);
	/* past the soft limit: the reply is held, and input waits */
	ck_assert_uint_eq(session_feed(sess, "VRFY nobody3\r\nNOOP\r\n", 20), 14);
	ck_assert_str_eq(cap.buf, "550 5.1.1 <nobody3>: no such user here\r\n");
	ck_assert_uint_eq(session_delay_ms(sess), 2000);
	ck_assert(session_blocked(sess));
	session_delay_done(sess);
	ck_assert(!session_blocked(sess));
	cap.len = 0; cap.buf[0] = '\0';
	exchange("NOOP\r\n", "250 2.0.0 Ok\r\n");	/* successes cost nothing */
	ck_assert_uint_eq(session_delay_ms(sess), 0);
	/* the hard limit: the reply, then 421, then nothing more */
	ck_assert_uint_eq(session_feed(sess, "VRFY nobody4\r\nNOOP\r\n", 20), 14);
	ck_assert_str_eq(cap.buf, "550 5.1.1 <nobody4>: no such user here\r\n"
				  "421 4.7.0 mail.example.test Error: too many errors\r\n");
	ck_assert(session_closing(sess));
	ck_assert_uint_eq(session_delay_ms(sess), 0);
	end_session();
}
END_TEST

START_TEST(test_delay_grows)
{
	start_session("vrfy on\nexpn on\nerror_soft_limit 1\nerror_hard_limit 100\nerror_delay 1s\n");
	exchange("VRFY a1\r\n", "550 5.1.1 <a1>: no such user here\r\n");
	for (unsigned i = 1; i <= 40; i++) {
		session_feed(sess, "VRFY a2\r\n", 9);
		ck_assert_uint_eq(session_delay_ms(sess), i * 1000 > 30000 ? 30000 : i * 1000);
		session_delay_done(sess);
	}
	end_session();
}
END_TEST

START_TEST(test_hard_limit_during_transaction)
{
	static const char input[] = "HELO c.example\r\nMAIL FROM:<a@remote.example>\r\n"
		"RCPT TO:<x@elsewhere.example>\r\nRCPT TO:<nobody@example.test>\r\nNOOP\r\n";

	start_session("vrfy on\nexpn on\nerror_soft_limit 5\nerror_hard_limit 2\n");
	/* the NOOP after the 421 is never read */
	ck_assert_uint_eq(session_feed(sess, input, sizeof(input) - 1), sizeof(input) - 1 - 6);
	ck_assert_str_eq(cap.buf, "250 mail.example.test\r\n250 2.1.0 Ok\r\n"
		 "554 5.7.1 <x@elsewhere.example>: Relay access denied\r\n"
		 "550 5.1.1 <nobody@example.test>: no such user here\r\n"
		 "421 4.7.0 mail.example.test Error: too many errors\r\n");
	ck_assert(session_closing(sess));
	end_session();
}
END_TEST

START_TEST(test_rate_limit_across_sessions)
{
	const char *generic = "252 2.5.0 Cannot VRFY user; send some mail, I'll try my best\r\n";

	start_session(NULL);
	env.ratelimit = ratelimit_new(3, 60, 1024, 64);
	clock_ms = 1000;
	exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	exchange("EXPN bob\r\n", "250 2.1.5 <bob@elsewhere.example>\r\n");
	exchange("HELO c.example\r\nMAIL FROM:<>\r\nRCPT TO:<nobody@example.test>\r\n",
		 "250 mail.example.test\r\n250 2.1.0 Ok\r\n"
		 "550 5.1.1 <nobody@example.test>: no such user here\r\n");
	/* the budget of 3 is spent: nothing more is revealed */
	exchange("VRFY jones\r\n", generic);
	exchange("EXPN bob\r\n", "550 5.7.1 Access denied to you\r\n");
	/* the role addresses are still answered */
	exchange("VRFY postmaster\r\n", "250 2.1.5 Postmaster <postmaster@example.test>\r\n");
	/* a new session from the same address shares the budget */
	session_free(&sess);
	sess = session_new(cfg, &env, client, &(struct session_io){ .sink = capture_sink(&cap) });
	exchange("VRFY jones\r\n", generic);
	/* tokens come back with time: 3 per 60 s */
	clock_ms += 20000;
	exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	exchange("VRFY jones\r\n", generic);
	end_session();
}
END_TEST

START_TEST(test_trusted_has_no_budget)
{
	client = "127.0.0.1";
	start_session(NULL);
	client = "192.0.2.1";
	env.ratelimit = ratelimit_new(1, 60, 1024, 64);
	for (int i = 0; i < 5; i++)
		exchange("VRFY jones\r\n", "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	end_session();
}
END_TEST

static bool backlog_full;

static bool test_backlogged(void *arg)
{
	(void)arg;
	return backlog_full;
}

/* A host whose client reads nothing: the session stops between commands
 * of one pipelined batch, and takes the rest once the backlog drains. */
START_TEST(test_backlog_stops_input)
{
	static const char input[] = "VRFY jones\r\nNOOP\r\nNOOP\r\n";
	struct session_io io = { .backlogged = test_backlogged };
	size_t used;

	start_session(NULL);
	session_free(&sess);
	io.sink = capture_sink(&cap);
	sess = session_new(cfg, &env, client, &io);
	backlog_full = false;
	used = session_feed(sess, input, 12);	/* VRFY: answered */
	ck_assert_uint_eq(used, 12);
	backlog_full = true;
	ck_assert_uint_eq(session_feed(sess, input + used, sizeof(input) - 1 - used), 0);
	ck_assert_str_eq(cap.buf, "250 2.1.5 Fred Jones <jones@example.test>\r\n");
	backlog_full = false;
	cap.len = 0; cap.buf[0] = '\0';
	exchange(input + used, "250 2.0.0 Ok\r\n250 2.0.0 Ok\r\n");
	end_session();
}
END_TEST

/* Only whole commands and message data count as progress: a trickled or
 * discarded line never renews the host's deadline. */
START_TEST(test_progress_counts_commands)
{
	char junk[COMMAND_LINE_MAX];
	uint64_t p0;

	start_session(NULL);
	p0 = session_progress(sess);
	ck_assert_uint_eq(session_feed(sess, "NOO", 3), 0);
	ck_assert_uint_eq(session_progress(sess), p0);
	memset(junk, 'x', sizeof(junk));
	ck_assert_uint_eq(session_feed(sess, junk, sizeof(junk)), sizeof(junk));
	ck_assert_uint_eq(session_feed(sess, junk, 100), 100);
	ck_assert_uint_eq(session_progress(sess), p0);	/* discarding */
	exchange("\r\nNOOP\r\n", "500 5.5.2 Line too long\r\n250 2.0.0 Ok\r\n");
	ck_assert_uint_eq(session_progress(sess), p0 + 1);
	end_session();
}
END_TEST

/* The session of a config like the fixture's whose table also has
 * extra users u0 .. u<extra - 1>. */
static struct session *session_with_users(struct config **c_r, char **path_r,
					      struct capture *out, int extra)
{
	size_t size = sizeof(fixture_table) + (size_t)extra * 32, len;
	char *table = malloc(size), text[1024], err[512];
	struct session_io io = { .resume = on_resume, .sink = capture_sink(out) };
	struct session *s;

	ck_assert_ptr_nonnull(table);
	len = (size_t)snprintf(table, size, "%s", fixture_table);
	for (int i = 0; i < extra; i++)
		len += (size_t)snprintf(table + len, size - len, "u%d user User %d\n", i, i);
	*path_r = write_temp_file(table);
	free(table);
	snprintf(text, sizeof(text), "hostname mail.example.test\n"
		 "domains example.test example.org\ndirectory table %s\n"
		 "maildir /nonexistent/%%d/%%u\nvrfy on\nexpn on\n"
		 "error_soft_limit 1000\nerror_hard_limit 1000\n", *path_r);
	ck_assert_int_eq(config_parse(text, strlen(text), "big.conf", c_r, err, sizeof(err)), 0);
	ck_assert_msg(directory_open(*c_r, &(*c_r)->dir, err, sizeof(err)) == 0, "%s", err);
	env = (struct session_env){ .now_ms = test_now_ms };
	s = session_new(*c_r, &env, client, &io);
	ck_assert_ptr_nonnull(s);
	session_start(s);
	return s;
}

/*
 * A pipelined group read at once (every form a VRFY or EXPN may take,
 * odd ones and errors included) is answered exactly as the same lines
 * read one at a time.
 */
START_TEST(test_pipelined_group_as_one_at_a_time)
{
	static const char *const lines[] = {
		"VRFY jones", "vrfy <JONES@example.test>", "VRFY smith", "EXPN example-people",
		"VRFY \"Fred Smith\"", "VRFY Fred Smith", "VRFY u123", "VRFY u123x",
		"VRFY <u7@example.org>", "VRFY u9@elsewhere.example", "VRFY <>", "VRFY @",
		"VRFY a@", "VRFY <@>", "VRFY <", "VRFY >", "VRFY  u5", "VRFY\tu5",
		"EXPN <u5@example.org>", "EXPN all-staff", "VRFY j\xc3\xb6rg", "VRFYu1",
		"VRFY \"u1\"@example.test", "VRFY u1@@example.test", "NOOP", "VRFY u2 x",
	};
	static struct capture together, apart;
	char group[4096] = "", *path_a, *path_b;
	struct config *ca = NULL, *cb = NULL;
	struct session *a = session_with_users(&ca, &path_a, &together, 1000);
	struct session *b = session_with_users(&cb, &path_b, &apart, 1000);
	size_t len;

	for (int round = 0; round < 2; round++) {
		for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
			char line[256];
			int n = snprintf(line, sizeof(line), "%s\r\n", lines[i]);

			ck_assert_uint_eq(session_feed(b, line, (size_t)n), (size_t)n);
			strcat(group, line);
		}
	}
	len = strlen(group);
	ck_assert_uint_eq(session_feed(a, group, len), len);
	ck_assert_str_eq(together.buf, apart.buf);
	ck_assert_ptr_nonnull(strstr(together.buf, "250 2.1.5 User 123 <u123@example.test>"));
	session_free(&a);
	session_free(&b);
	config_unref(&ca);
	config_unref(&cb);
	unlink(path_a);
	unlink(path_b);
	free(path_a);
	free(path_b);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("session");
	TCase *tc = tcase_create("dialogue");

	tcase_add_loop_test(tc, test_rows, 0, sizeof(rows) / sizeof(rows[0]));
	tcase_add_test(tc, test_ehlo_advertises);
	tcase_add_test(tc, test_pipelined_group_as_one_at_a_time);
	tcase_add_test(tc, test_disabled_not_advertised);
	tcase_add_test(tc, test_vrfy_252_reveals_nothing);
	tcase_add_test(tc, test_trusted_client_gets_truth);
	tcase_add_test(tc, test_untrusted_ipv6_and_trusted_list);
	tcase_add_test(tc, test_quit_closes);
	tcase_add_test(tc, test_timeout_and_shutdown);
	tcase_add_test(tc, test_drain_idle);
	tcase_add_test(tc, test_drain_inside_data);
	tcase_add_test(tc, test_drain_refused_message);
	tcase_add_test(tc, test_partial_line_waits);
	tcase_add_test(tc, test_line_too_long_resyncs);
	tcase_add_test(tc, test_line_too_long_in_pieces);
	tcase_add_test(tc, test_line_limit_exact);
	tcase_add_test(tc, test_nul_byte_in_line);
	tcase_add_test(tc, test_pipelined_group_in_order);
	tcase_add_test(tc, test_late_answers_keep_order);
	tcase_add_test(tc, test_late_expansion);
	tcase_add_test(tc, test_late_member_tempfail);
	tcase_add_test(tc, test_free_while_waiting);
	tcase_add_test(tc, test_timeout_while_waiting);
	tcase_add_test(tc, test_mail_delivered);
	tcase_add_loop_test(tc, test_mail_rows, 0, sizeof(mail_rows) / sizeof(mail_rows[0]));
	tcase_add_loop_test(tc, test_rcpt_rows, 0, sizeof(rcpt_rows) / sizeof(rcpt_rows[0]));
	tcase_add_test(tc, test_list_recipient_fans_out);
	tcase_add_test(tc, test_rset_ends_transaction);
	tcase_add_test(tc, test_max_recipients);
	tcase_add_test(tc, test_smuggling_refused);
	tcase_add_test(tc, test_oversize_refused_in_sync);
	tcase_add_test(tc, test_rcpt_tempfail);
	tcase_add_test(tc, test_errors_delay_then_close);
	tcase_add_test(tc, test_delay_grows);
	tcase_add_test(tc, test_hard_limit_during_transaction);
	tcase_add_test(tc, test_rate_limit_across_sessions);
	tcase_add_test(tc, test_trusted_has_no_budget);
	tcase_add_test(tc, test_backlog_stops_input);
	tcase_add_test(tc, test_progress_counts_commands);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
