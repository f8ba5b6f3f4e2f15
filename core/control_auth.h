/*
 * control_auth.h - who may call the mutating RelayControl methods (SPEC.md
 * section 10): the caller's TLS client certificate, as the handshake
 * verified it, must chain to [control] client_ca_file and carry an allowed
 * identity (CN, DNS SAN or URI SAN). Loaded once at start-up (main
 * thread), then read-only: any worker thread may check calls.
 */
#ifndef AERO_CONTROL_AUTH_H
#define AERO_CONTROL_AUTH_H

#include "rpc_call.h"

#include <stdbool.h>
#include <stddef.h>

struct control_auth;

enum control_verdict {
    CONTROL_ALLOWED,
    CONTROL_DISABLED,        /* no [control] client_ca_file */
    CONTROL_UNAUTHENTICATED, /* no certificate, or not one the control CA signed */
    CONTROL_DENIED           /* verified, but no allowed identity */
};

/*
 * Read the CA bundle (it must hold at least one certificate) and the
 * comma-separated identities. Returns 0, or -1 with the reason in err
 * (the caller adds relay.ini's file and line).
 */
int control_auth_load(const char *ca_file, const char *identities, struct control_auth **out,
                      char *err, size_t errlen);
void control_auth_free(struct control_auth *ca);

/* A reload: ca takes from's CA bundle and identities (kept verdicts are
 * dropped), and from is freed. Checks in flight finish with the old ones. */
void control_auth_adopt(struct control_auth *ca, struct control_auth *from);

/* The verdict on a call; ca NULL: CONTROL_DISABLED. */
enum control_verdict control_auth_check(const struct control_auth *ca, struct rpc_call *call);

/* The same for a PEM certificate and the chain the peer sent with it
 * (leaf first; NULL: none). */
enum control_verdict control_auth_check_pem(const struct control_auth *ca, const char *pem,
                                            const char *chain_pem);

/* True: the call may go on. False: it has been finished with SPEC's code
 * and text (UNIMPLEMENTED, UNAUTHENTICATED, PERMISSION_DENIED). */
bool control_auth_admit(const struct control_auth *ca, struct rpc_call *call);

#endif
