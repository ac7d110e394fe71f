// SPDX-License-Identifier: GPL-2.0-only
/*
 * Escaping: what a process sent, its name and its addresses as log lines
 * and sink records write them (one line per record, whatever the bytes),
 * and strings in JSON output.
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <sys/socket.h>

#include "escape.h"
#include "policyd.h"

/* Append \xHH for c at out + o; returns the new length. */
static size_t hex_byte(char *out, size_t o, uint8_t c)
{
	static const char hex[] = "0123456789abcdef";

	out[o++] = '\\';
	out[o++] = 'x';
	out[o++] = hex[c >> 4];
	out[o++] = hex[c & 15];
	return o;
}

size_t pd_escape(char *out, size_t cap, const uint8_t *p, size_t n)
{
	size_t o = 0;

	for (size_t i = 0; i < n && o + 5 < cap; i++) {
		uint8_t c = p[i];

		if (c == '"' || c == '\\') {
			out[o++] = '\\';
			out[o++] = (char)c;
		} else if (c == '\r' || c == '\n' || c == '\t') {
			out[o++] = '\\';
			out[o++] = c == '\r' ? 'r' : c == '\n' ? 'n' : 't';
		} else if (c >= 0x20 && c < 0x7f) {
			out[o++] = (char)c;
		} else {
			o = hex_byte(out, o, c);
		}
	}
	out[o] = '\0';
	return o;
}

void pd_escape_comm(char *out, size_t cap, const char *comm)
{
	size_t o = 0;

	for (size_t i = 0; i < PD_COMM_LEN && comm[i] && o + 5 < cap; i++) {
		uint8_t c = (uint8_t)comm[i];

		if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		    c == '.' || c == '_' || c == '+' || c == '-')
			out[o++] = (char)c;
		else
			o = hex_byte(out, o, c);
	}
	out[o] = '\0';
}

void pd_endpoint(char *out, size_t cap, uint8_t family, const uint32_t *addr, uint16_t port)
{
	char a[INET6_ADDRSTRLEN] = "?";

	if (family == AF_INET6) {
		inet_ntop(AF_INET6, addr, a, sizeof(a));
		snprintf(out, cap, "[%s]:%u", a, port);
	} else {
		inet_ntop(AF_INET, addr, a, sizeof(a));
		snprintf(out, cap, "%s:%u", a, port);
	}
}

void pd_json_str(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;

		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}
