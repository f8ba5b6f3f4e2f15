/*
 * tls_cert.c - the server certificate's expiry date, with OpenSSL's
 * libcrypto (already linked for the keys' digests). Main thread, at start.
 */
#include "tls_cert.h"

#include "log.h"

#include <errno.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <time.h>

int tls_cert_not_after(const char *path, int64_t *not_after)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return -errno;
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!x)
        return -EBADMSG;
    struct tm tm = {0};
    int ok = ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm);
    X509_free(x);
    if (!ok)
        return -EBADMSG;
    *not_after = (int64_t)timegm(&tm);
    return 0;
}

bool tls_cert_expiry_warning(const char *path, int64_t not_after, int64_t now, char *out,
                             size_t outlen)
{
    out[0] = '\0';
    if (not_after - now > TLS_CERT_WARN_S)
        return false;
    char when[32] = "?";
    time_t t = (time_t)not_after;
    struct tm tm;
    if (gmtime_r(&t, &tm))
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (not_after <= now)
        snprintf(out, outlen,
                 "TLS certificate %s expired at %s: clients that verify it refuse to connect; "
                 "renew it",
                 path, when);
    else
        snprintf(out, outlen, "TLS certificate %s expires at %s, in %lld days %lld hours: renew it",
                 path, when, (long long)((not_after - now) / 86400),
                 (long long)((not_after - now) % 86400 / 3600));
    return true;
}

void tls_cert_check(const char *path, struct metrics *m)
{
    aero_metric *g = metrics_register(
        m, AERO_METRIC_GAUGE, "aero_relay_tls_cert_expiry_timestamp_seconds",
        "notAfter of the gRPC port's TLS certificate ([tls] cert_file), Unix seconds; read at "
        "start.",
        NULL);
    int64_t not_after;
    if (tls_cert_not_after(path, &not_after) < 0)
        return;
    metrics_set(g, not_after);
    char msg[1200];
    if (tls_cert_expiry_warning(path, not_after, (int64_t)time(NULL), msg, sizeof(msg)))
        log_warn("%s", msg);
}
