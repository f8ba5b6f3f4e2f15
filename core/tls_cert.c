/*
 * tls_cert.c - the TLS files' checks and the server certificate's expiry
 * date, with OpenSSL's libcrypto (already linked for the keys' digests).
 * Main thread, at start and under --check.
 */
#include "tls_cert.h"

#include "log.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
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

/* No passphrase is ever asked for: an encrypted key is refused (the
 * default callback would prompt on the terminal). */
static int no_passphrase(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

/* path opened for reading, or NULL with the reason in err. */
static FILE *open_pem(const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f)
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
    return f;
}

/* The first certificate of a PEM file, or NULL with the reason in err. */
static X509 *read_cert(const char *path, char *err, size_t errlen)
{
    FILE *f = open_pem(path, err, errlen);
    if (!f)
        return NULL;
    X509 *x = PEM_read_X509(f, NULL, no_passphrase, NULL);
    fclose(f);
    ERR_clear_error();
    if (!x)
        snprintf(err, errlen, "%s: holds no PEM certificate", path);
    return x;
}

static EVP_PKEY *read_key(const char *path, char *err, size_t errlen)
{
    FILE *f = open_pem(path, err, errlen);
    if (!f)
        return NULL;
    EVP_PKEY *k = PEM_read_PrivateKey(f, NULL, no_passphrase, NULL);
    fclose(f);
    ERR_clear_error();
    if (!k)
        snprintf(err, errlen, "%s: holds no PEM private key (or an encrypted one: the relay "
                              "asks for no passphrase)", path);
    return k;
}

int tls_cert_check_pair(const char *cert_file, const char *key_file, char *cert_err,
                        char *key_err, size_t errlen)
{
    cert_err[0] = key_err[0] = '\0';
    X509 *x = read_cert(cert_file, cert_err, errlen);
    EVP_PKEY *k = read_key(key_file, key_err, errlen);
    if (x && k && X509_check_private_key(x, k) != 1)
        snprintf(key_err, errlen, "%s: not the private key of cert_file %s (their public keys "
                                  "differ)", key_file, cert_file);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return cert_err[0] || key_err[0] ? -1 : 0;
}

int tls_cert_check_ca_file(const char *path, bool need_ca, char *err, size_t errlen)
{
    FILE *f = open_pem(path, err, errlen);
    if (!f)
        return -1;
    int n = 0, rc = 0;
    X509 *x;
    while (rc == 0 && (x = PEM_read_X509(f, NULL, no_passphrase, NULL)) != NULL) {
        n++;
        if (need_ca && X509_check_ca(x) < 1) {
            char subject[256] = "?";
            X509_NAME_oneline(X509_get_subject_name(x), subject, sizeof(subject));
            snprintf(err, errlen, "%s: certificate %d (%s) is not a CA certificate (no "
                                  "basicConstraints CA:TRUE): no client certificate can chain "
                                  "to it", path, n, subject);
            rc = -1;
        }
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    fclose(f);
    if (rc == 0 && n == 0) {
        snprintf(err, errlen, "%s: holds no PEM certificate", path);
        rc = -1;
    }
    return rc;
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
        "start and at each reload (SIGHUP).",
        NULL);
    int64_t not_after;
    if (tls_cert_not_after(path, &not_after) < 0)
        return;
    metrics_set(g, not_after);
    char msg[1200];
    if (tls_cert_expiry_warning(path, not_after, (int64_t)time(NULL), msg, sizeof(msg)))
        log_warn("%s", msg);
}
