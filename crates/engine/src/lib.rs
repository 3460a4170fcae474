//! The Understudy failover engine: every decision of PRODUCT.md §2 as deterministic state
//! machines. No IO, no clock, no threads: time comes in as an argument, actions and the next
//! deadline come out. The runtime (`understudy-node`) and the simulation tests drive it the same way.
//!
//! # Calling contract
//!
//! Each machine ([`Agent`], [`Server`], and the parts a server is made of: [`AgentRegistry`],
//! [`Pair`], [`HotStandby`]) is driven like this:
//!
//! 1. Feed it what happened with a `handle_*` method, passing `now` (a monotonic [`Instant`]).
//! 2. Drain `poll_action()` until it returns `None` and carry each action out (send a message,
//!    open a connection, run a hook, delete acknowledged records …).
//! 3. Drain `poll_event()` until it returns `None`: each [`Event`] is a transition to store,
//!    log and notify.
//! 4. Sleep until `poll_timeout()` and call `handle_timeout(now)`. Calling it early or too often
//!    is harmless: a machine only acts on deadlines that have passed.
//!
//! Every decision carries a human sentence (its *reason*); the same text is the log line, the
//! event sentence and the UI tooltip, and tests assert it.
//!
//! # Events
//!
//! Stable codes (the analogue of ELM's 5317/5318 and Tivoli's KQM0004/KQM0009). The table is
//! [`EventCode::ALL`]; `notify` says whether the desktop app raises a notification (UI-2).
//!
//! | code | rule | notify | meaning |
//! |---|---|---|---|
//! | `HELD_DROPPED` | AG-2 | yes | `agent.held_limit` reached: the oldest records a standby of another site holds left the agent's cache (they stay on that standby, not at home) |
//! | `SWITCHOVER` | AG-3 | yes | an agent moved from its server to the next one in its list |
//! | `STAGED` | AG-4 | no | a standby server refused an agent for capacity; it stays on cache |
//! | `BLACKOUT` | AG-5 | yes | an agent reaches no server at all |
//! | `BLACKOUT_END` | AG-5 | yes | an agent in blackout reached a server again |
//! | `SWITCHBACK` | AG-6 | yes | an agent went back to its home server |
//! | `RECALLED` | AG-6 | no | an operator recalled an agent to its home server |
//! | `REDIRECTED` | AG-7 | no | a STANDBY server sent an agent to the ACTIVE one |
//! | `STALE_EPOCH` | AG-8 | no | an agent refused a server whose epoch is lower than one it has seen |
//! | `AGENT_PENDING` | AG-9 | yes | a new agent waits for an operator to accept it |
//! | `AGENT_ACCEPTED` | AG-9 | no | an agent was accepted (by an operator or its enrollment token) |
//! | `AGENT_REJECTED` | AG-9 | no | an operator rejected an agent |
//! | `AGENT_REFUSED` | AG-9 | no | a server refused an agent's connection (reason given) |
//! | `PAIR_ACTIVE` | PR-2 | no | a pair's member was activated for the first time or after a blackout |
//! | `FAILOVER` | PR-3 | yes | a pair moved to its other member because the active one fell silent |
//! | `PAIR_SWITCHBACK` | PR-4 | yes | a pair moved back to its primary after `hold_down` |
//! | `FORCED_FAILOVER` | PR-5 | yes | an operator moved a pair to its secondary |
//! | `REVERTED` | PR-5 | yes | an operator moved a pair back to its primary |
//! | `PAIR_BLACKOUT` | PR-6 | yes | neither member of a pair is reachable |
//! | `PAIR_BLACKOUT_END` | PR-6 | yes | a member of a pair in blackout is reachable again |
//! | `HOOK_FAILED` | PR-7 | yes | an `on_activate`/`on_deactivate` hook failed or hung; the pair is degraded |
//! | `HOOK_RESULT_REFUSED` | PR-7 | no | a hook result from an agent that is not a member of the pair (or for no pair) was refused; once per agent and pair |
//! | `RECORDS_REFUSED` | CK-3 | no | records under a pair's alias from an agent that is not a member were not stored; once per agent and pair |
//! | `LEASE_EXPIRED` | PR-3 | no | an active member lost its server for `failover_after` and stood down by itself |
//! | `PROMOTED` | HS-4 | yes | this server became ACTIVE (its epoch grew) |
//! | `DEMOTED` | HS-5 | yes | this server became STANDBY |
//! | `SPLIT_BRAIN` | HS-6 | yes | both servers were ACTIVE; the lower epoch steps down |
//! | `HANDOVER` | HS-8 | yes | a planned stop or `ha standby` handed the ACTIVE role to the STANDBY (or the peer did not take it and this server stays ACTIVE) |
//! | `ROLE_CHANGED` | HS-7 | no | server role, agent role or failover mode changed at run time |
//! | `CERT_GENERATED` | CT-1 | yes | a new certificate was generated and taken into use |
//! | `CHECK_REFUSED` | CK-1 | yes | an agent refused a `command` check its `agent.allow_commands` does not allow |
//! | `CHECK_DOWN` | AL-2 | yes | a check failed `fail_after` runs in a row |
//! | `CHECK_UP` | AL-2 | yes | a check that was down passed `ok_after` runs in a row |
//! | `CHECK_FLAPPING` | AL-2 | yes | a check changed state 6 times within 10 minutes; its changes are held until it is stable for 10 minutes |
//! | `AGENT_SILENT` | AL-3 | yes | the acting server has not heard an accepted agent for `server.silent_after` |
//! | `AGENT_BACK` | AL-3 | yes | a silent agent is heard again |
//! | `SITE_OUTAGE` | AL-6 | yes | more than half of the accepted agents fell silent within one `alert.group_wait` (replaces their AGENT_SILENT) |
//! | `DELIVERY_FAILED` | AL-5 | yes | an alert could not be delivered to a channel before `alert.give_up_after` |
//! | `FORWARD_REJECTED` | MX-2 | yes | the remote-write receiver refused a batch of records with a 4xx (not 429): the batch was dropped and forwarding went on past it |

pub mod agent;
pub mod event;
pub mod ha;
pub mod pair;
pub mod registry;
pub mod roles;
pub mod server;
mod timers;
pub mod watch;

pub use agent::{
    Agent, AgentAction, AgentConfig, LinkState, MemberState, PairView, ProbeResult, Restored,
    Welcome, MIN_SWITCHBACK_INTERVAL,
};
pub use event::{Event, EventCode, Severity};
pub use ha::{
    FailbackPolicy, FailoverMode, HaAction, HaState, HotStandby, HotStandbyConfig, PeerStatus,
    CRASH_CONFIRM_INTERVAL,
};
pub use pair::{Member, Pair, PairAction, PairConfig, PairEpoch, PairState, SwitchbackPolicy};
pub use registry::{AgentEntry, AgentRegistry, AgentStatus, Hello, Refusal, TokenCheck};
pub use roles::{validate_role_change, RoleChange, RoleContext, Roles};
pub use server::{Admission, Server, ServerAction, ServerConfig};
pub use watch::{CheckState, Thresholds, Watch, WatchConfig};

/// The engine's notion of time: a monotonic instant supplied by the caller (never read here).
pub use std::time::Instant;

/// Formats a duration the way PRODUCT.md writes them (`500ms`, `5s`, `2m`), for reasons.
pub fn fmt_duration(d: std::time::Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms.is_multiple_of(60_000) {
        format!("{}m", ms / 60_000)
    } else if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
