/*
 * tls_cert.h - the TLS files' checks, before anything starts (a missing,
 * unreadable or mismatched file is named with relay.ini's line), and the
 * server certificate's expiry: read once at start, shown as the gauge
 * aero_relay_tls_cert_expiry_timestamp_seconds and, when the certificate
 * has expired or expires within 14 days, one warning line. The files
 * themselves are loaded for serving by rpc_server.c. Main thread.
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

/*
 * [tls] cert_file and key_file, for --check and every start: each can be
 * read and holds a PEM certificate / an unencrypted PEM private key, and
 * the key is the certificate's. Returns 0; else -1 with cert_err and
 * key_err (each errlen bytes) "" or the reason for that file.
 */
int tls_cert_check_pair(const char *cert_file, const char *key_file, char *cert_err,
                        char *key_err, size_t errlen);

/*
 * A client CA file ([tls] or [control] client_ca_file): readable, at least
 * one PEM certificate and, with need_ca, every one of them a CA
 * certificate (X509_check_ca: a leaf there lets no client certificate
 * chain). Returns 0, or -1 with the reason in err.
 */
int tls_cert_check_ca_file(const char *path, bool need_ca, char *err, size_t errlen);

/* At start, with [tls] cert_file set: register and set the gauge, and log
 * the warning if there is one. A file that cannot be read is left to
 * rpc_server's start to refuse. */
void tls_cert_check(const char *path, struct metrics *m);

#endif
