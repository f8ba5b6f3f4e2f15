/*
 * command_mission.h - RelayControl.DeployMission (SPEC.md section 14): a
 * mission plan checked in the SPEC's order, admitted against the session's
 * reconciled operation context, written once on the agent's generation-2
 * stream, and the agent's MissionDeploymentResult kept per session (join,
 * replay, redeliver after a retryable result from the same stream).
 */
#ifndef AERO_COMMAND_MISSION_H
#define AERO_COMMAND_MISSION_H

#include "relay.h"
#include "rpc_server.h"

/* Add the method to the server (before it starts). 0 or -1. */
int command_mission_add(struct relay *relay, struct rpc_server *server);

#endif
