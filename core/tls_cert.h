/*
 * tls_cert.h - the server certificate's expiry: read once at start, shown
 * as the gauge aero_relay_tls_cert_expiry_timestamp_seconds and, when the
 * certificate has expired or expires within 14 days, one warning line.
 * The files themselves are loaded for serving by rpc_server.c. Main thread.
 */
#ifndef AERO_TLS_CERT_H
#define AERO_TLS_CERT_H

#include "metrics.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Warn this long (and less) before a certificate expires. */
#define TLS_CERT_WARN_S (14 * 86400)

/*
 * notAfter of the first certificate in the PEM file at path, in Unix
 * seconds. Returns 0, -errno when the file cannot be read, -EBADMSG when it
 * holds no certificate or an unreadable time.
 */
int tls_cert_not_after(const char *path, int64_t *not_after);

/*
 * The warning for a certificate that ends at not_after, seen at now (Unix
 * seconds), written to out: true when it has expired or expires within
 * TLS_CERT_WARN_S, false (out "") otherwise.
 */
bool tls_cert_expiry_warning(const char *path, int64_t not_after, int64_t now, char *out,
                             size_t outlen);

/* At start, with [tls] cert_file set: register and set the gauge, and log
 * the warning if there is one. A file that cannot be read is left to
 * rpc_server's start to refuse. */
void tls_cert_check(const char *path, struct metrics *m);

#endif
