/*
 * test_address — the MAIL and RCPT argument parser, one row per input:
 * keyword and framing, null path, source routes, dot-strings, quoted
 * strings and their canonical form, domains and address literals, each
 * length limit at and one past its edge, 8-bit with and without SMTPUTF8,
 * and every parameter in its good, bad, repeated and unknown forms.
 * Each input is handed over in a buffer of exactly its length, so ASan
 * catches a read past the end; a failed parse must leave both outputs zero.
 */
#include <stdint.h>

#include "testutil.h"

#include "porterd/address.h"

enum kind {
	MAIL,		/* address_parse_mail */
	RCPT,		/* address_parse_rcpt, utf8 false */
	RCPT8,		/* address_parse_rcpt, utf8 true (MAIL had SMTPUTF8) */
};

struct row {
	enum kind kind;
	const char *arg;
	size_t len;		/* 0: strlen(arg) */
	enum address_status status;
	/* expected on ADDRESS_OK */
	bool null;
	const char *local, *domain;
	bool has_8bit;
	bool has_size;		/* MAIL only, like the three below */
	uint64_t size;
	enum mail_body body;
	bool smtputf8;
};

#define ERR(k, a, st) { .kind = (k), .arg = (a), .status = (st) }
/* An input with a NUL inside: its length comes from the literal. */
#define ERRN(k, a, st) { .kind = (k), .arg = (a), .len = sizeof(a) - 1, .status = (st) }
#define OK(k, a, l, d) { .kind = (k), .arg = (a), .status = ADDRESS_OK, .local = (l), .domain = (d) }
#define OKX(k, a, l, d, ...) \
	{ .kind = (k), .arg = (a), .status = ADDRESS_OK, .local = (l), .domain = (d), __VA_ARGS__ }

#define SYN ADDRESS_SYNTAX
#define BAD ADDRESS_BAD_ADDRESS
#define LONG ADDRESS_TOO_LONG
#define UTF ADDRESS_NEEDS_UTF8
#define UNK ADDRESS_UNKNOWN_PARAM
#define BADP ADDRESS_BAD_PARAM

/* Long strings for the limits, built by concatenation. */
#define A10 "aaaaaaaaaa"
#define A62 A10 A10 A10 A10 A10 A10 "aa"
#define A63 A62 "a"
#define A64 A63 "a"
#define A65 A64 "a"
#define D191 A63 "." A63 "." A63			/* 191 octets */
#define D192 "b." A63 "." A63 "." A62			/* 192 */
#define D254 A63 "." A63 "." A63 "." A62		/* 254 */
#define D255 A63 "." A63 "." A63 "." A63		/* 255 */
#define D256 D254 ".b"					/* 256 */
/* A U-label of 22 CJK characters: 66 octets, more than an ASCII label may
 * have, but its A-label is what DNS limits. */
#define ZH3 "\xe4\xb8\xad\xe4\xb8\xad\xe4\xb8\xad"
#define ZH66 ZH3 ZH3 ZH3 ZH3 ZH3 ZH3 ZH3 "\xe4\xb8\xad"

static const struct row rows[] = {
	/* ---- keyword and framing ---- */
	OK(MAIL, "FROM:<jones@example.test>", "jones", "example.test"),
	OK(MAIL, "from:<jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FrOm:<Jones@Example.TEST>", "Jones", "Example.TEST"),
	OK(MAIL, "FROM: <jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:   <jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:\t <jones@example.test>", "jones", "example.test"),
	OK(MAIL, "  FROM:<jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<jones@example.test>   ", "jones", "example.test"),
	OK(MAIL, "FROM:<jones@example.test>\t", "jones", "example.test"),
	ERR(MAIL, "", SYN),
	ERR(MAIL, "   ", SYN),
	ERR(MAIL, "FROM", SYN),
	ERR(MAIL, "FROM:", SYN),
	ERR(MAIL, "FROM:  ", SYN),
	ERR(MAIL, "FROM :<jones@example.test>", SYN),
	ERR(MAIL, "FROM\t:<jones@example.test>", SYN),
	ERR(MAIL, "FROM<jones@example.test>", SYN),
	ERR(MAIL, "FROMAGE:<jones@example.test>", SYN),
	ERR(MAIL, "FRO:<jones@example.test>", SYN),
	ERR(MAIL, "TO:<jones@example.test>", SYN),
	ERR(MAIL, "FROM:jones@example.test", SYN),
	ERR(MAIL, "FROM:jones@example.test>", SYN),
	ERR(MAIL, "FROM:<jones@example.test", SYN),
	ERR(MAIL, "FROM:\"jones\"@example.test", SYN),
	ERR(MAIL, "FROM:Jones <jones@example.test>", SYN),
	ERR(MAIL, "FROM:<jones@example.test>>", SYN),
	ERR(MAIL, "FROM:<jones@example.test>x", SYN),
	ERR(MAIL, "FROM:<jones@example.test>SIZE=10", SYN),
	ERR(MAIL, "FROM:<jones@example.test><x@example.test>", SYN),
	ERR(MAIL, "FROM:<<jones@example.test>>", BAD),
	ERR(MAIL, "FROM:<jo<nes@example.test>", BAD),
	ERR(MAIL, "FROM:< jones@example.test>", BAD),
	ERR(MAIL, "FROM:<jones@example.test >", BAD),
	ERR(MAIL, "FROM:<jones @example.test>", BAD),
	/* only arg[0..len) is read: the same text cut short */
	{ .kind = MAIL, .arg = "FROM:<jones@example.test>", .len = 24, .status = SYN },
	{ .kind = MAIL, .arg = "FROM:<jones@example.test> SIZE=123", .len = 33,
	  .status = ADDRESS_OK, .local = "jones", .domain = "example.test",
	  .has_size = true, .size = 12 },

	/* ---- null path ---- */
	OKX(MAIL, "FROM:<>", "", "", .null = true),
	OKX(MAIL, "from: <>", "", "", .null = true),
	OKX(MAIL, "FROM:<> SIZE=100", "", "", .null = true, .has_size = true, .size = 100),
	OKX(MAIL, "FROM:<> BODY=8BITMIME SMTPUTF8", "", "", .null = true,
	    .body = BODY_8BITMIME, .smtputf8 = true),
	ERR(MAIL, "FROM:< >", BAD),
	ERR(MAIL, "FROM:<\"\">", BAD),
	ERR(MAIL, "FROM:<@>", BAD),
	ERR(MAIL, "FROM:<>>", SYN),
	ERR(MAIL, "FROM:<", SYN),
	ERR(RCPT, "TO:<>", BAD),
	ERR(RCPT8, "TO:<>", BAD),

	/* ---- source routes: accepted, checked, ignored ---- */
	OK(MAIL, "FROM:<@relay.example:jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<@one.example,@two.example:jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<@one,@two.example,@three.example:jones@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<@relay.example:\"john smith\"@example.test>", "\"john smith\"", "example.test"),
	OK(MAIL, "FROM:<@relay.example:jones@[192.0.2.1]>", "jones", "[192.0.2.1]"),
	OK(RCPT, "TO:<@relay.example:jones@example.test>", "jones", "example.test"),
	ERR(MAIL, "FROM:<@one.example,two.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example,@two.example,:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example,,@two.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example;@two.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example @two.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one..example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@-one.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example.:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@[192.0.2.1]:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example:@two.example:jones@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example:>", BAD),
	ERR(MAIL, "FROM:<@one.example>", BAD),
	ERR(MAIL, "FROM:<@example.test>", BAD),
	ERR(MAIL, "FROM:<@one.example:jones>", BAD),
	ERR(MAIL, "FROM:<one.example:jones@example.test>", BAD),
	ERR(RCPT, "TO:<@relay.example:postmaster>", BAD),

	/* ---- dot-string local parts ---- */
	OK(MAIL, "FROM:<j.o.n.e.s@example.test>", "j.o.n.e.s", "example.test"),
	OK(MAIL, "FROM:<fred.jones+tag@example.test>", "fred.jones+tag", "example.test"),
	OK(MAIL, "FROM:<!#$%&'*+-/=?^_`{|}~@example.test>", "!#$%&'*+-/=?^_`{|}~", "example.test"),
	OK(MAIL, "FROM:<0@example.test>", "0", "example.test"),
	ERR(MAIL, "FROM:<.jones@example.test>", BAD),
	ERR(MAIL, "FROM:<jones.@example.test>", BAD),
	ERR(MAIL, "FROM:<jo..nes@example.test>", BAD),
	ERR(MAIL, "FROM:<.@example.test>", BAD),
	ERR(MAIL, "FROM:<jo(nes)@example.test>", BAD),
	ERR(MAIL, "FROM:<jo,nes@example.test>", BAD),
	ERR(MAIL, "FROM:<jo;nes@example.test>", BAD),
	ERR(MAIL, "FROM:<jo:nes@example.test>", BAD),
	ERR(MAIL, "FROM:<jo[nes]@example.test>", BAD),
	ERR(MAIL, "FROM:<jo\\nes@example.test>", BAD),
	ERR(MAIL, "FROM:<jo\"nes\"@example.test>", BAD),
	ERR(MAIL, "FROM:<jones@>", BAD),
	ERR(MAIL, "FROM:<jones>", BAD),
	ERR(MAIL, "FROM:<jones@example.test@example.test>", BAD),

	/* ---- quoted-string local parts and their canonical form ---- */
	OK(MAIL, "FROM:<\"jones\"@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<\"Jones\"@example.test>", "Jones", "example.test"),
	OK(MAIL, "FROM:<\"j\\ones\"@example.test>", "jones", "example.test"),
	OK(MAIL, "FROM:<\"fred.jones\"@example.test>", "fred.jones", "example.test"),
	OK(MAIL, "FROM:<\"john smith\"@example.test>", "\"john smith\"", "example.test"),
	OK(MAIL, "FROM:<\"john\\ smith\"@example.test>", "\"john\\ smith\"", "example.test"),
	OK(MAIL, "FROM:<\"a\\\"b\"@example.test>", "\"a\\\"b\"", "example.test"),
	OK(MAIL, "FROM:<\"a\\\\b\"@example.test>", "\"a\\\\b\"", "example.test"),
	OK(MAIL, "FROM:<\"a..b\"@example.test>", "\"a..b\"", "example.test"),
	OK(MAIL, "FROM:<\".jones\"@example.test>", "\".jones\"", "example.test"),
	OK(MAIL, "FROM:<\"jones.\"@example.test>", "\"jones.\"", "example.test"),
	OK(MAIL, "FROM:<\"\"@example.test>", "\"\"", "example.test"),
	OK(MAIL, "FROM:<\" \"@example.test>", "\" \"", "example.test"),
	OK(MAIL, "FROM:<\"a>b\"@example.test>", "\"a>b\"", "example.test"),
	OK(MAIL, "FROM:<\"a@b\"@example.test>", "\"a@b\"", "example.test"),
	OK(MAIL, "FROM:<\"a(b)c\"@example.test>", "\"a(b)c\"", "example.test"),
	OK(RCPT, "TO:<\"jones\"@example.test>", "jones", "example.test"),
	OK(RCPT, "TO:<\"postmaster\"@example.test>", "postmaster", "example.test"),
	ERR(MAIL, "FROM:<\"jones\"nes@example.test>", BAD),
	ERR(MAIL, "FROM:<\"jo\".\"nes\"@example.test>", BAD),
	ERR(MAIL, "FROM:<\"jones\">", BAD),
	ERR(MAIL, "FROM:<\"jones\"@>", BAD),
	ERR(MAIL, "FROM:<\"a\tb\"@example.test>", BAD),
	ERR(MAIL, "FROM:<\"a\\\tb\"@example.test>", BAD),
	ERR(MAIL, "FROM:<\"jones@example.test>", SYN),
	ERR(MAIL, "FROM:<\"jones\\\"@example.test>", SYN),

	/* ---- domains ---- */
	OK(MAIL, "FROM:<a@example>", "a", "example"),
	OK(MAIL, "FROM:<a@ex-ample.test>", "a", "ex-ample.test"),
	OK(MAIL, "FROM:<a@xn--bcher-kva.example>", "a", "xn--bcher-kva.example"),
	OK(MAIL, "FROM:<a@123.example>", "a", "123.example"),
	OK(MAIL, "FROM:<a@192.0.2.1>", "a", "192.0.2.1"),
	OK(MAIL, "FROM:<a@a.b.c.d.e.f>", "a", "a.b.c.d.e.f"),
	OK(MAIL, "FROM:<a@" A63 ".example>", "a", A63 ".example"),
	ERR(MAIL, "FROM:<a@" A64 ".example>", BAD),
	ERR(MAIL, "FROM:<a@-example.test>", BAD),
	ERR(MAIL, "FROM:<a@example-.test>", BAD),
	ERR(MAIL, "FROM:<a@example.-test>", BAD),
	ERR(MAIL, "FROM:<a@-.test>", BAD),
	ERR(MAIL, "FROM:<a@example..test>", BAD),
	ERR(MAIL, "FROM:<a@.example.test>", BAD),
	ERR(MAIL, "FROM:<a@example.test.>", BAD),
	ERR(MAIL, "FROM:<a@.>", BAD),
	ERR(MAIL, "FROM:<a@exa_mple.test>", BAD),
	ERR(MAIL, "FROM:<a@exa mple.test>", BAD),
	ERR(MAIL, "FROM:<a@exa+mple.test>", BAD),
	ERR(MAIL, "FROM:<a@\"example\".test>", BAD),

	/* ---- address literals ---- */
	OK(MAIL, "FROM:<a@[192.0.2.1]>", "a", "[192.0.2.1]"),
	OK(MAIL, "FROM:<a@[0.0.0.0]>", "a", "[0.0.0.0]"),
	OK(MAIL, "FROM:<a@[255.255.255.255]>", "a", "[255.255.255.255]"),
	OK(MAIL, "FROM:<a@[IPv6:2001:db8::1]>", "a", "[IPv6:2001:db8::1]"),
	OK(MAIL, "FROM:<a@[ipv6:2001:DB8::1]>", "a", "[ipv6:2001:DB8::1]"),
	OK(MAIL, "FROM:<a@[IPv6:::1]>", "a", "[IPv6:::1]"),
	OK(MAIL, "FROM:<a@[IPv6:2001:db8:0:0:0:0:0:1]>", "a", "[IPv6:2001:db8:0:0:0:0:0:1]"),
	OK(MAIL, "FROM:<a@[IPv6:::ffff:192.0.2.1]>", "a", "[IPv6:::ffff:192.0.2.1]"),
	OK(MAIL, "FROM:<a@[x-tag:some-content!]>", "a", "[x-tag:some-content!]"),
	OK(MAIL, "FROM:<a@[2001:db8::1]>", "a", "[2001:db8::1]"),	/* general: tag "2001" */
	OK(RCPT, "TO:<jones@[192.0.2.1]>", "jones", "[192.0.2.1]"),
	ERR(MAIL, "FROM:<a@[]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.256]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.1.5]>", BAD),
	ERR(MAIL, "FROM:<a@[192..2.1]>", BAD),
	ERR(MAIL, "FROM:<a@[1922.0.2.1]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.-1]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.1.]>", BAD),
	ERR(MAIL, "FROM:<a@[ 192.0.2.1]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.1>", BAD),
	ERR(MAIL, "FROM:<a@192.0.2.1]>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.1]x>", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.1].example>", BAD),
	ERR(MAIL, "FROM:<a@[[192.0.2.1]]>", BAD),
	ERR(MAIL, "FROM:<a@[example.test]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:2001:db8::g]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:2001:db8:::1]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:1:2:3:4:5:6:7:8:9]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:192.0.2.1]>", BAD),
	ERR(MAIL, "FROM:<a@[IPv6:fe80::1%eth0]>", BAD),
	ERRN(MAIL, "FROM:<a@[IPv6:::1\0x]>", BAD),
	ERR(MAIL, "FROM:<a@[tag:]>", BAD),
	ERR(MAIL, "FROM:<a@[:content]>", BAD),
	ERR(MAIL, "FROM:<a@[-tag:content]>", BAD),
	ERR(MAIL, "FROM:<a@[tag:con tent]>", BAD),
	ERR(MAIL, "FROM:<a@[tag:a\\b]>", BAD),
	ERR(MAIL, "FROM:<a@[tag:a[b]>", BAD),

	/* ---- postmaster (RCPT only) ---- */
	OK(RCPT, "TO:<postmaster>", "postmaster", ""),
	OK(RCPT, "TO:<PostMaster>", "PostMaster", ""),
	OK(RCPT, "to: <POSTMASTER>", "POSTMASTER", ""),
	OK(RCPT8, "TO:<postmaster>", "postmaster", ""),
	OK(RCPT, "TO:<postmaster@example.test>", "postmaster", "example.test"),
	ERR(MAIL, "FROM:<postmaster>", BAD),
	ERR(RCPT, "TO:<postmaster2>", BAD),
	ERR(RCPT, "TO:<post.master>", BAD),
	ERR(RCPT, "TO:<\"postmaster\">", BAD),
	ERR(RCPT, "TO:<postmaster@>", BAD),
	ERR(RCPT, "TO:<postmaster> SIZE=1", UNK),

	/* ---- RCPT framing and parameters ---- */
	OK(RCPT, "TO:<jones@example.test>", "jones", "example.test"),
	OK(RCPT, "to:<jones@example.test>", "jones", "example.test"),
	OK(RCPT, "To: <jones@example.test>", "jones", "example.test"),
	OK(RCPT, "TO:<jones@example.test>   ", "jones", "example.test"),
	ERR(RCPT, "TO :<jones@example.test>", SYN),
	ERR(RCPT, "FROM:<jones@example.test>", SYN),
	ERR(RCPT, "TO:jones@example.test", SYN),
	ERR(RCPT, "TO:<jones@example.test", SYN),
	ERR(RCPT, "TO:<jones@example.test>x", SYN),
	ERR(RCPT, "TO:<jones@example.test> NOTIFY=NEVER", UNK),
	ERR(RCPT, "TO:<jones@example.test> ORCPT=rfc822;jones@example.test", UNK),
	ERR(RCPT, "TO:<jones@example.test> SIZE=100", UNK),
	ERR(RCPT, "TO:<jones@example.test> BODY=8BITMIME", UNK),
	ERR(RCPT8, "TO:<jones@example.test> SMTPUTF8", UNK),
	ERR(RCPT, "TO:<jones@example.test> =5", BADP),
	ERR(RCPT, "TO:<jones@example.test> X=", BADP),

	/* ---- lengths: 64 / 255 / 256 ---- */
	OK(MAIL, "FROM:<" A64 "@example.test>", A64, "example.test"),
	ERR(MAIL, "FROM:<" A65 "@example.test>", LONG),
	ERR(RCPT, "TO:<" A65 "@example.test>", LONG),
	/* a quoted local part counts with its quotes */
	OK(MAIL, "FROM:<\"" A62 "\"@example.test>", A62, "example.test"),
	ERR(MAIL, "FROM:<\"" A63 "\"@example.test>", LONG),
	/* the mailbox limit (256) is met before the domain limit (255) */
	OK(MAIL, "FROM:<a@" D254 ">", "a", D254),
	ERR(MAIL, "FROM:<a@" D255 ">", LONG),
	ERR(MAIL, "FROM:<a@" D256 ">", LONG),
	OK(MAIL, "FROM:<" A64 "@" D191 ">", A64, D191),
	ERR(MAIL, "FROM:<" A64 "@" D192 ">", LONG),
	OK(RCPT, "TO:<" A64 "@" D191 ">", A64, D191),
	ERR(RCPT, "TO:<" A64 "@" D192 ">", LONG),
	/* syntax is judged before length */
	ERR(MAIL, "FROM:<." A64 "@example.test>", BAD),
	/* the ignored source route does not count */
	OK(MAIL, "FROM:<@" D191 ":" A64 "@" D191 ">", A64, D191),

	/* ---- 8-bit and SMTPUTF8 ---- */
	ERR(MAIL, "FROM:<j\xc3\xb6rg@example.test>", UTF),
	OKX(MAIL, "FROM:<j\xc3\xb6rg@example.test> SMTPUTF8", "j\xc3\xb6rg", "example.test",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<j\xc3\xb6rg@example.test> smtputf8", "j\xc3\xb6rg", "example.test",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<j\xc3\xb6rg@example.test> BODY=8BITMIME SMTPUTF8 SIZE=5", "j\xc3\xb6rg",
	    "example.test", .has_8bit = true, .smtputf8 = true, .body = BODY_8BITMIME,
	    .has_size = true, .size = 5),
	ERR(MAIL, "FROM:<jones@b\xc3\xbc" "cher.example>", UTF),
	OKX(MAIL, "FROM:<jones@b\xc3\xbc" "cher.example> SMTPUTF8", "jones", "b\xc3\xbc" "cher.example",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<jones@example.test> SMTPUTF8", "jones", "example.test", .smtputf8 = true),
	OKX(MAIL, "FROM:<\xe7\x94\xa8\xe6\x88\xb7@\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a> SMTPUTF8",
	    "\xe7\x94\xa8\xe6\x88\xb7", "\xe4\xbe\x8b\xe5\xad\x90.\xe5\xb9\xbf\xe5\x91\x8a",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<\xf0\x9f\x98\x80@example.test> SMTPUTF8", "\xf0\x9f\x98\x80", "example.test",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<\"j\xc3\xb6rg\"@example.test> SMTPUTF8", "j\xc3\xb6rg", "example.test",
	    .has_8bit = true, .smtputf8 = true),
	OKX(MAIL, "FROM:<\"j\xc3\xb6rg smith\"@example.test> SMTPUTF8", "\"j\xc3\xb6rg smith\"",
	    "example.test", .has_8bit = true, .smtputf8 = true),
	ERR(MAIL, "FROM:<\"j\xc3\xb6rg smith\"@example.test>", UTF),
	OKX(MAIL, "FROM:<a@" ZH66 ".example> SMTPUTF8", "a", ZH66 ".example",
	    .has_8bit = true, .smtputf8 = true),
	/* a U-label in the source route needs SMTPUTF8 but is not kept */
	OKX(MAIL, "FROM:<@r\xc3\xa9lay.example:jones@example.test> SMTPUTF8", "jones",
	    "example.test", .smtputf8 = true),
	ERR(MAIL, "FROM:<@r\xc3\xa9lay.example:jones@example.test>", UTF),
	/* parameters are judged before the missing SMTPUTF8 */
	ERR(MAIL, "FROM:<j\xc3\xb6rg@example.test> SIZE=x", BADP),
	ERR(MAIL, "FROM:<j\xc3\xb6rg@example.test> RET=HDRS", UNK),
	ERR(MAIL, "FROM:<j\xc3\xb6rg@example.test> SMTPUTF8 SMTPUTF8", BADP),
	/* 8-bit a 64-octet local part may hold, and one octet more */
	OKX(MAIL, "FROM:<" A62 "\xc3\xb6@example.test> SMTPUTF8", A62 "\xc3\xb6", "example.test",
	    .has_8bit = true, .smtputf8 = true),
	ERR(MAIL, "FROM:<" A63 "\xc3\xb6@example.test> SMTPUTF8", LONG),
	/* not UTF-8 at all, with or without SMTPUTF8 */
	ERR(MAIL, "FROM:<j\xf6rg@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<j\xf6rg@example.test>", BAD),
	ERR(MAIL, "FROM:<\xc3@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\xb6@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\xc0\xaf@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\xe0\x80\xaf@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\xed\xa0\x80@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\xf4\x90\x80\x80@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\"\xff\"@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<\"\\\xc3\xb6\"@example.test> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<a@-\xc3\xa9.example> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<a@[caf\xc3\xa9:x]> SMTPUTF8", BAD),
	ERR(MAIL, "FROM:<a@[192.0.2.\xc2\xb9]> SMTPUTF8", BAD),
	ERR(MAIL, "FR\xc3\x96M:<jones@example.test>", SYN),
	ERR(RCPT, "TO:<j\xc3\xb6rg@example.test>", UTF),
	OKX(RCPT8, "TO:<j\xc3\xb6rg@example.test>", "j\xc3\xb6rg", "example.test", .has_8bit = true),
	ERR(RCPT, "TO:<jones@b\xc3\xbc" "cher.example>", UTF),
	OKX(RCPT8, "TO:<jones@b\xc3\xbc" "cher.example>", "jones", "b\xc3\xbc" "cher.example",
	    .has_8bit = true),
	OK(RCPT8, "TO:<jones@example.test>", "jones", "example.test"),
	ERR(RCPT8, "TO:<j\xf6rg@example.test>", BAD),
	ERR(RCPT8, "TO:<j\xc3\xb6rg@example.test> NOTIFY=NEVER", UNK),

	/* ---- control characters ---- */
	ERR(MAIL, "FROM:<jo\x01nes@example.test>", BAD),
	ERR(MAIL, "FROM:<jones@exa\rmple.test>", BAD),
	ERR(MAIL, "FROM:<\"jo\x7fnes\"@example.test>", BAD),
	ERR(MAIL, "FROM:<jo\tnes@example.test>", BAD),
	ERRN(MAIL, "FROM:<jo\0nes@example.test>", BAD),
	ERRN(MAIL, "FROM:<\"jo\0nes\"@example.test>", BAD),
	ERR(MAIL, "FROM\x01:<jones@example.test>", SYN),
	ERR(MAIL, "FROM:\x0b<jones@example.test>", SYN),
	ERR(MAIL, "FROM:<jones@example.test>\r", SYN),
	ERR(MAIL, "FROM:<jones@example.test> \x01", SYN),
	ERR(MAIL, "FROM:<jones@example.test> SIZE=1\x7f", SYN),
	ERR(MAIL, "FROM:<jones@example.test> RET=HDRS\x1b", SYN),
	ERRN(MAIL, "FROM:<jones@example.test> SIZE=1\0", SYN),
	ERR(RCPT, "TO:<jones@example.test> \n", SYN),

	/* ---- SIZE ---- */
	OKX(MAIL, "FROM:<a@b.example> SIZE=0", "a", "b.example", .has_size = true, .size = 0),
	OKX(MAIL, "FROM:<a@b.example> SIZE=12345", "a", "b.example", .has_size = true, .size = 12345),
	OKX(MAIL, "FROM:<a@b.example> size=12345", "a", "b.example", .has_size = true, .size = 12345),
	OKX(MAIL, "FROM:<a@b.example>\tSIZE=7", "a", "b.example", .has_size = true, .size = 7),
	OKX(MAIL, "FROM:<a@b.example> SIZE=18446744073709551615", "a", "b.example",
	    .has_size = true, .size = UINT64_MAX),
	OKX(MAIL, "FROM:<a@b.example> SIZE=00000000000000000001", "a", "b.example",
	    .has_size = true, .size = 1),
	ERR(MAIL, "FROM:<a@b.example> SIZE=18446744073709551616", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=99999999999999999999", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=000000000000000000001", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=-1", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=+1", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1k", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=0x10", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE= 1", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE==1", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1=2", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1 SIZE=2", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1 size=1", BADP),

	/* ---- BODY ---- */
	OKX(MAIL, "FROM:<a@b.example> BODY=7BIT", "a", "b.example", .body = BODY_7BIT),
	OKX(MAIL, "FROM:<a@b.example> BODY=8BITMIME", "a", "b.example", .body = BODY_8BITMIME),
	OKX(MAIL, "FROM:<a@b.example> body=8bitmime", "a", "b.example", .body = BODY_8BITMIME),
	OKX(MAIL, "FROM:<a@b.example> Body=7bit", "a", "b.example", .body = BODY_7BIT),
	ERR(MAIL, "FROM:<a@b.example> BODY=BINARYMIME", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY=8BIT", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY=7BITS", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY=", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY=7BIT BODY=7BIT", BADP),
	ERR(MAIL, "FROM:<a@b.example> BODY=7BIT BODY=8BITMIME", BADP),

	/* ---- SMTPUTF8 ---- */
	OKX(MAIL, "FROM:<a@b.example> SMTPUTF8", "a", "b.example", .smtputf8 = true),
	OKX(MAIL, "FROM:<a@b.example> SmtpUtf8", "a", "b.example", .smtputf8 = true),
	ERR(MAIL, "FROM:<a@b.example> SMTPUTF8=YES", BADP),
	ERR(MAIL, "FROM:<a@b.example> SMTPUTF8=", BADP),
	ERR(MAIL, "FROM:<a@b.example> SMTPUTF8 smtputf8", BADP),

	/* ---- parameters together, unknown, malformed ---- */
	OKX(MAIL, "FROM:<a@b.example> SIZE=1000 BODY=8BITMIME SMTPUTF8", "a", "b.example",
	    .has_size = true, .size = 1000, .body = BODY_8BITMIME, .smtputf8 = true),
	OKX(MAIL, "FROM:<a@b.example>   SMTPUTF8\tBODY=7BIT  SIZE=1  ", "a", "b.example",
	    .has_size = true, .size = 1, .body = BODY_7BIT, .smtputf8 = true),
	ERR(MAIL, "FROM:<a@b.example> RET=HDRS", UNK),
	ERR(MAIL, "FROM:<a@b.example> ENVID=QQ314159", UNK),
	ERR(MAIL, "FROM:<a@b.example> AUTH=<>", UNK),
	ERR(MAIL, "FROM:<a@b.example> NOTIFY=NEVER", UNK),
	ERR(MAIL, "FROM:<a@b.example> X-FOO", UNK),
	ERR(MAIL, "FROM:<a@b.example> SIZES=1", UNK),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1 RET=HDRS", UNK),
	ERR(MAIL, "FROM:<a@b.example> RET=HDRS SIZE=x", UNK),
	ERR(MAIL, "FROM:<a@b.example> SIZE=x RET=HDRS", BADP),
	ERR(MAIL, "FROM:<a@b.example> =5", BADP),
	ERR(MAIL, "FROM:<a@b.example> =", BADP),
	ERR(MAIL, "FROM:<a@b.example> -FOO", BADP),
	ERR(MAIL, "FROM:<a@b.example> FO_O=1", BADP),
	ERR(MAIL, "FROM:<a@b.example> X=\xc3\xa9", BADP),
	ERR(MAIL, "FROM:<a@b.example> \xc3\xa9=1", BADP),
	ERR(MAIL, "FROM:<a@b.example> SIZE=1 =", BADP),
};

static const char *status_name(enum address_status st)
{
	static const char *const names[] = {
		[ADDRESS_OK] = "OK",
		[ADDRESS_SYNTAX] = "SYNTAX",
		[ADDRESS_BAD_ADDRESS] = "BAD_ADDRESS",
		[ADDRESS_TOO_LONG] = "TOO_LONG",
		[ADDRESS_NEEDS_UTF8] = "NEEDS_UTF8",
		[ADDRESS_UNKNOWN_PARAM] = "UNKNOWN_PARAM",
		[ADDRESS_BAD_PARAM] = "BAD_PARAM",
	};

	if ((size_t)st < sizeof(names) / sizeof(names[0]) && names[st] != NULL)
		return names[st];
	return "?";
}

START_TEST(test_rows)
{
	static const struct mail_address zero_a;
	static const struct mail_params zero_p;
	const struct row *r = &rows[_i];
	size_t len = r->len > 0 ? r->len : strlen(r->arg);
	char *buf = malloc(len > 0 ? len : 1);
	struct mail_address a;
	struct mail_params p;
	enum address_status st;

	ck_assert_ptr_nonnull(buf);
	memcpy(buf, r->arg, len);
	/* garbage first, so a field the parser forgets shows */
	memset(&a, 0xa5, sizeof(a));
	memset(&p, 0xa5, sizeof(p));
	if (r->kind == MAIL)
		st = address_parse_mail(buf, len, &a, &p);
	else
		st = address_parse_rcpt(buf, len, r->kind == RCPT8, &a);
	free(buf);

	ck_assert_msg(st == r->status, "row %d '%.*s': %s, want %s", _i, (int)len, r->arg,
		      status_name(st), status_name(r->status));
	if (st != ADDRESS_OK) {
		ck_assert_msg(memcmp(&a, &zero_a, sizeof(a)) == 0,
			      "row %d: address not zeroed after an error", _i);
		if (r->kind == MAIL)
			ck_assert_msg(memcmp(&p, &zero_p, sizeof(p)) == 0,
				      "row %d: params not zeroed after an error", _i);
		return;
	}
	ck_assert_msg(a.null == r->null, "row %d: null %d", _i, a.null);
	ck_assert_msg(strcmp(a.local, r->local) == 0, "row %d: local '%s', want '%s'",
		      _i, a.local, r->local);
	ck_assert_msg(strcmp(a.domain, r->domain) == 0, "row %d: domain '%s', want '%s'",
		      _i, a.domain, r->domain);
	ck_assert_msg(a.has_8bit == r->has_8bit, "row %d: has_8bit %d", _i, a.has_8bit);
	if (r->kind != MAIL)
		return;
	ck_assert_msg(p.has_size == r->has_size, "row %d: has_size %d", _i, p.has_size);
	ck_assert_msg(p.size == r->size, "row %d: size %ju, want %ju", _i,
		      (uintmax_t)p.size, (uintmax_t)r->size);
	ck_assert_msg(p.body == r->body, "row %d: body %d, want %d", _i, p.body, r->body);
	ck_assert_msg(p.smtputf8 == r->smtputf8, "row %d: smtputf8 %d", _i, p.smtputf8);
}
END_TEST

/* Every row's OK expectation is only as good as its strings: the limit
 * rows must really sit at and past the edges they claim. */
START_TEST(test_limit_strings)
{
	ck_assert_uint_eq(strlen(A64), ADDRESS_LOCAL_MAX);
	ck_assert_uint_eq(strlen(D255), ADDRESS_DOMAIN_MAX);
	ck_assert_uint_eq(strlen(D256), ADDRESS_DOMAIN_MAX + 1);
	ck_assert_uint_eq(strlen("a@" D254), ADDRESS_PATH_MAX);
	ck_assert_uint_eq(strlen(A64 "@" D191), ADDRESS_PATH_MAX);
	ck_assert_uint_eq(strlen(A64 "@" D192), ADDRESS_PATH_MAX + 1);
	ck_assert_uint_eq(strlen("\"" A62 "\""), ADDRESS_LOCAL_MAX);
	ck_assert_uint_eq(strlen(A62 "\xc3\xb6"), ADDRESS_LOCAL_MAX);
}
END_TEST

/* A long run of parameters and blanks: no limit but the line's. */
START_TEST(test_many_blanks)
{
	char arg[1500];
	struct mail_address a;
	struct mail_params p;
	size_t n;

	n = (size_t)snprintf(arg, sizeof(arg), "FROM:<a@b.example>");
	memset(arg + n, ' ', 1000);
	n += 1000;
	n += (size_t)snprintf(arg + n, sizeof(arg) - n, "SIZE=42");
	ck_assert_int_eq(address_parse_mail(arg, n, &a, &p), ADDRESS_OK);
	ck_assert(p.has_size);
	ck_assert_uint_eq(p.size, 42);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("address");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_rows, 0, (int)(sizeof(rows) / sizeof(rows[0])));
	tcase_add_test(tc, test_limit_strings);
	tcase_add_test(tc, test_many_blanks);
	suite_add_tcase(s, tc);
	return testutil_run(s);
}
