/*
 * The directory chain: what lookups and expansions answer, the order of
 * backends, temporary failures, and the bounds on an expansion.
 */
#include "fixture.h"

#include "porterd/command.h"

static struct config *cfg;
static char *table_path;

struct got {
	int calls;
	enum dir_status status;
	char fullname[256], address[256], query[256];
	char members[8192];	/* "name <addr>|<addr>|..." */
	size_t nmembers;
};

static struct got got;

static void keep(char *dst, size_t size, const char *s)
{
	snprintf(dst, size, "%s", s != NULL ? s : "(null)");
}

static void on_lookup(const struct dir_answer *a, void *arg)
{
	(void)arg;
	got.calls++;
	got.status = a->status;
	keep(got.fullname, sizeof(got.fullname), a->fullname);
	keep(got.address, sizeof(got.address), a->address);
	keep(got.query, sizeof(got.query), a->query);
}

static void on_expand(const struct dir_expansion *e, void *arg)
{
	size_t o = 0;

	(void)arg;
	got.calls++;
	got.status = e->status;
	got.nmembers = e->nmembers;
	keep(got.query, sizeof(got.query), e->query);
	keep(got.address, sizeof(got.address), e->address);
	got.members[0] = '\0';
	for (size_t i = 0; i < e->nmembers && o < sizeof(got.members); i++)
		o += (size_t)snprintf(got.members + o, sizeof(got.members) - o, "%s%s%s<%s>",
				      i ? "|" : "", e->members[i].fullname ? e->members[i].fullname : "",
				      e->members[i].fullname ? " " : "", e->members[i].address);
}

static void ask(const char *text, bool expand)
{
	struct lookup_arg arg;
	struct dir_request *req;

	memset(&got, 0, sizeof(got));
	ck_assert_int_eq(command_parse_lookup_arg(text, strlen(text), &arg), LOOKUP_ARG_OK);
	if (expand)
		req = directory_expand(cfg->dir, &arg, on_expand, NULL);
	else
		req = directory_lookup(cfg->dir, &arg, on_lookup, NULL);
	ck_assert_ptr_null(req);	/* the table answers at once */
	ck_assert_int_eq(got.calls, 1);
}

static void setup(void)
{
	cfg = fixture_config(NULL, &table_path);
}

static void teardown(void)
{
	fixture_free(&cfg, &table_path);
}

static const struct {
	const char *query;
	enum dir_status status;
	const char *fullname, *address;
} lookup_rows[] = {
	{ "jones", DIR_USER, "Fred Jones", "jones@example.test" },
	{ "JoNeS", DIR_USER, "Fred Jones", "jones@example.test" },
	{ "jones@example.org", DIR_USER, "Fred Jones", "jones@example.org" },
	{ "jones@EXAMPLE.ORG", DIR_USER, "Fred Jones", "jones@example.org" },
	{ "smith@example.test", DIR_USER, "Fred Smith", "smith@example.test" },
	{ "smith", DIR_AMBIGUOUS, "(null)", "(null)" },
	{ "smith@example.org", DIR_NOTFOUND, "(null)", "(null)" },
	{ "Fred Smith", DIR_USER, "Fred Smith", "smith@example.test" },
	{ "fred", DIR_AMBIGUOUS, "(null)", "(null)" },
	{ "Quincy", DIR_USER, "Quincy Smith", "qsmith@example.test" },
	{ "nameless", DIR_USER, "(null)", "nameless@example.test" },
	{ "example-people", DIR_LIST, "(null)", "example-people@example.test" },
	{ "bob", DIR_FORWARD, "(null)", "bob@elsewhere.example" },
	{ "alice", DIR_MOVED, "(null)", "alice@newco.example" },
	{ "nobody", DIR_NOTFOUND, "(null)", "(null)" },
	{ "jones@elsewhere.example", DIR_NOT_LOCAL, "(null)", "(null)" },
	/* a name is never matched inside a qualified address */
	{ "fred@example.test", DIR_NOTFOUND, "(null)", "(null)" },
};

START_TEST(test_lookup_rows)
{
	ask(lookup_rows[_i].query, false);
	ck_assert_msg(got.status == lookup_rows[_i].status, "%s: status %d",
		      lookup_rows[_i].query, got.status);
	ck_assert_str_eq(got.fullname, lookup_rows[_i].fullname);
	ck_assert_str_eq(got.address, lookup_rows[_i].address);
	ck_assert_str_eq(got.query, lookup_rows[_i].query);
}
END_TEST

static const struct {
	const char *query;
	enum dir_status status;
	const char *members;
} expand_rows[] = {
	{ "example-people", DIR_LIST,
	  "Fred Jones <jones@example.test>|Fred Smith <smith@example.test>|"
	  "Quincy Smith <qsmith@example.test>|<postel@usc-isif.example>|<fonebone@usc-isiq.example>" },
	{ "all-staff", DIR_LIST,
	  "Fred Jones <jones@example.test>|Fred Smith <smith@example.test>|"
	  "Quincy Smith <qsmith@example.test>|<postel@usc-isif.example>|<fonebone@usc-isiq.example>|"
	  "Postmaster <postmaster@example.test>|<bob@elsewhere.example>" },
	{ "loop-a", DIR_LIST, "Quincy Smith <qsmith@example.test>|Fred Jones <jones@example.test>" },
	{ "jones", DIR_USER, "Fred Jones <jones@example.test>" },
	{ "bob", DIR_FORWARD, "<bob@elsewhere.example>" },
	{ "ghosts", DIR_LIST, "" },
	{ "alice", DIR_MOVED, "" },
	{ "smith", DIR_AMBIGUOUS, "" },
	{ "nobody", DIR_NOTFOUND, "" },
	{ "list@elsewhere.example", DIR_NOT_LOCAL, "" },
};

START_TEST(test_expand_rows)
{
	ask(expand_rows[_i].query, true);
	ck_assert_msg(got.status == expand_rows[_i].status, "%s: status %d",
		      expand_rows[_i].query, got.status);
	ck_assert_str_eq(got.members, expand_rows[_i].members);
}
END_TEST

START_TEST(test_expand_moved_gives_target)
{
	ask("alice", true);
	ck_assert_str_eq(got.address, "alice@newco.example");
}
END_TEST

START_TEST(test_domains)
{
	ck_assert(directory_domain_is_local(cfg->dir, "example.test", 12));
	ck_assert(directory_domain_is_local(cfg->dir, "EXAMPLE.ORG", 11));
	ck_assert(!directory_domain_is_local(cfg->dir, "example.net", 11));
	ck_assert(!directory_domain_is_local(cfg->dir, "example.tes", 11));
	ck_assert_uint_eq(directory_count(cfg->dir), 17);
}
END_TEST

/* Scratch is recycled: many requests in a row give the same answers. */
START_TEST(test_requests_recycled)
{
	for (int i = 0; i < 1000; i++) {
		ask(i % 2 ? "all-staff" : "jones", i % 3 == 0);
		ck_assert_int_ne(got.status, DIR_TEMPFAIL);
	}
	ask("all-staff", true);
	ck_assert_uint_eq(got.nmembers, 7);
}
END_TEST

/* --- bounds -------------------------------------------------------------------- */

static struct config *config_with_table(const char *table_text, char **path_r)
{
	char text[512], err[512];
	struct config *c = NULL;

	*path_r = write_temp_file(table_text);
	snprintf(text, sizeof(text), "hostname mx.example.test\ndomains example.test\n"
		 "directory table %s\n", *path_r);
	ck_assert_int_eq(config_parse(text, strlen(text), "t.conf", &c, err, sizeof(err)), 0);
	ck_assert_msg(directory_open(c, &c->dir, err, sizeof(err)) == 0, "%s", err);
	return c;
}

static void swap_config(struct config *c, char *path)
{
	fixture_free(&cfg, &table_path);
	cfg = c;
	table_path = path;
}

START_TEST(test_depth_bound)
{
	char table[4096];
	size_t o = 0;
	struct config *c;
	char *path;

	/* l0 -> l1 -> ... -> l20 -> jones: deeper than DIR_EXPAND_DEPTH_MAX */
	o += (size_t)snprintf(table + o, sizeof(table) - o, "jones user Fred Jones\n");
	for (int i = 0; i < 20; i++)
		o += (size_t)snprintf(table + o, sizeof(table) - o, "l%d list l%d\n", i, i + 1);
	snprintf(table + o, sizeof(table) - o, "l20 list jones\n");
	c = config_with_table(table, &path);
	swap_config(c, path);
	ask("l0", true);
	ck_assert_int_eq(got.status, DIR_TOO_LARGE);
	ask("l10", true);	/* 10 levels fit */
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_str_eq(got.members, "Fred Jones <jones@example.test>");
}
END_TEST

START_TEST(test_members_bound)
{
	size_t size = 40 + (DIR_EXPAND_MEMBERS_MAX + 1) * 24;
	char *table = malloc(size), *path;
	struct config *c;
	size_t o;

	ck_assert_ptr_nonnull(table);
	o = (size_t)snprintf(table, size, "big list");
	for (int i = 0; i <= DIR_EXPAND_MEMBERS_MAX; i++)
		o += (size_t)snprintf(table + o, size - o, " m%d@remote.example", i);
	snprintf(table + o, size - o, "\n");
	c = config_with_table(table, &path);
	swap_config(c, path);
	free(table);
	ask("big", true);
	ck_assert_int_eq(got.status, DIR_TOO_LARGE);
	ck_assert_uint_eq(got.nmembers, 0);
}
END_TEST

/* --- the chain ----------------------------------------------------------------- */

struct backend {
	enum dir_status answer;
	const char *key;
	int asked;
};

static void fixed_lookup(struct backend *be, const struct dir_query *q,
			 backend_done_fn *done, void *arg)
{
	struct dir_result res = { .status = be->answer, .key = be->key };

	(void)q;
	be->asked++;
	done(&res, arg);
}

static size_t fixed_count(const struct backend *be)
{
	(void)be;
	return 1;
}

static void fixed_close(struct backend **be)
{
	*be = NULL;
}

static const struct backend_ops fixed_ops = {
	.name = "fixed", .lookup = fixed_lookup, .count = fixed_count,
	.close = fixed_close,
};

static struct backend first, second;

static void chain_of_two(enum dir_status a, enum dir_status b)
{
	struct directory *dir = directory_new(cfg);

	first = (struct backend){ .answer = a, .key = "first" };
	second = (struct backend){ .answer = b, .key = "second" };
	directory_append(dir, &fixed_ops, &first);
	directory_append(dir, &fixed_ops, &second);
	directory_free(&cfg->dir);
	cfg->dir = dir;
}

static const struct {
	enum dir_status a, b, want;
	int asked_second;
	const char *address;
} chain_rows[] = {
	{ DIR_USER, DIR_USER, DIR_USER, 0, "first@example.test" },
	{ DIR_NOTFOUND, DIR_USER, DIR_USER, 1, "second@example.test" },
	{ DIR_TEMPFAIL, DIR_USER, DIR_USER, 1, "second@example.test" },
	{ DIR_TEMPFAIL, DIR_NOTFOUND, DIR_TEMPFAIL, 1, "(null)" },
	{ DIR_NOTFOUND, DIR_TEMPFAIL, DIR_TEMPFAIL, 1, "(null)" },
	{ DIR_NOTFOUND, DIR_NOTFOUND, DIR_NOTFOUND, 1, "(null)" },
	{ DIR_AMBIGUOUS, DIR_USER, DIR_AMBIGUOUS, 0, "(null)" },
	{ DIR_LIST, DIR_USER, DIR_LIST, 0, "first@example.test" },
};

START_TEST(test_chain_rows)
{
	chain_of_two(chain_rows[_i].a, chain_rows[_i].b);
	ask("someone", false);
	ck_assert_int_eq(got.status, chain_rows[_i].want);
	ck_assert_int_eq(first.asked, 1);
	ck_assert_int_eq(second.asked, chain_rows[_i].asked_second);
	ck_assert_str_eq(got.address, chain_rows[_i].address);
}
END_TEST

/* A backend that says "user" without a key is broken: never a yes. */
START_TEST(test_broken_answer_is_tempfail)
{
	struct directory *dir = directory_new(cfg);

	first = (struct backend){ .answer = DIR_USER, .key = NULL };
	directory_append(dir, &fixed_ops, &first);
	directory_free(&cfg->dir);
	cfg->dir = dir;
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
}
END_TEST

START_TEST(test_unknown_backend_named)
{
	const char *text = "domains example.test\n\ndirectory nosuch x\n";
	struct config *c = NULL;
	struct directory *dir = NULL;
	char err[256];

	ck_assert_int_eq(config_parse(text, strlen(text), "porterd.conf", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(directory_open(c, &dir, err, sizeof(err)), -1);
	ck_assert_ptr_null(dir);
	ck_assert_str_eq(err, "porterd.conf:3: directory: unknown backend 'nosuch' (known: table)");
	config_unref(&c);
}
END_TEST

START_TEST(test_args_error_located)
{
	const char *text = "domains example.test\ndirectory table a b\n";
	struct config *c = NULL;
	struct directory *dir = NULL;
	char err[256];

	ck_assert_int_eq(config_parse(text, strlen(text), "porterd.conf", &c, err, sizeof(err)), 0);
	ck_assert_int_eq(directory_open(c, &dir, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "porterd.conf:2: directory table: expected one PATH");
	config_unref(&c);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("directory");
	TCase *tc = tcase_create("chain");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_loop_test(tc, test_lookup_rows, 0, sizeof(lookup_rows) / sizeof(lookup_rows[0]));
	tcase_add_loop_test(tc, test_expand_rows, 0, sizeof(expand_rows) / sizeof(expand_rows[0]));
	tcase_add_test(tc, test_expand_moved_gives_target);
	tcase_add_test(tc, test_domains);
	tcase_add_test(tc, test_requests_recycled);
	tcase_add_test(tc, test_depth_bound);
	tcase_add_test(tc, test_members_bound);
	tcase_add_loop_test(tc, test_chain_rows, 0, sizeof(chain_rows) / sizeof(chain_rows[0]));
	tcase_add_test(tc, test_broken_answer_is_tempfail);
	tcase_add_test(tc, test_unknown_backend_named);
	tcase_add_test(tc, test_args_error_located);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
