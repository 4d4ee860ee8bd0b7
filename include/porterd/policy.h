/*
 * policy — what one client may learn through VRFY and EXPN.
 *
 * Trusted networks get the truth; everyone else gets the configured
 * `vrfy` and `expn` modes; `public` addresses (postmaster, hostmaster,
 * abuse by default) are verified truthfully for every client in `vrfy on`
 * and `vrfy 252`, because domain registries check exactly those.
 *
 * Pure functions: no I/O, no clock, no allocation. The session asks once
 * per connection (policy_for_client) and once per command.
 */
#ifndef PORTERD_POLICY_H
#define PORTERD_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include <netinet/in.h>
#include <sys/socket.h>

#include "porterd/config.h"

/* Longest net_format() output with its NUL: an IPv6 address and "/128". */
#define NET_TEXT_MAX (INET6_ADDRSTRLEN + 4)

/*
 * An address block. Bits of addr beyond prefix are always zero. IPv4
 * blocks use addr[0..3]; the rest of addr is zero.
 */
struct net {
	int family;		/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;	/* 0-32 for AF_INET, 0-128 for AF_INET6 */
};

/*
 * Parse "ADDR" or "ADDR/PREFIX" into *net_r; false (and *net_r zeroed)
 * when text is not one.
 *   - ADDR is what inet_pton() takes: dotted-quad IPv4 or IPv6. An IPv6
 *     address may be bracketed as Postfix writes it, "[::1]" or
 *     "[2001:db8::]/32"; an IPv4 address may not ("[192.0.2.1]").
 *   - Without a prefix the block is the one address (/32 or /128).
 *   - PREFIX is decimal without sign or leading zeros, at most 32 (IPv4)
 *     or 128 (IPv6).
 *   - Host bits set beyond the prefix are cleared: "10.1.2.3/8" is
 *     10.0.0.0/8.
 *   - An IPv4-mapped block with a prefix of 96 or more is stored as the
 *     IPv4 block it is: "::ffff:10.0.0.0/104" is 10.0.0.0/8. Shorter
 *     IPv6 prefixes ("::/0") stay IPv6 and never match an IPv4 client.
 */
bool net_parse(const char *text, struct net *net_r);

/* "10.0.0.0/8", "2001:db8::/32": the canonical form, always with the
 * prefix. False when size is too small (buf then holds "") or n is not
 * a block net_parse() could have made. */
bool net_format(const struct net *n, char *buf, size_t size);

/*
 * Whether the printable peer address client_addr ("192.0.2.1", "::1") is
 * inside n. An IPv4-mapped IPv6 client ("::ffff:192.0.2.1") is the IPv4
 * client it stands for. An unparsable address, a scoped one
 * ("fe80::1%eth0") or NULL is inside nothing.
 */
bool net_contains(const struct net *n, const char *client_addr);

/* What one client is allowed, decided when it connects. */
struct policy_client {
	bool trusted;		/* inside one of cfg->trusted */
	enum vrfy_mode vrfy;	/* VRFY_ON when trusted, else cfg->vrfy */
	enum expn_mode expn;	/* EXPN_ON when trusted, else cfg->expn */
};

void policy_for_client(const struct config *cfg, const char *client_addr,
		       struct policy_client *client_r);

/*
 * Whether local (and domain) name a public address, ignoring ASCII case.
 * An entry "postmaster" matches that local part in any domain (the caller
 * has checked the domain is one of ours); "abuse@example.org" matches that
 * address only. domain is NULL for a bare name ("VRFY postmaster"): then
 * only entries without a domain can match.
 */
bool policy_is_public(const struct config *cfg, const char *local, size_t locallen,
		      const char *domain, size_t domainlen);

enum policy_vrfy {
	POLICY_VRFY_TRUTH,	/* look it up and say what is there */
	POLICY_VRFY_GENERIC,	/* 252, the same for every argument */
	POLICY_VRFY_DISABLED,	/* 502: the command is off for this client */
};

/*
 * How to answer one VRFY:
 *   vrfy on   TRUTH
 *   vrfy 252  TRUTH for a public address, GENERIC for any other
 *   vrfy off  DISABLED, public or not: a command that is off is off for
 *             every argument (RFC 5321 7.3), and EHLO did not offer it.
 */
enum policy_vrfy policy_vrfy(const struct policy_client *c, bool is_public);

/* Whether EHLO lists VRFY / EXPN: unless the mode is off. */
bool policy_advertise_vrfy(const struct policy_client *c);
bool policy_advertise_expn(const struct policy_client *c);

/* Whether EXPN expands (true) or answers 502 (false). */
bool policy_expn_allowed(const struct policy_client *c);

/*
 * Whether an answer draws on the client's vrfy_rate budget: truthful
 * VRFY/EXPN answers and refused RCPTs do, except for trusted clients
 * and for VRFY of a public address (it reveals nothing harvestable).
 */
bool policy_budgeted(const struct policy_client *c, bool public_vrfy);

#endif
