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

/// How serious an event is (PRODUCT.md AL-1: `info`, `warning`, `critical`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

macro_rules! event_codes {
    ($($variant:ident => $code:literal, $rule:literal, $notify:literal, $severity:ident, $title:literal;)*) => {
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

            /// How serious it is: the colour of the event in every view (AL-1's severities).
            pub fn severity(self) -> Severity {
                match self { $(EventCode::$variant => Severity::$severity),* }
            }

            /// A short title, as a notification's or a list's heading.
            pub fn title(self) -> &'static str {
                match self { $(EventCode::$variant => $title),* }
            }

            pub fn parse(code: &str) -> Option<EventCode> {
                match code { $($code => Some(EventCode::$variant),)* _ => None }
            }
        }
    };
}

event_codes! {
    Switchover => "SWITCHOVER", "AG-3", true, Warning, "Switchover";
    Staged => "STAGED", "AG-4", false, Warning, "Agent staged";
    Blackout => "BLACKOUT", "AG-5", true, Critical, "Blackout";
    BlackoutEnd => "BLACKOUT_END", "AG-5", true, Info, "Blackout ended";
    Switchback => "SWITCHBACK", "AG-6", true, Info, "Switchback";
    Recalled => "RECALLED", "AG-6", false, Info, "Agent recalled";
    HeldDropped => "HELD_DROPPED", "AG-2", true, Warning, "Held records let go";
    Redirected => "REDIRECTED", "AG-7", false, Info, "Agent redirected";
    StaleEpoch => "STALE_EPOCH", "AG-8", false, Warning, "Stale epoch refused";
    AgentPending => "AGENT_PENDING", "AG-9", true, Warning, "New agent waiting";
    AgentAccepted => "AGENT_ACCEPTED", "AG-9", false, Info, "Agent accepted";
    AgentRejected => "AGENT_REJECTED", "AG-9", false, Info, "Agent rejected";
    AgentRefused => "AGENT_REFUSED", "AG-9", false, Warning, "Agent refused";
    PairActive => "PAIR_ACTIVE", "PR-2", false, Info, "Pair active";
    Failover => "FAILOVER", "PR-3", true, Critical, "Pair failover";
    PairSwitchback => "PAIR_SWITCHBACK", "PR-4", true, Info, "Pair switchback";
    ForcedFailover => "FORCED_FAILOVER", "PR-5", true, Info, "Forced failover";
    Reverted => "REVERTED", "PR-5", true, Info, "Pair reverted";
    PairBlackout => "PAIR_BLACKOUT", "PR-6", true, Critical, "Pair blackout";
    PairBlackoutEnd => "PAIR_BLACKOUT_END", "PR-6", true, Info, "Pair blackout ended";
    HookFailed => "HOOK_FAILED", "PR-7", true, Warning, "Hook failed";
    HookResultRefused => "HOOK_RESULT_REFUSED", "PR-7", false, Warning, "Hook result refused";
    RecordsRefused => "RECORDS_REFUSED", "CK-3", false, Warning, "Records refused";
    LeaseExpired => "LEASE_EXPIRED", "PR-3", false, Warning, "Lease expired";
    Promoted => "PROMOTED", "HS-4", true, Warning, "Server promoted";
    Demoted => "DEMOTED", "HS-5", true, Warning, "Server demoted";
    SplitBrain => "SPLIT_BRAIN", "HS-6", true, Critical, "Split brain";
    Handover => "HANDOVER", "HS-8", true, Info, "Planned handover";
    RoleChanged => "ROLE_CHANGED", "HS-7", false, Info, "Roles changed";
    CertGenerated => "CERT_GENERATED", "CT-1", true, Info, "New certificate";
    CheckRefused => "CHECK_REFUSED", "CK-1", true, Warning, "Check refused";
    CheckDown => "CHECK_DOWN", "AL-2", true, Critical, "Check down";
    CheckUp => "CHECK_UP", "AL-2", true, Info, "Check up";
    CheckFlapping => "CHECK_FLAPPING", "AL-2", true, Warning, "Check flapping";
    AgentSilent => "AGENT_SILENT", "AL-3", true, Warning, "Agent silent";
    AgentBack => "AGENT_BACK", "AL-3", true, Info, "Agent back";
    SiteOutage => "SITE_OUTAGE", "AL-6", true, Critical, "Site outage";
    DeliveryFailed => "DELIVERY_FAILED", "AL-5", true, Critical, "Alert delivery failed";
    ForwardRejected => "FORWARD_REJECTED", "MX-2", true, Warning, "Records rejected by the receiver";
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
