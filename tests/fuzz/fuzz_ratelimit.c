/*
 * fuzz_ratelimit (bonus) — the per-client token buckets of ratelimit.h,
 * driven by a sequence of takes from many addresses at chosen times.
 *
 * Input: rate (byte 0 % 8 + 1), period in seconds (byte 1 % 120 + 1),
 * max_entries (byte 2 % 40 + 1), v6_prefix (byte 3 % 129); then steps of
 * two bytes: which address (from a pool of IPv4, mapped, IPv6 and
 * unparsable addresses; 0xff reads a short address text from the input)
 * and how far the clock moves (mostly forward, sometimes back).
 *
 * Checked after every step, from ratelimit.h and the guarantee at the top
 * of ratelimit.c: the table never holds more than max_entries buckets, no
 * call examines more than RATELIMIT_WORK_MAX slots, a client's tokens are
 * between 0 and rate, and all clients together never get more than
 * (max_entries + 1) × rate × (1 + T / period) answers, T the span of the
 * times seen.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "porterd/ratelimit.h"

#include "fuzz_util.h"

static void pool_address(uint8_t i, char *buf, size_t size)
{
	switch (i % 8) {
	case 0:
		snprintf(buf, size, "192.0.2.%u", i / 8);
		break;
	case 1:
		snprintf(buf, size, "198.51.100.%u", i % 3);
		break;
	case 2:
		snprintf(buf, size, "::ffff:192.0.2.%u", i / 8);
		break;
	case 3:
		snprintf(buf, size, "2001:db8:%x::%x", i / 32, i);
		break;
	case 4:
		snprintf(buf, size, "2001:db8::%x:0:0:%x", i, i / 16);
		break;
	case 5:
		snprintf(buf, size, "2001:db8:0:%x::1", i);
		break;
	case 6:
		snprintf(buf, size, "%s", i < 128 ? "fe80::1%eth0" : "not an address");
		break;
	default:
		snprintf(buf, size, "%s", i < 128 ? "::1" : "");
		break;
	}
}

static uint64_t clock_step(uint8_t b)
{
	static const uint64_t steps[] = { 0, 1, 7, 100, 999, 1000, 15000, 60000 };

	return steps[b % 8] * (1 + b / 64);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned rate, period, prefix;
	size_t max, pos = 4;
	uint64_t now = 1000000, lo = now, hi = now, granted = 0;
	struct ratelimit *rl;

	if (size < 4)
		return 0;
	rate = data[0] % 8 + 1;
	period = data[1] % 120 + 1;
	max = data[2] % 40 + 1;
	prefix = data[3] % 129;
	rl = ratelimit_new(rate, period, max, prefix);
	if (rl == NULL)
		fuzz_fail("ratelimit_new(%u, %u, %zu, %u) failed", rate, period, max, prefix);

	while (pos + 2 <= size) {
		uint8_t who = data[pos], when = data[pos + 1];
		char addr[64];
		struct ratelimit_stats st;
		double tokens;

		pos += 2;
		if (who == 0xff && pos < size) {
			size_t n = data[pos++] % 48;

			if (n > size - pos)
				n = size - pos;
			memcpy(addr, data + pos, n);
			addr[n] = '\0';	/* a NUL inside just shortens it */
			pos += n;
		} else {
			pool_address(who, addr, sizeof(addr));
		}
		if (when >= 0xf8 && now > 5000)
			now -= 5000;	/* a clock that went back: adds nothing */
		else
			now += clock_step(when);
		lo = now < lo ? now : lo;
		hi = now > hi ? now : hi;

		if (ratelimit_take(rl, addr, now))
			granted++;
		tokens = ratelimit_tokens(rl, addr, now);
		if (!(tokens >= 0.0 && tokens <= (double)rate))
			fuzz_fail("ratelimit: '%s' has %f tokens, rate %u", addr, tokens, rate);
		ratelimit_get_stats(rl, &st);
		if (ratelimit_entries(rl) > max || st.entries != ratelimit_entries(rl))
			fuzz_fail("ratelimit: %zu entries (stats %zu), max %zu",
				  ratelimit_entries(rl), st.entries, max);
		if (st.max_work > RATELIMIT_WORK_MAX)
			fuzz_fail("ratelimit: a call examined %u slots", st.max_work);
		/* granted <= (max + 1) * rate * (1 + (hi - lo) / period_ms) */
		if ((unsigned __int128)granted * period * 1000 >
		    (unsigned __int128)(max + 1) * rate * ((uint64_t)period * 1000 + (hi - lo)))
			fuzz_fail("ratelimit: %llu answers in %llu ms; at most %zu buckets "
				  "of %u per %u s allow fewer", (unsigned long long)granted,
				  (unsigned long long)(hi - lo), max + 1, rate, period);
	}
	ratelimit_free(&rl);
	if (rl != NULL)
		fuzz_fail("ratelimit_free did not clear the pointer");
	return 0;
}
