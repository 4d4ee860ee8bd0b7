/*
 * test_ratelimit — token buckets with the clock injected: burst, exact
 * refill at its boundaries, time going backwards, which addresses share a
 * bucket, and the table under a spray of addresses: bounded in size and
 * work, never forgetting a spent bucket, never handing out more than
 * (max_entries + 1) × rate per period in all.
 */
#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdint.h>

#include "porterd/ratelimit.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))
#define TOL 1e-9

static struct ratelimit *rl_new(unsigned rate, unsigned period, size_t max,
				unsigned prefix)
{
	struct ratelimit *rl = ratelimit_new(rate, period, max, prefix);

	ck_assert_ptr_nonnull(rl);
	return rl;
}

/* A distinct /64 for every i < 2^32: 2001:db8:HI:LO::1. */
static const char *v6_net(char *buf, size_t size, uint32_t i)
{
	snprintf(buf, size, "2001:db8:%x:%x::1", (unsigned)(i >> 16),
		 (unsigned)(i & 0xffff));
	return buf;
}

static unsigned take_n(struct ratelimit *rl, const char *client, unsigned n,
		       uint64_t now_ms)
{
	unsigned allowed = 0;

	for (unsigned i = 0; i < n; i++)
		allowed += ratelimit_take(rl, client, now_ms);
	return allowed;
}

/* ---- ratelimit_new ------------------------------------------------------ */

static const struct {
	unsigned rate, period;
	size_t max;
	unsigned prefix;
	bool ok;
} new_rows[] = {
	{ 30, 60, 100000, 64, true },
	{ 1, 1, 1, 0, true },
	{ 1000000, 86400, 16, 128, true },	/* config's largest rate */
	{ 30, 60, 16, 16, true },
	{ 0, 60, 16, 64, false },
	{ 30, 0, 16, 64, false },
	{ 30, 60, 0, 64, false },
	{ 30, 60, (size_t)RATELIMIT_ENTRIES_MAX + 1, 64, false },
	{ 30, 60, SIZE_MAX, 64, false },
	{ 30, 60, 16, 129, false },
	{ 30, 60, 16, UINT_MAX, false },
	/* rate × period in ms must be counted exactly */
	{ UINT_MAX, UINT_MAX, 16, 64, false },
	{ UINT_MAX, 4300000, 16, 64, false },
	{ UINT_MAX, 2000000, 16, 64, true },
};

START_TEST(test_new)
{
	struct ratelimit *rl = ratelimit_new(new_rows[_i].rate, new_rows[_i].period,
					     new_rows[_i].max, new_rows[_i].prefix);

	ck_assert_msg((rl != NULL) == new_rows[_i].ok, "row %d", _i);
	if (rl != NULL) {
		ck_assert_uint_eq(ratelimit_entries(rl), 0);
		ck_assert(ratelimit_take(rl, "192.0.2.1", 0));
		ck_assert_uint_eq(ratelimit_entries(rl), 1);
	}
	ratelimit_free(&rl);
	ck_assert_ptr_null(rl);
}
END_TEST

START_TEST(test_free_null)
{
	struct ratelimit *rl = NULL;

	ratelimit_free(&rl);
	ratelimit_free(NULL);
	ck_assert_ptr_null(rl);
}
END_TEST

/* ---- burst -------------------------------------------------------------- */

static const struct {
	unsigned rate, period;
} burst_rows[] = {
	{ 1, 1 }, { 3, 60 }, { 30, 60 }, { 1000, 1 }, { 7, 86400 },
};

START_TEST(test_burst)
{
	unsigned rate = burst_rows[_i].rate;
	struct ratelimit *rl = rl_new(rate, burst_rows[_i].period, 16, 64);

	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 5000), rate, TOL);
	ck_assert_uint_eq(take_n(rl, "192.0.2.1", rate, 5000), rate);
	ck_assert(!ratelimit_take(rl, "192.0.2.1", 5000));
	ck_assert(!ratelimit_take(rl, "192.0.2.1", 5000));
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 5000), 0, TOL);
	ck_assert_uint_eq(ratelimit_entries(rl), 1);
	ratelimit_free(&rl);
}
END_TEST

/* ---- refill, step by step ----------------------------------------------- */

/* At t, take `takes` tokens, of which `allowed` succeed; then `tokens`
 * are left. */
struct step {
	uint64_t t;
	unsigned takes, allowed;
	double tokens;
	bool end;
};

#define STEP(t_, takes_, allowed_, tokens_) \
	{ .t = (t_), .takes = (takes_), .allowed = (allowed_), .tokens = (tokens_) }
#define END { .end = true }

static const struct {
	const char *what;
	unsigned rate, period;
	struct step steps[10];
} script_rows[] = {
	{ "30 per 60 s: one token every 2 s", 30, 60, {
		STEP(1000, 30, 30, 0),
		STEP(1000, 1, 0, 0),
		STEP(2999, 1, 0, 0.9995),	/* 1999 ms × 30 / 60000 */
		STEP(3000, 1, 1, 0),	/* the refused take lost nothing */
		STEP(3000, 1, 0, 0),
		STEP(23000, 0, 0, 10),
		STEP(62999, 0, 0, 29.9995),
		STEP(63000, 0, 0, 30),
		STEP(1000000, 31, 30, 0),	/* capped at the burst */
		END } },
	{ "1 per second", 1, 1, {
		STEP(0, 2, 1, 0),
		STEP(999, 1, 0, 0.999),
		STEP(1000, 1, 1, 0),
		STEP(100000, 0, 0, 1),
		STEP(100000, 2, 1, 0),
		END } },
	{ "3 per 7 s: one token every 2333 1/3 ms", 3, 7, {
		STEP(0, 3, 3, 0),
		STEP(2333, 1, 0, 6999.0 / 7000),
		STEP(2334, 1, 1, 2.0 / 7000),	/* the third of a ms is kept */
		STEP(7000, 0, 0, 2),		/* 2 + 4666 × 3 units = 2 tokens */
		STEP(7000, 3, 2, 0),
		END } },
	{ "time going backwards adds nothing", 30, 60, {
		STEP(10000, 30, 30, 0),
		STEP(5000, 1, 0, 0),
		STEP(0, 1, 0, 0),
		STEP(10000, 0, 0, 0),
		STEP(11999, 0, 0, 0.9995),
		STEP(12000, 1, 1, 0),
		STEP(1000, 1, 0, 0),
		STEP(14000, 1, 1, 0),
		END } },
	{ "the ends of the clock", 2, 1, {
		STEP(0, 2, 2, 0),
		STEP(UINT64_MAX - 1, 0, 0, 2),
		STEP(UINT64_MAX, 3, 2, 0),
		STEP(UINT64_MAX, 1, 0, 0),
		STEP(0, 1, 0, 0),
		END } },
};

START_TEST(test_script)
{
	struct ratelimit *rl = rl_new(script_rows[_i].rate, script_rows[_i].period, 16, 64);

	for (const struct step *st = script_rows[_i].steps; !st->end; st++) {
		unsigned allowed = take_n(rl, "2001:db8::25", st->takes, st->t);

		ck_assert_msg(allowed == st->allowed, "%s: at %llu ms %u of %u allowed, not %u",
			      script_rows[_i].what, (unsigned long long)st->t,
			      allowed, st->takes, st->allowed);
		ck_assert_msg(fabs(ratelimit_tokens(rl, "2001:db8::25", st->t) - st->tokens) < TOL,
			      "%s: at %llu ms %.9f tokens, not %.9f", script_rows[_i].what,
			      (unsigned long long)st->t,
			      ratelimit_tokens(rl, "2001:db8::25", st->t), st->tokens);
	}
	ratelimit_free(&rl);
}
END_TEST

/* A client asking every millisecond gets exactly rate tokens per period:
 * no fraction is rounded away by the refused takes in between. */
static const struct {
	unsigned rate, period;
	uint64_t span_ms;
	unsigned allowed;
} poll_rows[] = {
	{ 3, 7, 70000, 30 },
	{ 30, 60, 60000, 30 },
	{ 7, 3, 30000, 70 },
	{ 1, 1, 999, 0 },
	{ 1, 1, 1000, 1 },
};

START_TEST(test_poll_every_ms)
{
	struct ratelimit *rl = rl_new(poll_rows[_i].rate, poll_rows[_i].period, 16, 64);
	const uint64_t start = 123456;
	unsigned allowed = 0;

	ck_assert_uint_eq(take_n(rl, "192.0.2.9", poll_rows[_i].rate, start),
			  poll_rows[_i].rate);
	for (uint64_t t = start + 1; t <= start + poll_rows[_i].span_ms; t++)
		allowed += ratelimit_take(rl, "192.0.2.9", t);
	ck_assert_uint_eq(allowed, poll_rows[_i].allowed);
	ratelimit_free(&rl);
}
END_TEST

/* ---- who shares a bucket ------------------------------------------------ */

START_TEST(test_clients_independent)
{
	struct ratelimit *rl = rl_new(3, 60, 16, 64);

	ck_assert_uint_eq(take_n(rl, "192.0.2.1", 5, 0), 3);
	ck_assert_uint_eq(take_n(rl, "192.0.2.2", 1, 0), 1);
	ck_assert_uint_eq(take_n(rl, "2001:db8::1", 2, 0), 2);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 0), 0, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.2", 0), 2, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "2001:db8::1", 0), 1, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.3", 0), 3, TOL);
	ck_assert_uint_eq(ratelimit_entries(rl), 3);
	ratelimit_free(&rl);
}
END_TEST

static const struct {
	unsigned prefix;
	const char *a, *b;
	bool shared;
} share_rows[] = {
	/* IPv6 by prefix */
	{ 64, "2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:ffff", true },
	{ 64, "2001:db8:1:2::1", "2001:DB8:1:2::abcd", true },
	{ 64, "2001:db8:1:2::1", "2001:db8:1:3::1", false },
	{ 64, "2001:db8:1:2::1", "2001:db9:1:2::1", false },
	{ 64, "::1", "::2", true },
	{ 48, "2001:db8:1:2::1", "2001:db8:1:ffff::1", true },
	{ 48, "2001:db8:1::", "2001:db8:2::", false },
	{ 60, "2001:db8:1:20::1", "2001:db8:1:2f::1", true },
	{ 60, "2001:db8:1:20::1", "2001:db8:1:30::1", false },
	{ 128, "2001:db8::1", "2001:db8:0:0:0:0:0:1", true },
	{ 128, "2001:db8::1", "2001:db8::2", false },
	{ 0, "2001:db8::1", "fe80::1", true },
	/* IPv4 by the whole address, whatever the prefix; mapped is IPv4 */
	{ 0, "2001:db8::1", "192.0.2.1", false },
	{ 64, "192.0.2.1", "::ffff:192.0.2.1", true },
	{ 64, "::ffff:192.0.2.1", "::FFFF:c000:201", true },
	{ 0, "192.0.2.1", "::ffff:192.0.2.1", true },
	{ 128, "192.0.2.1", "::ffff:192.0.2.1", true },
	{ 128, "0.0.0.0", "::ffff:0:0", true },
	{ 64, "192.0.2.1", "192.0.2.2", false },
	{ 0, "192.0.2.1", "192.0.2.2", false },
	{ 64, "192.0.2.1", "::192.0.2.1", false },	/* IPv4-compatible is IPv6 */
	{ 64, "::1", "0.0.0.1", false },
	/* every unparsable address shares one bucket, and no address's */
	{ 64, "bogus", "", true },
	{ 64, "bogus", NULL, true },
	{ 64, "bogus", "fe80::1%eth0", true },
	{ 64, "bogus", "[2001:db8::1]", true },
	{ 64, "bogus", "192.0.2.1 ", true },
	{ 64, "bogus", "::", false },
	{ 0, "bogus", "::", false },
	{ 128, "bogus", "::", false },
	{ 64, "bogus", "0.0.0.0", false },
	{ 64, "bogus", "192.0.2.1", false },
};

START_TEST(test_share)
{
	struct ratelimit *rl = rl_new(3, 60, 16, share_rows[_i].prefix);
	bool shared = share_rows[_i].shared;

	ck_assert_uint_eq(take_n(rl, share_rows[_i].a, 3, 0), 3);
	ck_assert_msg(fabs(ratelimit_tokens(rl, share_rows[_i].b, 0) - (shared ? 0 : 3)) < TOL,
		      "/%u %s and %s: expected %s", share_rows[_i].prefix, share_rows[_i].a,
		      share_rows[_i].b ? share_rows[_i].b : "NULL",
		      shared ? "shared" : "separate");
	ck_assert(ratelimit_take(rl, share_rows[_i].b, 0) == !shared);
	ck_assert_uint_eq(ratelimit_entries(rl), shared ? 1 : 2);
	ratelimit_free(&rl);
}
END_TEST

/* ratelimit_tokens() makes no bucket and moves nothing. */
START_TEST(test_tokens_changes_nothing)
{
	struct ratelimit *rl = rl_new(30, 60, 1, 64);
	struct ratelimit_stats st;

	for (int i = 0; i < 100; i++)
		ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", (uint64_t)i), 30, TOL);
	ck_assert_uint_eq(ratelimit_entries(rl), 0);
	ck_assert(ratelimit_take(rl, "192.0.2.1", 0));
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 2000), 30, TOL);
	/* asking at 2000 did not move the bucket on: asking at 1000 still
	 * sees the refill up to 1000 only */
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 1000), 29.5, TOL);
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_eq(st.entries, 1);
	ck_assert_uint_eq(st.evicted, 0);
	ck_assert_uint_eq(st.overflowed, 0);
	ratelimit_free(&rl);
}
END_TEST

/* ---- a full table ------------------------------------------------------- */

/* One entry: a spent bucket is kept and newcomers share the overflow
 * bucket; once it is full again, a newcomer replaces it. */
START_TEST(test_one_entry)
{
	struct ratelimit *rl = rl_new(30, 60, 1, 64);
	struct ratelimit_stats st;

	ck_assert(ratelimit_take(rl, "192.0.2.1", 0));
	ck_assert_uint_eq(take_n(rl, "192.0.2.2", 31, 0), 30);	/* overflow */
	ck_assert(!ratelimit_take(rl, "2001:db8::1", 1999));		/* overflow */
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 1999), 29.9995, TOL);
	ck_assert(ratelimit_take(rl, "2001:db8::1", 2000));		/* evicts .1 */
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "2001:db8::1", 2000), 29, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 2000), 30, TOL);
	ck_assert_uint_eq(ratelimit_entries(rl), 1);
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_eq(st.evicted, 1);
	ck_assert_uint_eq(st.overflowed, 32);
	ratelimit_free(&rl);
}
END_TEST

/*
 * At one instant, a drained client X and a client Y that took one token,
 * then a million fresh /64s taking a token each. The table fills; from then
 * on no bucket is full, so none is evicted and every newcomer shares the
 * overflow bucket: the spray wins one answer per bucket it got plus one
 * overflow bucket's worth. X stays drained and Y keeps its 29.
 */
START_TEST(test_spray_at_one_instant)
{
	const size_t max = 1000;
	const uint32_t spray = 1000000;
	struct ratelimit *rl = rl_new(30, 60, max, 64);
	struct ratelimit_stats st;
	unsigned granted = 0;
	size_t most = 0;	/* checked once: a ck_assert a call costs a write */
	char buf[64];

	ck_assert_uint_eq(take_n(rl, "192.0.2.1", 31, 5000), 30);
	ck_assert(ratelimit_take(rl, "::ffff:192.0.2.2", 5000));
	for (uint32_t i = 0; i < spray; i++) {
		granted += ratelimit_take(rl, v6_net(buf, sizeof(buf), i), 5000);
		most = ratelimit_entries(rl) > most ? ratelimit_entries(rl) : most;
	}
	ck_assert_uint_eq(most, max);
	ck_assert_uint_eq(ratelimit_entries(rl), max);
	ck_assert_uint_eq(granted, (max - 2) + 30);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 5000), 0, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.2", 5000), 29, TOL);
	ck_assert(!ratelimit_take(rl, "192.0.2.1", 5000));
	ck_assert(!ratelimit_take(rl, "198.51.100.1", 5000));	/* overflow is spent */
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_eq(st.evicted, 0);
	ck_assert_uint_eq(st.overflowed, spray - (max - 2) + 1);
	ck_assert_uint_le(st.max_work, RATELIMIT_WORK_MAX);

	/* 2 s on, every sprayed bucket is full again: room for a newcomer,
	 * and X has refilled by one token, not been reset */
	ck_assert(ratelimit_take(rl, "198.51.100.2", 7000));
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "198.51.100.2", 7000), 29, TOL);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 7000), 1, TOL);
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_eq(st.evicted, 1);
	ck_assert_uint_eq(st.entries, max);
	ratelimit_free(&rl);
}
END_TEST

/*
 * A drained client X, then the table filled with clients that took one
 * token; 2 s on, those are full again and X has one token. A spray
 * evicts every full bucket — which loses nothing: each still reads 30 —
 * and never X, whose refill goes on as if nothing had happened.
 */
START_TEST(test_full_buckets_go_first)
{
	const size_t max = 256;
	struct ratelimit *rl = rl_new(30, 60, max, 64);
	struct ratelimit_stats st;
	unsigned granted = 0, nfull = 0;
	char full[2 * 256][32], buf[64];

	ck_assert_uint_eq(take_n(rl, "192.0.2.1", 30, 0), 30);
	/* some land in a group of 8 already full: those share the overflow
	 * bucket and are not kept */
	for (unsigned i = 0; ratelimit_entries(rl) < max; i++) {
		ck_assert_uint_lt(i, 2 * max);
		snprintf(full[nfull], sizeof(full[nfull]), "10.0.%u.%u", i / 256, i % 256);
		(void)ratelimit_take(rl, full[nfull], 0);
		if (ratelimit_tokens(rl, full[nfull], 0) < 30)
			nfull++;
	}
	ck_assert_uint_eq(nfull, max - 1);
	for (uint32_t i = 0; i < 10 * max; i++)
		granted += ratelimit_take(rl, v6_net(buf, sizeof(buf), i), 2000);
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_eq(st.evicted, max - 1);
	ck_assert_uint_eq(st.entries, max);
	/* one answer per bucket won, and what the overflow bucket had left */
	ck_assert_uint_ge(granted, max - 1);
	ck_assert_uint_le(granted, (max - 1) + 30);
	ck_assert_double_eq_tol(ratelimit_tokens(rl, "192.0.2.1", 2000), 1, TOL);
	ck_assert(ratelimit_take(rl, "192.0.2.1", 2000));
	ck_assert(!ratelimit_take(rl, "192.0.2.1", 2000));
	for (unsigned i = 0; i < nfull; i++)
		ck_assert_double_eq_tol(ratelimit_tokens(rl, full[i], 2000), 30, TOL);
	ratelimit_free(&rl);
}
END_TEST

/*
 * A million /64s, one a millisecond, against 1000 entries: the table never
 * holds more than 1000, no call examines more than RATELIMIT_WORK_MAX
 * slots and buckets, and all the spray together never gets more than
 * (max + 1) × rate × (1 + T / period): eviction creates no tokens.
 * Meanwhile a client that drains its bucket every 2 s gets one token per
 * 2 s and no more.
 */
START_TEST(test_spray_over_time)
{
	const size_t max = 1000;
	const uint32_t spray = 1000000;
	struct ratelimit *rl = rl_new(30, 60, max, 64);
	struct ratelimit_stats st;
	uint64_t granted = 0, t = 0;
	unsigned x_allowed = 0;
	size_t most = 0;
	double bound;
	char buf[64];

	ck_assert_uint_eq(take_n(rl, "192.0.2.1", 30, 0), 30);
	for (uint32_t i = 0; i < spray; i++, t++) {
		granted += ratelimit_take(rl, v6_net(buf, sizeof(buf), i), t);
		most = ratelimit_entries(rl) > most ? ratelimit_entries(rl) : most;
		if (i > 0 && i % 2000 == 0)
			x_allowed += take_n(rl, "192.0.2.1", 2, t);
	}
	bound = (double)(max + 1) * 30 * (1 + (double)t / 60000);
	ck_assert_msg((double)granted <= bound, "%llu granted, bound %.0f",
		      (unsigned long long)granted, bound);
	ck_assert_uint_eq(most, max);
	ck_assert_uint_eq(x_allowed, spray / 2000 - 1);
	ratelimit_get_stats(rl, &st);
	ck_assert_uint_le(st.max_work, RATELIMIT_WORK_MAX);
	ck_assert_uint_gt(st.evicted, 0);
	ck_assert_uint_gt(st.overflowed, 0);
	ck_assert_uint_eq(st.entries, max);
	ratelimit_free(&rl);
}
END_TEST

static Suite *ratelimit_suite(void)
{
	Suite *s = suite_create("ratelimit");
	TCase *tc = tcase_create("bucket");

	tcase_add_loop_test(tc, test_new, 0, NROWS(new_rows));
	tcase_add_test(tc, test_free_null);
	tcase_add_loop_test(tc, test_burst, 0, NROWS(burst_rows));
	tcase_add_loop_test(tc, test_script, 0, NROWS(script_rows));
	tcase_add_loop_test(tc, test_poll_every_ms, 0, NROWS(poll_rows));
	tcase_add_test(tc, test_clients_independent);
	tcase_add_loop_test(tc, test_share, 0, NROWS(share_rows));
	tcase_add_test(tc, test_tokens_changes_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("table");
	tcase_set_timeout(tc, 120);	/* a million addresses under ASan */
	tcase_add_test(tc, test_one_entry);
	tcase_add_test(tc, test_spray_at_one_instant);
	tcase_add_test(tc, test_full_buckets_go_first);
	tcase_add_test(tc, test_spray_over_time);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(ratelimit_suite());
}
