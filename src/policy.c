/*
 * policy — decides what one client may learn through VRFY and EXPN: the
 * truth for trusted networks, the configured modes for everyone else, and
 * the truth about public addresses (postmaster and friends) in `vrfy on`
 * and `vrfy 252`, because domain registries verify exactly those.
 *
 * It must stay pure: no I/O (only a broken invariant aborts, with a line
 * on stderr), no clock, no allocation, no state between calls. Rate
 * limits and tarpits belong to the caller; this module only says which
 * answer a client is owed. Anything it cannot parse grants nothing: an
 * unparsable client address is never trusted.
 */
#include "porterd/policy.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "porterd/strutil.h"

#define NET_V4_BITS 32
#define NET_V6_BITS 128

/* Longest ADDR inside "[ADDR]/PREFIX" that inet_pton() can accept. */
#define NET_ADDR_MAX (INET6_ADDRSTRLEN - 1)

/* ::ffff:0:0/96 (RFC 4291 2.5.5.2): the first 12 octets of a mapped address. */
static const unsigned char v4_mapped_prefix[12] = {
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff,
};

static void policy_abort(const char *why)
{
	fprintf(stderr, "porterd: policy: %s\n", why);
	abort();
}

static unsigned family_bits(int family)
{
	return family == AF_INET ? NET_V4_BITS : NET_V6_BITS;
}

/* Clear every bit of addr from bit prefix on. */
static void mask_host_bits(unsigned char addr[16], unsigned prefix)
{
	for (unsigned i = prefix / 8; i < 16; i++) {
		unsigned keep = i == prefix / 8 ? prefix % 8 : 0;

		addr[i] &= (unsigned char)(0xff00u >> keep);
	}
}

/* A mapped IPv6 address, or block of them, is the IPv4 one it carries:
 * porterd sees "::ffff:192.0.2.1" on a dual-stack socket. */
static void unmap_v4(int *family, unsigned char addr[16], unsigned *prefix)
{
	if (*family != AF_INET6 || *prefix < 96 ||
	    memcmp(addr, v4_mapped_prefix, sizeof(v4_mapped_prefix)) != 0)
		return;
	memmove(addr, addr + 12, 4);
	memset(addr + 4, 0, 12);
	*family = AF_INET;
	*prefix -= 96;
}

/* A bare address, IPv4 first, into a zeroed addr. */
static bool addr_parse(const char *text, int *family_r, unsigned char addr_r[16])
{
	memset(addr_r, 0, 16);
	if (inet_pton(AF_INET, text, addr_r) == 1) {
		*family_r = AF_INET;
		return true;
	}
	if (inet_pton(AF_INET6, text, addr_r) == 1) {
		*family_r = AF_INET6;
		return true;
	}
	memset(addr_r, 0, 16);
	return false;
}

/* Decimal, no sign, no leading zeros, at most max. */
static bool prefix_parse(const char *s, unsigned max, unsigned *prefix_r)
{
	unsigned n = 0;
	size_t len = strlen(s);

	if (len == 0 || len > 3 || (s[0] == '0' && len > 1))
		return false;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return false;
		n = n * 10 + (unsigned)(s[i] - '0');
	}
	*prefix_r = n;
	return n <= max;
}

/* Split "ADDR", "ADDR/PREFIX", "[ADDR]" or "[ADDR]/PREFIX" into the address
 * (copied into addr, without brackets) and the prefix text, or NULL when
 * there is none. */
static bool net_split(const char *text, char addr[NET_ADDR_MAX + 1],
		      const char **prefix_r, bool *bracketed_r)
{
	const char *slash = strchr(text, '/'), *end;

	*bracketed_r = text[0] == '[';
	*prefix_r = slash != NULL ? slash + 1 : NULL;
	end = slash != NULL ? slash : text + strlen(text);
	if (*bracketed_r) {
		if (end - text < 2 || end[-1] != ']')
			return false;
		text++;
		end--;
	}
	return str_copy(addr, NET_ADDR_MAX + 1, text, (size_t)(end - text)) &&
	       end > text;
}

bool net_parse(const char *text, struct net *net_r)
{
	char addr[NET_ADDR_MAX + 1];
	const char *prefix;
	bool bracketed;

	memset(net_r, 0, sizeof(*net_r));
	if (text == NULL || !net_split(text, addr, &prefix, &bracketed) ||
	    !addr_parse(addr, &net_r->family, net_r->addr) ||
	    (bracketed && net_r->family != AF_INET6))
		goto fail;
	net_r->prefix = family_bits(net_r->family);
	if (prefix != NULL &&
	    !prefix_parse(prefix, family_bits(net_r->family), &net_r->prefix))
		goto fail;
	mask_host_bits(net_r->addr, net_r->prefix);
	unmap_v4(&net_r->family, net_r->addr, &net_r->prefix);
	return true;
fail:
	memset(net_r, 0, sizeof(*net_r));
	return false;
}

bool net_format(const struct net *n, char *buf, size_t size)
{
	char addr[INET6_ADDRSTRLEN];
	int w;

	if (size > 0)
		buf[0] = '\0';
	if ((n->family != AF_INET && n->family != AF_INET6) ||
	    n->prefix > family_bits(n->family) ||
	    inet_ntop(n->family, n->addr, addr, sizeof(addr)) == NULL)
		return false;
	w = snprintf(buf, size, "%s/%u", addr, n->prefix);
	if (w < 0 || (size_t)w >= size) {
		if (size > 0)
			buf[0] = '\0';
		return false;
	}
	return true;
}

/* The client as a one-address block, mapped IPv4 unmapped. */
static bool client_parse(const char *client_addr, struct net *client_r)
{
	memset(client_r, 0, sizeof(*client_r));
	if (client_addr == NULL ||
	    !addr_parse(client_addr, &client_r->family, client_r->addr))
		return false;
	client_r->prefix = family_bits(client_r->family);
	unmap_v4(&client_r->family, client_r->addr, &client_r->prefix);
	return true;
}

/* Whether the first n->prefix bits of client and n agree. */
static bool net_match(const struct net *n, const struct net *client)
{
	unsigned char masked[16];

	if (n->family != client->family)
		return false;
	memcpy(masked, client->addr, sizeof(masked));
	mask_host_bits(masked, n->prefix);
	return memcmp(masked, n->addr, sizeof(masked)) == 0;
}

bool net_contains(const struct net *n, const char *client_addr)
{
	struct net client;

	return client_parse(client_addr, &client) && net_match(n, &client);
}

/* The client is parsed once, not once per network. */
static bool policy_trusted(const struct config *cfg, const char *client_addr)
{
	struct net client;

	if (!client_parse(client_addr, &client))
		return false;
	for (size_t i = 0; i < cfg->ntrusted; i++)
		if (net_match(&cfg->trusted[i], &client))
			return true;
	return false;
}

void policy_for_client(const struct config *cfg, const char *client_addr,
		       struct policy_client *client_r)
{
	client_r->trusted = policy_trusted(cfg, client_addr);
	client_r->vrfy = client_r->trusted ? VRFY_ON : cfg->vrfy;
	client_r->expn = client_r->trusted ? EXPN_ON : cfg->expn;
}

/* entry is lowercase "local" or "local@domain" (config.c checked it). */
static bool public_matches(const char *entry, const char *local, size_t locallen,
			   const char *domain, size_t domainlen)
{
	const char *at;

	/* Asked for every VRFY: most queries differ at once. */
	if (locallen == 0 || entry[0] != str_lower_char(local[0]))
		return false;
	at = strchr(entry, '@');
	if (at == NULL)
		return str_eq_nocase(entry, strlen(entry), local, locallen);
	return domain != NULL &&
	       str_eq_nocase(entry, (size_t)(at - entry), local, locallen) &&
	       str_eq_nocase(at + 1, strlen(at + 1), domain, domainlen);
}

bool policy_is_public(const struct config *cfg, const char *local, size_t locallen,
		      const char *domain, size_t domainlen)
{
	for (size_t i = 0; i < cfg->npublic; i++)
		if (public_matches(cfg->public_addrs[i], local, locallen,
				   domain, domainlen))
			return true;
	return false;
}

enum policy_vrfy policy_vrfy(const struct policy_client *c, bool is_public)
{
	switch (c->vrfy) {
	case VRFY_ON:
		return POLICY_VRFY_TRUTH;
	case VRFY_252:
		return is_public ? POLICY_VRFY_TRUTH : POLICY_VRFY_GENERIC;
	case VRFY_OFF:
		return POLICY_VRFY_DISABLED;
	}
	policy_abort("policy_vrfy: bad vrfy mode");
	return POLICY_VRFY_DISABLED;
}

bool policy_advertise_vrfy(const struct policy_client *c)
{
	return c->vrfy != VRFY_OFF;
}

bool policy_advertise_expn(const struct policy_client *c)
{
	return c->expn != EXPN_OFF;
}

bool policy_expn_allowed(const struct policy_client *c)
{
	return c->expn == EXPN_ON;
}

bool policy_budgeted(const struct policy_client *c, bool public_vrfy)
{
	return !c->trusted && !public_vrfy;
}
