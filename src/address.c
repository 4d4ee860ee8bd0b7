/*
 * address — the arguments of MAIL and RCPT: the "FROM:" / "TO:" keyword,
 * the path in angle brackets (RFC 5321 4.1.2, widened to UTF-8 by RFC 6531
 * when SMTPUTF8 applies) and the ESMTP parameters porterd offers (SIZE,
 * BODY, SMTPUTF8). A pure parser: it reads only arg[0..len), copies only
 * into the caller's fixed buffers after checking each length, allocates
 * nothing and keeps no state. It must never decide whether an address is
 * welcome here (local user, relaying): that is the session's job. It never
 * returns half a result: on any error both outputs are all zero.
 *
 * Errors are typed by where the fault is: the framing ("FROM:<" ... ">",
 * a blank before parameters) is ADDRESS_SYNTAX; anything wrong between the
 * brackets is ADDRESS_BAD_ADDRESS; then the limits, then the parameters
 * left to right, and last of all whether a non-ASCII path had SMTPUTF8 (a
 * MAIL path is judged only once its parameters are known).
 */
#include "porterd/address.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "porterd/strutil.h"

/* RFC 1035 2.3.4: a DNS label is at most 63 octets. */
#define DNS_LABEL_MAX 63
/* RFC 1870: SIZE is 1*20DIGIT. */
#define SIZE_DIGITS_MAX 20

/* What the path says, pointing into the caller's argument. */
struct path {
	bool null;
	const char *local;	/* as sent, quotes and escapes included */
	size_t locallen;
	const char *domain;	/* a domain or "[literal]"; empty for postmaster */
	size_t domainlen;
	bool route_8bit;	/* a U-label in the (ignored) source route */
};

/* One "keyword[=value]", pointing into the argument. */
struct param {
	const char *key;
	size_t keylen;
	const char *value;	/* NULL when there is no '=' */
	size_t valuelen;
};

/* A parameter porterd offers: its keyword and what it does to the result. */
struct param_kind {
	const char *keyword;
	enum address_status (*apply)(const struct param *pa, struct mail_params *p);
};

/* ---- characters ---- */

static bool is_blank(char c)
{
	return c == ' ' || c == '\t';
}

/* C0 controls other than tab, and DEL: never part of an argument. */
static bool is_control(char c)
{
	unsigned char u = (unsigned char)c;

	return (u < 0x20 && u != '\t') || u == 0x7f;
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool is_let_dig(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || is_digit(c);
}

/* RFC 5322 atext, the ASCII octets of an atom. */
static bool is_atext(char c)
{
	return is_let_dig(c) || (c != '\0' && strchr("!#$%&'*+-/=?^_`{|}~", c) != NULL);
}

/* Printable US-ASCII, SP included (%d32-126). */
static bool is_print(char c)
{
	return c >= 0x20 && c <= 0x7e;
}

/*
 * Length of the well-formed non-ASCII UTF-8 sequence at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. Only
 * whole characters count, so a Latin-1 octet is garbage, not "8-bit".
 */
static size_t utf8_len(const char *s, size_t len)
{
	const unsigned char *u = (const unsigned char *)s;
	unsigned char lo = 0x80, hi = 0xbf;
	size_t n;

	if (len == 0)
		return 0;
	if (u[0] >= 0xc2 && u[0] <= 0xdf)
		n = 2;
	else if (u[0] >= 0xe0 && u[0] <= 0xef)
		n = 3;
	else if (u[0] >= 0xf0 && u[0] <= 0xf4)
		n = 4;
	else
		return 0;
	if (u[0] == 0xe0)
		lo = 0xa0;
	else if (u[0] == 0xed)
		hi = 0x9f;
	else if (u[0] == 0xf0)
		lo = 0x90;
	else if (u[0] == 0xf4)
		hi = 0x8f;
	if (len < n || u[1] < lo || u[1] > hi)
		return 0;
	for (size_t i = 2; i < n; i++)
		if (u[i] < 0x80 || u[i] > 0xbf)
			return 0;
	return n;
}

/* ---- local part ---- */

/* True when s is a Dot-string: atoms of atext or UTF-8 joined by single
 * dots, none leading or trailing. */
static bool dot_string_valid(const char *s, size_t len)
{
	size_t i = 0, atom = 0;

	while (i < len) {
		size_t n;

		if (s[i] == '.') {
			if (atom == 0)
				return false;
			atom = 0;
			i++;
			continue;
		}
		n = is_atext(s[i]) ? 1 : utf8_len(s + i, len - i);
		if (n == 0)
			return false;
		atom += n;
		i += n;
	}
	return atom > 0;
}

/* Length of the Quoted-string opening s, quotes included, or 0 when there
 * is none. qtext is %d32-126 but '"' and '\'; a quoted-pair escapes one
 * printable ASCII octet; RFC 6531 adds UTF-8 to qtext but not to pairs. */
static size_t quoted_len(const char *s, size_t len)
{
	size_t i = 1, n;

	if (len == 0 || s[0] != '"')
		return 0;
	while (i < len) {
		if (s[i] == '"')
			return i + 1;
		if (s[i] == '\\') {
			if (i + 1 >= len || !is_print(s[i + 1]))
				return 0;
			i += 2;
		} else if (is_print(s[i])) {
			i++;
		} else if ((n = utf8_len(s + i, len - i)) > 0) {
			i += n;
		} else {
			return 0;
		}
	}
	return 0;
}

size_t address_quoted_len(const char *s, size_t len)
{
	return quoted_len(s, len);
}

bool address_quoted_is_plain(const char *s, size_t len)
{
	return len >= 2 && memchr(s + 1, '\\', len - 2) == NULL &&
	       dot_string_valid(s + 1, len - 2);
}

/* The content of the valid quoted string s, quoted-pairs resolved, into
 * dst; returns its length, or 0 when it would not fit. */
static size_t quoted_content(const char *s, size_t len, char *dst, size_t dstsize)
{
	size_t n = 0;

	if (dstsize == 0)
		return 0;
	dst[0] = '\0';
	if (len < 2 || len - 2 >= dstsize)
		return 0;
	for (size_t i = 1; i + 1 < len; i++) {
		if (s[i] == '\\')
			i++;
		dst[n++] = s[i];
	}
	dst[n] = '\0';
	return n;
}

/* ---- domain ---- */

/* A label: letters, digits, hyphens and UTF-8 (a U-label), no hyphen at
 * either end. The 63-octet limit is checked for ASCII labels only: a
 * U-label's limit applies to its A-label, which is not computed here. */
static bool label_valid(const char *s, size_t len)
{
	bool ascii = true;
	size_t i = 0;

	if (len == 0 || s[0] == '-' || s[len - 1] == '-')
		return false;
	while (i < len) {
		size_t n = (is_let_dig(s[i]) || s[i] == '-') ? 1 : utf8_len(s + i, len - i);

		if (n == 0)
			return false;
		ascii = ascii && n == 1;
		i += n;
	}
	return !ascii || len <= DNS_LABEL_MAX;
}

/* Labels joined by single dots; an empty label (so a trailing dot) fails. */
static bool domain_valid(const char *s, size_t len)
{
	const char *end = s + len;

	if (len == 0)
		return false;
	for (;;) {
		const char *dot = memchr(s, '.', (size_t)(end - s));
		const char *lend = dot != NULL ? dot : end;

		if (!label_valid(s, (size_t)(lend - s)))
			return false;
		if (dot == NULL)
			return true;
		s = dot + 1;
	}
}

/* Snum "." Snum "." Snum "." Snum, each 1-3 digits up to 255. */
static bool literal_ipv4_valid(const char *s, size_t len)
{
	size_t i = 0;

	for (int part = 0; part < 4; part++) {
		unsigned value = 0, digits = 0;

		if (part > 0) {
			if (i >= len || s[i] != '.')
				return false;
			i++;
		}
		while (i < len && is_digit(s[i]) && digits < 3) {
			value = value * 10 + (unsigned)(s[i] - '0');
			digits++;
			i++;
		}
		if (digits == 0 || value > 255)
			return false;
	}
	return i == len;
}

/* The text after "IPv6:". inet_pton is the arbiter, but it reads up to a
 * NUL, so every octet is vetted first. */
static bool literal_ipv6_valid(const char *s, size_t len)
{
	char buf[INET6_ADDRSTRLEN];
	struct in6_addr addr;

	if (len == 0 || len >= sizeof(buf))
		return false;
	for (size_t i = 0; i < len; i++) {
		char c = str_lower_char(s[i]);

		if (!is_digit(c) && !(c >= 'a' && c <= 'f') && c != ':' && c != '.')
			return false;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	return inet_pton(AF_INET6, buf, &addr) == 1;
}

/* General-address-literal: Standardized-tag ":" 1*dcontent, the tag an
 * ASCII label, dcontent printable ASCII but '[', '\' and ']'. No tag but
 * IPv6 is registered; the syntax is all that can be checked. */
static bool literal_general_valid(const char *tag, size_t taglen,
				  const char *s, size_t len)
{
	if (!label_valid(tag, taglen) || str_has_8bit(tag, taglen) || len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_print(s[i]) || s[i] == ' ' || s[i] == '[' || s[i] == '\\' ||
		    s[i] == ']')
			return false;
	return true;
}

/* "[...]": an IPv4 dotted quad, "IPv6:" and an address, or tag:content. */
static bool literal_valid(const char *s, size_t len)
{
	const char *colon;
	size_t taglen;

	if (len < 3 || s[0] != '[' || s[len - 1] != ']')
		return false;
	s++;
	len -= 2;
	colon = memchr(s, ':', len);
	if (colon == NULL)
		return literal_ipv4_valid(s, len);
	taglen = (size_t)(colon - s);
	if (str_eq_nocase(s, taglen, "IPv6", 4))
		return literal_ipv6_valid(colon + 1, len - taglen - 1);
	return literal_general_valid(s, taglen, colon + 1, len - taglen - 1);
}

/* ---- path ---- */

/* "@one.example,@two.example" (the colon already cut off). Only domains,
 * never literals, as in RFC 5321's At-domain. */
static bool route_valid(const char *s, size_t len)
{
	const char *end = s + len;

	for (;;) {
		const char *comma = memchr(s, ',', (size_t)(end - s));
		const char *iend = comma != NULL ? comma : end;
		size_t n = (size_t)(iend - s);

		if (n < 2 || s[0] != '@' || n - 1 > ADDRESS_DOMAIN_MAX ||
		    !domain_valid(s + 1, n - 1))
			return false;
		if (comma == NULL)
			return true;
		s = comma + 1;
	}
}

/*
 * Where the path opened at s[from - 1] closes: the first '>' not inside a
 * quoted string, so "<\"a>b\"@example>" closes at the end. False when the
 * path never closes.
 */
static bool path_find_close(const char *s, size_t len, size_t from, size_t *close_r)
{
	bool quoted = false;

	for (size_t i = from; i < len; i++) {
		if (quoted && s[i] == '\\') {
			i++;	/* a quoted pair: the next octet is content */
		} else if (s[i] == '"') {
			quoted = !quoted;
		} else if (s[i] == '>' && !quoted) {
			*close_r = i;
			return true;
		}
	}
	return false;
}

/* The inside of "<...>": null path, [route ":"] Mailbox, or (RCPT only) a
 * bare postmaster. Only syntax here; limits and 8-bit come later. */
static enum address_status path_parse(const char *s, size_t len, bool rcpt,
				      struct path *p)
{
	const char *at;
	size_t qlen;

	memset(p, 0, sizeof(*p));
	if (len == 0) {
		p->null = true;
		return rcpt ? ADDRESS_BAD_ADDRESS : ADDRESS_OK;
	}
	if (s[0] == '@') {
		const char *colon = memchr(s, ':', len);

		if (colon == NULL || !route_valid(s, (size_t)(colon - s)))
			return ADDRESS_BAD_ADDRESS;
		p->route_8bit = str_has_8bit(s, (size_t)(colon - s));
		len -= (size_t)(colon + 1 - s);
		s = colon + 1;
	} else if (rcpt && str_eq_nocase(s, len, "postmaster", 10)) {
		p->local = s;
		p->locallen = len;
		p->domain = s + len;
		return ADDRESS_OK;
	}

	if (len > 0 && s[0] == '"') {
		qlen = quoted_len(s, len);
		if (qlen == 0 || qlen == len || s[qlen] != '@')
			return ADDRESS_BAD_ADDRESS;
		at = s + qlen;
	} else {
		at = memchr(s, '@', len);
		if (at == NULL || !dot_string_valid(s, (size_t)(at - s)))
			return ADDRESS_BAD_ADDRESS;
	}
	p->local = s;
	p->locallen = (size_t)(at - s);
	p->domain = at + 1;
	p->domainlen = len - p->locallen - 1;
	if (p->domainlen > 0 && p->domain[0] == '[') {
		if (!literal_valid(p->domain, p->domainlen))
			return ADDRESS_BAD_ADDRESS;
	} else if (!domain_valid(p->domain, p->domainlen)) {
		return ADDRESS_BAD_ADDRESS;
	}
	return ADDRESS_OK;
}

/* RFC 5321 4.5.3.1, counted as sent: a quoted local part with its quotes. */
static enum address_status path_check_limits(const struct path *p)
{
	if (p->locallen > ADDRESS_LOCAL_MAX || p->domainlen > ADDRESS_DOMAIN_MAX ||
	    p->locallen + 1 + p->domainlen > ADDRESS_PATH_MAX)
		return ADDRESS_TOO_LONG;
	return ADDRESS_OK;
}

static bool path_has_8bit(const struct path *p)
{
	return str_has_8bit(p->local, p->locallen) ||
	       str_has_8bit(p->domain, p->domainlen);
}

/* Copy the path out, a quoted local part unquoted when its content is a
 * plain dot-string ("jones" and jones are the same mailbox). */
static enum address_status path_store(const struct path *p, struct mail_address *a_r)
{
	char content[ADDRESS_LOCAL_MAX + 1];
	const char *local = p->local;
	size_t locallen = p->locallen, n;

	a_r->null = p->null;
	if (p->null)
		return ADDRESS_OK;
	if (locallen > 0 && local[0] == '"') {
		n = quoted_content(local, locallen, content, sizeof(content));
		if (dot_string_valid(content, n)) {
			local = content;
			locallen = n;
		}
	}
	if (locallen >= sizeof(a_r->local) || p->domainlen >= sizeof(a_r->domain))
		return ADDRESS_TOO_LONG;
	memcpy(a_r->local, local, locallen);
	a_r->local[locallen] = '\0';
	memcpy(a_r->domain, p->domain, p->domainlen);
	a_r->domain[p->domainlen] = '\0';
	a_r->has_8bit = path_has_8bit(p);
	return ADDRESS_OK;
}

/* ---- parameters ---- */

/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
static bool param_keyword_valid(const char *s, size_t len)
{
	if (len == 0 || !is_let_dig(s[0]))
		return false;
	for (size_t i = 1; i < len; i++)
		if (!is_let_dig(s[i]) && s[i] != '-')
			return false;
	return true;
}

/* esmtp-value = 1*(%d33-60 / %d62-126): printable, no SP, no '='. */
static bool param_value_valid(const char *s, size_t len)
{
	if (len == 0)
		return false;
	for (size_t i = 0; i < len; i++)
		if (!is_print(s[i]) || s[i] == ' ' || s[i] == '=')
			return false;
	return true;
}

static enum address_status param_split(const char *s, size_t len, struct param *pa)
{
	const char *eq = memchr(s, '=', len);

	pa->key = s;
	pa->keylen = eq != NULL ? (size_t)(eq - s) : len;
	pa->value = eq != NULL ? eq + 1 : NULL;
	pa->valuelen = eq != NULL ? len - pa->keylen - 1 : 0;
	if (!param_keyword_valid(pa->key, pa->keylen))
		return ADDRESS_BAD_PARAM;
	if (pa->value != NULL && !param_value_valid(pa->value, pa->valuelen))
		return ADDRESS_BAD_PARAM;
	return ADDRESS_OK;
}

/* SIZE=1*20DIGIT, no sign, within uint64_t (RFC 1870). */
static enum address_status param_size(const struct param *pa, struct mail_params *p)
{
	uint64_t v = 0;

	if (p->has_size || pa->value == NULL || pa->valuelen == 0 ||
	    pa->valuelen > SIZE_DIGITS_MAX)
		return ADDRESS_BAD_PARAM;
	for (size_t i = 0; i < pa->valuelen; i++) {
		unsigned d = (unsigned)(pa->value[i] - '0');

		if (!is_digit(pa->value[i]) || v > (UINT64_MAX - d) / 10)
			return ADDRESS_BAD_PARAM;
		v = v * 10 + d;
	}
	p->has_size = true;
	p->size = v;
	return ADDRESS_OK;
}

/* BODY=7BIT / 8BITMIME (RFC 6152); BINARYMIME needs CHUNKING, not offered. */
static enum address_status param_body(const struct param *pa, struct mail_params *p)
{
	if (p->body != BODY_UNSPECIFIED || pa->value == NULL)
		return ADDRESS_BAD_PARAM;
	if (str_eq_nocase(pa->value, pa->valuelen, "7BIT", 4))
		p->body = BODY_7BIT;
	else if (str_eq_nocase(pa->value, pa->valuelen, "8BITMIME", 8))
		p->body = BODY_8BITMIME;
	else
		return ADDRESS_BAD_PARAM;
	return ADDRESS_OK;
}

/* SMTPUTF8 takes no value (RFC 6531 3.4). */
static enum address_status param_smtputf8(const struct param *pa, struct mail_params *p)
{
	if (p->smtputf8 || pa->value != NULL)
		return ADDRESS_BAD_PARAM;
	p->smtputf8 = true;
	return ADDRESS_OK;
}

static const struct param_kind mail_param_kinds[] = {
	{ "SIZE", param_size },
	{ "BODY", param_body },
	{ "SMTPUTF8", param_smtputf8 },
};

static enum address_status param_apply(const struct param *pa,
				       const struct param_kind *kinds, size_t nkinds,
				       struct mail_params *p)
{
	for (size_t k = 0; k < nkinds; k++)
		if (str_eq_nocase(pa->key, pa->keylen, kinds[k].keyword,
				  strlen(kinds[k].keyword)))
			return kinds[k].apply(pa, p);
	return ADDRESS_UNKNOWN_PARAM;
}

/*
 * Everything after the '>': nothing, or blanks and "keyword[=value]"
 * words. A control octet or text glued to the '>' is a framing error; a
 * malformed word is BAD_PARAM, a well-formed one not in kinds UNKNOWN.
 */
static enum address_status params_parse(const char *s, size_t len,
					const struct param_kind *kinds, size_t nkinds,
					struct mail_params *p)
{
	size_t i = 0;

	for (size_t j = 0; j < len; j++)
		if (is_control(s[j]))
			return ADDRESS_SYNTAX;
	if (len > 0 && !is_blank(s[0]))
		return ADDRESS_SYNTAX;
	while (i < len) {
		struct param pa;
		enum address_status st;
		size_t start;

		if (is_blank(s[i])) {
			i++;
			continue;
		}
		start = i;
		while (i < len && !is_blank(s[i]))
			i++;
		st = param_split(s + start, i - start, &pa);
		if (st == ADDRESS_OK)
			st = param_apply(&pa, kinds, nkinds, p);
		if (st != ADDRESS_OK)
			return st;
	}
	return ADDRESS_OK;
}

/* ---- the two commands ---- */

/* Past the keyword, its colon and any blanks after the colon. */
static bool keyword_skip(const char *s, size_t len, const char *kw, size_t *pos_r)
{
	size_t kwlen = strlen(kw), i = 0;

	while (i < len && is_blank(s[i]))
		i++;
	if (len - i < kwlen + 1 || !str_eq_nocase(s + i, kwlen, kw, kwlen) ||
	    s[i + kwlen] != ':')
		return false;
	i += kwlen + 1;
	while (i < len && is_blank(s[i]))
		i++;
	*pos_r = i;
	return true;
}

/* Keyword, brackets and path, with limits; *rest_r is just past the '>'. */
static enum address_status address_parse_path(const char *arg, size_t len,
					      const char *kw, bool rcpt,
					      struct path *p, size_t *rest_r)
{
	size_t open, close;
	enum address_status st;

	if (!keyword_skip(arg, len, kw, &open) || open >= len || arg[open] != '<' ||
	    !path_find_close(arg, len, open + 1, &close))
		return ADDRESS_SYNTAX;
	st = path_parse(arg + open + 1, close - open - 1, rcpt, p);
	if (st == ADDRESS_OK)
		st = path_check_limits(p);
	*rest_r = close + 1;
	return st;
}

static enum address_status address_mail(const char *arg, size_t len,
					struct mail_address *a_r,
					struct mail_params *p_r)
{
	struct path p;
	size_t rest;
	enum address_status st;

	st = address_parse_path(arg, len, "FROM", false, &p, &rest);
	if (st == ADDRESS_OK)
		st = params_parse(arg + rest, len - rest, mail_param_kinds,
				  sizeof(mail_param_kinds) / sizeof(mail_param_kinds[0]),
				  p_r);
	if (st == ADDRESS_OK && !p_r->smtputf8 && (path_has_8bit(&p) || p.route_8bit))
		st = ADDRESS_NEEDS_UTF8;
	if (st == ADDRESS_OK)
		st = path_store(&p, a_r);
	return st;
}

static enum address_status address_rcpt(const char *arg, size_t len, bool utf8,
					struct mail_address *a_r)
{
	struct mail_params none;
	struct path p;
	size_t rest;
	enum address_status st;

	memset(&none, 0, sizeof(none));
	st = address_parse_path(arg, len, "TO", true, &p, &rest);
	if (st == ADDRESS_OK)
		st = params_parse(arg + rest, len - rest, NULL, 0, &none);
	if (st == ADDRESS_OK && !utf8 && (path_has_8bit(&p) || p.route_8bit))
		st = ADDRESS_NEEDS_UTF8;
	if (st == ADDRESS_OK)
		st = path_store(&p, a_r);
	return st;
}

enum address_status address_parse_mail(const char *arg, size_t len,
				       struct mail_address *a_r,
				       struct mail_params *p_r)
{
	enum address_status st;

	memset(a_r, 0, sizeof(*a_r));
	memset(p_r, 0, sizeof(*p_r));
	st = address_mail(arg, len, a_r, p_r);
	if (st != ADDRESS_OK) {
		memset(a_r, 0, sizeof(*a_r));
		memset(p_r, 0, sizeof(*p_r));
	}
	return st;
}

enum address_status address_parse_rcpt(const char *arg, size_t len, bool utf8,
				       struct mail_address *a_r)
{
	enum address_status st;

	memset(a_r, 0, sizeof(*a_r));
	st = address_rcpt(arg, len, utf8, a_r);
	if (st != ADDRESS_OK)
		memset(a_r, 0, sizeof(*a_r));
	return st;
}
