/*
 * test_config — config_parse() row by row: each row is one porterd.conf
 * text and either every field it must produce or the exact error.
 * config_load() is tested on its read and parse error paths only: its
 * success path opens the directory, which is directory.c's to test.
 */
#include "testutil.h"

#include <limits.h>

#include "porterd/config.h"
#include "porterd/directory.h"
#include "porterd/policy.h"

#define PATH "conf/porterd.conf"
#define P PATH ":"
#define BASE "hostname mx.example.org\ndirectory table aliases.table\n"
#define DEFAULT_LISTEN "0.0.0.0:25 [::]:25"
#define DEFAULT_TRUSTED "127.0.0.0/8 ::1/128"
#define DEFAULT_PUBLIC "postmaster hostmaster abuse"

/* Texts may hold NUL bytes, so each row carries its length. */
#define TEXT(t) (t), sizeof(t) - 1

struct ok_row {
	const char *text;
	size_t len;
	/* Expected fields; NULL means the default for BASE. Lists are joined
	 * with spaces, directories as "type|args|line" joined with ";",
	 * networks as net_format() writes them. */
	const char *listen;
	const char *hostname;
	const char *banner;
	const char *domains;
	const char *dirs;
	const char *vrfy;
	const char *expn;
	const char *maildir;
	uint64_t max_message_size;	/* 0: the default */
	uint64_t max_recipients;	/* 0: the default */
	const char *trusted;
	const char *public_addrs;
	/* Running as a daemon; NULL: the default (user porterd, the rest
	 * none); relative paths are taken from the current directory. */
	const char *user;
	const char *group;
	const char *chroot_dir;
	const char *pidfile;
	const char *log;	/* config_log_name(): "" is AUTO */
};

static const struct ok_row ok_rows[] = {
	/* every default */
	{ TEXT(BASE), .dirs = "table|aliases.table|2" },
	/* every directive given */
	{ TEXT("listen 127.0.0.1:2525\n"
	       "listen [::1]:2525\n"
	       "hostname Mail.Example.ORG\n"
	       "banner Porter  daemon v1#2 # not part of it\n"
	       "domains Example.ORG other-1.example\n"
	       "directory TABLE Aliases.table\n"
	       "directory ldap  uri=ldap://x/  base=dc=x\n"
	       "vrfy on\n"
	       "expn on\n"),
	  .listen = "127.0.0.1:2525 [::1]:2525", .hostname = "Mail.Example.ORG",
	  .banner = "Porter  daemon v1#2", .domains = "example.org other-1.example",
	  .dirs = "table|Aliases.table|6;ldap|uri=ldap://x/  base=dc=x|7",
	  .vrfy = "on", .expn = "on" },
	/* comments, blank lines, white space; line numbers still count them */
	{ TEXT("# porterd.conf\n"
	       "\n"
	       "   \n"
	       "\t# indented comment\n"
	       "  hostname   mx.example.org   # trailing comment\n"
	       "#directory table commented.out\n"
	       "directory table aliases.table#not-a-comment\n"),
	  .dirs = "table|aliases.table#not-a-comment|7" },
	/* tabs separate like spaces */
	{ TEXT("hostname\tmx.example.org\n"
	       "\tdirectory\ttable\taliases.table\tx\t\n"
	       "vrfy\t\toff\t\n"),
	  .dirs = "table|aliases.table\tx|2", .vrfy = "off" },
	/* CRLF line ends, and a last line with no line end */
	{ TEXT("hostname mx.example.org\r\n"
	       "banner hi there\r\n"
	       "\r\n"
	       "directory table aliases.table\r\n"
	       "vrfy off"),
	  .banner = "hi there", .dirs = "table|aliases.table|4", .vrfy = "off" },
	/* a bare CR at the very end is a line end too */
	{ TEXT(BASE "expn on\r"), .dirs = "table|aliases.table|2", .expn = "on" },
	/* enum values ignore case */
	{ TEXT(BASE "vrfy 252\n"), .dirs = "table|aliases.table|2", .vrfy = "252" },
	{ TEXT(BASE "vrfy OFF\n"), .dirs = "table|aliases.table|2", .vrfy = "off" },
	{ TEXT(BASE "vrfy On\n"), .dirs = "table|aliases.table|2", .vrfy = "on" },
	{ TEXT(BASE "expn ON\n"), .dirs = "table|aliases.table|2", .expn = "on" },
	{ TEXT(BASE "expn Off\n"), .dirs = "table|aliases.table|2", .expn = "off" },
	/* domains default to the hostname, lowercased; hostname keeps case */
	{ TEXT("hostname MX.Example.Org\ndirectory table t\n"),
	  .hostname = "MX.Example.Org", .domains = "mx.example.org",
	  .dirs = "table|t|2" },
	/* a hostname need not have a dot; digits and hyphens inside labels */
	{ TEXT("hostname mail\ndirectory table t\ndomains 1-2.example x\n"),
	  .hostname = "mail", .domains = "1-2.example x", .dirs = "table|t|2" },
	/* listen forms */
	{ TEXT(BASE "listen 0.0.0.0:1\n"), .listen = "0.0.0.0:1",
	  .dirs = "table|aliases.table|2" },
	{ TEXT(BASE "listen [::]:65535\n"), .listen = "[::]:65535",
	  .dirs = "table|aliases.table|2" },
	{ TEXT(BASE "listen [::ffff:192.0.2.1]:25\nlisten 192.0.2.1:025\n"),
	  .listen = "[::ffff:192.0.2.1]:25 192.0.2.1:025",
	  .dirs = "table|aliases.table|2" },
	/* directory: TYPE lowercased, no args is fine, args not interpreted */
	{ TEXT("hostname mx.example.org\ndirectory STATIC\n"
	       "directory nosuchtype whatever you like\n"),
	  .dirs = "static||2;nosuchtype|whatever you like|3" },
	/* mail acceptance: sizes with suffixes, relative maildir templates */
	{ TEXT(BASE "maildir /srv/mail/%d/%u\nmax_message_size 2048\nmax_recipients 7\n"),
	  .dirs = "table|aliases.table|2", .maildir = "/srv/mail/%d/%u",
	  .max_message_size = 2048, .max_recipients = 7 },
	{ TEXT(BASE "maildir mail/%u%%x\nmax_message_size 1k\n"),
	  .dirs = "table|aliases.table|2", .maildir = "conf/mail/%u%%x",
	  .max_message_size = 1024 },
	{ TEXT(BASE "max_message_size 50M\nmax_recipients 100000\n"),
	  .dirs = "table|aliases.table|2", .max_message_size = 50 * 1048576,
	  .max_recipients = 100000 },
	{ TEXT(BASE "max_message_size 1g\n"),
	  .dirs = "table|aliases.table|2", .max_message_size = 1073741824 },
	/* trusted: addresses are /32 or /128, host bits are cleared, IPv6
	 * may be bracketed, mapped IPv4 blocks become IPv4 */
	{ TEXT(BASE "trusted 10.0.0.0/8 192.0.2.1 2001:DB8::/32 [::1] 10.1.2.3/16\n"),
	  .dirs = "table|aliases.table|2",
	  .trusted = "10.0.0.0/8 192.0.2.1/32 2001:db8::/32 ::1/128 10.1.0.0/16" },
	{ TEXT(BASE "trusted\t[2001:db8::1]/64  ::ffff:172.16.0.0/108 # lab\n"),
	  .dirs = "table|aliases.table|2",
	  .trusted = "2001:db8::/64 172.16.0.0/12" },
	{ TEXT(BASE "trusted 0.0.0.0/0 ::/0\n"), .dirs = "table|aliases.table|2",
	  .trusted = "0.0.0.0/0 ::/0" },
	/* "none" alone trusts nobody */
	{ TEXT(BASE "trusted none\n"), .dirs = "table|aliases.table|2", .trusted = "" },
	{ TEXT(BASE "trusted None\n"), .dirs = "table|aliases.table|2", .trusted = "" },
	/* public: stored lowercase, local parts and full addresses */
	{ TEXT(BASE "public Postmaster abuse@Example.ORG a.b+c_d-e\n"),
	  .dirs = "table|aliases.table|2",
	  .public_addrs = "postmaster abuse@example.org a.b+c_d-e" },
	{ TEXT(BASE "public postmaster\n"), .dirs = "table|aliases.table|2",
	  .public_addrs = "postmaster" },
	{ TEXT(BASE "public !#$%&'*+-/=?^_`{|}~@x\n"),
	  .dirs = "table|aliases.table|2", .public_addrs = "!#$%&'*+-/=?^_`{|}~@x" },
	/* '#' inside a word is not a comment */
	{ TEXT(BASE "banner a#b\n"), .banner = "a#b",
	  .dirs = "table|aliases.table|2" },
	/* running as a daemon: every directive given; maildir is kept as
	 * the path inside the chroot */
	{ TEXT(BASE "user mail\ngroup daemon\nchroot /srv/porterd\n"
	       "maildir /srv/porterd/mail/%d/%u\npidfile /run/porterd/porterd.pid\n"
	       "log syslog\n"),
	  .dirs = "table|aliases.table|2", .user = "mail", .group = "daemon",
	  .chroot_dir = "/srv/porterd", .maildir = "/mail/%d/%u",
	  .pidfile = "/run/porterd/porterd.pid", .log = "syslog" },
	/* relative paths are taken from the file's directory; a chroot
	 * written with a slash at the end is the same directory */
	{ TEXT(BASE "pidfile run/porterd.pid\nchroot jail/\nmaildir jail/mail/%u\n"),
	  .dirs = "table|aliases.table|2", .pidfile = "conf/run/porterd.pid",
	  .chroot_dir = "conf/jail", .maildir = "/mail/%u" },
	{ TEXT(BASE "chroot /srv//\nmaildir /srv/%u\n"),
	  .dirs = "table|aliases.table|2", .chroot_dir = "/srv", .maildir = "/%u" },
	{ TEXT(BASE "chroot .\nmaildir mail/%u\n"),
	  .dirs = "table|aliases.table|2", .chroot_dir = "conf", .maildir = "/mail/%u" },
	{ TEXT(BASE "chroot /srv/./\nmaildir /srv/m/%u\n"),
	  .dirs = "table|aliases.table|2", .chroot_dir = "/srv", .maildir = "/m/%u" },
	/* chroot / changes no path */
	{ TEXT(BASE "chroot /\n"), .dirs = "table|aliases.table|2", .chroot_dir = "/" },
	{ TEXT(BASE "chroot /.//.\n"), .dirs = "table|aliases.table|2", .chroot_dir = "/" },
	/* the group alone; names as useradd allows them; log ignores case */
	{ TEXT(BASE "group mail\nlog STDERR\n"), .dirs = "table|aliases.table|2",
	  .group = "mail", .log = "stderr" },
	{ TEXT(BASE "user _porter.d-1$\n"), .dirs = "table|aliases.table|2",
	  .user = "_porter.d-1$" },
	{ TEXT(BASE "user Debian-exim\ngroup 42\n"), .dirs = "table|aliases.table|2",
	  .user = "Debian-exim", .group = "42" },
};

struct err_row {
	const char *text;
	size_t len;
	const char *err;
};

static const struct err_row err_rows[] = {
	/* whole file */
	{ TEXT(""), PATH ": no directory configured" },
	{ TEXT("# nothing\n\n"), PATH ": no directory configured" },
	{ TEXT("hostname mx.example.org\n"), PATH ": no directory configured" },
	/* lines */
	{ TEXT("vrfyy on\n"), P "1: unknown directive 'vrfyy'" },
	{ TEXT("Hostname mx.example.org\n"), P "1: unknown directive 'Hostname'" },
	{ TEXT("# c\n\n" BASE "vrfyy on\n"), P "5: unknown directive 'vrfyy'" },
	{ TEXT("# c\r\n\r\nvrfyy on\r\n"), P "3: unknown directive 'vrfyy'" },
	{ TEXT("vrfyy on\nexpn bad\n"), P "1: unknown directive 'vrfyy'" },
	{ TEXT(BASE "banner a\0b\n"), P "3: NUL byte in line" },
	{ TEXT("\x01" "x on\n"), P "1: unknown directive '?x'" },
	{ TEXT("xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxyz on\n"),
	  P "1: unknown directive '"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	  "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx...'" },
	/* vrfy, expn */
	{ TEXT("vrfy maybe\n"), P "1: vrfy: expected on, 252 or off, got 'maybe'" },
	{ TEXT("vrfy yes\n"), P "1: vrfy: expected on, 252 or off, got 'yes'" },
	{ TEXT("vrfy \x01" "x\n"), P "1: vrfy: expected on, 252 or off, got '?x'" },
	{ TEXT("vrfy on off\n"), P "1: vrfy: expected one value, got 'on off'" },
	{ TEXT("vrfy\n"), P "1: vrfy: missing value" },
	{ TEXT("vrfy   # off\n"), P "1: vrfy: missing value" },
	{ TEXT("vrfy on\nvrfy off\n"), P "2: 'vrfy' given twice (first on line 1)" },
	{ TEXT("expn 252\n"), P "1: expn: expected on or off, got '252'" },
	{ TEXT("expn\n"), P "1: expn: missing value" },
	{ TEXT("expn on\n\nexpn on\n"), P "3: 'expn' given twice (first on line 1)" },
	/* mail acceptance */
	{ TEXT("maildir /var/mail/%d\n"), P "1: maildir: the template has no %u" },
	{ TEXT("maildir /var/mail/%x/%u\n"),
	  P "1: maildir: unknown escape '%x' (known: %u, %d, %%)" },
	{ TEXT("maildir /var/mail/%u%\n"),
	  P "1: maildir: unknown escape '% ' (known: %u, %d, %%)" },
	{ TEXT("maildir a b\n"), P "1: maildir: expected one value, got 'a b'" },
	{ TEXT("max_message_size 1023\n"),
	  P "1: max_message_size: '1023' is not a number from 1024 to 1099511627776" },
	{ TEXT("max_message_size 2t\n"), P "1: max_message_size: '2t' is not a number" },
	{ TEXT("max_message_size k\n"),
	  P "1: max_message_size: 'k' is not a number from 1024 to 1099511627776" },
	{ TEXT("max_message_size 99999999999999999999999\n"),
	  P "1: max_message_size: '99999999999999999999999' is not a number" },
	{ TEXT("max_message_size 2048g\n"),
	  P "1: max_message_size: '2048g' is not a number from 1024 to 1099511627776" },
	{ TEXT("max_recipients 0\n"),
	  P "1: max_recipients: '0' is not a number from 1 to 100000" },
	{ TEXT("max_recipients -1\n"), P "1: max_recipients: '-1' is not a number" },
	/* running as a daemon */
	{ TEXT("user\n"), P "1: user: missing value" },
	{ TEXT("user a b\n"), P "1: user: expected one value, got 'a b'" },
	{ TEXT("user -porterd\n"), P "1: user: '-porterd' is not a user name" },
	{ TEXT("user a/b\n"), P "1: user: 'a/b' is not a user name" },
	{ TEXT("user a$b\n"), P "1: user: 'a$b' is not a user name" },
	{ TEXT("user $\n"), P "1: user: '$' is not a user name" },
	{ TEXT("user abcdefghijklmnopqrstuvwxyz0123456\n"),
	  P "1: user: 'abcdefghijklmnopqrstuvwxyz0123456' is not a user name" },
	{ TEXT("user porterd\nuser nobody\n"), P "2: 'user' given twice (first on line 1)" },
	{ TEXT("group mail:x\n"), P "1: group: 'mail:x' is not a group name" },
	{ TEXT("group caf\xc3\xa9\n"), P "1: group: 'caf?" "?' is not a group name" },
	{ TEXT("chroot\n"), P "1: chroot: missing value" },
	{ TEXT("chroot /a b\n"), P "1: chroot: expected one value, got '/a b'" },
	{ TEXT("pidfile /run/a /run/b\n"),
	  P "1: pidfile: expected one value, got '/run/a /run/b'" },
	{ TEXT("log file\n"), P "1: log: expected stderr or syslog, got 'file'" },
	{ TEXT("log stderr syslog\n"), P "1: log: expected one value, got 'stderr syslog'" },
	/* under chroot, maildir must be inside it */
	{ TEXT(BASE "chroot /srv/porterd\n"),
	  P "3: chroot: maildir '/var/mail/%d/%u' is not under /srv/porterd "
	  "(with chroot, maildir must be a path inside it)" },
	{ TEXT(BASE "maildir /srv/porterd-mail/%u\n# c\nchroot /srv/porterd/\n"),
	  P "5: chroot: maildir '/srv/porterd-mail/%u' is not under /srv/porterd "
	  "(with chroot, maildir must be a path inside it)" },
	/* trusted */
	{ TEXT("trusted\n"), P "1: trusted: missing value" },
	{ TEXT("trusted # 10.0.0.0/8\n"), P "1: trusted: missing value" },
	{ TEXT("trusted 10.0.0.0/33\n"),
	  P "1: trusted: '10.0.0.0/33' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted 127.0.0.1 ::1/129\n"),
	  P "1: trusted: '::1/129' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted localhost\n"),
	  P "1: trusted: 'localhost' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted /8\n"),
	  P "1: trusted: '/8' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted 10.0.0.0/\n"),
	  P "1: trusted: '10.0.0.0/' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted [127.0.0.1]\n"),
	  P "1: trusted: '[127.0.0.1]' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted 10.0.0.0/8,192.0.2.0/24\n"),
	  P "1: trusted: '10.0.0.0/8,192.0.2.0/24' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted none 10.0.0.0/8\n"),
	  P "1: trusted: 'none' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted 10.0.0.0/8 none\n"),
	  P "1: trusted: 'none' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted 10.\x01.0.0\n"),
	  P "1: trusted: '10.?.0.0' is not a network (ADDR or ADDR/PREFIX)" },
	{ TEXT("trusted ::1\ntrusted 10.0.0.0/8\n"),
	  P "2: 'trusted' given twice (first on line 1)" },
	/* public */
	{ TEXT("public\n"), P "1: public: missing value" },
	{ TEXT("public <postmaster>\n"),
	  P "1: public: '<postmaster>' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public abuse a..b\n"),
	  P "1: public: 'a..b' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public .a\n"),
	  P "1: public: '.a' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public a.@example.org\n"),
	  P "1: public: 'a.@example.org' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public @example.org\n"),
	  P "1: public: '@example.org' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public postmaster@\n"),
	  P "1: public: 'postmaster@' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public a@b@example.org\n"),
	  P "1: public: 'a@b@example.org' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public abuse@bad_domain\n"),
	  P "1: public: 'abuse@bad_domain' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public \"postmaster\"\n"),
	  P "1: public: '\"postmaster\"' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public caf\xc3\xa9\n"),
	  P "1: public: 'caf?" "?' is not a local part or address (LOCAL or LOCAL@DOMAIN)" },
	{ TEXT("public abuse\npublic postmaster\n"),
	  P "2: 'public' given twice (first on line 1)" },
	/* listen */
	{ TEXT("listen 127.0.0.1\n"), P "1: listen: '127.0.0.1' has no port" },
	{ TEXT("listen 127.0.0.1:\n"), P "1: listen: '127.0.0.1:' has no port" },
	{ TEXT("listen [::1]\n"), P "1: listen: '[::1]' has no port" },
	{ TEXT("listen [::1]25\n"), P "1: listen: '[::1]25' has no port" },
	{ TEXT("listen ::1\n"),
	  P "1: listen: '::1' has no port (IPv6 is written [ADDR]:PORT)" },
	{ TEXT("listen ::1:25\n"),
	  P "1: listen: '::1:25' has no port (IPv6 is written [ADDR]:PORT)" },
	{ TEXT("listen 127.0.0.1:0\n"),
	  P "1: listen: '127.0.0.1:0': port must be 1-65535" },
	{ TEXT("listen 127.0.0.1:65536\n"),
	  P "1: listen: '127.0.0.1:65536': port must be 1-65535" },
	{ TEXT("listen 127.0.0.1:000025\n"),
	  P "1: listen: '127.0.0.1:000025': port must be 1-65535" },
	{ TEXT("listen 127.0.0.1:25x\n"),
	  P "1: listen: '127.0.0.1:25x': port must be 1-65535" },
	{ TEXT("listen 127.0.0.1:+25\n"),
	  P "1: listen: '127.0.0.1:+25': port must be 1-65535" },
	{ TEXT("listen [::1]:smtp\n"),
	  P "1: listen: '[::1]:smtp': port must be 1-65535" },
	{ TEXT("listen :25\n"), P "1: listen: ':25' has no address" },
	{ TEXT("listen localhost:25\n"), P "1: listen: 'localhost' is not an IP address" },
	{ TEXT("listen 1.2.3:25\n"), P "1: listen: '1.2.3' is not an IP address" },
	{ TEXT("listen 1.2.3.256:25\n"), P "1: listen: '1.2.3.256' is not an IP address" },
	{ TEXT("listen [1.2.3.4]:25\n"), P "1: listen: '[1.2.3.4]' is not an IP address" },
	{ TEXT("listen []:25\n"), P "1: listen: '[]' is not an IP address" },
	{ TEXT("listen 1.2.3.4:25 5.6.7.8:25\n"),
	  P "1: listen: expected one value, got '1.2.3.4:25 5.6.7.8:25'" },
	{ TEXT("listen\n"), P "1: listen: missing value" },
	/* hostname */
	{ TEXT("hostname bad..name\n"),
	  P "1: hostname: 'bad..name' is not a valid domain name" },
	{ TEXT("hostname .example.org\n"),
	  P "1: hostname: '.example.org' is not a valid domain name" },
	{ TEXT("hostname example.org.\n"),
	  P "1: hostname: 'example.org.' is not a valid domain name" },
	{ TEXT("hostname -mx.example.org\n"),
	  P "1: hostname: '-mx.example.org' is not a valid domain name" },
	{ TEXT("hostname mx-.example.org\n"),
	  P "1: hostname: 'mx-.example.org' is not a valid domain name" },
	{ TEXT("hostname mail_1.example.org\n"),
	  P "1: hostname: 'mail_1.example.org' is not a valid domain name" },
	{ TEXT("hostname [192.0.2.1]\n"),
	  P "1: hostname: '[192.0.2.1]' is not a valid domain name" },
	{ TEXT("hostname caf\xc3\xa9.example\n"),
	  P "1: hostname: 'caf??.example' is not a valid domain name" },
	{ TEXT("hostname a.example b.example\n"),
	  P "1: hostname: expected one value, got 'a.example b.example'" },
	{ TEXT("hostname\n"), P "1: hostname: missing value" },
	{ TEXT("hostname a.example\nhostname a.example\n"),
	  P "2: 'hostname' given twice (first on line 1)" },
	/* banner */
	{ TEXT("banner\n"), P "1: banner: missing value" },
	{ TEXT("banner # just a comment\n"), P "1: banner: missing value" },
	{ TEXT("banner caf\xc3\xa9\n"), P "1: banner: only printable ASCII is allowed" },
	{ TEXT("banner a\x01" "b\n"), P "1: banner: only printable ASCII is allowed" },
	{ TEXT("banner a\tb\n"), P "1: banner: only printable ASCII is allowed" },
	{ TEXT("banner a\rb\n"), P "1: banner: only printable ASCII is allowed" },
	{ TEXT("banner a\nbanner b\n"), P "2: 'banner' given twice (first on line 1)" },
	/* domains */
	{ TEXT("domains\n"), P "1: domains: missing value" },
	{ TEXT("domains a.example bad_one\n"),
	  P "1: domains: 'bad_one' is not a valid domain name" },
	{ TEXT("domains a.example\ndomains b.example\n"),
	  P "2: 'domains' given twice (first on line 1)" },
	/* directory */
	{ TEXT("directory\n"), P "1: directory: missing value" },
	{ TEXT("directory # table x\n"), P "1: directory: missing value" },
	/* a bad line after good ones is still reported with its number */
	{ TEXT(BASE "listen [::1]:25\nlisten ::1\n"),
	  P "4: listen: '::1' has no port (IPv6 is written [ADDR]:PORT)" },
};

static void join_strings(char *buf, size_t size, char **v, size_t n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		int w = snprintf(buf + used, size - used, "%s%s", i ? " " : "", v[i]);

		ck_assert(w >= 0 && (size_t)w < size - used);
		used += (size_t)w;
	}
}

static void join_dirs(char *buf, size_t size, const struct config *cfg)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < cfg->ndirectories; i++) {
		const struct config_directory *d = &cfg->directories[i];
		int w = snprintf(buf + used, size - used, "%s%s|%s|%u", i ? ";" : "",
				 d->type, d->args, d->line);

		ck_assert(w >= 0 && (size_t)w < size - used);
		used += (size_t)w;
	}
}

static void join_nets(char *buf, size_t size, const struct net *v, size_t n)
{
	size_t used = 0;

	buf[0] = '\0';
	for (size_t i = 0; i < n; i++) {
		char net[NET_TEXT_MAX];
		int w;

		ck_assert(net_format(&v[i], net, sizeof(net)));
		w = snprintf(buf + used, size - used, "%s%s", i ? " " : "", net);
		ck_assert(w >= 0 && (size_t)w < size - used);
		used += (size_t)w;
	}
}

static const char *or_default(const char *s, const char *def)
{
	return s != NULL ? s : def;
}

/* An expected path: relative ones are taken from the current directory,
 * as config_parse() does; NULL stays NULL. */
static const char *expected_path(const char *s, char *buf, size_t size)
{
	char cwd[4096];

	if (s == NULL || s[0] == '/')
		return s;
	ck_assert_ptr_nonnull(getcwd(cwd, sizeof(cwd)));
	ck_assert_int_lt(snprintf(buf, size, "%s/%s", cwd, s), (int)size);
	return buf;
}

/* Both NULL, or both the same string. */
static void check_optional(const char *got, const char *want, const char *what)
{
	if (want == NULL)
		ck_assert_msg(got == NULL, "%s: got '%s', want none", what, got);
	else
		ck_assert_msg(got != NULL && strcmp(got, want) == 0,
			      "%s: got '%s', want '%s'", what, got ? got : "(none)", want);
}

static void check_daemon_fields(const struct config *cfg, const struct ok_row *r)
{
	char buf[8192];

	ck_assert_str_eq(cfg->user, or_default(r->user, "porterd"));
	ck_assert(cfg->user_given == (r->user != NULL));
	check_optional(cfg->group, r->group, "group");
	check_optional(cfg->chroot_dir, expected_path(r->chroot_dir, buf, sizeof(buf)),
		       "chroot");
	check_optional(cfg->pidfile, expected_path(r->pidfile, buf, sizeof(buf)),
		       "pidfile");
	ck_assert_str_eq(config_log_name(cfg->log), or_default(r->log, ""));
}

static void check_fields(const struct config *cfg, const struct ok_row *r)
{
	char buf[8192];

	join_strings(buf, sizeof(buf), cfg->listen, cfg->nlisten);
	ck_assert_str_eq(buf, or_default(r->listen, DEFAULT_LISTEN));
	ck_assert_str_eq(cfg->hostname, or_default(r->hostname, "mx.example.org"));
	ck_assert_str_eq(cfg->banner, or_default(r->banner, "porterd"));
	join_strings(buf, sizeof(buf), cfg->domains, cfg->ndomains);
	ck_assert_str_eq(buf, or_default(r->domains, "mx.example.org"));
	join_dirs(buf, sizeof(buf), cfg);
	ck_assert_str_eq(buf, r->dirs);
	ck_assert_str_eq(config_vrfy_name(cfg->vrfy), or_default(r->vrfy, "252"));
	ck_assert_str_eq(config_expn_name(cfg->expn), or_default(r->expn, "off"));
	ck_assert_str_eq(cfg->maildir, expected_path(or_default(r->maildir, "/var/mail/%d/%u"),
						     buf, sizeof(buf)));
	ck_assert_uint_eq(cfg->max_message_size,
			  r->max_message_size ? r->max_message_size : 10485760);
	ck_assert_uint_eq(cfg->max_recipients,
			  r->max_recipients ? r->max_recipients : 100);
	join_nets(buf, sizeof(buf), cfg->trusted, cfg->ntrusted);
	ck_assert_str_eq(buf, or_default(r->trusted, DEFAULT_TRUSTED));
	ck_assert(cfg->ntrusted > 0 || cfg->trusted == NULL);
	join_strings(buf, sizeof(buf), cfg->public_addrs, cfg->npublic);
	ck_assert_str_eq(buf, or_default(r->public_addrs, DEFAULT_PUBLIC));
	check_daemon_fields(cfg, r);
	ck_assert_uint_eq(cfg->refs, 1);
	ck_assert_ptr_null(cfg->dir);
}

START_TEST(test_parse_ok)
{
	const struct ok_row r = ok_rows[_i];
	struct config *cfg = NULL;
	char err[256] = "";

	ck_assert_msg(config_parse(r.text, r.len, PATH, &cfg, err, sizeof(err)) == 0,
		      "row %d: %s", _i, err);
	check_fields(cfg, &r);
	config_unref(&cfg);
	ck_assert_ptr_null(cfg);
}
END_TEST

START_TEST(test_parse_err)
{
	const struct err_row *r = &err_rows[_i];
	struct config *cfg = (struct config *)&cfg;	/* must be reset */
	char err[512] = "";

	ck_assert_int_eq(config_parse(r->text, r->len, PATH, &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, r->err);
}
END_TEST

/* ---- generated rows: bounds ------------------------------------------ */

static char *repeat_lines(const char *fmt, int n, const char *tail)
{
	size_t size = (size_t)n * 64 + strlen(tail) + 1, used = 0;
	char *text = malloc(size);

	ck_assert_ptr_nonnull(text);
	text[0] = '\0';
	for (int i = 0; i < n; i++)
		used += (size_t)snprintf(text + used, size - used, fmt, i + 1);
	snprintf(text + used, size - used, "%s", tail);
	return text;
}

static int parse_str(const char *text, struct config **cfg_r, char *err, size_t size)
{
	err[0] = '\0';
	return config_parse(text, strlen(text), PATH, cfg_r, err, size);
}

START_TEST(test_listen_max)
{
	char err[256];
	struct config *cfg;
	char *text = repeat_lines("listen 127.0.0.1:%d\n", CONFIG_LISTEN_MAX, BASE);

	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->nlisten, CONFIG_LISTEN_MAX);
	ck_assert_str_eq(cfg->listen[CONFIG_LISTEN_MAX - 1], "127.0.0.1:16");
	config_unref(&cfg);
	free(text);

	text = repeat_lines("listen 127.0.0.1:%d\n", CONFIG_LISTEN_MAX + 1, BASE);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "17: listen: more than 16 addresses");
	free(text);
}
END_TEST

START_TEST(test_directories_max)
{
	char err[256];
	struct config *cfg;
	char *text = repeat_lines("directory table t%d\n", CONFIG_DIRECTORIES_MAX,
				  "hostname mx.example.org\n");

	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->ndirectories, CONFIG_DIRECTORIES_MAX);
	ck_assert_str_eq(cfg->directories[15].args, "t16");
	ck_assert_uint_eq(cfg->directories[15].line, 16);
	config_unref(&cfg);
	free(text);

	text = repeat_lines("directory table t%d\n", CONFIG_DIRECTORIES_MAX + 1, "");
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "17: directory: more than 16 directories");
	free(text);
}
END_TEST

START_TEST(test_domains_max)
{
	char err[256];
	struct config *cfg;
	char *words = repeat_lines("D%d.example ", CONFIG_DOMAINS_MAX, "");
	char text[CONFIG_LINE_MAX];

	snprintf(text, sizeof(text), BASE "domains %s\n", words);
	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->ndomains, CONFIG_DOMAINS_MAX);
	ck_assert_str_eq(cfg->domains[0], "d1.example");
	ck_assert_str_eq(cfg->domains[255], "d256.example");
	config_unref(&cfg);
	free(words);

	words = repeat_lines("d%d.example ", CONFIG_DOMAINS_MAX + 1, "");
	snprintf(text, sizeof(text), BASE "domains %s\n", words);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "3: domains: more than 256 domains");
	free(words);
}
END_TEST

START_TEST(test_trusted_max)
{
	char err[256];
	struct config *cfg;
	char *words = repeat_lines("::%d ", CONFIG_TRUSTED_MAX, "");
	char text[CONFIG_LINE_MAX];

	snprintf(text, sizeof(text), BASE "trusted %s\n", words);
	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->ntrusted, CONFIG_TRUSTED_MAX);
	ck_assert_uint_eq(cfg->trusted[255].prefix, 128);
	ck_assert_uint_eq(cfg->trusted[255].addr[14], 0x02);
	ck_assert_uint_eq(cfg->trusted[255].addr[15], 0x56);
	config_unref(&cfg);
	free(words);

	words = repeat_lines("::%d ", CONFIG_TRUSTED_MAX + 1, "");
	snprintf(text, sizeof(text), BASE "trusted %s\n", words);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "3: trusted: more than 256 networks");
	free(words);
}
END_TEST

START_TEST(test_public_max)
{
	char err[256];
	struct config *cfg;
	char *words = repeat_lines("P%d ", CONFIG_PUBLIC_MAX, "");
	char text[CONFIG_LINE_MAX];

	snprintf(text, sizeof(text), BASE "public %s\n", words);
	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->npublic, CONFIG_PUBLIC_MAX);
	ck_assert_str_eq(cfg->public_addrs[0], "p1");
	ck_assert_str_eq(cfg->public_addrs[255], "p256");
	config_unref(&cfg);
	free(words);

	words = repeat_lines("p%d ", CONFIG_PUBLIC_MAX + 1, "");
	snprintf(text, sizeof(text), BASE "public %s\n", words);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "3: public: more than 256 addresses");
	free(words);
}
END_TEST

/* A local part of 64 octets is the longest a public entry may name. */
START_TEST(test_public_lengths)
{
	char l64[65], text[256], expect[256], err[256];
	struct config *cfg;

	memset(l64, 'a', 64), l64[64] = '\0';
	snprintf(text, sizeof(text), BASE "public %s@x.example\n", l64);
	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(strlen(cfg->public_addrs[0]), 64 + strlen("@x.example"));
	config_unref(&cfg);

	snprintf(text, sizeof(text), BASE "public a%s\n", l64);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	snprintf(expect, sizeof(expect), P "3: public: 'a%s' is not a local "
		 "part or address (LOCAL or LOCAL@DOMAIN)", l64);
	ck_assert_str_eq(err, expect);
}
END_TEST

static int parse_hostname(const char *name, char *err, size_t size)
{
	char text[1024];
	struct config *cfg;
	int rc;

	snprintf(text, sizeof(text), "directory table t\nhostname %s\n", name);
	rc = parse_str(text, &cfg, err, size);
	if (rc == 0) {
		ck_assert_str_eq(cfg->hostname, name);
		config_unref(&cfg);
	}
	return rc;
}

START_TEST(test_domain_lengths)
{
	char l63[64], l62[63], l64[65], name[300], expect[512], err[512];

	memset(l63, 'a', 63), l63[63] = '\0';
	memset(l62, 'b', 62), l62[62] = '\0';
	memset(l64, 'c', 64), l64[64] = '\0';

	ck_assert_msg(parse_hostname(l63, err, sizeof(err)) == 0, "%s", err);
	ck_assert_int_eq(parse_hostname(l64, err, sizeof(err)), -1);
	snprintf(expect, sizeof(expect),
		 P "2: hostname: '%s' is not a valid domain name", l64);
	ck_assert_str_eq(err, expect);

	/* 63.63.63.63 is 255 octets; one more label octet is too long */
	snprintf(name, sizeof(name), "%s.%s.%s.%s", l63, l63, l63, l63);
	ck_assert_uint_eq(strlen(name), 255);
	ck_assert_msg(parse_hostname(name, err, sizeof(err)) == 0, "%s", err);
	snprintf(name, sizeof(name), "%s.%s.%s.%s.x", l63, l63, l63, l62);
	ck_assert_uint_eq(strlen(name), 256);
	ck_assert_int_eq(parse_hostname(name, err, sizeof(err)), -1);
	/* a long value is quoted cut short */
	snprintf(expect, sizeof(expect),
		 P "2: hostname: '%s.%.16s...' is not a valid domain name", l63, l63);
	ck_assert_str_eq(err, expect);
}
END_TEST

START_TEST(test_line_max)
{
	size_t size = CONFIG_LINE_MAX + 64;
	char *text = malloc(size), err[256];
	struct config *cfg;
	size_t n = strlen(BASE) + strlen("banner ");

	ck_assert_ptr_nonnull(text);
	/* exactly CONFIG_LINE_MAX octets, then CRLF: fine */
	memset(text, 'x', size);
	memcpy(text, BASE "banner ", n);
	memcpy(text + strlen(BASE) + CONFIG_LINE_MAX, "\r\n", 3);
	ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(strlen(cfg->banner), CONFIG_LINE_MAX - strlen("banner "));
	config_unref(&cfg);

	/* one more is too long, CR or not */
	memcpy(text + strlen(BASE) + CONFIG_LINE_MAX, "x\n", 3);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "3: line longer than 4096 bytes");
	ck_assert_ptr_null(cfg);
	memcpy(text + strlen(BASE) + CONFIG_LINE_MAX, "x", 2);
	ck_assert_int_eq(parse_str(text, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, P "3: line longer than 4096 bytes");
	free(text);
}
END_TEST

/* ---- defaults, paths, names, references ------------------------------ */

START_TEST(test_default_hostname)
{
	char host[256] = "", lower[256], err[256];
	struct config *cfg;

	ck_assert_int_eq(gethostname(host, sizeof(host) - 1), 0);
	for (size_t i = 0; i <= strlen(host); i++)
		lower[i] = (host[i] >= 'A' && host[i] <= 'Z') ? (char)(host[i] + 32) : host[i];
	ck_assert_msg(parse_str("directory table t\n", &cfg, err, sizeof(err)) == 0,
		      "%s (is this machine's host name '%s' valid?)", err, host);
	ck_assert_str_eq(cfg->hostname, host);
	ck_assert_uint_eq(cfg->ndomains, 1);
	ck_assert_str_eq(cfg->domains[0], lower);
	config_unref(&cfg);

	/* an explicit hostname is the domains default, wherever it is given */
	ck_assert_int_eq(parse_str("directory table t\nhostname A.Example\n",
				   &cfg, err, sizeof(err)), 0);
	ck_assert_str_eq(cfg->domains[0], "a.example");
	ck_assert_uint_eq(cfg->ndomains, 1);
	config_unref(&cfg);
}
END_TEST

static const struct {
	const char *path;
	const char *base_dir;
} path_rows[] = {
	{ "conf/porterd.conf", "conf" },
	{ "porterd.conf", "." },
	{ "/etc/porterd/porterd.conf", "/etc/porterd" },
	{ "/porterd.conf", "/" },
	{ "a//b.conf", "a" },
	{ "./x.conf", "." },
};

START_TEST(test_paths)
{
	struct config *cfg;
	char err[256];

	ck_assert_msg(config_parse(TEXT(BASE), path_rows[_i].path, &cfg,
				   err, sizeof(err)) == 0, "%s", err);
	ck_assert_str_eq(cfg->path, path_rows[_i].path);
	ck_assert_str_eq(cfg->base_dir, path_rows[_i].base_dir);
	config_unref(&cfg);
}
END_TEST

START_TEST(test_error_path_in_message)
{
	struct config *cfg;
	char err[256];

	ck_assert_int_eq(config_parse(TEXT("vrfyy on\n"), "/etc/porterd/p.conf", &cfg,
				      err, sizeof(err)), -1);
	ck_assert_str_eq(err, "/etc/porterd/p.conf:1: unknown directive 'vrfyy'");
	ck_assert_int_eq(config_parse(TEXT(""), "x.conf", &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "x.conf: no directory configured");
	ck_assert_int_eq(config_parse(NULL, 0, "x.conf", &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "x.conf: no directory configured");
}
END_TEST

START_TEST(test_small_error_buffer)
{
	struct config *cfg;
	char err[12];

	memset(err, '#', sizeof(err));
	ck_assert_int_eq(config_parse(TEXT("vrfy maybe\n"), PATH, &cfg, err, 10), -1);
	ck_assert_str_eq(err, "conf/port");
	ck_assert_int_eq(err[10], '#');	/* nothing past errsize */
	ck_assert_int_eq(config_parse(TEXT("vrfy maybe\n"), PATH, &cfg, NULL, 0), -1);
	ck_assert_ptr_null(cfg);
}
END_TEST

START_TEST(test_names)
{
	static const enum vrfy_mode vrfy[] = { VRFY_ON, VRFY_252, VRFY_OFF };
	static const enum expn_mode expn[] = { EXPN_ON, EXPN_OFF };
	struct config *cfg;
	char text[128], err[256];

	ck_assert_str_eq(config_vrfy_name(VRFY_ON), "on");
	ck_assert_str_eq(config_vrfy_name(VRFY_252), "252");
	ck_assert_str_eq(config_vrfy_name(VRFY_OFF), "off");
	ck_assert_str_eq(config_expn_name(EXPN_ON), "on");
	ck_assert_str_eq(config_expn_name(EXPN_OFF), "off");
	ck_assert_str_eq(config_vrfy_name((enum vrfy_mode)42), "?");
	ck_assert_str_eq(config_expn_name((enum expn_mode)42), "?");
	ck_assert_str_eq(config_log_name(CONFIG_LOG_AUTO), "");
	ck_assert_str_eq(config_log_name(CONFIG_LOG_STDERR), "stderr");
	ck_assert_str_eq(config_log_name(CONFIG_LOG_SYSLOG), "syslog");

	/* each name parses back to its mode */
	for (size_t i = 0; i < 3; i++) {
		snprintf(text, sizeof(text), BASE "vrfy %s\n", config_vrfy_name(vrfy[i]));
		ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(cfg->vrfy, vrfy[i]);
		config_unref(&cfg);
	}
	for (size_t i = 0; i < 2; i++) {
		snprintf(text, sizeof(text), BASE "expn %s\n", config_expn_name(expn[i]));
		ck_assert_msg(parse_str(text, &cfg, err, sizeof(err)) == 0, "%s", err);
		ck_assert_int_eq(cfg->expn, expn[i]);
		config_unref(&cfg);
	}
	/* the documented defaults */
	ck_assert_int_eq(parse_str(BASE, &cfg, err, sizeof(err)), 0);
	ck_assert_int_eq(cfg->vrfy, VRFY_252);
	ck_assert_int_eq(cfg->expn, EXPN_OFF);
	config_unref(&cfg);
}
END_TEST

START_TEST(test_refcount)
{
	struct config *a, *b, *none = NULL;
	char err[256];

	ck_assert_int_eq(parse_str(BASE, &a, err, sizeof(err)), 0);
	ck_assert_uint_eq(a->refs, 1);
	b = config_ref(a);
	ck_assert_ptr_eq(b, a);
	ck_assert_uint_eq(a->refs, 2);

	config_unref(&a);
	ck_assert_ptr_null(a);
	/* still alive through b (ASan reports a use after free otherwise) */
	ck_assert_uint_eq(b->refs, 1);
	ck_assert_str_eq(b->hostname, "mx.example.org");
	ck_assert_str_eq(b->directories[0].args, "aliases.table");

	/* the last reference frees it; a second free would be reported */
	config_unref(&b);
	ck_assert_ptr_null(b);
	config_unref(&b);
	config_unref(&none);
	ck_assert_ptr_null(none);
}
END_TEST

/* The last unref frees the directory too: a leak here fails under ASan. */
START_TEST(test_unref_frees_directory)
{
	struct config *cfg, *ref;
	char err[256];

	ck_assert_int_eq(parse_str(BASE, &cfg, err, sizeof(err)), 0);
	cfg->dir = directory_new(cfg);
	ck_assert_ptr_nonnull(cfg->dir);
	ref = config_ref(cfg);
	config_unref(&ref);
	ck_assert_ptr_nonnull(cfg->dir);	/* not while a reference is left */
	config_unref(&cfg);
	ck_assert_ptr_null(cfg);
}
END_TEST

/* ---- config_load: reading the file ----------------------------------- */

START_TEST(test_load_missing)
{
	struct config *cfg = (struct config *)&cfg;
	char err[256];

	ck_assert_int_eq(config_load("/nonexistent/porterd.conf", &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, "/nonexistent/porterd.conf: cannot read: No such file or directory");
}
END_TEST

START_TEST(test_load_not_a_file)
{
	struct config *cfg;
	char err[256];

	ck_assert_int_eq(config_load("/", &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_null(cfg);
	ck_assert_str_eq(err, "/: cannot read: not a regular file");
}
END_TEST

START_TEST(test_load_parse_error)
{
	char *path = write_temp_file("# CRLF file\r\nhostname mx.example.org\r\n"
				     "vrfy maybe\r\ndirectory table t\r\n");
	struct config *cfg = (struct config *)&cfg;
	char err[256], expect[256];

	ck_assert_int_eq(config_load(path, &cfg, err, sizeof(err)), -1);
	ck_assert_ptr_null(cfg);
	snprintf(expect, sizeof(expect),
		 "%s:3: vrfy: expected on, 252 or off, got 'maybe'", path);
	ck_assert_str_eq(err, expect);
	unlink(path);
	free(path);
}
END_TEST

/* ---- limits: defaults, values, errors --------------------------------- */

START_TEST(test_limit_defaults)
{
	struct config *cfg = NULL;
	char err[256];

	ck_assert_msg(config_parse(TEXT(BASE), PATH, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->max_clients, 1000);
	ck_assert_uint_eq(cfg->max_clients_per_ip, 50);
	ck_assert_uint_eq(cfg->command_timeout, 300);
	ck_assert_uint_eq(cfg->data_timeout, 180);
	ck_assert_uint_eq(cfg->shutdown_timeout, 30);
	ck_assert_uint_eq(cfg->error_soft_limit, 5);
	ck_assert_uint_eq(cfg->error_hard_limit, 20);
	ck_assert_uint_eq(cfg->error_delay, 1);
	ck_assert_uint_eq(cfg->vrfy_rate.count, 30);
	ck_assert_uint_eq(cfg->vrfy_rate.period, 60);
	ck_assert_uint_eq(cfg->rate_table_size, 100 * 1024);
	ck_assert_uint_eq(cfg->rate_ipv6_prefix, 64);
	config_unref(&cfg);
}
END_TEST

START_TEST(test_limit_values)
{
	static const char text[] = BASE
		"max_clients 5\nmax_clients_per_ip 2\ncommand_timeout 1h\n"
		"data_timeout 90\nerror_soft_limit 1\nerror_hard_limit 3\n"
		"error_delay 0s\nvrfy_rate 5/2h\nrate_table_size 16\nrate_ipv6_prefix 48\n"
		"shutdown_timeout 0\n";
	struct config *cfg = NULL;
	char err[256];

	ck_assert_msg(config_parse(TEXT(text), PATH, &cfg, err, sizeof(err)) == 0, "%s", err);
	ck_assert_uint_eq(cfg->max_clients, 5);
	ck_assert_uint_eq(cfg->max_clients_per_ip, 2);
	ck_assert_uint_eq(cfg->command_timeout, 3600);
	ck_assert_uint_eq(cfg->data_timeout, 90);
	ck_assert_uint_eq(cfg->shutdown_timeout, 0);
	ck_assert_uint_eq(cfg->error_soft_limit, 1);
	ck_assert_uint_eq(cfg->error_hard_limit, 3);
	ck_assert_uint_eq(cfg->error_delay, 0);
	ck_assert_uint_eq(cfg->vrfy_rate.count, 5);
	ck_assert_uint_eq(cfg->vrfy_rate.period, 7200);
	ck_assert_uint_eq(cfg->rate_table_size, 16);
	ck_assert_uint_eq(cfg->rate_ipv6_prefix, 48);
	config_unref(&cfg);
}
END_TEST

static const struct err_row limit_err_rows[] = {
	{ TEXT("command_timeout 0\n"),
	  P "1: command_timeout: '0' is not a time from 1s to 3600s (a number with s, m or h)" },
	{ TEXT("command_timeout 2d\n"),
	  P "1: command_timeout: '2d' is not a time from 1s to 3600s (a number with s, m or h)" },
	{ TEXT("data_timeout 61m\n"),
	  P "1: data_timeout: '61m' is not a time from 1s to 3600s (a number with s, m or h)" },
	{ TEXT("error_delay s\n"),
	  P "1: error_delay: 's' is not a time from 0s to 60s (a number with s, m or h)" },
	{ TEXT("vrfy_rate 30\n"),
	  P "1: vrfy_rate: '30' is not a rate N/PERIOD (e.g. 30/1m), N from 1 to 1000000" },
	{ TEXT("vrfy_rate 0/1m\n"),
	  P "1: vrfy_rate: '0/1m' is not a rate N/PERIOD (e.g. 30/1m), N from 1 to 1000000" },
	{ TEXT("vrfy_rate 30/0s\n"),
	  P "1: vrfy_rate: '30/0s' is not a rate N/PERIOD (e.g. 30/1m), N from 1 to 1000000" },
	{ TEXT("vrfy_rate /1m\n"),
	  P "1: vrfy_rate: '/1m' is not a rate N/PERIOD (e.g. 30/1m), N from 1 to 1000000" },
	{ TEXT("vrfy_rate 3x/1m\n"),
	  P "1: vrfy_rate: '3x/1m' is not a rate N/PERIOD (e.g. 30/1m), N from 1 to 1000000" },
	{ TEXT("max_clients 0\n"), P "1: max_clients: '0' is not a number from 1 to 1000000" },
	{ TEXT("rate_ipv6_prefix 129\n"),
	  P "1: rate_ipv6_prefix: '129' is not a number from 16 to 128" },
};

START_TEST(test_limit_errors)
{
	const struct err_row *r = &limit_err_rows[_i];
	struct config *cfg = NULL;
	char err[512] = "";

	ck_assert_int_eq(config_parse(r->text, r->len, PATH, &cfg, err, sizeof(err)), -1);
	ck_assert_str_eq(err, r->err);
}
END_TEST

static Suite *config_suite(void)
{
	Suite *s = suite_create("config");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_parse_ok, 0, (int)(sizeof(ok_rows) / sizeof(ok_rows[0])));
	tcase_add_loop_test(tc, test_parse_err, 0, (int)(sizeof(err_rows) / sizeof(err_rows[0])));
	tcase_add_test(tc, test_limit_defaults);
	tcase_add_test(tc, test_limit_values);
	tcase_add_loop_test(tc, test_limit_errors, 0,
			    (int)(sizeof(limit_err_rows) / sizeof(limit_err_rows[0])));
	tcase_add_test(tc, test_listen_max);
	tcase_add_test(tc, test_directories_max);
	tcase_add_test(tc, test_domains_max);
	tcase_add_test(tc, test_trusted_max);
	tcase_add_test(tc, test_public_max);
	tcase_add_test(tc, test_public_lengths);
	tcase_add_test(tc, test_domain_lengths);
	tcase_add_test(tc, test_line_max);
	tcase_add_test(tc, test_default_hostname);
	tcase_add_loop_test(tc, test_paths, 0, (int)(sizeof(path_rows) / sizeof(path_rows[0])));
	tcase_add_test(tc, test_error_path_in_message);
	tcase_add_test(tc, test_small_error_buffer);
	tcase_add_test(tc, test_names);
	tcase_add_test(tc, test_refcount);
	tcase_add_test(tc, test_unref_frees_directory);
	suite_add_tcase(s, tc);

	tc = tcase_create("load");
	tcase_add_test(tc, test_load_missing);
	tcase_add_test(tc, test_load_not_a_file);
	tcase_add_test(tc, test_load_parse_error);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return testutil_run(config_suite());
}
