/*
 * relay_control.h - aeroarc.relay.v1.RelayControl: ListActiveDrones and
 * GetDroneStatus, answered from consistent copies of the session table.
 */
#ifndef AERO_RELAY_CONTROL_H
#define AERO_RELAY_CONTROL_H

#include "relay.h"
#include "rpc_server.h"

int relay_control_add(struct relay *relay, struct rpc_server *server);

#endif
