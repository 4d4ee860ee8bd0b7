/*
 * test_policy — networks (parse, format, contains), who is trusted, which
 * addresses are public, and the answer owed for every mode. Configs are
 * built with config_parse() from text, as porterd builds them.
 */
#include "testutil.h"

#include "porterd/config.h"
#include "porterd/policy.h"

#define BASE "hostname mx.example.org\ndirectory table x\n"

static struct config *parse_config(const char *text)
{
	struct config *cfg = NULL;
	char err[256] = "";

	ck_assert_msg(config_parse(text, strlen(text), "test.conf", &cfg,
				   err, sizeof(err)) == 0, "%s: %s", text, err);
	return cfg;
}

/* ---- net_parse, net_format ------------------------------------------- */

static const struct {
	const char *text;
	const char *net;	/* net_format() of the result */
	int family;
} parse_ok_rows[] = {
	{ "127.0.0.0/8", "127.0.0.0/8", AF_INET },
	{ "192.0.2.1", "192.0.2.1/32", AF_INET },
	{ "192.0.2.1/32", "192.0.2.1/32", AF_INET },
	{ "0.0.0.0/0", "0.0.0.0/0", AF_INET },
	{ "::1", "::1/128", AF_INET6 },
	{ "::1/128", "::1/128", AF_INET6 },
	{ "2001:db8::/32", "2001:db8::/32", AF_INET6 },
	{ "2001:DB8::1/64", "2001:db8::/64", AF_INET6 },
	{ "::/0", "::/0", AF_INET6 },
	/* Postfix's bracketed IPv6 */
	{ "[::1]", "::1/128", AF_INET6 },
	{ "[::1]/128", "::1/128", AF_INET6 },
	{ "[2001:db8::]/32", "2001:db8::/32", AF_INET6 },
	/* host bits beyond the prefix are cleared */
	{ "10.1.2.3/8", "10.0.0.0/8", AF_INET },
	{ "192.0.2.255/25", "192.0.2.128/25", AF_INET },
	{ "255.255.255.255/0", "0.0.0.0/0", AF_INET },
	{ "255.255.255.255/31", "255.255.255.254/31", AF_INET },
	{ "2001:db8::ff/121", "2001:db8::80/121", AF_INET6 },
	{ "ffff::/0", "::/0", AF_INET6 },
	{ "2001:db8:1:2:3:4:5:6/64", "2001:db8:1:2::/64", AF_INET6 },
	/* IPv4-mapped blocks of /96 or longer are IPv4 blocks */
	{ "::ffff:192.0.2.1", "192.0.2.1/32", AF_INET },
	{ "::ffff:10.0.0.0/104", "10.0.0.0/8", AF_INET },
	{ "::ffff:10.9.9.9/104", "10.0.0.0/8", AF_INET },
	{ "[::ffff:127.0.0.1]/120", "127.0.0.0/24", AF_INET },
	{ "::ffff:7f00:1", "127.0.0.1/32", AF_INET },
	{ "::ffff:0:0/96", "0.0.0.0/0", AF_INET },
	/* shorter ones stay IPv6 */
	{ "::ffff:0:0/95", "::fffe:0:0/95", AF_INET6 },
	/* IPv4-compatible (deprecated) is not mapped */
	{ "::7f00:1", "::127.0.0.1/128", AF_INET6 },
};

START_TEST(test_net_parse_ok)
{
	struct net n;
	char buf[NET_TEXT_MAX];

	ck_assert_msg(net_parse(parse_ok_rows[_i].text, &n), "%s", parse_ok_rows[_i].text);
	ck_assert_int_eq(n.family, parse_ok_rows[_i].family);
	ck_assert(net_format(&n, buf, sizeof(buf)));
	ck_assert_str_eq(buf, parse_ok_rows[_i].net);
	/* the canonical form parses back to the same block */
	{
		struct net again;

		ck_assert(net_parse(buf, &again));
		ck_assert_mem_eq(&again, &n, sizeof(n));
	}
}
END_TEST

static const char *const parse_bad_rows[] = {
	"",
	"/8",
	"/",
	"10.0.0.0/",
	"10.0.0.0/33",
	"10.0.0.0/1000",
	"::/129",
	"[::]/129",
	"10.0.0.0/-1",
	"10.0.0.0/+8",
	"10.0.0.0/08",
	"::1/0128",
	"10.0.0.0/8/8",
	"10.0.0.0/8a",
	"10.0.0.0/0x8",
	"10.0.0.0/ 8",
	" 10.0.0.0",
	"10.0.0.0 ",
	"10.0.0.0 /8",
	"localhost",
	"10.0.0",
	"10.0.0.256",
	"10.0.0.0.0",
	"0x7f000001",
	"127.1",
	"[127.0.0.1]",
	"[127.0.0.1]/8",
	"[::1",
	"::1]",
	"[]",
	"[]/8",
	"[",
	"]",
	"[::1/128]",
	"[::1]128",
	"[[::1]]",
	":::1",
	"1:2:3:4:5:6:7:8:9",
	"fe80::1%eth0",
	"fe80::1%eth0/64",
	"2001:db8::g",
	"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255x",
	"10.0.0.0\n",
	"10.0.0.0,10.0.0.1",
	"none",
};

START_TEST(test_net_parse_bad)
{
	struct net n, zero;

	memset(&n, 0xa5, sizeof(n));
	memset(&zero, 0, sizeof(zero));
	ck_assert_msg(!net_parse(parse_bad_rows[_i], &n), "'%s'", parse_bad_rows[_i]);
	ck_assert_mem_eq(&n, &zero, sizeof(n));
}
END_TEST

START_TEST(test_net_parse_null)
{
	struct net n;

	ck_assert(!net_parse(NULL, &n));
	ck_assert_int_eq(n.family, 0);
}
END_TEST

START_TEST(test_net_format_bounds)
{
	struct net n;
	char buf[NET_TEXT_MAX], small[12];

	/* the longest text fits NET_TEXT_MAX exactly */
	ck_assert(net_parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &n));
	ck_assert(net_format(&n, buf, sizeof(buf)));
	ck_assert_str_eq(buf, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128");

	/* too small: false and empty, nothing past the end */
	ck_assert(net_parse("192.0.2.1", &n));
	memset(small, '#', sizeof(small));
	ck_assert(!net_format(&n, small, sizeof(small) - 1));
	ck_assert_str_eq(small, "");
	ck_assert_int_eq(small[sizeof(small) - 1], '#');
	ck_assert(!net_format(&n, buf, strlen("192.0.2.1/32")));
	ck_assert_str_eq(buf, "");
	ck_assert(!net_format(&n, NULL, 0));
	ck_assert(net_format(&n, buf, strlen("192.0.2.1/32") + 1));
	ck_assert_str_eq(buf, "192.0.2.1/32");

	/* not a block net_parse() could make */
	memset(&n, 0, sizeof(n));
	ck_assert(!net_format(&n, buf, sizeof(buf)));
	ck_assert_str_eq(buf, "");
	n.family = AF_INET;
	n.prefix = 33;
	ck_assert(!net_format(&n, buf, sizeof(buf)));
	n.family = AF_INET6;
	n.prefix = 129;
	ck_assert(!net_format(&n, buf, sizeof(buf)));
}
END_TEST

/* ---- net_contains ---------------------------------------------------- */

static const struct {
	const char *net;
	const char *client;
	bool inside;
} contains_rows[] = {
	/* /8 boundaries */
	{ "127.0.0.0/8", "127.0.0.1", true },
	{ "127.0.0.0/8", "127.0.0.0", true },
	{ "127.0.0.0/8", "127.255.255.255", true },
	{ "127.0.0.0/8", "128.0.0.0", false },
	{ "127.0.0.0/8", "126.255.255.255", false },
	/* /24 */
	{ "192.0.2.0/24", "192.0.2.0", true },
	{ "192.0.2.0/24", "192.0.2.255", true },
	{ "192.0.2.0/24", "192.0.3.0", false },
	{ "192.0.2.0/24", "192.0.1.255", false },
	/* /25: a prefix that ends inside an octet */
	{ "192.0.2.128/25", "192.0.2.128", true },
	{ "192.0.2.128/25", "192.0.2.255", true },
	{ "192.0.2.128/25", "192.0.2.127", false },
	/* /32 */
	{ "192.0.2.1", "192.0.2.1", true },
	{ "192.0.2.1/32", "192.0.2.0", false },
	{ "192.0.2.1/32", "192.0.2.2", false },
	/* /0 */
	{ "0.0.0.0/0", "0.0.0.0", true },
	{ "0.0.0.0/0", "255.255.255.255", true },
	{ "0.0.0.0/0", "::ffff:203.0.113.9", true },
	{ "0.0.0.0/0", "::1", false },
	{ "0.0.0.0/0", "::", false },
	{ "::/0", "::", true },
	{ "::/0", "::1", true },
	{ "::/0", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", true },
	{ "::/0", "127.0.0.1", false },
	{ "::/0", "::ffff:127.0.0.1", false },
	/* /64 boundaries */
	{ "2001:db8:1:2::/64", "2001:db8:1:2::", true },
	{ "2001:db8:1:2::/64", "2001:db8:1:2:ffff:ffff:ffff:ffff", true },
	{ "2001:db8:1:2::/64", "2001:DB8:1:2::1", true },
	{ "2001:db8:1:2::/64", "2001:db8:1:3::", false },
	{ "2001:db8:1:2::/64", "2001:db8:1:1:ffff:ffff:ffff:ffff", false },
	/* /32 v6, /121 inside an octet */
	{ "2001:db8::/32", "2001:db8:ffff::1", true },
	{ "2001:db8::/32", "2001:db9::1", false },
	{ "2001:db8::80/121", "2001:db8::ff", true },
	{ "2001:db8::80/121", "2001:db8::7f", false },
	/* /128 */
	{ "::1", "::1", true },
	{ "::1/128", "0:0:0:0:0:0:0:1", true },
	{ "::1", "::2", false },
	{ "::1", "::", false },
	/* IPv4-mapped clients are IPv4 clients */
	{ "127.0.0.0/8", "::ffff:127.0.0.2", true },
	{ "127.0.0.0/8", "::FFFF:127.0.0.2", true },
	{ "127.0.0.0/8", "::ffff:7f00:2", true },
	{ "127.0.0.0/8", "0:0:0:0:0:ffff:127.0.0.2", true },
	{ "127.0.0.0/8", "::ffff:128.0.0.1", false },
	{ "192.0.2.1", "::ffff:192.0.2.1", true },
	{ "::ffff:127.0.0.0/104", "127.0.0.9", true },
	{ "::ffff:127.0.0.0/104", "::ffff:127.0.0.9", true },
	/* families never mix otherwise */
	{ "127.0.0.0/8", "::1", false },
	{ "127.0.0.0/8", "::7f00:1", false },
	{ "127.0.0.0/8", "::127.0.0.1", false },
	{ "::1", "127.0.0.1", false },
	{ "::1", "0.0.0.1", false },
	{ "::/96", "127.0.0.1", false },
	/* an address that does not parse is inside nothing */
	{ "0.0.0.0/0", "", false },
	{ "0.0.0.0/0", "localhost", false },
	{ "0.0.0.0/0", "127.0.0.1:25", false },
	{ "0.0.0.0/0", "127.0.0.1 ", false },
	{ "0.0.0.0/0", "127.0.0.1/32", false },
	{ "0.0.0.0/0", "unknown", false },
	{ "::/0", "[::1]", false },
	{ "::/0", "fe80::1%eth0", false },
	{ "::/0", "::1/128", false },
};

START_TEST(test_net_contains)
{
	struct net n;

	ck_assert_msg(net_parse(contains_rows[_i].net, &n), "%s", contains_rows[_i].net);
	ck_assert_msg(net_contains(&n, contains_rows[_i].client) == contains_rows[_i].inside,
		      "%s in %s", contains_rows[_i].client, contains_rows[_i].net);
}
END_TEST

START_TEST(test_net_contains_null)
{
	struct net n;

	ck_assert(net_parse("0.0.0.0/0", &n));
	ck_assert(!net_contains(&n, NULL));
	ck_assert(net_parse("::/0", &n));
	ck_assert(!net_contains(&n, NULL));
}
END_TEST

/* ---- policy_for_client ----------------------------------------------- */

static const struct {
	const char *conf;	/* after BASE */
	const char *client;
	bool trusted;
	enum vrfy_mode vrfy;
	enum expn_mode expn;
} client_rows[] = {
	/* the defaults: 127.0.0.0/8 and ::1 trusted; vrfy 252, expn off */
	{ "", "127.0.0.1", true, VRFY_ON, EXPN_ON },
	{ "", "127.1.2.3", true, VRFY_ON, EXPN_ON },
	{ "", "::1", true, VRFY_ON, EXPN_ON },
	{ "", "::ffff:127.0.0.1", true, VRFY_ON, EXPN_ON },
	{ "", "192.0.2.1", false, VRFY_252, EXPN_OFF },
	{ "", "::ffff:192.0.2.1", false, VRFY_252, EXPN_OFF },
	{ "", "::2", false, VRFY_252, EXPN_OFF },
	{ "", "2001:db8::1", false, VRFY_252, EXPN_OFF },
	{ "", "garbage", false, VRFY_252, EXPN_OFF },
	{ "", "", false, VRFY_252, EXPN_OFF },
	/* untrusted clients get each configured mode */
	{ "vrfy on\nexpn on\n", "192.0.2.1", false, VRFY_ON, EXPN_ON },
	{ "vrfy on\nexpn off\n", "192.0.2.1", false, VRFY_ON, EXPN_OFF },
	{ "vrfy 252\nexpn on\n", "192.0.2.1", false, VRFY_252, EXPN_ON },
	{ "vrfy off\nexpn on\n", "2001:db8::1", false, VRFY_OFF, EXPN_ON },
	{ "vrfy off\nexpn off\n", "2001:db8::1", false, VRFY_OFF, EXPN_OFF },
	/* trusted clients get the truth whatever the modes */
	{ "vrfy off\nexpn off\n", "127.0.0.1", true, VRFY_ON, EXPN_ON },
	{ "vrfy off\nexpn off\n", "::1", true, VRFY_ON, EXPN_ON },
	{ "vrfy 252\nexpn off\n", "::ffff:127.0.0.1", true, VRFY_ON, EXPN_ON },
	/* a trusted line replaces the default */
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "192.0.2.7", true,
	  VRFY_ON, EXPN_ON },
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "::ffff:192.0.2.7", true,
	  VRFY_ON, EXPN_ON },
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "2001:db8::5", true,
	  VRFY_ON, EXPN_ON },
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "192.0.3.7", false,
	  VRFY_OFF, EXPN_OFF },
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "127.0.0.1", false,
	  VRFY_OFF, EXPN_OFF },
	{ "trusted 192.0.2.0/24 2001:db8::/32\nvrfy off\n", "::1", false,
	  VRFY_OFF, EXPN_OFF },
	/* the last of many networks counts too */
	{ "trusted 10.0.0.0/8 172.16.0.0/12 198.51.100.0/24\n", "198.51.100.255", true,
	  VRFY_ON, EXPN_ON },
	/* nobody, not even localhost */
	{ "trusted none\n", "127.0.0.1", false, VRFY_252, EXPN_OFF },
	{ "trusted none\n", "::1", false, VRFY_252, EXPN_OFF },
	/* everybody */
	{ "trusted 0.0.0.0/0 ::/0\nvrfy off\n", "203.0.113.1", true, VRFY_ON, EXPN_ON },
	{ "trusted 0.0.0.0/0 ::/0\nvrfy off\n", "2001:db8::1", true, VRFY_ON, EXPN_ON },
	{ "trusted 0.0.0.0/0 ::/0\nvrfy off\n", "nonsense", false, VRFY_OFF, EXPN_OFF },
};

START_TEST(test_policy_for_client)
{
	char text[512];
	struct config *cfg;
	struct policy_client c;

	snprintf(text, sizeof(text), BASE "%s", client_rows[_i].conf);
	cfg = parse_config(text);
	memset(&c, 0xa5, sizeof(c));
	policy_for_client(cfg, client_rows[_i].client, &c);
	ck_assert_msg(c.trusted == client_rows[_i].trusted, "row %d: trusted", _i);
	ck_assert_int_eq(c.vrfy, client_rows[_i].vrfy);
	ck_assert_int_eq(c.expn, client_rows[_i].expn);
	config_unref(&cfg);
}
END_TEST

START_TEST(test_policy_for_client_null)
{
	struct config *cfg = parse_config(BASE "trusted 0.0.0.0/0 ::/0\nvrfy off\n");
	struct policy_client c;

	policy_for_client(cfg, NULL, &c);
	ck_assert(!c.trusted);
	ck_assert_int_eq(c.vrfy, VRFY_OFF);
	ck_assert_int_eq(c.expn, EXPN_OFF);
	config_unref(&cfg);
}
END_TEST

/* ---- policy_is_public ------------------------------------------------ */

static const struct {
	const char *conf;	/* after BASE */
	const char *local;
	const char *domain;	/* NULL: a bare name */
	bool is_public;
} public_rows[] = {
	/* the defaults: postmaster, hostmaster, abuse in any domain */
	{ "", "postmaster", NULL, true },
	{ "", "hostmaster", NULL, true },
	{ "", "abuse", NULL, true },
	{ "", "Postmaster", NULL, true },
	{ "", "POSTMASTER", "example.org", true },
	{ "", "abuse", "any.example", true },
	{ "", "abuse", "", true },
	{ "", "root", NULL, false },
	{ "", "postmaste", NULL, false },
	{ "", "postmasters", NULL, false },
	{ "", "post master", NULL, false },
	{ "", "", NULL, false },
	{ "", "", "example.org", false },
	/* a public line replaces the default; an entry with a domain is
	 * that address only, and a bare name never matches it */
	{ "public postmaster abuse@Example.org\n", "postmaster", "anything.example", true },
	{ "public postmaster abuse@Example.org\n", "abuse", "example.org", true },
	{ "public postmaster abuse@Example.org\n", "ABUSE", "EXAMPLE.ORG", true },
	{ "public postmaster abuse@Example.org\n", "abuse", NULL, false },
	{ "public postmaster abuse@Example.org\n", "abuse", "", false },
	{ "public postmaster abuse@Example.org\n", "abuse", "other.example", false },
	{ "public postmaster abuse@Example.org\n", "abuse", "sub.example.org", false },
	{ "public postmaster abuse@Example.org\n", "abuse", "example.org.", false },
	{ "public postmaster abuse@Example.org\n", "abuse", "example.or", false },
	{ "public postmaster abuse@Example.org\n", "abus", "example.org", false },
	{ "public postmaster abuse@Example.org\n", "abuse@example.org", NULL, false },
	{ "public postmaster abuse@Example.org\n", "hostmaster", NULL, false },
	/* a local part and an address of the same name */
	{ "public abuse abuse@example.org\n", "abuse", "other.example", true },
	/* dots and atext */
	{ "public first.last x+y\n", "First.Last", NULL, true },
	{ "public first.last x+y\n", "firstlast", NULL, false },
	{ "public first.last x+y\n", "X+Y", "example.org", true },
};

START_TEST(test_policy_is_public)
{
	const char *domain = public_rows[_i].domain;
	char text[512];
	struct config *cfg;

	snprintf(text, sizeof(text), BASE "%s", public_rows[_i].conf);
	cfg = parse_config(text);
	ck_assert_msg(policy_is_public(cfg, public_rows[_i].local,
				       strlen(public_rows[_i].local), domain,
				       domain != NULL ? strlen(domain) : 0) ==
		      public_rows[_i].is_public, "row %d: %s @ %s", _i,
		      public_rows[_i].local, domain != NULL ? domain : "(none)");
	config_unref(&cfg);
}
END_TEST

/* Lengths are honoured: the strings need not end where they stop. */
START_TEST(test_policy_is_public_lengths)
{
	struct config *cfg = parse_config(BASE "public postmaster abuse@example.org\n");

	ck_assert(policy_is_public(cfg, "postmasterXYZ", 10, NULL, 0));
	ck_assert(!policy_is_public(cfg, "postmasterXYZ", 9, NULL, 0));
	ck_assert(!policy_is_public(cfg, "postmasterXYZ", 11, NULL, 0));
	ck_assert(policy_is_public(cfg, "abuse@", 5, "example.org>", 11));
	ck_assert(!policy_is_public(cfg, "abuse@", 5, "example.org>", 12));
	ck_assert(!policy_is_public(cfg, "abuse@", 6, "example.org", 11));
	config_unref(&cfg);
}
END_TEST

/* ---- the answer owed ------------------------------------------------- */

static const struct {
	enum vrfy_mode vrfy;
	bool is_public;
	enum policy_vrfy answer;
	bool advertise;
} vrfy_rows[] = {
	{ VRFY_ON, false, POLICY_VRFY_TRUTH, true },
	{ VRFY_ON, true, POLICY_VRFY_TRUTH, true },
	{ VRFY_252, false, POLICY_VRFY_GENERIC, true },
	{ VRFY_252, true, POLICY_VRFY_TRUTH, true },
	{ VRFY_OFF, false, POLICY_VRFY_DISABLED, false },
	{ VRFY_OFF, true, POLICY_VRFY_DISABLED, false },
};

START_TEST(test_policy_vrfy)
{
	/* trusted only says how the modes came about; the answer follows
	 * the modes, so both values must give the same */
	for (int trusted = 0; trusted <= 1; trusted++) {
		for (int expn = EXPN_ON; expn <= EXPN_OFF; expn++) {
			struct policy_client c = {
				.trusted = trusted, .vrfy = vrfy_rows[_i].vrfy,
				.expn = (enum expn_mode)expn,
			};

			ck_assert_int_eq(policy_vrfy(&c, vrfy_rows[_i].is_public),
					 vrfy_rows[_i].answer);
			ck_assert(policy_advertise_vrfy(&c) == vrfy_rows[_i].advertise);
		}
	}
}
END_TEST

static const struct {
	enum expn_mode expn;
	bool advertise;
	bool allowed;
} expn_rows[] = {
	{ EXPN_ON, true, true },
	{ EXPN_OFF, false, false },
};

START_TEST(test_policy_expn)
{
	for (int trusted = 0; trusted <= 1; trusted++) {
		for (int vrfy = VRFY_ON; vrfy <= VRFY_OFF; vrfy++) {
			struct policy_client c = {
				.trusted = trusted, .vrfy = (enum vrfy_mode)vrfy,
				.expn = expn_rows[_i].expn,
			};

			ck_assert(policy_advertise_expn(&c) == expn_rows[_i].advertise);
			ck_assert(policy_expn_allowed(&c) == expn_rows[_i].allowed);
		}
	}
}
END_TEST

/* From the config to the answer, as the session will ask. */
static const struct {
	const char *conf;	/* after BASE */
	const char *client;
	const char *local;
	const char *domain;
	enum policy_vrfy answer;
	bool expn;
} flow_rows[] = {
	/* a registry checking postmaster under the default vrfy 252 */
	{ "", "192.0.2.1", "postmaster", "mx.example.org", POLICY_VRFY_TRUTH, false },
	{ "", "192.0.2.1", "jones", "mx.example.org", POLICY_VRFY_GENERIC, false },
	{ "", "192.0.2.1", "Abuse", NULL, POLICY_VRFY_TRUTH, false },
	/* localhost is trusted */
	{ "", "::1", "jones", NULL, POLICY_VRFY_TRUTH, true },
	/* vrfy off is off, even for postmaster */
	{ "vrfy off\n", "192.0.2.1", "postmaster", NULL, POLICY_VRFY_DISABLED, false },
	{ "vrfy off\n", "127.0.0.1", "jones", NULL, POLICY_VRFY_TRUTH, true },
	{ "vrfy on\nexpn on\n", "192.0.2.1", "jones", NULL, POLICY_VRFY_TRUTH, true },
	/* no public addresses but one full address */
	{ "public abuse@mx.example.org\n", "192.0.2.1", "postmaster", NULL,
	  POLICY_VRFY_GENERIC, false },
	{ "public abuse@mx.example.org\n", "192.0.2.1", "abuse", "MX.example.org",
	  POLICY_VRFY_TRUTH, false },
};

START_TEST(test_policy_flow)
{
	const char *domain = flow_rows[_i].domain;
	struct policy_client c;
	struct config *cfg;
	char text[512];
	bool is_public;

	snprintf(text, sizeof(text), BASE "%s", flow_rows[_i].conf);
	cfg = parse_config(text);
	policy_for_client(cfg, flow_rows[_i].client, &c);
	is_public = policy_is_public(cfg, flow_rows[_i].local, strlen(flow_rows[_i].local),
				     domain, domain != NULL ? strlen(domain) : 0);
	ck_assert_int_eq(policy_vrfy(&c, is_public), flow_rows[_i].answer);
	ck_assert(policy_expn_allowed(&c) == flow_rows[_i].expn);
	config_unref(&cfg);
}
END_TEST

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Which answers draw on the vrfy_rate budget. */
static const struct {
	bool trusted, public_vrfy, budgeted;
} budget_rows[] = {
	{ false, false, true },
	{ false, true, false },
	{ true, false, false },
	{ true, true, false },
};

START_TEST(test_budget_rows)
{
	struct policy_client c = { .trusted = budget_rows[_i].trusted,
				   .vrfy = VRFY_252, .expn = EXPN_OFF };

	ck_assert_int_eq(policy_budgeted(&c, budget_rows[_i].public_vrfy),
			 budget_rows[_i].budgeted);
}
END_TEST

static Suite *policy_suite(void)
{
	Suite *s = suite_create("policy");
	TCase *tc = tcase_create("net");

	tcase_add_loop_test(tc, test_budget_rows, 0, (int)(sizeof(budget_rows) / sizeof(budget_rows[0])));
	tcase_add_loop_test(tc, test_net_parse_ok, 0, NROWS(parse_ok_rows));
	tcase_add_loop_test(tc, test_net_parse_bad, 0, NROWS(parse_bad_rows));
	tcase_add_test(tc, test_net_parse_null);
	tcase_add_test(tc, test_net_format_bounds);
	tcase_add_loop_test(tc, test_net_contains, 0, NROWS(contains_rows));
	tcase_add_test(tc, test_net_contains_null);
	suite_add_tcase(s, tc);

	tc = tcase_create("policy");
	tcase_add_loop_test(tc, test_policy_for_client, 0, NROWS(client_rows));
	tcase_add_test(tc, test_policy_for_client_null);
	tcase_add_loop_test(tc, test_policy_is_public, 0, NROWS(public_rows));
	tcase_add_test(tc, test_policy_is_public_lengths);
	tcase_add_loop_test(tc, test_policy_vrfy, 0, NROWS(vrfy_rows));
	tcase_add_loop_test(tc, test_policy_expn, 0, NROWS(expn_rows));
	tcase_add_loop_test(tc, test_policy_flow, 0, NROWS(flow_rows));
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(policy_suite());
}
