/*
 * control_auth.c - the control caller's certificate, parsed with OpenSSL
 * from the PEM gRPC's TLS layer verified: chained to the control CA (gRPC
 * also trusts [tls] client_ca_file at the handshake, so the chain is
 * checked again here), then its CN and DNS / URI SANs matched against the
 * allowed identities. Nothing is cached per call; the store is read-only.
 */
#include "control_auth.h"

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/*
 * Verdicts by certificate: parsing the PEM and verifying the chain took
 * 140 µs a call, half the relay's CPU under 100 commands a second
 * (docs/benchmarks.md). The store and the identities never change, so a
 * certificate's verdict holds while it is valid: kept by the SHA-256 of
 * the PEM (and chain) the TLS layer handed over, until its notAfter.
 */
#define VERDICT_CACHE 64

struct cached_verdict {
    uint8_t key[SHA256_DIGEST_LENGTH];
    enum control_verdict verdict;
    time_t until;      /* the certificate's notAfter; 0: free slot */
    uint64_t used;     /* for eviction: the least recently used goes */
};

struct control_auth {
    /* store and ids: replaced by a reload (control_auth_adopt) under the
     * write lock; every verification holds the read lock. */
    pthread_rwlock_t lock;
    X509_STORE *store;
    size_t n_ids;
    char **ids;
    pthread_mutex_t mu; /* the cache */
    uint64_t clock;
    struct cached_verdict cache[VERDICT_CACHE];
};

void control_auth_free(struct control_auth *ca)
{
    if (!ca)
        return;
    X509_STORE_free(ca->store);
    pthread_mutex_destroy(&ca->mu);
    pthread_rwlock_destroy(&ca->lock);
    for (size_t i = 0; i < ca->n_ids; i++)
        free(ca->ids[i]);
    free(ca->ids);
    free(ca);
}

/* Every certificate of the PEM file into the store; how many. */
static int load_cas(X509_STORE *store, const char *path, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read: %s", path, strerror(errno));
        return -1;
    }
    int n = 0;
    X509 *x;
    while ((x = PEM_read_X509(f, NULL, NULL, NULL)) != NULL) {
        if (X509_STORE_add_cert(store, x) == 1)
            n++;
        X509_free(x);
    }
    ERR_clear_error(); /* the end of the file reads as an error */
    fclose(f);
    if (n == 0) {
        snprintf(err, errlen, "%s: holds no PEM certificate", path);
        return -1;
    }
    return n;
}

static int add_ids(struct control_auth *ca, const char *list)
{
    while (list && *list) {
        size_t n = strcspn(list, ",");
        const char *a = list, *b = list + n;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            char **ids = realloc(ca->ids, (ca->n_ids + 1) * sizeof(*ids));
            if (!ids)
                return -1;
            ca->ids = ids;
            if (!(ids[ca->n_ids] = strndup(a, (size_t)(b - a))))
                return -1;
            ca->n_ids++;
        }
        list += n + (list[n] == ',');
    }
    return 0;
}

int control_auth_load(const char *ca_file, const char *identities, struct control_auth **out,
                      char *err, size_t errlen)
{
    *out = NULL;
    struct control_auth *ca = calloc(1, sizeof(*ca));
    if (ca) {
        pthread_mutex_init(&ca->mu, NULL);
        pthread_rwlock_init(&ca->lock, NULL);
    }
    if (!ca || !(ca->store = X509_STORE_new())) {
        if (ca) {
            pthread_mutex_destroy(&ca->mu);
            pthread_rwlock_destroy(&ca->lock);
        }
        free(ca);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (load_cas(ca->store, ca_file, err, errlen) < 0) {
        control_auth_free(ca);
        return -1;
    }
    if (add_ids(ca, identities) < 0) {
        control_auth_free(ca);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    *out = ca;
    return 0;
}

static bool allowed(const struct control_auth *ca, const char *v, size_t len, bool dns)
{
    for (size_t i = 0; i < ca->n_ids; i++)
        if (strlen(ca->ids[i]) == len &&
            (dns ? strncasecmp(ca->ids[i], v, len) == 0 : memcmp(ca->ids[i], v, len) == 0))
            return true;
    return false;
}

/* Any CN, DNS SAN or URI SAN of x in the allowed list. */
static bool identity_allowed(const struct control_auth *ca, X509 *x)
{
    X509_NAME *name = X509_get_subject_name(x);
    for (int i = -1; (i = X509_NAME_get_index_by_NID(name, NID_commonName, i)) >= 0;) {
        ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
        if (allowed(ca, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s),
                    false))
            return true;
    }
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool ok = false;
    for (int i = 0; sans && !ok && i < sk_GENERAL_NAME_num(sans); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type == GEN_DNS || g->type == GEN_URI) {
            ASN1_IA5STRING *s = g->type == GEN_DNS ? g->d.dNSName : g->d.uniformResourceIdentifier;
            ok = allowed(ca, (const char *)ASN1_STRING_get0_data(s),
                         (size_t)ASN1_STRING_length(s), g->type == GEN_DNS);
        }
    }
    GENERAL_NAMES_free(sans);
    return ok;
}

/* The certificates of a PEM bundle after the first (the peer's
 * intermediates), as untrusted chain material; NULL when none. */
static STACK_OF(X509) *intermediates(const char *chain_pem)
{
    if (!chain_pem)
        return NULL;
    BIO *bio = BIO_new_mem_buf(chain_pem, -1);
    STACK_OF(X509) *st = sk_X509_new_null();
    X509 *x;
    for (int i = 0; bio && st && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL; i++) {
        if (i == 0 || !sk_X509_push(st, x))
            X509_free(x);
    }
    BIO_free(bio);
    ERR_clear_error(); /* the end of the bundle reads as an error */
    return st;
}

/* The verdict from scratch, and until when the certificate is valid. */
static enum control_verdict verify_pem(const struct control_auth *ca, const char *pem,
                                       const char *chain_pem, time_t *until)
{
    *until = 0;
    BIO *bio = BIO_new_mem_buf(pem, -1);
    X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!x) {
        ERR_clear_error();
        return CONTROL_UNAUTHENTICATED;
    }
    /* An API certificate issued by an intermediate of the control CA
     * verifies through the intermediates the client sent, which the store
     * never trusts on their own. */
    STACK_OF(X509) *chain = intermediates(chain_pem);
    enum control_verdict v = CONTROL_UNAUTHENTICATED;
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (ctx && X509_STORE_CTX_init(ctx, ca->store, x, chain) == 1) {
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        if (X509_verify_cert(ctx) == 1)
            v = identity_allowed(ca, x) ? CONTROL_ALLOWED : CONTROL_DENIED;
    }
    struct tm tm;
    if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
        *until = timegm(&tm);
    X509_STORE_CTX_free(ctx);
    sk_X509_pop_free(chain, X509_free);
    X509_free(x);
    ERR_clear_error();
    return v;
}

enum control_verdict control_auth_check_pem(const struct control_auth *ca, const char *pem,
                                            const char *chain_pem)
{
    if (!ca)
        return CONTROL_DISABLED;
    if (!pem)
        return CONTROL_UNAUTHENTICATED;
    uint8_t key[SHA256_DIGEST_LENGTH];
    EVP_MD_CTX *h = EVP_MD_CTX_new();
    bool keyed = h && EVP_DigestInit_ex(h, EVP_sha256(), NULL) == 1 &&
                 EVP_DigestUpdate(h, pem, strlen(pem)) == 1 &&
                 (!chain_pem || EVP_DigestUpdate(h, chain_pem, strlen(chain_pem)) == 1) &&
                 EVP_DigestFinal_ex(h, key, NULL) == 1;
    EVP_MD_CTX_free(h);
    time_t until, now = time(NULL);
    struct control_auth *m = (struct control_auth *)ca; /* the locks and the cache only */
    if (!keyed) { /* no memory for a digest: judge it without the cache */
        pthread_rwlock_rdlock(&m->lock);
        enum control_verdict v = verify_pem(ca, pem, chain_pem, &until);
        pthread_rwlock_unlock(&m->lock);
        return v;
    }
    pthread_mutex_lock(&m->mu);
    struct cached_verdict *hit = NULL, *victim = NULL;
    for (size_t i = 0; i < VERDICT_CACHE && !hit; i++) {
        struct cached_verdict *c = &m->cache[i];
        if (c->until > now && memcmp(c->key, key, sizeof(key)) == 0)
            hit = c;
        else if (!victim || (victim->until > now && (c->until <= now || c->used < victim->used)))
            victim = c; /* a free or expired slot, else the least recently used */
    }
    enum control_verdict v = hit ? hit->verdict : CONTROL_UNAUTHENTICATED;
    if (hit)
        hit->used = ++m->clock;
    pthread_mutex_unlock(&m->mu);
    if (hit)
        return v;
    pthread_rwlock_rdlock(&m->lock);
    v = verify_pem(ca, pem, chain_pem, &until);
    pthread_rwlock_unlock(&m->lock);
    pthread_mutex_lock(&m->mu);
    /* Only a verified chain's verdict is kept: one that did not verify
     * (not yet valid, expired, unparsable) is judged again each time. */
    if (v != CONTROL_UNAUTHENTICATED && until > now) {
        memcpy(victim->key, key, sizeof(key));
        victim->verdict = v;
        victim->until = until;
        victim->used = ++m->clock;
    }
    pthread_mutex_unlock(&m->mu);
    return v;
}

void control_auth_adopt(struct control_auth *ca, struct control_auth *from)
{
    pthread_rwlock_wrlock(&ca->lock);
    X509_STORE *store = ca->store;
    char **ids = ca->ids;
    size_t n_ids = ca->n_ids;
    ca->store = from->store;
    ca->ids = from->ids;
    ca->n_ids = from->n_ids;
    pthread_mutex_lock(&ca->mu); /* verdicts of the old store and identities go */
    memset(ca->cache, 0, sizeof(ca->cache));
    pthread_mutex_unlock(&ca->mu);
    pthread_rwlock_unlock(&ca->lock);
    from->store = store;
    from->ids = ids;
    from->n_ids = n_ids;
    control_auth_free(from);
}

enum control_verdict control_auth_check(const struct control_auth *ca, struct rpc_call *call)
{
    if (!ca)
        return CONTROL_DISABLED;
    char *pem = rpc_call_peer_cert_pem(call), *chain = pem ? rpc_call_peer_chain_pem(call) : NULL;
    enum control_verdict v = control_auth_check_pem(ca, pem, chain);
    free(pem);
    free(chain);
    return v;
}

bool control_auth_admit(const struct control_auth *ca, struct rpc_call *call)
{
    switch (control_auth_check(ca, call)) {
    case CONTROL_ALLOWED:
        return true;
    case CONTROL_DISABLED:
        rpc_call_finish(call, RPC_UNIMPLEMENTED,
                        "operation-context control is disabled until mTLS control "
                        "authentication is configured",
                        NULL, 0);
        return false;
    case CONTROL_UNAUTHENTICATED:
        rpc_call_finish(call, RPC_UNAUTHENTICATED,
                        "a client certificate signed by the control CA is required", NULL, 0);
        return false;
    case CONTROL_DENIED:
        break;
    }
    rpc_call_finish(call, RPC_PERMISSION_DENIED,
                    "client certificate identity is not allowed to control agents", NULL, 0);
    return false;
}
