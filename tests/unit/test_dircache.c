/*
 * The answer cache: what it keeps and for how long (on a clock the test
 * turns), what it never keeps, its bounds, its copies, and the parameters
 * it takes out of a `directory` line.
 */
#include "testutil.h"

#include "porterd/dircache.h"

static uint64_t now;

static uint64_t test_clock(void)
{
	return now;
}

static struct dircache *cache;

static struct dircache *cache_new(uint64_t ttl_ms, uint64_t negative_ttl_ms, size_t size)
{
	struct dircache_params p = {
		.ttl_ms = ttl_ms, .negative_ttl_ms = negative_ttl_ms, .size = size,
		.now_ms = test_clock,
	};

	dircache_free(&cache);
	cache = dircache_new(&p);
	return cache;
}

static void setup(void)
{
	now = 1000;
	cache_new(10000, 2000, 100);
}

static void teardown(void)
{
	dircache_free(&cache);
	ck_assert_ptr_null(cache);
}

static struct dir_query bare(const char *local)
{
	return (struct dir_query){ .local = local, .by_name = true };
}

static const struct dir_result jones = {
	.status = DIR_USER, .key = "jones", .fullname = "Fred Jones",
};

static void assert_stats(uint64_t hits, uint64_t misses, size_t entries)
{
	struct dircache_stats st;

	dircache_stats(cache, &st);
	ck_assert_uint_eq(st.hits, hits);
	ck_assert_uint_eq(st.misses, misses);
	ck_assert_uint_eq(st.entries, entries);
}

static bool hit(const char *local)
{
	struct dir_query q = bare(local);
	struct dir_result res;

	return dircache_get(cache, &q, &res);
}

START_TEST(test_hit_until_ttl)
{
	struct dir_query q = bare("jones");
	struct dir_result res;

	ck_assert(!dircache_get(cache, &q, &res));
	ck_assert(dircache_put(cache, &q, &jones));
	ck_assert(dircache_get(cache, &q, &res));
	ck_assert_int_eq(res.status, DIR_USER);
	ck_assert_str_eq(res.key, "jones");
	ck_assert_str_eq(res.fullname, "Fred Jones");
	ck_assert_ptr_null(res.target);
	ck_assert_uint_eq(res.nmembers, 0);
	now += 9999;
	ck_assert(hit("jones"));
	now += 1;	/* exactly ttl after the put: gone */
	ck_assert(!hit("jones"));
	assert_stats(2, 2, 0);
}
END_TEST

/* A hit hands out the entry itself: no copy, no allocation. */
START_TEST(test_hit_points_into_entry)
{
	struct dir_query q = bare("jones");
	struct dir_result a, b;

	dircache_put(cache, &q, &jones);
	ck_assert(dircache_get(cache, &q, &a));
	ck_assert(dircache_get(cache, &q, &b));
	ck_assert_ptr_eq(a.key, b.key);
	ck_assert_ptr_eq(a.fullname, b.fullname);
	ck_assert_ptr_ne(a.key, jones.key);
}
END_TEST

static const struct {
	enum dir_status status;
	uint64_t kept_ms;	/* 0: never kept */
} ttl_rows[] = {
	{ DIR_USER, 10000 },
	{ DIR_LIST, 10000 },
	{ DIR_FORWARD, 10000 },
	{ DIR_MOVED, 10000 },
	{ DIR_NOTFOUND, 2000 },
	{ DIR_AMBIGUOUS, 2000 },
	{ DIR_TEMPFAIL, 0 },
	{ DIR_NOT_LOCAL, 0 },
	{ DIR_TOO_LARGE, 0 },
};

START_TEST(test_ttl_by_status)
{
	static const char *const members[] = { "a", "b" };
	struct dir_result res = {
		.status = ttl_rows[_i].status, .key = "k", .target = "t@elsewhere.example",
		.members = members, .nmembers = 2,
	};
	struct dir_query q = bare("k");
	struct dir_result got;

	ck_assert(dircache_put(cache, &q, &res) == (ttl_rows[_i].kept_ms > 0));
	if (ttl_rows[_i].kept_ms == 0) {
		ck_assert(!dircache_get(cache, &q, &got));
		assert_stats(0, 1, 0);
		return;
	}
	now += ttl_rows[_i].kept_ms - 1;
	ck_assert(dircache_get(cache, &q, &got));
	ck_assert_int_eq(got.status, ttl_rows[_i].status);
	now += 1;
	ck_assert(!dircache_get(cache, &q, &got));
}
END_TEST

START_TEST(test_negative_ttl_zero_keeps_no_negative)
{
	struct dir_query q = bare("nobody");
	struct dir_result notfound = { .status = DIR_NOTFOUND };

	cache_new(10000, 0, 10);
	ck_assert(!dircache_put(cache, &q, &notfound));
	ck_assert(!hit("nobody"));
	ck_assert(dircache_put(cache, &q, &jones));
	ck_assert(hit("nobody"));
}
END_TEST

/* A temporary failure neither is kept nor displaces what is kept. */
START_TEST(test_tempfail_keeps_earlier_answer)
{
	struct dir_query q = bare("jones");
	struct dir_result tempfail = { .status = DIR_TEMPFAIL };
	struct dir_result res;

	dircache_put(cache, &q, &jones);
	ck_assert(!dircache_put(cache, &q, &tempfail));
	ck_assert(dircache_get(cache, &q, &res));
	ck_assert_int_eq(res.status, DIR_USER);
}
END_TEST

START_TEST(test_broken_answers_not_kept)
{
	struct dir_query q = bare("x");
	const struct dir_result broken[] = {
		{ .status = DIR_USER },
		{ .status = DIR_LIST, .nmembers = 0 },
		{ .status = DIR_FORWARD, .key = "x" },
		{ .status = DIR_MOVED, .key = "x" },
		{ .status = DIR_LIST, .key = "x", .members = (const char *const[]){ NULL },
		  .nmembers = 1 },
	};

	for (size_t i = 0; i < sizeof(broken) / sizeof(broken[0]); i++)
		ck_assert_msg(!dircache_put(cache, &q, &broken[i]), "row %zu kept", i);
	assert_stats(0, 0, 0);
}
END_TEST

/* Replacing an answer keeps one entry and serves the new one. */
START_TEST(test_put_replaces)
{
	struct dir_query q = bare("jones");
	struct dir_result moved = { .status = DIR_MOVED, .key = "jones",
				    .target = "jones@newco.example" };
	struct dir_result res;

	dircache_put(cache, &q, &jones);
	now += 5000;
	dircache_put(cache, &q, &moved);
	assert_stats(0, 0, 1);
	now += 9999;	/* the new answer's time counts from its put */
	ck_assert(dircache_get(cache, &q, &res));
	ck_assert_int_eq(res.status, DIR_MOVED);
	ck_assert_str_eq(res.target, "jones@newco.example");
	ck_assert_ptr_null(res.fullname);
}
END_TEST

/* A query by address, by bare local part, and by name are distinct. */
START_TEST(test_keys_distinct)
{
	struct dir_query by_address = { .address = "jones@example.test", .local = "jones" };
	struct dir_query by_key = { .local = "jones", .by_name = false };
	struct dir_query by_name = { .local = "jones", .by_name = true };
	struct dir_result notfound = { .status = DIR_NOTFOUND };
	struct dir_result moved = { .status = DIR_MOVED, .key = "jones", .target = "j@x.example" };
	struct dir_result res;

	dircache_put(cache, &by_address, &jones);
	dircache_put(cache, &by_key, &notfound);
	dircache_put(cache, &by_name, &moved);
	ck_assert(dircache_get(cache, &by_address, &res));
	ck_assert_int_eq(res.status, DIR_USER);
	ck_assert(dircache_get(cache, &by_key, &res));
	ck_assert_int_eq(res.status, DIR_NOTFOUND);
	ck_assert(dircache_get(cache, &by_name, &res));
	ck_assert_int_eq(res.status, DIR_MOVED);
	assert_stats(3, 0, 3);
}
END_TEST

static void put_user(const char *local)
{
	struct dir_query q = bare(local);
	struct dir_result res = { .status = DIR_USER, .key = local };

	ck_assert(dircache_put(cache, &q, &res));
}

/* CLOCK: an entry hit since the hand passed gets a second chance. */
START_TEST(test_eviction_spares_recently_used)
{
	cache_new(10000, 2000, 2);
	put_user("a");
	put_user("b");
	ck_assert(hit("a"));
	put_user("c");		/* b goes: a was used */
	ck_assert(!hit("b"));
	ck_assert(hit("a"));
	ck_assert(hit("c"));
	assert_stats(3, 1, 2);
}
END_TEST

/* An expired entry goes before an unexpired one, even one just used. */
START_TEST(test_eviction_takes_expired_first)
{
	cache_new(10000, 2000, 2);
	put_user("a");
	now += 5000;
	put_user("b");
	ck_assert(hit("a"));
	ck_assert(hit("b"));
	now += 6000;		/* a has expired, b has not */
	put_user("c");
	ck_assert(hit("b"));
	ck_assert(hit("c"));
	ck_assert(!hit("a"));
}
END_TEST

/* However many answers arrive, no more than size are held. */
START_TEST(test_size_bound)
{
	char name[32];

	cache_new(10000, 2000, 50);
	for (int i = 0; i < 1000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		put_user(name);
		if (i % 3 == 0)
			ck_assert(hit(name));
	}
	assert_stats(334, 0, 50);
	ck_assert(hit("user999"));
}
END_TEST

/* An expired entry found by a lookup frees its slot for the next put. */
START_TEST(test_expired_slot_reused)
{
	cache_new(1000, 1000, 1);
	put_user("a");
	now += 1000;
	ck_assert(!hit("a"));
	assert_stats(0, 1, 0);
	put_user("b");
	ck_assert(hit("b"));
	assert_stats(1, 1, 1);
}
END_TEST

/* A list is kept while its copy fits in DIRCACHE_ENTRY_MAX octets. */
START_TEST(test_entry_size_cap)
{
	static char names[600][8];
	const char *members[600];
	struct dir_query q = bare("big");
	struct dir_result list = { .status = DIR_LIST, .key = "big", .members = members };
	size_t fits = 0;

	for (size_t i = 0; i < 600; i++) {
		snprintf(names[i], sizeof(names[i]), "m%05zu", i);	/* 7 octets */
		members[i] = names[i];
	}
	/* Each member costs a pointer and 7 octets: find the largest list kept. */
	for (size_t n = 1; n <= 600; n++) {
		list.nmembers = n;
		if (dircache_put(cache, &q, &list))
			fits = n;
	}
	ck_assert_uint_gt(fits, 200);
	ck_assert_uint_lt(fits, DIRCACHE_ENTRY_MAX / (sizeof(char *) + 7));
	list.nmembers = fits + 1;
	ck_assert(!dircache_put(cache, &q, &list));
	list.nmembers = fits;
	ck_assert(dircache_put(cache, &q, &list));
}
END_TEST

/* A list too large replaces nothing: the earlier answer stays. */
START_TEST(test_list_too_large_not_kept)
{
	static const char *members[DIRCACHE_ENTRY_MAX];
	struct dir_query q = bare("huge");
	struct dir_result list = { .status = DIR_LIST, .key = "huge", .members = members,
				   .nmembers = DIRCACHE_ENTRY_MAX };
	struct dir_result res;

	for (size_t i = 0; i < DIRCACHE_ENTRY_MAX; i++)
		members[i] = "x";
	ck_assert(!dircache_put(cache, &q, &list));
	ck_assert(!dircache_get(cache, &q, &res));
}
END_TEST

/* The backend's strings may be gone the moment its callback returns. */
START_TEST(test_deep_copy)
{
	char *query = strdup("example-people"), *key = strdup("example-people");
	char *m1 = strdup("jones"), *m2 = strdup("postel@usc-isif.example");
	const char **members = malloc(2 * sizeof(*members));
	struct dir_query q = bare(query);
	struct dir_result list = { .status = DIR_LIST, .key = key, .nmembers = 2 };
	struct dir_result res;

	ck_assert_ptr_nonnull(members);
	members[0] = m1;
	members[1] = m2;
	list.members = members;
	ck_assert(dircache_put(cache, &q, &list));
	memset(query, 'x', strlen(query));
	memset(key, 'x', strlen(key));
	memset(m1, 'x', strlen(m1));
	members[1] = "changed";
	free(query);
	free(key);
	free(m1);
	free(m2);
	free(members);
	ck_assert(hit("example-people"));
	q = bare("example-people");
	ck_assert(dircache_get(cache, &q, &res));
	ck_assert_int_eq(res.status, DIR_LIST);
	ck_assert_str_eq(res.key, "example-people");
	ck_assert_uint_eq(res.nmembers, 2);
	ck_assert_str_eq(res.members[0], "jones");
	ck_assert_str_eq(res.members[1], "postel@usc-isif.example");
}
END_TEST

/* Without a clock of its own the cache reads the monotonic clock. */
START_TEST(test_monotonic_clock)
{
	struct dircache_params p = { .ttl_ms = 60000, .negative_ttl_ms = 1, .size = 1 };
	struct dir_query q = bare("jones");
	struct dir_result res;

	dircache_free(&cache);
	cache = dircache_new(&p);
	ck_assert_ptr_nonnull(dircache_params(cache)->now_ms);
	dircache_put(cache, &q, &jones);
	ck_assert(dircache_get(cache, &q, &res));
}
END_TEST

/* --- the directive's parameters -------------------------------------------- */

/* A pgsql line as porterd's README gives it. */
#define PGSQL_LINE \
	"conninfo=\"hostaddr=192.0.2.10 dbname=postfix user=porterd\" " \
	"query_user=\"SELECT name FROM mailbox WHERE local_part = $1 AND domain = $2 " \
	"AND active\" query_list=\"SELECT goto FROM alias WHERE address = $1 || '@' || " \
	"$2 AND active\" timeout=5s pool=2"

static const struct {
	const char *args;
	int rc;
	const char *rest_or_error;
	uint64_t ttl_ms, negative_ttl_ms;
	size_t size;
} param_rows[] = {
	{ "/x.table", 0, "/x.table", 0, 0, 0 },
	{ "", 0, "", 0, 0, 0 },
	{ "a  b\tc ", 0, "a  b\tc ", 0, 0, 0 },
	{ "/x.table cache_ttl=60s", 1, "/x.table", 60000, 12000, DIRCACHE_SIZE_DEFAULT },
	{ "cache_ttl=60s /x.table", 1, "/x.table", 60000, 12000, DIRCACHE_SIZE_DEFAULT },
	{ "cache_ttl=60s", 1, "", 60000, 12000, DIRCACHE_SIZE_DEFAULT },
	{ "host=db  cache_ttl=1m  dbname=x cache_size=5", 1, "host=db  dbname=x",
	  60000, 12000, 5 },
	{ "/x cache_ttl=1h cache_negative_ttl=0", 1, "/x", 3600000, 0, DIRCACHE_SIZE_DEFAULT },
	{ "/x cache_ttl=10 cache_negative_ttl=30s", 1, "/x", 10000, 30000,
	  DIRCACHE_SIZE_DEFAULT },
	{ "/x cache_ttl=1s", 1, "/x", 1000, 200, DIRCACHE_SIZE_DEFAULT },
	{ "/x CACHE_TTL=1s", 0, "/x CACHE_TTL=1s", 0, 0, 0 },
	{ "/x cache_ttl=2H cache_size=1000000", 1, "/x", 7200000, 1440000, 1000000 },
	{ "/x cache_ttl=86400s", 1, "/x", 86400000, 17280000, DIRCACHE_SIZE_DEFAULT },
	/* quoted values are one word, whatever they hold */
	{ "password='a cache_ttl=5' cache_ttl=2s", 1, "password='a cache_ttl=5'",
	  2000, 400, DIRCACHE_SIZE_DEFAULT },
	{ "x=\"it\\\" cache_ttl=5\" cache_ttl=2s", 1, "x=\"it\\\" cache_ttl=5\"",
	  2000, 400, DIRCACHE_SIZE_DEFAULT },
	/* quoted SQL and conninfo pass untouched */
	{ PGSQL_LINE " cache_ttl=5m", 1, PGSQL_LINE, 300000, 60000, DIRCACHE_SIZE_DEFAULT },
	{ "cache_size=500 " PGSQL_LINE " cache_ttl=5m", 1, PGSQL_LINE, 300000, 60000, 500 },
	/* a word that only starts like one is the backend's */
	{ "cache_dir/x.table", 0, "cache_dir/x.table", 0, 0, 0 },
	{ "cache_table", 0, "cache_table", 0, 0, 0 },
	{ "cache_x/y=1", 0, "cache_x/y=1", 0, 0, 0 },
	{ "/x cache_ttl=0", -1,
	  "cache_ttl: '0' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=25h", -1,
	  "cache_ttl: '25h' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=", -1,
	  "cache_ttl: '' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=5x", -1,
	  "cache_ttl: '5x' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=-5", -1,
	  "cache_ttl: '-5' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=1234567890", -1,
	  "cache_ttl: '1234567890' is not a time from 1s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_negative_ttl=2d", -1,
	  "cache_negative_ttl: '2d' is not a time from 0s to 86400s (a number with s, m or h)", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_size=0", -1,
	  "cache_size: '0' is not a number from 1 to 1000000", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_size=1000001", -1,
	  "cache_size: '1000001' is not a number from 1 to 1000000", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_size=10s", -1,
	  "cache_size: '10s' is not a number from 1 to 1000000", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_size=xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", -1,
	  "cache_size: 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...' is not a number "
	  "from 1 to 1000000", 0, 0, 0 },
	{ "/x cache_ttl=5s cache_ttl=6s", -1, "cache_ttl given twice", 0, 0, 0 },
	{ "/x cache_size=10", -1, "cache_size needs cache_ttl", 0, 0, 0 },
	{ "/x cache_negative_ttl=1s", -1, "cache_negative_ttl needs cache_ttl", 0, 0, 0 },
	{ "/x cache_tll=5s", -1, "unknown cache parameter 'cache_tll' (known: cache_ttl, "
	  "cache_negative_ttl, cache_size)", 0, 0, 0 },
	{ "/x cache_TTL=5s", -1, "unknown cache parameter 'cache_TTL' (known: cache_ttl, "
	  "cache_negative_ttl, cache_size)", 0, 0, 0 },
	{ "/x cache_ttl", -1, "cache_ttl: expected cache_ttl=DURATION", 0, 0, 0 },
	{ "/x cache_ttl=1m cache_size", -1, "cache_size: expected cache_size=N", 0, 0, 0 },
};

START_TEST(test_take_params)
{
	const char *args = param_rows[_i].args;
	struct dircache_params p = { 0 };
	char rest[1024], err[256] = "";
	int rc = dircache_take_params(args, rest, sizeof(rest), &p, err, sizeof(err));

	ck_assert_msg(rc == param_rows[_i].rc, "%s: rc %d (%s)", args, rc, err);
	if (rc < 0) {
		ck_assert_str_eq(err, param_rows[_i].rest_or_error);
		return;
	}
	ck_assert_str_eq(rest, param_rows[_i].rest_or_error);
	if (rc == 1) {
		ck_assert_uint_eq(p.ttl_ms, param_rows[_i].ttl_ms);
		ck_assert_uint_eq(p.negative_ttl_ms, param_rows[_i].negative_ttl_ms);
		ck_assert_uint_eq(p.size, param_rows[_i].size);
		ck_assert_ptr_null(p.now_ms);
	}
}
END_TEST

START_TEST(test_take_params_rest_too_small)
{
	struct dircache_params p;
	char rest[8], err[64];

	ck_assert_int_eq(dircache_take_params("/long/path.table", rest, sizeof(rest), &p,
					      err, sizeof(err)), -1);
	ck_assert_str_eq(err, "arguments too long");
}
END_TEST

int main(void)
{
	Suite *s = suite_create("dircache");
	TCase *tc = tcase_create("cache");
	TCase *tp = tcase_create("params");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_hit_until_ttl);
	tcase_add_test(tc, test_hit_points_into_entry);
	tcase_add_loop_test(tc, test_ttl_by_status, 0, sizeof(ttl_rows) / sizeof(ttl_rows[0]));
	tcase_add_test(tc, test_negative_ttl_zero_keeps_no_negative);
	tcase_add_test(tc, test_tempfail_keeps_earlier_answer);
	tcase_add_test(tc, test_broken_answers_not_kept);
	tcase_add_test(tc, test_put_replaces);
	tcase_add_test(tc, test_keys_distinct);
	tcase_add_test(tc, test_eviction_spares_recently_used);
	tcase_add_test(tc, test_eviction_takes_expired_first);
	tcase_add_test(tc, test_size_bound);
	tcase_add_test(tc, test_expired_slot_reused);
	tcase_add_test(tc, test_entry_size_cap);
	tcase_add_test(tc, test_list_too_large_not_kept);
	tcase_add_test(tc, test_deep_copy);
	tcase_add_test(tc, test_monotonic_clock);
	suite_add_tcase(s, tc);
	tcase_add_loop_test(tp, test_take_params, 0, sizeof(param_rows) / sizeof(param_rows[0]));
	tcase_add_test(tp, test_take_params_rest_too_small);
	suite_add_tcase(s, tp);
	return testutil_run(s);
}
