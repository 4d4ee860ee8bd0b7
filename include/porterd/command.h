/*
 * command — turns one command line (line ending already removed) into a
 * verb and its argument, without copying or allocating: the argument
 * points into the caller's line. It never decides what a command means in
 * the current state; that is the session's job.
 */
#ifndef PORTERD_COMMAND_H
#define PORTERD_COMMAND_H

#include <stdbool.h>
#include <stddef.h>

/* RFC 5321 allows 512; porterd accepts longer lines, this many octets
 * including the CRLF, before answering "Line too long". */
#define COMMAND_LINE_MAX 2048

/* RFC 5321 4.5.3.1: local part 64, domain 255, path 256 octets. */
#define ADDRESS_LOCAL_MAX 64
#define ADDRESS_DOMAIN_MAX 255
#define ADDRESS_PATH_MAX 256

enum verb {
	VERB_HELO,
	VERB_EHLO,
	VERB_MAIL,
	VERB_RCPT,
	VERB_DATA,
	VERB_RSET,
	VERB_VRFY,
	VERB_EXPN,
	VERB_HELP,
	VERB_NOOP,
	VERB_QUIT,
	VERB__COUNT
};

enum command_status {
	COMMAND_OK,
	COMMAND_UNKNOWN,	/* empty line or verb porterd does not know */
	COMMAND_BAD_CHARACTERS,	/* NUL or another control byte in the line */
};

struct command {
	enum verb verb;
	const char *arg;	/* argument, surrounding blanks trimmed */
	size_t arglen;		/* 0 when there is no argument */
};

enum command_status command_parse(const char *line, size_t len,
				  struct command *cmd_r);

/* The verb's canonical upper-case name ("VRFY"). */
const char *command_verb_name(enum verb verb);

/*
 * The argument of VRFY or EXPN, taken apart: an optional "<...>" around an
 * address is removed, and a trailing " SMTPUTF8" parameter (RFC 6531) is
 * recognised. When the remaining text is a single word containing '@' it
 * is an address: local/domain point at its two halves. Otherwise it is a
 * user name (a local part or free text), domain is NULL.
 */
struct lookup_arg {
	const char *text;	/* the whole query, brackets removed */
	size_t textlen;
	const char *local;	/* local part, or the whole name */
	size_t locallen;
	const char *domain;	/* NULL for a bare name */
	size_t domainlen;
	bool smtputf8;		/* the client gave the SMTPUTF8 parameter */
	bool has_8bit;		/* any byte of text has the high bit set */
};

enum lookup_arg_status {
	LOOKUP_ARG_OK,
	LOOKUP_ARG_EMPTY,	/* nothing to look up */
	LOOKUP_ARG_SYNTAX,	/* unbalanced brackets, empty local part or domain,
				   an unknown parameter, or over the length limits */
};

enum lookup_arg_status command_parse_lookup_arg(const char *arg, size_t len,
						struct lookup_arg *r);

/* True when s is a plausible EHLO/HELO argument: a domain name or an
 * address literal in brackets, printable ASCII, no blanks. */
bool command_valid_helo(const char *s, size_t len);

#endif
