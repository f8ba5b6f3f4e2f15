/*
 * command_durable.h - RelayControl.ExchangeCommand and ExecuteCommand
 * (SPEC.md section 12): a digest-bound DurableCommand checked in the
 * SPEC's order, written once on the bound agent's generation-2 stream,
 * and the agent's cumulative CommandEvidence passed back with the relay's
 * two events appended.
 */
#ifndef AERO_COMMAND_DURABLE_H
#define AERO_COMMAND_DURABLE_H

#include "relay.h"
#include "rpc_server.h"

/* Add both methods to the server (before it starts). 0 or -1. */
int command_durable_add(struct relay *relay, struct rpc_server *server);

#endif
