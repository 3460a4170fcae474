//! HS-7: roles at run time. A change of server role, agent role or failover mode is validated
//! here, before the runtime persists and applies it, and refused with a reason when it would
//! strand agents or pairs.

use crate::ha::FailoverMode;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Roles {
    pub server: bool,
    pub agent: bool,
    pub failover: FailoverMode,
}

/// What an operator asked for; `None` keeps the current value.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleChange {
    pub server: Option<bool>,
    pub agent: Option<bool>,
    pub failover: Option<FailoverMode>,
}

/// What the node knows at the moment of the change.
#[derive(Clone, Debug, Default)]
pub struct RoleContext {
    /// Agents connected to this node's server role (other than its own agent).
    pub connected_agents: usize,
    /// Whether this node's server role is the acting one.
    pub acting: bool,
    /// Whether the hot-standby peer is ACTIVE and answering.
    pub peer_acting: bool,
    /// Whether `failover.peer` is configured.
    pub peer_configured: bool,
    /// Whether `agent.servers` is configured.
    pub servers_configured: bool,
    /// Pairs whose duty this node's agent holds now.
    pub active_pairs: Vec<String>,
}

/// Validates a role change. Guard clauses in a fixed order, each with its reason.
pub fn validate_role_change(
    current: Roles,
    change: RoleChange,
    ctx: &RoleContext,
) -> Result<Roles, String> {
    let wanted = Roles {
        server: change.server.unwrap_or(current.server),
        agent: change.agent.unwrap_or(current.agent),
        failover: change.failover.unwrap_or(current.failover),
    };
    // 1. A request that changes nothing is an operator's mistake worth telling.
    if wanted == current {
        return Err("nothing to change: the node already has these roles".into());
    }
    // 2. A node is a server, an agent, or both.
    if !wanted.server && !wanted.agent {
        return Err("a node needs the server role, the agent role or both".into());
    }
    // 3. Hot standby is a server matter, and needs a peer to stand in for.
    if wanted.failover != FailoverMode::Off {
        if !wanted.server {
            return Err(format!(
                "failover mode {} needs the server role",
                wanted.failover.as_str()
            ));
        }
        if !ctx.peer_configured {
            return Err(format!(
                "failover mode {} needs failover.peer to be set",
                wanted.failover.as_str()
            ));
        }
    }
    // 4. Turning the acting server off strands its agents unless a peer acts for them.
    if current.server
        && !wanted.server
        && ctx.acting
        && ctx.connected_agents > 0
        && !ctx.peer_acting
    {
        return Err(format!(
            "turning the server role off would strand {} connected agents: no ACTIVE peer can take them",
            ctx.connected_agents
        ));
    }
    // 5. Leaving hot standby while the peer acts would make two servers act at once.
    if current.failover != FailoverMode::Off
        && wanted.failover == FailoverMode::Off
        && wanted.server
        && ctx.peer_acting
    {
        return Err("the peer is ACTIVE: turning failover off here would make two acting servers; stop the peer first".into());
    }
    // 6. Turning the agent off while it holds a pair's duty strands the pair.
    if current.agent && !wanted.agent && !ctx.active_pairs.is_empty() {
        return Err(format!(
            "this agent holds the duty of pair {}: force a failover or revert first",
            ctx.active_pairs.join(", ")
        ));
    }
    // 7. An agent needs somewhere to report.
    if wanted.agent && !current.agent && !ctx.servers_configured && !wanted.server {
        return Err("the agent role needs at least one server (agent.servers)".into());
    }
    Ok(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn standalone() -> Roles {
        Roles {
            server: true,
            agent: true,
            failover: FailoverMode::Off,
        }
    }

    #[test]
    fn hs7_refuses_a_node_without_roles() {
        let err = validate_role_change(
            Roles {
                server: true,
                agent: false,
                failover: FailoverMode::Off,
            },
            RoleChange {
                server: Some(false),
                ..Default::default()
            },
            &RoleContext::default(),
        )
        .unwrap_err();
        assert_eq!(err, "a node needs the server role, the agent role or both");
    }

    #[test]
    fn hs7_refuses_to_strand_connected_agents() {
        let ctx = RoleContext {
            connected_agents: 3,
            acting: true,
            ..Default::default()
        };
        let err = validate_role_change(
            standalone(),
            RoleChange {
                server: Some(false),
                ..Default::default()
            },
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("strand 3 connected agents"), "{err}");
        let ctx = RoleContext {
            peer_acting: true,
            ..ctx
        };
        assert!(validate_role_change(
            standalone(),
            RoleChange {
                server: Some(false),
                ..Default::default()
            },
            &ctx
        )
        .is_ok());
    }

    #[test]
    fn hs7_failover_mode_needs_a_peer_and_the_server_role() {
        let change = RoleChange {
            failover: Some(FailoverMode::Primary),
            ..Default::default()
        };
        let err = validate_role_change(standalone(), change, &RoleContext::default()).unwrap_err();
        assert_eq!(err, "failover mode primary needs failover.peer to be set");
        let ctx = RoleContext {
            peer_configured: true,
            ..Default::default()
        };
        let ok = validate_role_change(standalone(), change, &ctx).unwrap();
        assert_eq!(ok.failover, FailoverMode::Primary);
    }

    #[test]
    fn hs7_refuses_to_strand_a_pair() {
        let ctx = RoleContext {
            active_pairs: vec!["web".into()],
            servers_configured: true,
            ..Default::default()
        };
        let err = validate_role_change(
            standalone(),
            RoleChange {
                agent: Some(false),
                ..Default::default()
            },
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("holds the duty of pair web"), "{err}");
    }

    #[test]
    fn hs7_refuses_an_empty_change_and_turning_off_failover_under_an_active_peer() {
        let err =
            validate_role_change(standalone(), RoleChange::default(), &RoleContext::default())
                .unwrap_err();
        assert!(err.starts_with("nothing to change"));
        let cur = Roles {
            failover: FailoverMode::Secondary,
            ..standalone()
        };
        let ctx = RoleContext {
            peer_acting: true,
            peer_configured: true,
            ..Default::default()
        };
        let err = validate_role_change(
            cur,
            RoleChange {
                failover: Some(FailoverMode::Off),
                ..Default::default()
            },
            &ctx,
        )
        .unwrap_err();
        assert!(err.contains("two acting servers"), "{err}");
    }
}
