/*
 * test_tls_cert.c - the server certificate's notAfter read from PEM, and
 * when it is warned about: expired, within 14 days, or not. Certificates
 * are made here with libcrypto, with any validity (openssl req cannot make
 * an expired one).
 */
#include "tls_cert.h"

#include <criterion/criterion.h>
#include <errno.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* A self-signed certificate valid from now + from_s to now + to_s, as PEM in
 * a temporary file (path filled); its notAfter in *not_after. */
static void make_cert(char path[64], long from_s, long to_s, int64_t *not_after)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    cr_assert(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), to_s);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    cr_assert_gt(X509_sign(x, k, EVP_sha256()), 0);
    strcpy(path, "/tmp/aeroarc-cert-XXXXXX");
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    FILE *f = fdopen(fd, "w");
    cr_assert_eq(PEM_write_X509(f, x), 1);
    fclose(f);
    struct tm tm;
    cr_assert_eq(ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm), 1);
    *not_after = (int64_t)timegm(&tm);
    X509_free(x);
    EVP_PKEY_free(k);
}

Test(tls_cert, not_after_is_read_in_unix_seconds)
{
    char path[64];
    int64_t want, got = 0;
    int64_t now = (int64_t)time(NULL);
    make_cert(path, 0, 5 * 86400, &want);
    cr_assert_eq(tls_cert_not_after(path, &got), 0);
    cr_assert_eq(got, want);
    cr_assert(got >= now + 5 * 86400 - 5 && got <= now + 5 * 86400 + 5, "%lld vs now %lld",
              (long long)got, (long long)now);
    unlink(path);
    cr_assert_eq(tls_cert_not_after(path, &got), -ENOENT);
    FILE *f = fopen(path, "w");
    fputs("not a certificate\n", f);
    fclose(f);
    cr_assert_eq(tls_cert_not_after(path, &got), -EBADMSG);
    unlink(path);
}

Test(tls_cert, expired_and_soon_expiring_certificates_are_warned_about)
{
    char msg[1200];
    int64_t now = 1700000000; /* 2023-11-14T22:13:20Z */
    cr_assert(tls_cert_expiry_warning("s.pem", now - 1, now, msg, sizeof(msg)));
    cr_assert_str_eq(msg, "TLS certificate s.pem expired at 2023-11-14T22:13:19Z: clients that "
                          "verify it refuse to connect; renew it");
    cr_assert(tls_cert_expiry_warning("s.pem", now, now, msg, sizeof(msg)));
    cr_assert(strstr(msg, "expired at"), "%s", msg);
    cr_assert(tls_cert_expiry_warning("s.pem", now + 5 * 86400 + 60, now, msg, sizeof(msg)));
    cr_assert_str_eq(msg, "TLS certificate s.pem expires at 2023-11-19T22:14:20Z, in 5 days 0 "
                          "hours: renew it");
    cr_assert(tls_cert_expiry_warning("s.pem", now + TLS_CERT_WARN_S, now, msg, sizeof(msg)),
              "exactly 14 days: warned");
    cr_assert_not(tls_cert_expiry_warning("s.pem", now + TLS_CERT_WARN_S + 1, now, msg,
                                          sizeof(msg)));
    cr_assert_str_eq(msg, "");
}

Test(tls_cert, an_expired_file_reads_as_expired)
{
    char path[64], msg[1200];
    int64_t want, got = 0;
    make_cert(path, -10 * 86400, -86400, &want);
    cr_assert_eq(tls_cert_not_after(path, &got), 0);
    cr_assert_eq(got, want);
    cr_assert(tls_cert_expiry_warning(path, got, (int64_t)time(NULL), msg, sizeof(msg)));
    cr_assert(strstr(msg, "expired at"), "%s", msg);
    unlink(path);
}

/* ------------------------------------------------------ file checks */

/* A self-signed certificate (a CA when ca) and its key, as PEM files in
 * /tmp: cert_path, key_path filled. */
static void make_pair(char cert_path[64], char key_path[64], bool ca)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    cr_assert(k && x);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), 0);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509_set_pubkey(x, k);
    if (ca) {
        X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "critical,CA:TRUE");
        cr_assert_not_null(e);
        X509_add_ext(x, e, -1);
        X509_EXTENSION_free(e);
    }
    cr_assert_gt(X509_sign(x, k, EVP_sha256()), 0);
    strcpy(cert_path, "/tmp/aeroarc-cert-XXXXXX");
    strcpy(key_path, "/tmp/aeroarc-key-XXXXXX");
    FILE *cf = fdopen(mkstemp(cert_path), "w"), *kf = fdopen(mkstemp(key_path), "w");
    cr_assert(cf && kf);
    cr_assert_eq(PEM_write_X509(cf, x), 1);
    cr_assert_eq(PEM_write_PrivateKey(kf, k, NULL, NULL, 0, NULL, NULL), 1);
    fclose(cf);
    fclose(kf);
    X509_free(x);
    EVP_PKEY_free(k);
}

Test(tls_cert, a_certificate_and_its_key_pass)
{
    char cert[64], key[64], cert_err[512], key_err[512];
    make_pair(cert, key, false);
    cr_assert_eq(tls_cert_check_pair(cert, key, cert_err, key_err, sizeof(cert_err)), 0,
                 "%s %s", cert_err, key_err);
    cr_assert_str_eq(cert_err, "");
    cr_assert_str_eq(key_err, "");
    unlink(cert);
    unlink(key);
}

Test(tls_cert, each_file_of_a_bad_pair_is_named)
{
    char cert[64], key[64], cert2[64], key2[64], cert_err[512], key_err[512], want[512];
    make_pair(cert, key, false);
    make_pair(cert2, key2, false);
    /* another certificate's key */
    cr_assert_eq(tls_cert_check_pair(cert, key2, cert_err, key_err, sizeof(cert_err)), -1);
    cr_assert_str_eq(cert_err, "");
    snprintf(want, sizeof(want),
             "%s: not the private key of cert_file %s (their public keys differ)", key2, cert);
    cr_assert_str_eq(key_err, want);
    /* swapped: a key where the certificate goes, and the other way round */
    cr_assert_eq(tls_cert_check_pair(key, cert, cert_err, key_err, sizeof(cert_err)), -1);
    snprintf(want, sizeof(want), "%s: holds no PEM certificate", key);
    cr_assert_str_eq(cert_err, want);
    snprintf(want, sizeof(want),
             "%s: holds no PEM private key (or an encrypted one: the relay asks for no "
             "passphrase)",
             cert);
    cr_assert_str_eq(key_err, want);
    /* neither there */
    cr_assert_eq(tls_cert_check_pair("/nonexistent/c.pem", "/nonexistent/k.pem", cert_err,
                                     key_err, sizeof(cert_err)),
                 -1);
    cr_assert_str_eq(cert_err, "/nonexistent/c.pem: cannot read: No such file or directory");
    cr_assert_str_eq(key_err, "/nonexistent/k.pem: cannot read: No such file or directory");
    unlink(cert);
    unlink(key);
    unlink(cert2);
    unlink(key2);
}

Test(tls_cert, a_client_ca_file_holds_certificates_and_for_control_cas)
{
    char ca[64], ca_key[64], leaf[64], leaf_key[64], err[512], want[512];
    make_pair(ca, ca_key, true);
    make_pair(leaf, leaf_key, false);
    cr_assert_eq(tls_cert_check_ca_file(ca, true, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tls_cert_check_ca_file(leaf, false, err, sizeof(err)), 0, "%s", err);
    cr_assert_eq(tls_cert_check_ca_file(leaf, true, err, sizeof(err)), -1);
    snprintf(want, sizeof(want),
             "%s: certificate 1 (/CN=t) is not a CA certificate (no basicConstraints CA:TRUE): "
             "no client certificate can chain to it",
             leaf);
    cr_assert_str_eq(err, want);
    cr_assert_eq(tls_cert_check_ca_file(ca_key, false, err, sizeof(err)), -1);
    snprintf(want, sizeof(want), "%s: holds no PEM certificate", ca_key);
    cr_assert_str_eq(err, want);
    cr_assert_eq(tls_cert_check_ca_file("/nonexistent/ca.pem", true, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "/nonexistent/ca.pem: cannot read: No such file or directory");
    unlink(ca);
    unlink(ca_key);
    unlink(leaf);
    unlink(leaf_key);
}
