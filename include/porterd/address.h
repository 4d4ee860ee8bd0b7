/*
 * address — the arguments of MAIL FROM and RCPT TO (RFC 5321 4.1.2):
 * a path in angle brackets (an optional source route is accepted and
 * ignored), then ESMTP parameters. Copies what it keeps into fixed
 * buffers; allocates nothing; knows nothing of the session.
 */
#ifndef PORTERD_ADDRESS_H
#define PORTERD_ADDRESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "porterd/command.h"

/* "local@domain" of a parsed address always fits in this. */
#define ADDRESS_TEXT_MAX (ADDRESS_LOCAL_MAX + 1 + ADDRESS_DOMAIN_MAX + 1)

struct mail_address {
	bool null;		/* the null path <> (MAIL only) */
	/* The local part in canonical form: a quoted string whose content
	 * is a valid dot-string is unquoted ("\"jones\"" -> jones); other
	 * quoted strings keep their quotes and escapes as given. */
	char local[ADDRESS_LOCAL_MAX + 1];
	/* The domain, or an address literal "[...]"; empty only for
	 * RCPT TO:<postmaster> (RFC 5321 4.1.1.3). */
	char domain[ADDRESS_DOMAIN_MAX + 1];
	bool has_8bit;		/* local part or domain has non-ASCII octets */
};

enum mail_body { BODY_UNSPECIFIED, BODY_7BIT, BODY_8BITMIME };

struct mail_params {
	bool has_size;
	uint64_t size;		/* SIZE=n (RFC 1870) */
	enum mail_body body;	/* BODY= (RFC 6152) */
	bool smtputf8;		/* SMTPUTF8 (RFC 6531) */
};

enum address_status {
	ADDRESS_OK,
	ADDRESS_SYNTAX,		/* not "FROM:<...>" / "TO:<...>" at all: 501 5.5.4 */
	ADDRESS_BAD_ADDRESS,	/* the path inside <> is malformed: 501 5.1.7 / 5.1.3 */
	ADDRESS_TOO_LONG,	/* local part > 64, domain > 255 or path > 256 octets */
	ADDRESS_NEEDS_UTF8,	/* non-ASCII address without SMTPUTF8: 553 5.6.7 */
	ADDRESS_UNKNOWN_PARAM,	/* a parameter porterd does not offer: 555 5.5.4 */
	ADDRESS_BAD_PARAM,	/* a known parameter with a bad or repeated value: 501 5.5.4 */
};

/*
 * On any error both outputs are zeroed: a caller never sees half a result.
 *
 * Parse the argument of MAIL ("FROM:<path> [params]"), case-insensitive
 * keyword, blanks tolerated after the colon. Known parameters: SIZE=n,
 * BODY=7BIT|8BITMIME, SMTPUTF8. A non-ASCII path is accepted only when
 * the SMTPUTF8 parameter is present.
 */
enum address_status address_parse_mail(const char *arg, size_t len,
				       struct mail_address *a_r,
				       struct mail_params *p_r);

/*
 * Parse the argument of RCPT ("TO:<path>"). No parameter is offered, so
 * any is ADDRESS_UNKNOWN_PARAM. The null path is ADDRESS_BAD_ADDRESS; a
 * bare "<postmaster>" (any case) is accepted with an empty domain.
 * utf8 says whether the transaction's MAIL carried SMTPUTF8.
 */
enum address_status address_parse_rcpt(const char *arg, size_t len, bool utf8,
				       struct mail_address *a_r);

/*
 * For a VRFY or EXPN argument read as RCPT reads a path: the length of
 * the Quoted-string s opens with, quotes included, or 0 when it opens
 * with none (or an invalid one).
 */
size_t address_quoted_len(const char *s, size_t len);

/* True when the Quoted-string s (len octets, quotes included) holds a
 * Dot-string and no quoted-pair: the same mailbox written unquoted
 * ("jones" is jones), as RCPT takes it. */
bool address_quoted_is_plain(const char *s, size_t len);

#endif
