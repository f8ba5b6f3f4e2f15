/*
 * test_control_auth.c - core/control_auth.c on its own: which certificates
 * may command agents (SPEC.md section 10). The certificates are made here
 * with the openssl command: a control CA with an intermediate, API
 * certificates by CN, DNS SAN and URI SAN, one of another CA, one for
 * servers only. The call layer is a stub.
 */
#include "control_auth.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---- stubs of rpc_call ---------------------------------------------- */

char *rpc_call_peer_cert_pem(const struct rpc_call *c)
{
    (void)c;
    return NULL;
}
char *rpc_call_peer_chain_pem(const struct rpc_call *c)
{
    (void)c;
    return NULL;
}
void rpc_call_finish(struct rpc_call *c, enum rpc_code code, const char *msg, const uint8_t *resp,
                     size_t len)
{
    (void)c, (void)code, (void)msg, (void)resp, (void)len;
}

/* ---- certificates ------------------------------------------------------ */

static char dir[] = "/tmp/aero-control-auth-XXXXXX";

static void sh(const char *fmt, const char *a, const char *b, const char *c, const char *d)
{
    char cmd[2048], full[2400];
    snprintf(cmd, sizeof(cmd), fmt, a, b, c, d);
    snprintf(full, sizeof(full), "cd %s && (%s) >/dev/null 2>&1", dir, cmd);
    cr_assert_eq(system(full), 0, "%s", cmd);
}

/* Certificate `name` signed by `by` with subject CN and extension lines. */
static void cert(const char *name, const char *by, const char *cn, const char *ext)
{
    sh("openssl req -newkey rsa:2048 -nodes -keyout %1$s.key -out %1$s.csr -subj /CN=%3$s && "
       "printf '%4$s\\n' > %1$s.ext && openssl x509 -req -in %1$s.csr -CA %2$s.pem "
       "-CAkey %2$s.key -CAcreateserial -out %1$s.pem -days 1 -extfile %1$s.ext",
       name, by, cn, ext);
}

static char *file(const char *name)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    cr_assert_not_null(f, "%s", path);
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = '\0';
    fclose(f);
    return buf;
}

#define CLIENT "extendedKeyUsage=clientAuth"

static void make_certs(void)
{
    cr_assert_not_null(mkdtemp(dir));
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout %1$s.key -out %1$s.pem -days 1 "
       "-subj /CN=control-root%2$s%3$s%4$s",
       "root", "", "", "");
    sh("openssl req -x509 -newkey rsa:2048 -nodes -keyout %1$s.key -out %1$s.pem -days 1 "
       "-subj /CN=other-root%2$s%3$s%4$s",
       "other", "", "", "");
    cert("inter", "root", "control-intermediate",
         "basicConstraints=critical,CA:TRUE\\nkeyUsage=keyCertSign,cRLSign");
    cert("by_uri", "inter", "someone", CLIENT "\\nsubjectAltName=URI:spiffe://aero-arc/api");
    cert("by_cn", "root", "aero-api", CLIENT);
    cert("by_dns", "root", "someone", CLIENT "\\nsubjectAltName=DNS:API.Aero.Test");
    cert("uri_case", "root", "someone", CLIENT "\\nsubjectAltName=URI:SPIFFE://aero-arc/api");
    cert("denied", "root", "intruder", CLIENT "\\nsubjectAltName=URI:spiffe://aero-arc/other");
    cert("foreign", "other", "aero-api", CLIENT);
    cert("server_only", "root", "aero-api", "extendedKeyUsage=serverAuth");
    sh("cat %1$s.pem %2$s.pem > %3$s.pem%4$s", "by_uri", "inter", "by_uri_chain", "");
}

static void remove_certs(void)
{
    char cmd[600];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
}

TestSuite(control_auth, .init = make_certs, .fini = remove_certs, .timeout = 60);

static struct control_auth *load(const char *ids)
{
    char ca[400], err[256] = "";
    snprintf(ca, sizeof(ca), "%s/root.pem", dir);
    struct control_auth *a = NULL;
    cr_assert_eq(control_auth_load(ca, ids, &a, err, sizeof(err)), 0, "%s", err);
    return a;
}

static enum control_verdict verdict(struct control_auth *a, const char *name, const char *chain)
{
    char leaf[200];
    snprintf(leaf, sizeof(leaf), "%s.pem", name);
    char *pem = file(leaf), *ch = chain ? file(chain) : NULL;
    enum control_verdict v = control_auth_check_pem(a, pem, ch);
    /* Asked again, the kept verdict must be the same. */
    cr_assert_eq(control_auth_check_pem(a, pem, ch), v, "%s: another verdict the second time",
                 name);
    free(pem);
    free(ch);
    return v;
}

Test(control_auth, identities_by_cn_dns_and_uri)
{
    struct control_auth *a = load(" aero-api , api.aero.test,, spiffe://aero-arc/api ");
    cr_assert_eq(verdict(a, "by_cn", NULL), CONTROL_ALLOWED);
    cr_assert_eq(verdict(a, "by_dns", NULL), CONTROL_ALLOWED, "DNS names compare without case");
    cr_assert_eq(verdict(a, "uri_case", NULL), CONTROL_DENIED, "URIs compare byte for byte");
    cr_assert_eq(verdict(a, "denied", NULL), CONTROL_DENIED);
    control_auth_free(a);
}

Test(control_auth, the_chain_must_reach_the_control_ca_for_a_client)
{
    struct control_auth *a = load("aero-api, spiffe://aero-arc/api");
    cr_assert_eq(verdict(a, "foreign", NULL), CONTROL_UNAUTHENTICATED);
    cr_assert_eq(verdict(a, "server_only", NULL), CONTROL_UNAUTHENTICATED,
                 "a server-only certificate is not a client's");
    /* Issued by an intermediate: verified through the chain the peer sent,
     * never without it. */
    cr_assert_eq(verdict(a, "by_uri", NULL), CONTROL_UNAUTHENTICATED);
    cr_assert_eq(verdict(a, "by_uri", "by_uri_chain.pem"), CONTROL_ALLOWED);
    /* An intermediate of another CA does not help. */
    cr_assert_eq(verdict(a, "foreign", "by_uri_chain.pem"), CONTROL_UNAUTHENTICATED);
    cr_assert_eq(control_auth_check_pem(a, NULL, NULL), CONTROL_UNAUTHENTICATED);
    cr_assert_eq(control_auth_check_pem(a, "-----BEGIN CERTIFICATE-----\nnope\n", NULL),
                 CONTROL_UNAUTHENTICATED);
    cr_assert_eq(control_auth_check_pem(NULL, NULL, NULL), CONTROL_DISABLED);
    control_auth_free(a);
}

Test(control_auth, load_errors_name_the_file)
{
    struct control_auth *a = NULL;
    char err[256] = "", path[400];
    snprintf(path, sizeof(path), "%s/missing.pem", dir);
    cr_assert_eq(control_auth_load(path, "x", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "missing.pem: cannot read"), "%s", err);
    snprintf(path, sizeof(path), "%s/root.key", dir); /* a key, not a certificate */
    cr_assert_eq(control_auth_load(path, "x", &a, err, sizeof(err)), -1);
    cr_assert_not_null(strstr(err, "holds no PEM certificate"), "%s", err);
    cr_assert_null(a);
}
