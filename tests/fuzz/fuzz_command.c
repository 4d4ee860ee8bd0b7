/*
 * fuzz_command — the command-line parsers, fed one line (no line ending)
 * exactly as the session hands it over: command_parse, then the argument
 * parsers on the argument it found, and each parser on the raw input too.
 *
 * Besides memory errors it checks what the headers promise: results point
 * inside the caller's buffer and are trimmed, address results are
 * NUL-terminated and within RFC 5321's limits, an error zeroes every
 * output, a HELO name accepted is printable with no blanks, and an RCPT
 * accepted without SMTPUTF8 is accepted, the same, with it.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "porterd/address.h"
#include "porterd/command.h"

#include "fuzz_util.h"

static bool inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p >= buf && n <= len && (size_t)(p - buf) <= len - n;
}

static bool all_zero(const void *p, size_t n)
{
	const unsigned char *u = p;

	for (size_t i = 0; i < n; i++)
		if (u[i] != 0)
			return false;
	return true;
}

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static void check_command(const char *line, size_t len, struct command *cmd)
{
	enum command_status st = command_parse(line, len, cmd);
	const char *name;

	switch (st) {
	case COMMAND_UNKNOWN:
	case COMMAND_BAD_CHARACTERS:
		return;
	case COMMAND_OK:
		break;
	default:
		fuzz_fail("command_parse: status %d", (int)st);
	}
	if ((unsigned)cmd->verb >= VERB__COUNT)
		fuzz_fail("command_parse: verb %d", (int)cmd->verb);
	if (!inside(cmd->arg, cmd->arglen, line, len))
		fuzz_fail("command_parse: argument outside the line");
	if (cmd->arglen > 0 && (blank(cmd->arg[0]) || blank(cmd->arg[cmd->arglen - 1])))
		fuzz_fail("command_parse: argument not trimmed");
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)line[i];
		if ((c < 0x20 && c != '\t') || c == 0x7f)
			fuzz_fail("command_parse: OK for a line with control byte 0x%02x", c);
	}
	name = command_verb_name(cmd->verb);
	if (name == NULL || strlen(name) != 4)
		fuzz_fail("command_verb_name: bad name");
}

static void check_lookup_arg(const char *arg, size_t len)
{
	struct lookup_arg r;
	enum lookup_arg_status st = command_parse_lookup_arg(arg, len, &r);

	if (st == LOOKUP_ARG_SYNTAX || st == LOOKUP_ARG_EMPTY)
		return;
	if (st != LOOKUP_ARG_OK)
		fuzz_fail("command_parse_lookup_arg: status %d", (int)st);
	if (r.textlen == 0 || !inside(r.text, r.textlen, arg, len))
		fuzz_fail("lookup_arg: text outside the argument");
	if (r.textlen > ADDRESS_PATH_MAX)
		fuzz_fail("lookup_arg: text of %zu octets accepted", r.textlen);
	if (!inside(r.local, r.locallen, r.text, r.textlen))
		fuzz_fail("lookup_arg: local part outside the text");
	if (r.domain != NULL) {
		if (!inside(r.domain, r.domainlen, r.text, r.textlen))
			fuzz_fail("lookup_arg: domain outside the text");
		if (r.locallen == 0 || r.domainlen == 0 ||
		    r.locallen > ADDRESS_LOCAL_MAX || r.domainlen > ADDRESS_DOMAIN_MAX)
			fuzz_fail("lookup_arg: lengths %zu@%zu accepted", r.locallen,
				  r.domainlen);
		/* Split at an '@', the local part as sent or, quoted without
		 * need ("jones"@...), the content of its quotes. */
		if (r.domain[-1] != '@' ||
		    (r.local + r.locallen + 1 != r.domain &&
		     !(r.local == r.text + 1 && r.text[0] == '"' &&
		       r.local[r.locallen] == '"' && r.local + r.locallen + 2 == r.domain)))
			fuzz_fail("lookup_arg: local and domain are not split at an '@'");
		if (r.local != r.text && memchr(r.local, '"', r.locallen) != NULL)
			fuzz_fail("lookup_arg: a quote left in an unquoted local part");
		if (memchr(r.domain, '@', r.domainlen) != NULL)
			fuzz_fail("lookup_arg: '@' left in the domain");
	} else if (r.domainlen != 0 || r.local != r.text || r.locallen != r.textlen) {
		fuzz_fail("lookup_arg: a bare name is not the whole text");
	}
	for (size_t i = 0; i < r.textlen; i++)
		if (((unsigned char)r.text[i] & 0x80) && !r.has_8bit)
			fuzz_fail("lookup_arg: 8-bit text without has_8bit");
}

static void check_helo(const char *s, size_t len)
{
	if (!command_valid_helo(s, len))
		return;
	if (len == 0 || len > ADDRESS_DOMAIN_MAX)
		fuzz_fail("command_valid_helo: accepted %zu octets", len);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= ' ' || c >= 0x7f)
			fuzz_fail("command_valid_helo: accepted octet 0x%02x", c);
	}
}

/* A parsed address: terminated, within the limits, the text form fits. */
static void check_address(const struct mail_address *a, bool rcpt)
{
	size_t l = strnlen(a->local, sizeof(a->local));
	size_t d = strnlen(a->domain, sizeof(a->domain));

	if (l == sizeof(a->local) || d == sizeof(a->domain))
		fuzz_fail("address: result not NUL-terminated");
	if (a->null) {
		if (rcpt)
			fuzz_fail("address_parse_rcpt: null path accepted");
		if (l != 0 || d != 0)
			fuzz_fail("address: null path with text");
		return;
	}
	if (l == 0)
		fuzz_fail("address: empty local part accepted");
	if (d == 0 && !(rcpt && strcasecmp(a->local, "postmaster") == 0))
		fuzz_fail("address: empty domain accepted for '%s'", a->local);
	if (l > ADDRESS_LOCAL_MAX || d > ADDRESS_DOMAIN_MAX || l + 1 + d > ADDRESS_PATH_MAX)
		fuzz_fail("address: %zu@%zu octets accepted", l, d);
	if (l + 1 + d + 1 > ADDRESS_TEXT_MAX)
		fuzz_fail("address: text form does not fit ADDRESS_TEXT_MAX");
	for (size_t i = 0; i < l; i++) {
		unsigned char c = (unsigned char)a->local[i];
		if (c < 0x20 || c == 0x7f)
			fuzz_fail("address: control octet 0x%02x in the local part", c);
	}
	for (size_t i = 0; i < d; i++) {
		unsigned char c = (unsigned char)a->domain[i];
		/* '@' is allowed: general address literals may hold one */
		if (c <= 0x20 || c == 0x7f)
			fuzz_fail("address: octet 0x%02x in the domain", c);
	}
}

static void check_mail(const char *arg, size_t len)
{
	struct mail_address a;
	struct mail_params p;
	enum address_status st = address_parse_mail(arg, len, &a, &p);

	if (st != ADDRESS_OK) {
		if ((unsigned)st > ADDRESS_BAD_PARAM)
			fuzz_fail("address_parse_mail: status %d", (int)st);
		if (!all_zero(&a, sizeof(a)) || !all_zero(&p, sizeof(p)))
			fuzz_fail("address_parse_mail: error %d left a result", (int)st);
		return;
	}
	check_address(&a, false);
	if (a.has_8bit && !p.smtputf8)
		fuzz_fail("address_parse_mail: 8-bit path without SMTPUTF8");
	if ((unsigned)p.body > BODY_8BITMIME)
		fuzz_fail("address_parse_mail: body %d", (int)p.body);
}

static void check_rcpt(const char *arg, size_t len)
{
	struct mail_address a, b;
	enum address_status st = address_parse_rcpt(arg, len, false, &a);
	enum address_status st8 = address_parse_rcpt(arg, len, true, &b);

	if (st != ADDRESS_OK) {
		if ((unsigned)st > ADDRESS_BAD_PARAM)
			fuzz_fail("address_parse_rcpt: status %d", (int)st);
		if (!all_zero(&a, sizeof(a)))
			fuzz_fail("address_parse_rcpt: error %d left a result", (int)st);
	} else {
		check_address(&a, true);
		if (a.has_8bit)
			fuzz_fail("address_parse_rcpt: 8-bit path without SMTPUTF8");
		if (st8 != ADDRESS_OK || memcmp(&a, &b, sizeof(a)) != 0)
			fuzz_fail("address_parse_rcpt: accepted without SMTPUTF8, "
				  "not the same with it (%d)", (int)st8);
	}
	if (st8 == ADDRESS_OK)
		check_address(&b, true);
	else if (!all_zero(&b, sizeof(b)))
		fuzz_fail("address_parse_rcpt: error %d left a result", (int)st8);
	/* SMTPUTF8 changes nothing but the 8-bit verdict. */
	if ((st8 != ADDRESS_OK && st != st8) ||
	    (st8 == ADDRESS_OK && st != ADDRESS_OK && st != ADDRESS_NEEDS_UTF8))
		fuzz_fail("address_parse_rcpt: %d without SMTPUTF8, %d with it",
			  (int)st, (int)st8);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *line = (const char *)data;
	struct command cmd;

	check_command(line, size, &cmd);
	if (command_parse(line, size, &cmd) == COMMAND_OK) {
		/* What the session does with each verb's argument. */
		switch (cmd.verb) {
		case VERB_HELO:
		case VERB_EHLO:
			check_helo(cmd.arg, cmd.arglen);
			break;
		case VERB_MAIL:
			check_mail(cmd.arg, cmd.arglen);
			break;
		case VERB_RCPT:
			check_rcpt(cmd.arg, cmd.arglen);
			break;
		case VERB_VRFY:
		case VERB_EXPN:
			check_lookup_arg(cmd.arg, cmd.arglen);
			break;
		default:
			break;
		}
	}
	/* And every parser on the raw bytes, controls and all. */
	check_lookup_arg(line, size);
	check_helo(line, size);
	check_mail(line, size);
	check_rcpt(line, size);
	return 0;
}
