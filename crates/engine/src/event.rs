//! Events: every transition the engine makes, with a stable code and the sentence that explains it.

/// A transition to store, log and (where [`EventCode::notify`] says so) notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub code: EventCode,
    /// The object involved: an agent name, a pair name, or this node's name.
    pub subject: String,
    /// The human sentence; the same text is the log line and the UI tooltip.
    pub reason: String,
}

impl Event {
    pub fn new(code: EventCode, subject: impl Into<String>, reason: impl Into<String>) -> Self {
        Event {
            code,
            subject: subject.into(),
            reason: reason.into(),
        }
    }
}

macro_rules! event_codes {
    ($($variant:ident => $code:literal, $rule:literal, $notify:literal;)*) => {
        /// Stable event codes; see the table in the crate docs.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventCode { $($variant),* }

        impl EventCode {
            pub const ALL: &'static [EventCode] = &[$(EventCode::$variant),*];

            /// The stable code, as stored, exported and shown.
            pub fn as_str(self) -> &'static str {
                match self { $(EventCode::$variant => $code),* }
            }

            /// The PRODUCT.md rule this event belongs to.
            pub fn rule(self) -> &'static str {
                match self { $(EventCode::$variant => $rule),* }
            }

            /// Whether the desktop app raises a notification for it (UI-2).
            pub fn notify(self) -> bool {
                match self { $(EventCode::$variant => $notify),* }
            }

            pub fn parse(code: &str) -> Option<EventCode> {
                match code { $($code => Some(EventCode::$variant),)* _ => None }
            }
        }
    };
}

event_codes! {
    Switchover => "SWITCHOVER", "AG-3", true;
    Staged => "STAGED", "AG-4", false;
    Blackout => "BLACKOUT", "AG-5", true;
    BlackoutEnd => "BLACKOUT_END", "AG-5", true;
    Switchback => "SWITCHBACK", "AG-6", true;
    Recalled => "RECALLED", "AG-6", false;
    HeldDropped => "HELD_DROPPED", "AG-2", true;
    Redirected => "REDIRECTED", "AG-7", false;
    StaleEpoch => "STALE_EPOCH", "AG-8", false;
    AgentPending => "AGENT_PENDING", "AG-9", true;
    AgentAccepted => "AGENT_ACCEPTED", "AG-9", false;
    AgentRejected => "AGENT_REJECTED", "AG-9", false;
    AgentRefused => "AGENT_REFUSED", "AG-9", false;
    PairActive => "PAIR_ACTIVE", "PR-2", false;
    Failover => "FAILOVER", "PR-3", true;
    PairSwitchback => "PAIR_SWITCHBACK", "PR-4", true;
    ForcedFailover => "FORCED_FAILOVER", "PR-5", true;
    Reverted => "REVERTED", "PR-5", true;
    PairBlackout => "PAIR_BLACKOUT", "PR-6", true;
    PairBlackoutEnd => "PAIR_BLACKOUT_END", "PR-6", true;
    HookFailed => "HOOK_FAILED", "PR-7", true;
    LeaseExpired => "LEASE_EXPIRED", "PR-3", false;
    Promoted => "PROMOTED", "HS-4", true;
    Demoted => "DEMOTED", "HS-5", true;
    SplitBrain => "SPLIT_BRAIN", "HS-6", true;
    RoleChanged => "ROLE_CHANGED", "HS-7", false;
    CertGenerated => "CERT_GENERATED", "CT-1", true;
    CheckRefused => "CHECK_REFUSED", "CK-1", true;
}

impl std::fmt::Display for EventCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ui1_codes_are_unique_and_parse_back() {
        let mut seen = std::collections::HashSet::new();
        for code in EventCode::ALL {
            assert!(seen.insert(code.as_str()), "{code} twice");
            assert_eq!(EventCode::parse(code.as_str()), Some(*code));
        }
        assert_eq!(EventCode::parse("NOPE"), None);
    }

    #[test]
    fn ui2_notifying_codes_cover_the_transitions_named_in_ui2() {
        for code in [
            "SWITCHOVER",
            "SWITCHBACK",
            "BLACKOUT",
            "FAILOVER",
            "PAIR_SWITCHBACK",
            "PROMOTED",
            "DEMOTED",
            "AGENT_PENDING",
        ] {
            assert!(EventCode::parse(code).unwrap().notify(), "{code}");
        }
    }
}
