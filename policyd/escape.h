/* SPDX-License-Identifier: GPL-2.0-only */
/* Escaping for log lines, sink records and JSON output (escape.c). */
#ifndef POLICYD_ESCAPE_H
#define POLICYD_ESCAPE_H

#include <stddef.h>
#include <stdint.h>

/* Escape bytes for a log line: printable ASCII as is, '"' and '\\'
 * escaped, the rest as \r \n \t or \xHH. Returns the length written. */
size_t pd_escape(char *out, size_t cap, const uint8_t *p, size_t n);
/* A process name (at most PD_COMM_LEN bytes) as one token: anything but
 * [A-Za-z0-9._+-] as \xHH. */
void pd_escape_comm(char *out, size_t cap, const char *comm);
/* An address and port as log lines write them: 1.2.3.4:5, [::1]:5. */
void pd_endpoint(char *out, size_t cap, uint8_t family, const uint32_t *addr, uint16_t port);
/* s as a JSON string on standard output */
void pd_json_str(const char *s);

#endif
