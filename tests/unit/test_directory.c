/*
 * The directory chain: what lookups and expansions answer, the order of
 * backends, temporary failures, and the bounds on an expansion.
 */
#include "fixture.h"

#include <event2/event.h>

#include "porterd/command.h"
#include "porterd/dircache.h"

static struct config *cfg;
static char *table_path;

/* Start a lookup or expansion; the handle while it is outstanding. */
static struct dir_request *ask_start(const char *text, bool expand)
{
	return fixture_ask_start(cfg->dir, text, expand);
}

static void ask(const char *text, bool expand)
{
	fixture_ask(cfg->dir, text, expand);
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

/* A forward to an address in a local domain is a list of one: the
 * address is looked up here, so VRFY says 250 and EXPN and RCPT reach the
 * mailbox (or nobody, when it does not exist). A remote one stays 251. */
START_TEST(test_local_forward_is_list)
{
	struct config *c;
	char *path;

	c = config_with_table("admin user Ann Admin\n"
			      "root forward admin@example.test\n"
			      "hostroot forward ROOT@Example.Test\n"
			      "stray forward nobody@example.test\n"
			      "self forward self@example.test\n"
			      "away forward admin@elsewhere.example\n", &path);
	swap_config(c, path);
	ask("root", false);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_str_eq(got.address, "root@example.test");
	ask("root", true);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_str_eq(got.members, "Ann Admin <admin@example.test>");
	ask("hostroot", true);	/* through two local forwards */
	ck_assert_str_eq(got.members, "Ann Admin <admin@example.test>");
	ask("stray", true);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_uint_eq(got.nmembers, 0);
	ask("self", true);	/* a forward to itself ends */
	ck_assert_uint_eq(got.nmembers, 0);
	ask("away", false);
	ck_assert_int_eq(got.status, DIR_FORWARD);
	ck_assert_str_eq(got.address, "admin@elsewhere.example");
}
END_TEST

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

/*
 * A test backend gives the same answer to every query: at once (fixed_ops),
 * when the test says so (later_ops), or from the event loop's next pass
 * (loop_ops). Each writes its key to asked_order when asked.
 */
struct backend {
	enum dir_status answer;
	const char *key;
	const char *only;		/* set: the answer for this local part only,
					   DIR_NOTFOUND for any other */
	int asked;
	backend_done_fn *pending;	/* later_ops, loop_ops: the question open */
	void *pending_arg;
	struct event_base *base;	/* loop_ops: from attach */
};

static char asked_order[256];

static void note_asked(struct backend *be)
{
	size_t len = strlen(asked_order);

	be->asked++;
	snprintf(asked_order + len, sizeof(asked_order) - len, "%s%s", len ? "," : "",
		 be->key != NULL ? be->key : "(null)");
}

static void fixed_lookup(struct backend *be, const struct dir_query *q,
			 backend_done_fn *done, void *arg)
{
	struct dir_result res = { .status = be->answer, .key = be->key };

	if (be->only != NULL && strcmp(q->local, be->only) != 0)
		res.status = DIR_NOTFOUND;
	note_asked(be);
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

static void later_lookup(struct backend *be, const struct dir_query *q,
			 backend_done_fn *done, void *arg)
{
	(void)q;
	ck_assert_ptr_null(be->pending);	/* one question at a time */
	note_asked(be);
	be->pending = done;
	be->pending_arg = arg;
}

/* The open question is answered now, with the backend's answer of now. */
static void later_answer(struct backend *be)
{
	struct dir_result res = { .status = be->answer, .key = be->key };
	backend_done_fn *done = be->pending;

	ck_assert_ptr_nonnull(done);
	be->pending = NULL;
	done(&res, be->pending_arg);
}

/* The contract: an open question is answered DIR_TEMPFAIL by close. */
static void later_close(struct backend **be)
{
	if ((*be)->pending != NULL) {
		(*be)->answer = DIR_TEMPFAIL;
		later_answer(*be);
	}
	*be = NULL;
}

static const struct backend_ops later_ops = {
	.name = "later", .lookup = later_lookup, .count = fixed_count,
	.close = later_close,
};

static int loop_attach(struct backend *be, struct event_base *base, char *err,
		       size_t errsize)
{
	(void)err;
	(void)errsize;
	be->base = base;
	return 0;
}

static void loop_fire(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	later_answer(arg);
}

static void loop_lookup(struct backend *be, const struct dir_query *q,
			backend_done_fn *done, void *arg)
{
	struct timeval now = { 0, 0 };

	later_lookup(be, q, done, arg);
	ck_assert_ptr_nonnull(be->base);	/* attached before the first lookup */
	ck_assert_int_eq(event_base_once(be->base, -1, EV_TIMEOUT, loop_fire, be, &now), 0);
}

static const struct backend_ops loop_ops = {
	.name = "loop", .attach = loop_attach, .lookup = loop_lookup,
	.count = fixed_count, .close = later_close,
};

static struct backend first, second, third;

/* An empty chain replacing the fixture's; first, second, third reset. */
static struct directory *chain_new(void)
{
	struct directory *dir = directory_new(cfg);

	first = (struct backend){ .answer = DIR_NOTFOUND, .key = "first" };
	second = (struct backend){ .answer = DIR_NOTFOUND, .key = "second" };
	third = (struct backend){ .answer = DIR_NOTFOUND, .key = "third" };
	asked_order[0] = '\0';
	directory_free(&cfg->dir);
	cfg->dir = dir;
	return dir;
}

static void chain_of_two(enum dir_status a, enum dir_status b)
{
	struct directory *dir = chain_new();

	first.answer = a;
	second.answer = b;
	directory_append(dir, &fixed_ops, &first);
	directory_append(dir, &fixed_ops, &second);
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
	/* every backend is named, the table first */
	ck_assert_msg(strncmp(err, "porterd.conf:3: directory: unknown backend 'nosuch' "
			      "(known: table", 65) == 0 && err[strlen(err) - 1] == ')', "%s", err);
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

/* --- the chain's three rules ------------------------------------------------ */

/* Backends are asked in the order they were added, each once. */
START_TEST(test_chain_order)
{
	struct directory *dir = chain_new();

	directory_append(dir, &fixed_ops, &first);
	directory_append(dir, &fixed_ops, &second);
	directory_append(dir, &fixed_ops, &third);
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_NOTFOUND);
	ck_assert_str_eq(asked_order, "first,second,third");
	second.answer = DIR_USER;
	asked_order[0] = '\0';
	ask("someone", false);
	ck_assert_str_eq(asked_order, "first,second");
	ck_assert_str_eq(got.address, "second@example.test");
}
END_TEST

/* A config with directives after the fixture's hostname and domains. */
static int config_try(const char *directives, struct config **c_r, char *err,
		      size_t errsize)
{
	char text[2048];
	struct config *c = NULL;

	snprintf(text, sizeof(text), "hostname mail.example.test\n"
		 "domains example.test example.org\n%s", directives);
	ck_assert_msg(config_parse(text, strlen(text), "porterd.conf", &c, err, errsize) == 0,
		      "%s", err);
	if (directory_open(c, &c->dir, err, errsize) < 0) {
		ck_assert_ptr_null(c->dir);
		config_unref(&c);
		return -1;
	}
	*c_r = c;
	return 0;
}

static struct config *config_from(const char *directives)
{
	struct config *c = NULL;
	char err[512];

	if (config_try(directives, &c, err, sizeof(err)) < 0)
		ck_abort_msg("%s", err);
	return c;
}

/* Swap in a config of directives, keeping the fixture table's file. */
static void use_config(const char *directives)
{
	struct config *c = config_from(directives);

	config_unref(&cfg);
	cfg = c;
}

/* directory lines are a chain in the order written: jones is in both
 * tables and the first line's answer is the one given. */
START_TEST(test_config_order)
{
	char *other = write_temp_file("jones user Other Jones\nextra user Extra\n");
	char lines[1024];

	snprintf(lines, sizeof(lines), "directory table %s\ndirectory table %s\n",
		 table_path, other);
	use_config(lines);
	ask("jones", false);
	ck_assert_str_eq(got.fullname, "Fred Jones");
	ask("extra", false);
	ck_assert_str_eq(got.fullname, "Extra");
	snprintf(lines, sizeof(lines), "directory table %s\ndirectory table %s\n",
		 other, table_path);
	use_config(lines);
	ask("jones", false);
	ck_assert_str_eq(got.fullname, "Other Jones");
	ask("qsmith", false);
	ck_assert_str_eq(got.fullname, "Quincy Smith");
	unlink(other);
	free(other);
}
END_TEST

/* An answer that comes later decides as one that comes at once; nothing
 * after the waiting backend is asked before it answers. */
static const struct {
	enum dir_status later, now, want;
	int asked_now;
	const char *address;
} later_rows[] = {
	{ DIR_USER, DIR_USER, DIR_USER, 0, "first@example.test" },
	{ DIR_LIST, DIR_USER, DIR_LIST, 0, "first@example.test" },
	{ DIR_AMBIGUOUS, DIR_USER, DIR_AMBIGUOUS, 0, "(null)" },
	{ DIR_NOTFOUND, DIR_USER, DIR_USER, 1, "second@example.test" },
	{ DIR_TEMPFAIL, DIR_USER, DIR_USER, 1, "second@example.test" },
	{ DIR_TEMPFAIL, DIR_NOTFOUND, DIR_TEMPFAIL, 1, "(null)" },
	{ DIR_NOTFOUND, DIR_TEMPFAIL, DIR_TEMPFAIL, 1, "(null)" },
	{ DIR_NOTFOUND, DIR_NOTFOUND, DIR_NOTFOUND, 1, "(null)" },
};

START_TEST(test_later_then_now)
{
	struct directory *dir = chain_new();

	first.answer = later_rows[_i].later;
	second.answer = later_rows[_i].now;
	directory_append(dir, &later_ops, &first);
	directory_append(dir, &fixed_ops, &second);
	ck_assert_ptr_nonnull(ask_start("someone", false));
	ck_assert_int_eq(got.calls, 0);
	ck_assert_int_eq(second.asked, 0);
	later_answer(&first);
	ck_assert_int_eq(got.calls, 1);
	ck_assert_int_eq(got.status, later_rows[_i].want);
	ck_assert_int_eq(second.asked, later_rows[_i].asked_now);
	ck_assert_str_eq(got.address, later_rows[_i].address);
}
END_TEST

/* The same rules with the late backend second. */
START_TEST(test_now_then_later)
{
	struct directory *dir = chain_new();

	first.answer = later_rows[_i].now;
	second.answer = later_rows[_i].later;
	directory_append(dir, &fixed_ops, &first);
	directory_append(dir, &later_ops, &second);
	if (ask_start("someone", false) != NULL) {
		ck_assert_int_eq(got.calls, 0);
		later_answer(&second);
	}
	ck_assert_int_eq(got.calls, 1);
	ck_assert_int_eq(first.asked, 1);
	if (first.answer == DIR_NOTFOUND || first.answer == DIR_TEMPFAIL) {
		ck_assert_int_eq(second.asked, 1);
		if (second.answer == DIR_NOTFOUND || second.answer == DIR_TEMPFAIL)
			ck_assert_int_eq(got.status, first.answer == DIR_TEMPFAIL ||
					 second.answer == DIR_TEMPFAIL ? DIR_TEMPFAIL
					 : DIR_NOTFOUND);
		else
			ck_assert_int_eq(got.status, second.answer);
	} else {
		ck_assert_int_eq(second.asked, 0);
		ck_assert_int_eq(got.status, first.answer);
	}
}
END_TEST

/* Run base's loop until the answer came; bounded. */
static void loop_until_answered(struct event_base *base)
{
	for (int i = 0; i < 100 && got.calls == 0; i++)
		ck_assert_int_ge(event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK), 0);
	ck_assert_int_eq(got.calls, 1);
}

/* A backend answering from the event loop, in front of one answering at
 * once: its temporary failure is not hidden, its answer wins. */
START_TEST(test_event_loop_backend_first)
{
	struct event_base *base = event_base_new();
	struct directory *dir = chain_new();
	char err[128];

	ck_assert_ptr_nonnull(base);
	directory_append(dir, &loop_ops, &first);
	directory_append(dir, &fixed_ops, &second);
	ck_assert_int_eq(directory_attach(dir, base, err, sizeof(err)), 0);
	first.answer = DIR_TEMPFAIL;
	ck_assert_ptr_nonnull(ask_start("someone", false));
	ck_assert_int_eq(second.asked, 0);
	loop_until_answered(base);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
	ck_assert_int_eq(second.asked, 1);
	first.answer = DIR_USER;
	second.answer = DIR_USER;
	ck_assert_ptr_nonnull(ask_start("someone", false));
	loop_until_answered(base);
	ck_assert_int_eq(got.status, DIR_USER);
	ck_assert_str_eq(got.address, "first@example.test");
	ck_assert_int_eq(second.asked, 1);
	ck_assert_str_eq(asked_order, "first,second,first");
	directory_free(&cfg->dir);
	event_base_free(base);
}
END_TEST

/* A cancelled request is not answered, asks nothing more, and its
 * context serves the next request. */
START_TEST(test_cancel_while_waiting)
{
	struct directory *dir = chain_new();
	struct dir_request *req;

	directory_append(dir, &later_ops, &first);
	directory_append(dir, &fixed_ops, &second);
	req = ask_start("someone", false);
	ck_assert_ptr_nonnull(req);
	directory_cancel(req);
	later_answer(&first);
	ck_assert_int_eq(got.calls, 0);
	ck_assert_int_eq(second.asked, 0);
	first.answer = DIR_USER;
	ck_assert_ptr_eq(ask_start("someone", false), req);
	later_answer(&first);
	ck_assert_int_eq(got.calls, 1);
	ck_assert_int_eq(got.status, DIR_USER);
}
END_TEST

/* In an expansion too: a member's temporary failure is not hidden by the
 * table's "not found", and the table's answers still win over a
 * backend that knows nothing. */
START_TEST(test_expand_member_tempfail_not_hidden)
{
	struct directory *dir = chain_new();
	struct backend *table;
	char err[256];

	ck_assert_int_eq(backend_table_ops.open(table_path, NULL, &table, err, sizeof(err)), 0);
	first.answer = DIR_TEMPFAIL;
	first.only = "nobody";
	directory_append(dir, &fixed_ops, &first);
	directory_append(dir, &backend_table_ops, table);
	ask("ghosts", true);	/* nobody, alice */
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
	ask("example-people", true);
	ck_assert_int_eq(got.status, DIR_LIST);
	ck_assert_uint_eq(got.nmembers, 5);
	ask("nobody", false);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
	ask("nobody", true);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
}
END_TEST

/* --- the answer cache ------------------------------------------------------- */

static uint64_t clock_now;

static uint64_t test_clock(void)
{
	return clock_now;
}

static const struct dircache_params test_cache = {
	.ttl_ms = 10000, .negative_ttl_ms = 2000, .size = 10, .now_ms = test_clock,
};

static void assert_cache_stats(size_t link, uint64_t hits, uint64_t misses, size_t entries)
{
	struct dircache_stats st;

	ck_assert_ptr_nonnull(directory_cache(cfg->dir, link));
	dircache_stats(directory_cache(cfg->dir, link), &st);
	ck_assert_uint_eq(st.hits, hits);
	ck_assert_uint_eq(st.misses, misses);
	ck_assert_uint_eq(st.entries, entries);
}

/* A cached answer is served while its backend fails, until its time is
 * up; the failure is then reported, and never kept. */
START_TEST(test_cache_outlives_tempfail_until_ttl)
{
	struct directory *dir = chain_new();

	clock_now = 5000;
	first.answer = DIR_USER;
	directory_append_cached(dir, &fixed_ops, &first, &test_cache);
	directory_append(dir, &fixed_ops, &second);
	ask("someone", false);
	ck_assert_str_eq(got.address, "first@example.test");
	first.answer = DIR_TEMPFAIL;
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_USER);
	ck_assert_str_eq(got.address, "first@example.test");
	clock_now += 9999;
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_USER);
	ck_assert_int_eq(first.asked, 1);
	ck_assert_int_eq(second.asked, 0);
	clock_now += 1;
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);	/* not hidden by second */
	ck_assert_int_eq(first.asked, 2);
	ck_assert_int_eq(second.asked, 1);
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
	ck_assert_int_eq(first.asked, 3);		/* not kept */
	first.answer = DIR_USER;
	ask("someone", false);
	ask("someone", false);
	ck_assert_int_eq(got.status, DIR_USER);
	ck_assert_int_eq(first.asked, 4);
	assert_cache_stats(0, 3, 4, 1);
	ck_assert_ptr_null(directory_cache(cfg->dir, 1));
	ck_assert_ptr_null(directory_cache(cfg->dir, 2));
}
END_TEST

/* "Not found" is kept for the negative time only; the chain goes on to
 * the next backend each time. */
START_TEST(test_cache_negative_shorter)
{
	struct directory *dir = chain_new();

	clock_now = 0;
	second.answer = DIR_USER;
	directory_append_cached(dir, &fixed_ops, &first, &test_cache);
	directory_append(dir, &fixed_ops, &second);
	ask("someone", false);
	first.answer = DIR_USER;	/* too late: "not found" is kept */
	clock_now += 1999;
	ask("someone", false);
	ck_assert_str_eq(got.address, "second@example.test");
	ck_assert_int_eq(first.asked, 1);
	ck_assert_int_eq(second.asked, 2);
	clock_now += 1;
	ask("someone", false);
	ck_assert_str_eq(got.address, "first@example.test");
	ck_assert_int_eq(first.asked, 2);
}
END_TEST

/* An answer that comes later is kept as well, and the next lookup is
 * answered at once; a later temporary failure is not kept. */
START_TEST(test_cache_in_front_of_later_backend)
{
	struct directory *dir = chain_new();

	clock_now = 0;
	first.answer = DIR_USER;
	directory_append_cached(dir, &later_ops, &first, &test_cache);
	directory_append(dir, &fixed_ops, &second);
	ck_assert_ptr_nonnull(ask_start("someone", false));
	later_answer(&first);
	ck_assert_str_eq(got.address, "first@example.test");
	ask("someone", false);		/* at once, from the cache */
	ck_assert_str_eq(got.address, "first@example.test");
	clock_now += 10000;
	first.answer = DIR_TEMPFAIL;
	ck_assert_ptr_nonnull(ask_start("someone", false));
	later_answer(&first);
	ck_assert_int_eq(got.status, DIR_TEMPFAIL);
	ck_assert_ptr_nonnull(ask_start("someone", false));
	later_answer(&first);
	ck_assert_int_eq(first.asked, 3);
	assert_cache_stats(0, 1, 3, 0);
}
END_TEST

/* A cache is per link: the uncached backend before it is asked each time. */
START_TEST(test_cache_per_link)
{
	struct directory *dir = chain_new();

	clock_now = 0;
	second.answer = DIR_USER;
	directory_append(dir, &fixed_ops, &first);
	directory_append_cached(dir, &fixed_ops, &second, &test_cache);
	ask("someone", false);
	ask("someone", false);
	ck_assert_str_eq(got.address, "second@example.test");
	ck_assert_str_eq(asked_order, "first,second,first");
	ck_assert_ptr_null(directory_cache(cfg->dir, 0));
	assert_cache_stats(1, 1, 1, 1);
}
END_TEST

/* A cached table gives the table's answers, the second time from the
 * cache: user, list, forward, moved, ambiguous and not found alike. */
static void use_cached_fixture(void)
{
	char line[512];

	snprintf(line, sizeof(line), "directory table %s cache_ttl=60s\n", table_path);
	use_config(line);
}

static uint64_t cache_hits(void)
{
	struct dircache_stats st;

	dircache_stats(directory_cache(cfg->dir, 0), &st);
	return st.hits;
}

START_TEST(test_lookup_rows_cached)
{
	use_cached_fixture();
	for (int round = 0; round < 2; round++) {
		uint64_t hits = cache_hits();

		ask(lookup_rows[_i].query, false);
		ck_assert_msg(got.status == lookup_rows[_i].status, "%s: status %d",
			      lookup_rows[_i].query, got.status);
		ck_assert_str_eq(got.fullname, lookup_rows[_i].fullname);
		ck_assert_str_eq(got.address, lookup_rows[_i].address);
		if (round == 1 && lookup_rows[_i].status != DIR_NOT_LOCAL)
			ck_assert_uint_eq(cache_hits(), hits + 1);
	}
}
END_TEST

START_TEST(test_expand_rows_cached)
{
	use_cached_fixture();
	for (int round = 0; round < 2; round++) {
		uint64_t hits = cache_hits();

		ask(expand_rows[_i].query, true);
		ck_assert_msg(got.status == expand_rows[_i].status, "%s: status %d",
			      expand_rows[_i].query, got.status);
		ck_assert_str_eq(got.members, expand_rows[_i].members);
		if (round == 1 && expand_rows[_i].status != DIR_NOT_LOCAL)
			ck_assert_uint_gt(cache_hits(), hits);
	}
}
END_TEST

/* The cache's words are taken out of the line before the table sees it,
 * wherever they are; a line without them gets no cache. */
START_TEST(test_cache_params_from_config)
{
	const struct dircache_params *p;
	char lines[1024];

	snprintf(lines, sizeof(lines),
		 "directory table %s cache_ttl=60s cache_size=100\n"
		 "directory table cache_negative_ttl=30s cache_ttl=5m %s\n"
		 "directory table %s\n", table_path, table_path, table_path);
	use_config(lines);
	p = dircache_params(directory_cache(cfg->dir, 0));
	ck_assert_uint_eq(p->ttl_ms, 60000);
	ck_assert_uint_eq(p->negative_ttl_ms, 12000);
	ck_assert_uint_eq(p->size, 100);
	p = dircache_params(directory_cache(cfg->dir, 1));
	ck_assert_uint_eq(p->ttl_ms, 300000);
	ck_assert_uint_eq(p->negative_ttl_ms, 30000);
	ck_assert_uint_eq(p->size, DIRCACHE_SIZE_DEFAULT);
	ck_assert_ptr_null(directory_cache(cfg->dir, 2));
	ck_assert_uint_eq(directory_count(cfg->dir), 3 * 17);
	ask("jones", false);
	ck_assert_str_eq(got.fullname, "Fred Jones");
}
END_TEST

static const struct {
	const char *args;	/* %s: the fixture table */
	const char *error;
} cache_error_rows[] = {
	{ "%s cache_ttl=0", "porterd.conf:4: directory table: cache_ttl: '0' is not a time "
	  "from 1s to 86400s (a number with s, m or h)" },
	{ "%s cache_ttl=1m cache_size=2000000", "porterd.conf:4: directory table: "
	  "cache_size: '2000000' is not a number from 1 to 1000000" },
	{ "%s cache_ttl=1m cache_negative_ttl=x", "porterd.conf:4: directory table: "
	  "cache_negative_ttl: 'x' is not a time from 0s to 86400s (a number with s, m or h)" },
	{ "%s cache_size=5", "porterd.conf:4: directory table: cache_size needs cache_ttl" },
	{ "%s cache_ttl=1m cache_ttl=2m", "porterd.conf:4: directory table: "
	  "cache_ttl given twice" },
	{ "%s cache_sise=5", "porterd.conf:4: directory table: unknown cache parameter "
	  "'cache_sise' (known: cache_ttl, cache_negative_ttl, cache_size)" },
	{ "%s cache_ttl", "porterd.conf:4: directory table: cache_ttl: expected "
	  "cache_ttl=DURATION" },
	/* once they are out, what is left is the backend's to judge */
	{ "cache_ttl=1m", "porterd.conf:4: directory table: expected one PATH" },
	{ "%s cache_ttl=1m %s", "porterd.conf:4: directory table: expected one PATH" },
};

START_TEST(test_cache_params_errors)
{
	char line[1024], lines[1100], err[512];
	struct config *c = NULL;

	snprintf(line, sizeof(line), cache_error_rows[_i].args, table_path, table_path);
	snprintf(lines, sizeof(lines), "directory table %s\ndirectory table %s\n",
		 table_path, line);
	ck_assert_int_eq(config_try(lines, &c, err, sizeof(err)), -1);
	ck_assert_str_eq(err, cache_error_rows[_i].error);
}
END_TEST

static int occurrences(const char *s, const char *what)
{
	int n = 0;

	for (const char *p = strstr(s, what); p != NULL; p = strstr(p + 1, what))
		n++;
	return n;
}

/* When a directory that served is released, each cache says what it
 * did: one line per cached backend, none for the others. */
START_TEST(test_cache_counts_logged)
{
	char lines[1024], log[4096], err[128];
	struct event_base *base = event_base_new();
	FILE *f;

	ck_assert_ptr_nonnull(base);
	snprintf(lines, sizeof(lines), "directory table %s\ndirectory table %s cache_ttl=60s\n",
		 table_path, table_path);
	use_config(lines);
	ck_assert_int_eq(directory_attach(cfg->dir, base, err, sizeof(err)), 0);
	ask("nobody", false);		/* miss in the cached table: not found, kept */
	ask("nobody", false);		/* hit */
	ask("jones", false);		/* the first table answers: no question */
	ask("ghost@example.org", false);	/* miss */
	ask("ghost@example.org", false);	/* hit */
	ask("Ghost@Example.ORG", false);	/* hit: queries are lowercased */
	ask("ghost@example.test", false);	/* miss: another address */
	f = log_capture_open(LOG_LEVEL_INFO);
	config_unref(&cfg);
	log_capture_read(f, log, sizeof(log));
	ck_assert_msg(strstr(log, "porterd: level=info event=directory_cache backend=table "
			     "hits=3 misses=3 entries=3 position=2\n") != NULL, "log: %s", log);
	ck_assert_int_eq(occurrences(log, "event=directory_cache"), 1);
	event_base_free(base);
}

/* A directory that never served (porterd -t, a reload refused) has
 * nothing to tell. */
START_TEST(test_cache_unserved_not_logged)
{
	char lines[1024], log[4096];
	FILE *f;

	snprintf(lines, sizeof(lines), "directory table %s cache_ttl=60s\n", table_path);
	use_config(lines);
	ask("jones", false);
	f = log_capture_open(LOG_LEVEL_INFO);
	config_unref(&cfg);
	log_capture_read(f, log, sizeof(log));
	ck_assert_str_eq(log, "");
}
END_TEST

/* No cache, no line. */
START_TEST(test_no_cache_no_line)
{
	char log[4096], err[128];
	struct event_base *base = event_base_new();
	FILE *f;

	ck_assert_ptr_nonnull(base);
	ck_assert_int_eq(directory_attach(cfg->dir, base, err, sizeof(err)), 0);
	ask("jones", false);
	f = log_capture_open(LOG_LEVEL_INFO);
	directory_free(&cfg->dir);
	log_capture_read(f, log, sizeof(log));
	ck_assert_str_eq(log, "");
	event_base_free(base);
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
	tcase_add_test(tc, test_local_forward_is_list);
	tcase_add_test(tc, test_depth_bound);
	tcase_add_test(tc, test_members_bound);
	tcase_add_loop_test(tc, test_chain_rows, 0, sizeof(chain_rows) / sizeof(chain_rows[0]));
	tcase_add_test(tc, test_broken_answer_is_tempfail);
	tcase_add_test(tc, test_unknown_backend_named);
	tcase_add_test(tc, test_args_error_located);
	tcase_add_test(tc, test_chain_order);
	tcase_add_test(tc, test_config_order);
	tcase_add_loop_test(tc, test_later_then_now, 0, sizeof(later_rows) / sizeof(later_rows[0]));
	tcase_add_loop_test(tc, test_now_then_later, 0, sizeof(later_rows) / sizeof(later_rows[0]));
	tcase_add_test(tc, test_event_loop_backend_first);
	tcase_add_test(tc, test_cancel_while_waiting);
	tcase_add_test(tc, test_expand_member_tempfail_not_hidden);
	tcase_add_test(tc, test_cache_outlives_tempfail_until_ttl);
	tcase_add_test(tc, test_cache_negative_shorter);
	tcase_add_test(tc, test_cache_in_front_of_later_backend);
	tcase_add_test(tc, test_cache_per_link);
	tcase_add_loop_test(tc, test_lookup_rows_cached, 0,
			    sizeof(lookup_rows) / sizeof(lookup_rows[0]));
	tcase_add_loop_test(tc, test_expand_rows_cached, 0,
			    sizeof(expand_rows) / sizeof(expand_rows[0]));
	tcase_add_test(tc, test_cache_params_from_config);
	tcase_add_loop_test(tc, test_cache_params_errors, 0,
			    sizeof(cache_error_rows) / sizeof(cache_error_rows[0]));
	tcase_add_test(tc, test_cache_counts_logged);
	tcase_add_test(tc, test_no_cache_no_line);
	tcase_add_test(tc, test_cache_unserved_not_logged);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
