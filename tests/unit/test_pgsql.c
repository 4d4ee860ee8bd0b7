/*
 * test_pgsql — the `pgsql` directory backend without a server: its
 * parameters (quoting and every error, with the exact message), how a
 * query's rows become an answer, and, through a real event loop, what it
 * answers when PostgreSQL is not there: a closed port, a server that
 * accepts and never speaks, a full queue, close with lookups outstanding.
 * Against a real server: tests/integration/t_pgsql.py.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/event.h>

#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/log.h"
#include "porterd/pgsql.h"
#include "backendtest.h"

#define ERR_MAX 1024
#define ANSWER_MAX 2048

static const struct backend_ops *const ops = &backend_pgsql_ops;

#define QUERIES "query_user=\"SELECT name FROM mailbox WHERE local_part = $1 " \
	"AND domain = $2\" query_list=\"SELECT goto FROM alias WHERE " \
	"address = $1 || '@' || $2\""

/* ---- parameters ---- */

/* What args parse to, as one line, or the error message. */
static const char *params_text(const char *args, char *out, size_t size)
{
	struct pgsql_params p;
	char err[ERR_MAX] = "";

	if (pgsql_params_parse(args, &p, err, sizeof(err)) < 0) {
		snprintf(out, size, "%s", err);
		return out;
	}
	snprintf(out, size, "conninfo=[%s] user=[%s] list=[%s] name=[%s] "
		 "timeout=%llu pool=%u", p.conninfo, p.query_user, p.query_list,
		 p.query_name != NULL ? p.query_name : "(none)",
		 (unsigned long long)p.timeout, p.pool);
	pgsql_params_clear(&p);
	return out;
}

struct params_row {
	const char *args;
	const char *want;
};

static const struct params_row params_rows[] = {
	/* values: bare words, quoted strings, escapes, any order */
	{ "conninfo=hostaddr=127.0.0.1 query_user=u query_list=l",
	  "conninfo=[hostaddr=127.0.0.1] user=[u] list=[l] name=[(none)] "
	  "timeout=5 pool=2" },
	{ "  query_list=l\tquery_user=u   conninfo=\"hostaddr=::1 port=5433\"  ",
	  "conninfo=[hostaddr=::1 port=5433] user=[u] list=[l] name=[(none)] "
	  "timeout=5 pool=2" },
	{ "conninfo=\"host=/run/postgresql dbname=mail\" "
	  "query_user=\"SELECT \\\"name\\\" FROM t WHERE a = $1 AND b = '\\\\'\" "
	  "query_list=\"x\" query_name=\"SELECT a, b FROM t WHERE c = $1\" "
	  "timeout=1m pool=32",
	  "conninfo=[host=/run/postgresql dbname=mail] "
	  "user=[SELECT \"name\" FROM t WHERE a = $1 AND b = '\\'] list=[x] "
	  "name=[SELECT a, b FROM t WHERE c = $1] timeout=60 pool=32" },
	{ "conninfo=hostaddr=127.0.0.1 query_user=\"a;b#c 'd'\" query_list=l "
	  "timeout=300s pool=1",
	  "conninfo=[hostaddr=127.0.0.1] user=[a;b#c 'd'] list=[l] "
	  "name=[(none)] timeout=300 pool=1" },
	{ "conninfo=hostaddr=127.0.0.1 query_user=a\\b query_list=l timeout=1",
	  "conninfo=[hostaddr=127.0.0.1] user=[a\\b] list=[l] name=[(none)] "
	  "timeout=1 pool=2" },
	/* hosts that need no resolving */
	{ "conninfo=\"host=db.example hostaddr=192.0.2.1\" query_user=u query_list=l",
	  "conninfo=[host=db.example hostaddr=192.0.2.1] user=[u] list=[l] "
	  "name=[(none)] timeout=5 pool=2" },
	{ "conninfo=\"host=127.0.0.1,::1,/run/postgresql\" query_user=u query_list=l",
	  "conninfo=[host=127.0.0.1,::1,/run/postgresql] user=[u] list=[l] "
	  "name=[(none)] timeout=5 pool=2" },
	{ "conninfo=postgresql://127.0.0.1:5433/mail query_user=u query_list=l",
	  "conninfo=[postgresql://127.0.0.1:5433/mail] user=[u] list=[l] "
	  "name=[(none)] timeout=5 pool=2" },

	/* missing, unknown, repeated */
	{ "", "pgsql: missing conninfo=VALUE (conninfo, query_user and "
	  "query_list are required)" },
	{ "conninfo=hostaddr=127.0.0.1 query_list=l",
	  "pgsql: missing query_user=VALUE (conninfo, query_user and "
	  "query_list are required)" },
	{ "conninfo=hostaddr=127.0.0.1 query_user=u",
	  "pgsql: missing query_list=VALUE (conninfo, query_user and "
	  "query_list are required)" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " frob=1",
	  "pgsql: unknown parameter 'frob' (known: conninfo, query_user, "
	  "query_list, query_name, timeout, pool)" },
	{ "Conninfo=x", "pgsql: unknown parameter 'Conninfo' (known: conninfo, "
	  "query_user, query_list, query_name, timeout, pool)" },
	{ "query_user_and_a_very_long_parameter_name_indeed=1",
	  "pgsql: unknown parameter 'query_user_and_a_very_long_parameter_nam...' "
	  "(known: conninfo, query_user, query_list, query_name, timeout, pool)" },
	{ "conninfo", "pgsql: expected NAME=VALUE, got 'conninfo'" },
	{ "pool=2 conninfo \"x\"", "pgsql: expected NAME=VALUE, got 'conninfo'" },
	{ "=x", "pgsql: expected NAME=VALUE, got '=x'" },
	{ "pool=1 pool=2", "pgsql: pool given twice" },
	{ "query_user=a query_user=\"a\"", "pgsql: query_user given twice" },

	/* quoting */
	{ "query_user=\"SELECT 1", "pgsql: query_user: unterminated quoted value" },
	{ "query_user=\"SELECT 1\\", "pgsql: query_user: unterminated quoted value" },
	{ "query_user=\"SELECT 1\\\"", "pgsql: query_user: unterminated quoted value" },
	{ "query_user=\"a\\nb\"", "pgsql: query_user: unknown escape '\\n' in a "
	  "quoted value (only \\\" and \\\\)" },
	{ "query_user=\"a\\ b\"", "pgsql: query_user: unknown escape (backslash "
	  "before octet 0x20) in a quoted value (only \\\" and \\\\)" },
	{ "query_user=\"a\\\xc3\xa9\"", "pgsql: query_user: unknown escape "
	  "(backslash before octet 0xc3) in a quoted value (only \\\" and \\\\)" },
	{ "query_user=\"a\"b", "pgsql: query_user: text right after the closing quote" },
	{ "query_user=\"a\"\"b\"", "pgsql: query_user: text right after the "
	  "closing quote" },
	{ "query_user=a\"b\"", "pgsql: query_user: '\"' inside an unquoted value "
	  "(quote the whole value)" },
	{ "query_user=\"\"", "pgsql: query_user: empty value" },
	{ "query_user= query_list=l", "pgsql: query_user: empty value" },
	{ "conninfo=", "pgsql: conninfo: empty value" },

	/* numbers and times */
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " pool=0",
	  "pgsql: pool: '0' is not a number from 1 to 32" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " pool=33",
	  "pgsql: pool: '33' is not a number from 1 to 32" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " pool=1000",
	  "pgsql: pool: '1000' is not a number from 1 to 32" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " pool=-1",
	  "pgsql: pool: '-1' is not a number from 1 to 32" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " pool=two",
	  "pgsql: pool: 'two' is not a number from 1 to 32" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " timeout=0s",
	  "pgsql: timeout: '0s' is not a time from 1s to 300s (a number with "
	  "s, m or h)" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " timeout=301",
	  "pgsql: timeout: '301' is not a time from 1s to 300s (a number with "
	  "s, m or h)" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " timeout=6m",
	  "pgsql: timeout: '6m' is not a time from 1s to 300s (a number with "
	  "s, m or h)" },
	{ "conninfo=hostaddr=127.0.0.1 " QUERIES " timeout=500ms",
	  "pgsql: timeout: '500ms' is not a time from 1s to 300s (a number "
	  "with s, m or h)" },

	/* conninfo: libpq's own syntax, and no name to resolve */
	{ "conninfo=\"hostaddr=127.0.0.1 frob=1\" " QUERIES,
	  "pgsql: conninfo: invalid connection option \"frob\"" },
	{ "conninfo=\"hostaddr='127.0.0.1\" " QUERIES,
	  "pgsql: conninfo: unterminated quoted string in connection info string" },
	{ "conninfo=host=db.example " QUERIES,
	  "pgsql: conninfo: host 'db.example' is a name, which libpq would "
	  "resolve while every session waits: give its address in hostaddr= "
	  "(host= may stay, for TLS) or a socket directory" },
	{ "conninfo=host=localhost " QUERIES,
	  "pgsql: conninfo: host 'localhost' is a name, which libpq would "
	  "resolve while every session waits: give its address in hostaddr= "
	  "(host= may stay, for TLS) or a socket directory" },
	{ "conninfo=\"host=/run/postgresql,db2.example port=5432\" " QUERIES,
	  "pgsql: conninfo: host 'db2.example' is a name, which libpq would "
	  "resolve while every session waits: give its address in hostaddr= "
	  "(host= may stay, for TLS) or a socket directory" },
	{ "conninfo=postgresql://db.example/mail " QUERIES,
	  "pgsql: conninfo: host 'db.example' is a name, which libpq would "
	  "resolve while every session waits: give its address in hostaddr= "
	  "(host= may stay, for TLS) or a socket directory" },
};

START_TEST(test_params_rows)
{
	struct report r = { .len = 0 };
	char got[ERR_MAX];

	unsetenv("PGHOST");
	unsetenv("PGHOSTADDR");
	for (size_t i = 0; i < NROWS(params_rows); i++) {
		const struct params_row *row = &params_rows[i];

		if (strcmp(params_text(row->args, got, sizeof(got)), row->want) != 0)
			report_add(&r, "row %zu [%s]:\n   got  %s\n   want %s\n",
				   i, row->args, got, row->want);
	}
	report_check(&r);
}
END_TEST

/* With no host in conninfo, libpq takes PGHOST: a name there is refused
 * too, unless PGHOSTADDR gives the address. */
START_TEST(test_params_pghost)
{
	char got[ERR_MAX];
	const char *args = "conninfo=dbname=mail " QUERIES;

	setenv("PGHOST", "db.example", 1);
	unsetenv("PGHOSTADDR");
	ck_assert_str_eq(params_text(args, got, sizeof(got)),
		"pgsql: conninfo: host 'db.example' is a name, which libpq would "
		"resolve while every session waits: give its address in hostaddr= "
		"(host= may stay, for TLS) or a socket directory");
	setenv("PGHOSTADDR", "192.0.2.1", 1);
	ck_assert_str_eq(params_text(args, got, sizeof(got)),
		"conninfo=[dbname=mail] user=[SELECT name FROM mailbox WHERE "
		"local_part = $1 AND domain = $2] list=[SELECT goto FROM alias "
		"WHERE address = $1 || '@' || $2] name=[(none)] timeout=5 pool=2");
	unsetenv("PGHOSTADDR");
	setenv("PGHOST", "/run/postgresql", 1);
	ck_assert_str_eq(params_text("conninfo=hostaddr=127.0.0.1 query_user=u "
				     "query_list=l", got, sizeof(got)),
		"conninfo=[hostaddr=127.0.0.1] user=[u] list=[l] name=[(none)] "
		"timeout=5 pool=2");
	unsetenv("PGHOST");
}
END_TEST

/* An error is cut to errsize, and nothing is written past it. */
START_TEST(test_params_error_truncated)
{
	struct pgsql_params p;
	char err[16];

	memset(err, 'x', sizeof(err));
	ck_assert_int_eq(pgsql_params_parse("frob=1", &p, err, 8), -1);
	ck_assert_str_eq(err, "pgsql: ");
	ck_assert_int_eq(err[8], 'x');
	ck_assert_int_eq(pgsql_params_parse(NULL, &p, NULL, 0), -1);
}
END_TEST

/* In a config file the message says where: "FILE:LINE: directory ...". */
START_TEST(test_params_error_located)
{
	static const char text[] =
		"hostname mail.example.test\n"
		"domains example.test\n"
		"directory pgsql conninfo=hostaddr=127.0.0.1 query_user=u pool=9\n"
		"maildir /tmp/porterd-unused/%d/%u\n";
	struct config *cfg = NULL;
	struct directory *dir = NULL;
	char err[ERR_MAX];

	ck_assert_int_eq(config_parse(text, strlen(text), "porterd.conf", &cfg,
				      err, sizeof(err)), 0);
	ck_assert_int_eq(directory_open(cfg, &dir, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "porterd.conf:3: directory pgsql: missing "
			 "query_list=VALUE (conninfo, query_user and query_list "
			 "are required)");
	config_unref(&cfg);
}
END_TEST

/* ---- from rows to answers ---- */

enum { USER, LIST, NAME };

#define NUL_CELL ((const char *)1)	/* SQL NULL in a row spec */
#define ROWS_SPEC_MAX 4

struct answer_row {
	int query;
	const char *cells[ROWS_SPEC_MAX][2];	/* {NULL, NULL} ends the rows */
	const char *want;
};

static const char *const domains[] = { "example.test", "example.org" };

static void answer_format(const struct dir_result *res, const char *why,
			  char *out, size_t size)
{
	size_t len = 0;

	switch (res->status) {
	case DIR_USER:
		snprintf(out, size, "user %s name=%s", res->key,
			 res->fullname != NULL ? res->fullname : "(none)");
		break;
	case DIR_LIST:
		len = (size_t)snprintf(out, size, "list %s members=", res->key);
		for (size_t i = 0; i < res->nmembers && len < size; i++)
			len += (size_t)snprintf(out + len, size - len, "%s%s",
						i ? "," : "", res->members[i]);
		break;
	case DIR_FORWARD:
		snprintf(out, size, "forward %s target=%s", res->key, res->target);
		break;
	case DIR_AMBIGUOUS:
		snprintf(out, size, "ambiguous");
		break;
	case DIR_NOTFOUND:
		snprintf(out, size, "notfound");
		break;
	case DIR_TEMPFAIL:
		snprintf(out, size, "tempfail %s", why != NULL ? why : "(no reason)");
		break;
	default:
		snprintf(out, size, "status %d", (int)res->status);
		break;
	}
}

static void rows_fill(struct pgsql_rows *rows, const char *const cells[][2])
{
	pgsql_rows_reset(rows);
	for (size_t i = 0; i < ROWS_SPEC_MAX && (cells[i][0] || cells[i][1]); i++) {
		const char *v0 = cells[i][0] == NUL_CELL ? NULL : cells[i][0];
		const char *v1 = cells[i][1] == NUL_CELL ? NULL : cells[i][1];

		pgsql_rows_add(rows, v0, v0 ? strlen(v0) : 0, v1, v1 ? strlen(v1) : 0);
	}
}

static const char *answer_text(struct pgsql_rows *rows, int query, char *out,
			       size_t size)
{
	struct dir_result res;
	const char *why = NULL;

	if (query == USER)
		pgsql_answer_user(rows, "jones@example.test", &res, &why);
	else if (query == LIST)
		pgsql_answer_list(rows, "staff@example.test", domains,
				  NROWS(domains), &res, &why);
	else
		pgsql_answer_name(rows, &res, &why);
	ck_assert_msg((res.status == DIR_TEMPFAIL) == (why != NULL),
		      "a reason goes with a temporary failure, and only there");
	answer_format(&res, why, out, size);
	return out;
}

#define N NUL_CELL

static const struct answer_row answer_rows[] = {
	/* query_user: zero rows or one; the first column the full name */
	{ USER, { { 0 } }, "notfound" },
	{ USER, { { "Fred Jones", N } }, "user jones@example.test name=Fred Jones" },
	{ USER, { { N, N } }, "user jones@example.test name=(none)" },
	{ USER, { { "", N } }, "user jones@example.test name=(none)" },
	{ USER, { { " \t ", N } }, "user jones@example.test name=(none)" },
	{ USER, { { "  Fred \t Jones  ", "ignored" } },
	  "user jones@example.test name=Fred Jones" },
	{ USER, { { "Fred\r\n250 Forged", N } },
	  "user jones@example.test name=Fred 250 Forged" },
	{ USER, { { "J\xc3\xb6rg\x7f M\xc3\xbcller", N } },
	  "user jones@example.test name=J\xc3\xb6rg M\xc3\xbcller" },
	{ USER, { { "Fred Jones", N }, { "Fred Jones", N } },
	  "tempfail query_user returned more than one row" },

	/* query_list: members one a row, or several in one value */
	{ LIST, { { 0 } }, "notfound" },
	{ LIST, { { N, N } }, "notfound" },
	{ LIST, { { " , ,", N } }, "notfound" },
	{ LIST, { { "jones@example.test,smith@example.test, "
		    "postel@usc-isif.example", N } },
	  "list staff@example.test members=jones@example.test,"
	  "smith@example.test,postel@usc-isif.example" },
	{ LIST, { { "jones", N }, { "Smith@Example.ORG", N }, { N, N },
		  { "a@b.example b@b.example", N } },
	  "list staff@example.test members=jones,smith@example.org,"
	  "a@b.example,b@b.example" },
	/* one member: a forward when remote, a list when local */
	{ LIST, { { "Bob@Elsewhere.Example", N } },
	  "forward staff@example.test target=bob@elsewhere.example" },
	{ LIST, { { " bob@elsewhere.example ,", N } },
	  "forward staff@example.test target=bob@elsewhere.example" },
	{ LIST, { { "jones@example.test", N } },
	  "list staff@example.test members=jones@example.test" },
	{ LIST, { { "jones@EXAMPLE.org", N } },
	  "list staff@example.test members=jones@example.org" },
	{ LIST, { { "jones", N } }, "list staff@example.test members=jones" },
	{ LIST, { { "bob@elsewhere.example", N }, { "bob@elsewhere.example", N } },
	  "list staff@example.test members=bob@elsewhere.example,"
	  "bob@elsewhere.example" },
	/* what no reply may carry is left out */
	{ LIST, { { "<jones@example.test>,a@b@c,@x,y@,ok@x.example,"
		    "tab\x01@x", N } },
	  "forward staff@example.test target=ok@x.example" },
	{ LIST, { { "<a>", N } }, "notfound" },

	/* query_name: rows of (address or local part, full name) */
	{ NAME, { { 0 } }, "notfound" },
	{ NAME, { { "qsmith", "Quincy Smith" } }, "user qsmith name=Quincy Smith" },
	{ NAME, { { "QSmith@Example.Test", "Quincy  Smith" } },
	  "user qsmith@example.test name=Quincy Smith" },
	{ NAME, { { "qsmith", N } }, "user qsmith name=(none)" },
	{ NAME, { { "qsmith", "Quincy" }, { "qsmith", "Smith" } },
	  "user qsmith name=Quincy" },
	{ NAME, { { "qsmith", "Quincy Smith" }, { "smith", "Fred Smith" } },
	  "ambiguous" },
	{ NAME, { { N, "Nobody" }, { "<bad>", "Bad" }, { "smith", "Fred Smith" } },
	  "user smith name=Fred Smith" },
	{ NAME, { { N, "Nobody" } }, "notfound" },
};

#undef N

START_TEST(test_answer_rows)
{
	struct report r = { .len = 0 };
	struct pgsql_rows rows = { .len = 0 };
	char got[ANSWER_MAX];

	log_init(LOG_LEVEL_ERR, stderr);	/* skipped members are logged */
	for (size_t i = 0; i < NROWS(answer_rows); i++) {
		const struct answer_row *row = &answer_rows[i];

		rows_fill(&rows, row->cells);
		if (strcmp(answer_text(&rows, row->query, got, sizeof(got)),
			   row->want) != 0)
			report_add(&r, "row %zu:\n   got  %s\n   want %s\n", i,
				   got, row->want);
	}
	pgsql_rows_free(&rows);
	report_check(&r);
}
END_TEST

/* Values no reply may carry are logged once an answer, with how many. */
START_TEST(test_skipped_logged_once)
{
	struct pgsql_rows rows = { .len = 0 };
	struct dir_result res;
	const char *why;
	char log[1024];
	FILE *f = log_capture_open(LOG_LEVEL_WARN);

	pgsql_rows_add(&rows, "<a>,b@x.example,\x1b[31m,c@@x", 26, NULL, 0);
	pgsql_rows_add(&rows, "<d>", 3, NULL, 0);
	ck_assert_int_eq(pgsql_answer_list(&rows, "staff", domains, 2, &res, &why),
			 DIR_FORWARD);
	pgsql_rows_reset(&rows);
	pgsql_rows_add(&rows, "a b", 3, "A", 1);
	pgsql_rows_add(&rows, "c", 1, "C", 1);
	ck_assert_int_eq(pgsql_answer_name(&rows, &res, &why), DIR_USER);
	log_capture_read(f, log, sizeof(log));
	ck_assert_str_eq(log,
		"porterd: level=warning event=pgsql_skip query=query_list values=4 "
		"first=\"<a>\" reason=not_an_address\n"
		"porterd: level=warning event=pgsql_skip query=query_name values=1 "
		"first=\"a b\" reason=not_an_address\n");
	pgsql_rows_free(&rows);
}
END_TEST

/* With no local domains every member with a domain is remote. */
START_TEST(test_answer_list_no_domains)
{
	struct pgsql_rows rows = { .len = 0 };
	struct dir_result res;
	const char *why;

	pgsql_rows_add(&rows, "jones@example.test", 18, NULL, 0);
	ck_assert_int_eq(pgsql_answer_list(&rows, "staff", NULL, 0, &res, &why),
			 DIR_FORWARD);
	ck_assert_str_eq(res.target, "jones@example.test");
	pgsql_rows_free(&rows);
}
END_TEST

/* Rows past PGSQL_ROWS_MAX, or values past PGSQL_RESULT_MAX, are not
 * kept; an answer that needed them is a temporary failure, not a guess. */
START_TEST(test_rows_bounds)
{
	struct pgsql_rows rows = { .len = 0 };
	struct dir_result res;
	const char *why;
	char *big = malloc(PGSQL_RESULT_MAX);

	ck_assert_ptr_nonnull(big);
	for (size_t i = 0; i < PGSQL_ROWS_MAX; i++)
		pgsql_rows_add(&rows, "a@x.example", 11, NULL, 0);
	ck_assert(!rows.too_many);
	ck_assert_int_eq(pgsql_answer_list(&rows, "staff", domains, 2, &res, &why),
			 DIR_LIST);
	ck_assert_uint_eq(res.nmembers, PGSQL_ROWS_MAX);
	pgsql_rows_add(&rows, "b@x.example", 11, NULL, 0);
	ck_assert(rows.too_many);
	ck_assert_uint_eq(rows.nrows, PGSQL_ROWS_MAX);
	ck_assert_int_eq(pgsql_answer_list(&rows, "staff", domains, 2, &res, &why),
			 DIR_TEMPFAIL);
	ck_assert_str_eq(why, "more rows or longer values than porterd keeps");

	/* members split out of one value count too */
	pgsql_rows_reset(&rows);
	memset(big, ',', PGSQL_RESULT_MAX);
	for (size_t i = 0; i + 2 < PGSQL_RESULT_MAX / 2; i++)
		big[i * 2] = 'a';
	pgsql_rows_add(&rows, big, PGSQL_RESULT_MAX / 2, NULL, 0);
	ck_assert(!rows.too_many);
	ck_assert_int_eq(pgsql_answer_list(&rows, "staff", domains, 2, &res, &why),
			 DIR_TEMPFAIL);

	pgsql_rows_reset(&rows);
	ck_assert(!rows.too_many);
	pgsql_rows_add(&rows, big, PGSQL_RESULT_MAX, NULL, 0);
	ck_assert(rows.too_many);
	ck_assert_uint_eq(rows.nrows, 0);
	ck_assert_int_eq(pgsql_answer_user(&rows, "k", &res, &why), DIR_TEMPFAIL);
	ck_assert_int_eq(pgsql_answer_name(&rows, &res, &why), DIR_TEMPFAIL);

	/* a name query past the bounds that is ambiguous already says so */
	pgsql_rows_reset(&rows);
	pgsql_rows_add(&rows, "a", 1, "A", 1);
	pgsql_rows_add(&rows, "b", 1, "B", 1);
	pgsql_rows_add(&rows, big, PGSQL_RESULT_MAX, NULL, 0);
	ck_assert_int_eq(pgsql_answer_name(&rows, &res, &why), DIR_AMBIGUOUS);
	ck_assert_ptr_null(pgsql_rows_value(&rows, 2, 0));
	ck_assert_str_eq(pgsql_rows_value(&rows, 1, 1), "B");
	ck_assert_ptr_null(pgsql_rows_value(&rows, 0, 2));
	free(big);
	pgsql_rows_free(&rows);
}
END_TEST

/* ---- through a real event loop, with no PostgreSQL there ---- */

struct answers {
	int calls;
	int tempfail;
	enum dir_status last;
};

static void answers_done(const struct dir_result *res, void *arg)
{
	struct answers *a = arg;

	a->calls++;
	a->tempfail += res->status == DIR_TEMPFAIL;
	a->last = res->status;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A loopback port: closed (nothing listens) or silent (a listener that
 * never accepts: the kernel completes connections, nobody speaks). */
static int loopback_port(bool listen_on, int *fd_r)
{
	struct sockaddr_in sa = { .sin_family = AF_INET };
	socklen_t len = sizeof(sa);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	ck_assert_int_ge(fd, 0);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	ck_assert_int_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	ck_assert_int_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	if (listen_on) {
		ck_assert_int_eq(listen(fd, 64), 0);
		*fd_r = fd;
	} else {
		close(fd);
		*fd_r = -1;
	}
	return ntohs(sa.sin_port);
}

static struct backend *open_at(int port, const char *more)
{
	struct backend *be = NULL;
	char args[512], err[ERR_MAX] = "";

	snprintf(args, sizeof(args), "conninfo=\"hostaddr=127.0.0.1 port=%d "
		 "dbname=mail user=porterd\" " QUERIES " %s", port, more);
	ck_assert_msg(ops->open(args, "/", &be, err, sizeof(err)) == 0,
		      "open: %s", err);
	return be;
}

/* Ask for jones, the answer into a. */
static void ask_jones(struct backend *be, struct answers *a)
{
	struct dir_query q = { .local = "jones", .by_name = true,
			       .domains = domains, .ndomains = NROWS(domains) };

	ops->lookup(be, &q, answers_done, a);
}

/* Run the loop until want answers came or max_s passed. */
static void loop_until(struct event_base *base, const struct answers *a,
		       int want, double max_s)
{
	double end = now_s() + max_s;

	while (a->calls < want && now_s() < end) {
		struct timeval tick = { 0, 50000 };

		event_base_loopexit(base, &tick);
		event_base_dispatch(base);
	}
}

START_TEST(test_before_attach)
{
	struct backend *be = open_at(5432, "");
	struct answers a = { 0 };

	ck_assert_ptr_null(ops->count);	/* a database is not counted */
	ask_jones(be, &a);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.tempfail, 1);
	ops->close(&be);
	ck_assert_ptr_null(be);
	ops->close(&be);
}
END_TEST

START_TEST(test_closed_port)
{
	struct event_base *base = event_base_new();
	int fd, port = loopback_port(false, &fd);
	struct backend *be = open_at(port, "timeout=5s");
	struct answers a = { 0 };
	char err[ERR_MAX];
	double t0 = now_s();

	ck_assert_int_eq(ops->attach(be, base, err, sizeof(err)), 0);
	ask_jones(be, &a);
	loop_until(base, &a, 1, 5.0);
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.last, DIR_TEMPFAIL);
	ck_assert_msg(now_s() - t0 < 1.5, "answered after %.1f s", now_s() - t0);
	/* still down a while later: answered again, still a temporary failure */
	loop_until(base, &a, 99, 0.5);
	ask_jones(be, &a);
	loop_until(base, &a, 2, 5.0);
	ck_assert_int_eq(a.calls, 2);
	ck_assert_int_eq(a.tempfail, 2);
	ops->close(&be);
	event_base_free(base);
}
END_TEST

START_TEST(test_silent_server)
{
	struct event_base *base = event_base_new();
	int fd, port = loopback_port(true, &fd);
	struct backend *be = open_at(port, "timeout=1s pool=1");
	struct answers a = { 0 };
	char err[ERR_MAX];
	double t0 = now_s(), took;

	ck_assert_int_eq(ops->attach(be, base, err, sizeof(err)), 0);
	ask_jones(be, &a);
	ck_assert_int_eq(a.calls, 0);
	loop_until(base, &a, 1, 5.0);
	took = now_s() - t0;
	ck_assert_int_eq(a.calls, 1);
	ck_assert_int_eq(a.last, DIR_TEMPFAIL);
	ck_assert_msg(took > 0.8 && took < 2.5, "answered after %.1f s", took);
	ops->close(&be);
	event_base_free(base);
	close(fd);
}
END_TEST

/* Lookups wait in a bounded queue; past it they are answered at once.
 * close answers every waiting one, exactly once, before it returns. */
START_TEST(test_queue_full_and_close)
{
	struct event_base *base = event_base_new();
	int fd, port = loopback_port(true, &fd);
	struct backend *be = open_at(port, "timeout=30s pool=1");
	struct answers a = { 0 }, over = { 0 };
	char err[ERR_MAX];

	ck_assert_int_eq(ops->attach(be, base, err, sizeof(err)), 0);
	for (int i = 0; i < PGSQL_QUEUE_MAX; i++)
		ask_jones(be, &a);
	loop_until(base, &a, 1, 0.3);
	ck_assert_int_eq(a.calls, 0);
	ask_jones(be, &over);
	ck_assert_int_eq(over.calls, 1);
	ck_assert_int_eq(over.tempfail, 1);
	ops->close(&be);
	ck_assert_int_eq(a.calls, PGSQL_QUEUE_MAX);
	ck_assert_int_eq(a.tempfail, PGSQL_QUEUE_MAX);
	event_base_free(base);
	close(fd);
}
END_TEST

static Suite *pgsql_suite(void)
{
	Suite *s = suite_create("pgsql");
	TCase *tc;

	tc = tcase_create("params");
	tcase_add_test(tc, test_params_rows);
	tcase_add_test(tc, test_params_pghost);
	tcase_add_test(tc, test_params_error_truncated);
	tcase_add_test(tc, test_params_error_located);
	suite_add_tcase(s, tc);

	tc = tcase_create("answers");
	tcase_add_test(tc, test_answer_rows);
	tcase_add_test(tc, test_skipped_logged_once);
	tcase_add_test(tc, test_answer_list_no_domains);
	tcase_add_test(tc, test_rows_bounds);
	suite_add_tcase(s, tc);

	tc = tcase_create("loop");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, test_before_attach);
	tcase_add_test(tc, test_closed_port);
	tcase_add_test(tc, test_silent_server);
	tcase_add_test(tc, test_queue_full_and_close);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	log_init(LOG_LEVEL_ERR, stderr);
	return testutil_run(pgsql_suite());
}
