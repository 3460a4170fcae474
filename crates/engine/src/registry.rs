//! The server's side of its agents (AG-4, AG-6, AG-9): who is accepted, who waits for an operator,
//! who holds one of the limited standby slots, and who is connected where.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use crate::event::{Event, EventCode};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AgentStatus {
    Pending,
    Accepted,
    Rejected,
}

impl AgentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Pending => "pending",
            AgentStatus::Accepted => "accepted",
            AgentStatus::Rejected => "rejected",
        }
    }
    pub fn parse(s: &str) -> Option<AgentStatus> {
        match s {
            "pending" => Some(AgentStatus::Pending),
            "accepted" => Some(AgentStatus::Accepted),
            "rejected" => Some(AgentStatus::Rejected),
            _ => None,
        }
    }
}

/// One agent this server knows (site configuration, replicated to the standby server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentEntry {
    pub id: String,
    pub name: String,
    /// SHA-256 fingerprint of the agent's certificate: its identity on the wire.
    pub fingerprint: String,
    pub status: AgentStatus,
    /// Whether this server's hot-standby cluster is the agent's home: decided by the server when
    /// the entry is made, from the Hello that made it (an agent that first arrives as the guest
    /// of a standby of another site is not home there), and replicated to the peer with the
    /// entry. A later Hello's claim changes nothing (issue 12 item 3). `None`: an entry from
    /// before the decision was kept; decided at the agent's next admission.
    pub home: Option<bool>,
    /// A certificate the accepted agent announced over its link and has not connected with yet
    /// (CT-2): kept with the entry, so it survives a restart of the server.
    pub announced: Option<String>,
}

/// How an agent's enrollment token compared with the server's.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenCheck {
    /// The agent presented none (or the server has none configured).
    Absent,
    Valid,
    Invalid,
}

/// An agent introducing itself on a new link.
#[derive(Clone, Debug)]
pub struct Hello {
    pub id: String,
    pub name: String,
    pub fingerprint: String,
    pub token: TokenCheck,
    /// The agent's word on whether this server is first in its list. Taken only when the server
    /// makes the agent's entry ([`AgentEntry::home`]); afterwards the entry decides.
    pub home: bool,
}

/// At most this many agents wait for an operator at once: a flood of new identities (each a fresh
/// certificate and id) fills this, not the store (issue 12 item 5).
pub const MAX_PENDING: usize = 100;

/// Why a server refused an agent. The sentence goes to both sides (PRODUCT.md §4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    Pending,
    Rejected,
    BadToken,
    FingerprintMismatch {
        expected: String,
    },
    NameTaken {
        by: String,
    },
    /// [`MAX_PENDING`] agents already wait to be accepted.
    TooManyPending,
    Capacity {
        capacity: u32,
    },
    NotServing,
    /// A STANDBY server whose ACTIVE peer does not answer (promotion pending).
    NotActing,
}

impl Refusal {
    pub fn reason(&self) -> String {
        match self {
            Refusal::Pending => "waiting for an operator to accept this agent".into(),
            Refusal::Rejected => "this agent was rejected by an operator".into(),
            Refusal::BadToken => "wrong enrollment token".into(),
            Refusal::FingerprintMismatch { expected } => {
                format!("certificate fingerprint does not match the accepted one ({expected})")
            }
            // The other agent's id stays on the server: a stranger learns no identity (issue 12).
            Refusal::NameTaken { .. } => "the name is taken by another agent".into(),
            Refusal::TooManyPending => format!(
                "{MAX_PENDING} agents already wait to be accepted: an operator must accept, \
                 reject or forget some first"
            ),
            Refusal::Capacity { capacity } => format!("standby capacity full ({capacity} agents)"),
            Refusal::NotServing => "this node has no server role".into(),
            Refusal::NotActing => {
                "this server is STANDBY and its ACTIVE peer does not answer".into()
            }
        }
    }

    /// AG-4: a capacity refusal stages the agent; other refusals are plain failures.
    pub fn is_capacity(&self) -> bool {
        matches!(self, Refusal::Capacity { .. })
    }
}

#[derive(Clone, Debug)]
struct Connection {
    home: bool,
    #[allow(dead_code)]
    since: Instant,
}

/// The registry of agents on one server.
#[derive(Debug, Default)]
pub struct AgentRegistry {
    standby_capacity: u32,
    agents: BTreeMap<String, AgentEntry>,
    connected: BTreeMap<String, Connection>,
    /// Agents holding a standby slot, first come first served (AG-4).
    slots: BTreeSet<String>,
    /// The last refusal told to each agent: retries of the same refusal raise no new event.
    refusals: BTreeMap<String, Refusal>,
    events: Vec<Event>,
    /// Set when an entry changed, so the runtime persists the site configuration.
    changed: Vec<AgentEntry>,
}

impl AgentRegistry {
    pub fn new(standby_capacity: u32, agents: impl IntoIterator<Item = AgentEntry>) -> Self {
        AgentRegistry {
            standby_capacity,
            agents: agents.into_iter().map(|a| (a.id.clone(), a)).collect(),
            ..Default::default()
        }
    }

    pub fn set_standby_capacity(&mut self, capacity: u32) {
        self.standby_capacity = capacity;
    }

    pub fn standby_capacity(&self) -> u32 {
        self.standby_capacity
    }

    pub fn entries(&self) -> impl Iterator<Item = &AgentEntry> {
        self.agents.values()
    }

    pub fn by_name(&self, name: &str) -> Option<&AgentEntry> {
        self.agents.values().find(|a| a.name == name)
    }

    pub fn is_connected(&self, id: &str) -> bool {
        self.connected.contains_key(id)
    }

    pub fn is_connected_by_name(&self, name: &str) -> bool {
        self.by_name(name)
            .is_some_and(|a| self.connected.contains_key(&a.id))
    }

    pub fn slots_used(&self) -> usize {
        self.slots.len()
    }

    pub fn holds_slot(&self, id: &str) -> bool {
        self.slots.contains(id)
    }

    /// Replaces the entries with a replicated copy (HS-3), keeping connections.
    pub fn replace_entries(&mut self, agents: impl IntoIterator<Item = AgentEntry>) {
        self.agents = agents.into_iter().map(|a| (a.id.clone(), a)).collect();
    }

    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// Entries changed since the last call, to persist.
    pub fn take_changed(&mut self) -> Vec<AgentEntry> {
        std::mem::take(&mut self.changed)
    }

    /// Admission of an agent on a new link. Guard clauses in a fixed order, each with its reason.
    pub fn handle_hello(&mut self, now: Instant, hello: &Hello) -> Result<(), Refusal> {
        // 1. A wrong token is refused outright and teaches the server nothing.
        if hello.token == TokenCheck::Invalid {
            self.refused(hello, &Refusal::BadToken);
            return Err(Refusal::BadToken);
        }
        // 2. A name belongs to one identity: another agent cannot take over an accepted name.
        if let Some(other) = self
            .agents
            .values()
            .find(|a| a.name == hello.name && a.id != hello.id)
        {
            let refusal = Refusal::NameTaken {
                by: other.id.clone(),
            };
            self.refused(hello, &refusal);
            return Err(refusal);
        }
        // 3a. A rotation the accepted agent announced over its old link: connecting with the
        // new certificate proves it holds the key, and the new fingerprint replaces the old.
        if let Some(entry) = self.agents.get(&hello.id).cloned() {
            if entry.fingerprint != hello.fingerprint
                && entry.status == AgentStatus::Accepted
                && entry.announced.as_ref() == Some(&hello.fingerprint)
            {
                let entry = AgentEntry {
                    fingerprint: hello.fingerprint.clone(),
                    announced: None,
                    ..entry
                };
                self.agents.insert(entry.id.clone(), entry.clone());
                self.changed.push(entry);
            }
        }
        match self.agents.get(&hello.id).cloned() {
            // 3. Known: its certificate must be the one accepted.
            Some(entry) if entry.fingerprint != hello.fingerprint => {
                let refusal = Refusal::FingerprintMismatch {
                    expected: entry.fingerprint,
                };
                self.refused(hello, &refusal);
                return Err(refusal);
            }
            Some(entry) if entry.status == AgentStatus::Rejected => {
                self.refused(hello, &Refusal::Rejected);
                return Err(Refusal::Rejected);
            }
            Some(entry) if entry.status == AgentStatus::Pending => {
                if hello.token == TokenCheck::Valid {
                    self.accept_entry(&hello.id, "presented a valid enrollment token");
                } else {
                    return Err(Refusal::Pending);
                }
            }
            Some(_) => {}
            // 4. New: a valid token enrolls it; otherwise it waits for an operator (AG-9).
            None => {
                let pending = self
                    .agents
                    .values()
                    .filter(|a| a.status == AgentStatus::Pending)
                    .count();
                if hello.token != TokenCheck::Valid && pending >= MAX_PENDING {
                    self.refused(hello, &Refusal::TooManyPending);
                    return Err(Refusal::TooManyPending);
                }
                let entry = AgentEntry {
                    id: hello.id.clone(),
                    name: hello.name.clone(),
                    fingerprint: hello.fingerprint.clone(),
                    status: AgentStatus::Pending,
                    home: Some(hello.home),
                    announced: None,
                };
                self.agents.insert(hello.id.clone(), entry.clone());
                if hello.token == TokenCheck::Valid {
                    self.accept_entry(&hello.id, "presented a valid enrollment token");
                } else {
                    self.changed.push(entry);
                    self.events.push(Event::new(
                        EventCode::AgentPending,
                        hello.name.clone(),
                        format!(
                            "new agent {} ({}) waits to be accepted",
                            hello.name,
                            short(&hello.fingerprint)
                        ),
                    ));
                    return Err(Refusal::Pending);
                }
            }
        }
        // 5. Home is what the entry says, not what this Hello claims (issue 12 item 3): an entry
        // kept from before the decision takes it now, once.
        let home = match self.agents.get(&hello.id).and_then(|e| e.home) {
            Some(home) => home,
            None => {
                if let Some(entry) = self.agents.get_mut(&hello.id) {
                    entry.home = Some(hello.home);
                    self.changed.push(entry.clone());
                }
                hello.home
            }
        };
        // 6. AG-4: a foreign agent needs a standby slot; first come first served.
        if !home && !self.slots.contains(&hello.id) {
            if self.slots.len() as u32 >= self.standby_capacity {
                let refusal = Refusal::Capacity {
                    capacity: self.standby_capacity,
                };
                self.refused(hello, &refusal);
                return Err(refusal);
            }
            self.slots.insert(hello.id.clone());
        }
        self.refusals.remove(&hello.id);
        self.connected
            .insert(hello.id.clone(), Connection { home, since: now });
        Ok(())
    }

    /// CT-2: an accepted agent announced `fingerprint` over its link. Remembered, not taken:
    /// the entry changes when the agent connects with it. Returns the reason, for the log.
    pub fn announce_rotation(&mut self, id: &str, fingerprint: &str) -> String {
        match self.agents.get_mut(id) {
            Some(entry) if entry.status == AgentStatus::Accepted => {
                entry.announced = Some(fingerprint.to_ascii_lowercase());
                self.changed.push(entry.clone());
                format!(
                    "{} announced certificate {}: taken into use when it connects with it",
                    entry.name,
                    short(fingerprint)
                )
            }
            _ => format!("ignored a certificate announcement for agent {id}: not accepted here"),
        }
    }

    /// The certificate an agent announced and has not connected with yet.
    pub fn announced_rotation(&self, id: &str) -> Option<&str> {
        self.agents.get(id).and_then(|e| e.announced.as_deref())
    }

    /// The agent said it is leaving, or its link closed: its standby slot is freed (AG-4, AG-6).
    pub fn handle_gone(&mut self, id: &str) {
        self.connected.remove(id);
        self.slots.remove(id);
    }

    pub fn connected_is_home(&self, id: &str) -> Option<bool> {
        self.connected.get(id).map(|c| c.home)
    }

    /// An operator accepts a pending (or rejected) agent.
    pub fn accept(&mut self, name: &str) -> Result<(), String> {
        let Some(entry) = self.by_name(name).cloned() else {
            return Err(format!("no agent named {name}"));
        };
        if entry.status == AgentStatus::Accepted {
            return Err(format!("{name} is already accepted"));
        }
        self.accept_entry(&entry.id, "accepted by an operator");
        Ok(())
    }

    /// An operator rejects an agent; it is refused from now on.
    pub fn reject(&mut self, name: &str) -> Result<(), String> {
        let Some(entry) = self.by_name(name).cloned() else {
            return Err(format!("no agent named {name}"));
        };
        if entry.status == AgentStatus::Rejected {
            return Err(format!("{name} is already rejected"));
        }
        let entry = AgentEntry {
            status: AgentStatus::Rejected,
            ..entry
        };
        self.agents.insert(entry.id.clone(), entry.clone());
        self.changed.push(entry);
        self.events.push(Event::new(
            EventCode::AgentRejected,
            name,
            format!("{name} rejected by an operator"),
        ));
        Ok(())
    }

    /// An operator forgets a pending or rejected agent: its entry is gone (a new Hello from it
    /// starts over). Returns its id, for the runtime to delete it from the store.
    pub fn forget(&mut self, name: &str) -> Result<String, String> {
        let Some(entry) = self.by_name(name).cloned() else {
            return Err(format!("no agent named {name}"));
        };
        if entry.status == AgentStatus::Accepted {
            return Err(format!("{name} is accepted: reject it first to forget it"));
        }
        self.agents.remove(&entry.id);
        self.refusals.remove(&entry.id);
        Ok(entry.id)
    }

    fn accept_entry(&mut self, id: &str, why: &str) {
        if let Some(entry) = self.agents.get_mut(id) {
            entry.status = AgentStatus::Accepted;
            let entry = entry.clone();
            self.events.push(Event::new(
                EventCode::AgentAccepted,
                entry.name.clone(),
                format!("{} {why}", entry.name),
            ));
            self.changed.push(entry);
        }
    }

    fn refused(&mut self, hello: &Hello, refusal: &Refusal) {
        if self.refusals.get(&hello.id) == Some(refusal) {
            return;
        }
        self.refusals.insert(hello.id.clone(), refusal.clone());
        self.events.push(Event::new(
            EventCode::AgentRefused,
            hello.name.clone(),
            format!("refused {}: {}", hello.name, refusal.reason()),
        ));
    }
}

fn short(fingerprint: &str) -> &str {
    &fingerprint[..fingerprint.len().min(16)]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(n: usize, token: TokenCheck) -> Hello {
        Hello {
            id: format!("id-{n}"),
            name: format!("agent-{n}"),
            fingerprint: format!("fp-{n}"),
            token,
            home: true,
        }
    }

    #[test]
    fn pending_agents_are_capped_and_forgotten_by_an_operator() {
        let now = Instant::now();
        let mut r = AgentRegistry::new(0, []);
        for n in 0..MAX_PENDING {
            assert_eq!(
                r.handle_hello(now, &hello(n, TokenCheck::Absent)),
                Err(Refusal::Pending)
            );
        }
        let flood = hello(MAX_PENDING, TokenCheck::Absent);
        assert_eq!(r.handle_hello(now, &flood), Err(Refusal::TooManyPending));
        assert!(r.by_name(&flood.name).is_none(), "not stored");
        // A valid token still enrolls; a pending one retrying is still pending.
        assert_eq!(
            r.handle_hello(now, &hello(MAX_PENDING + 1, TokenCheck::Valid)),
            Ok(())
        );
        assert_eq!(
            r.handle_hello(now, &hello(0, TokenCheck::Absent)),
            Err(Refusal::Pending)
        );
        assert_eq!(r.forget("agent-0"), Ok("id-0".to_string()));
        assert_eq!(r.handle_hello(now, &flood), Err(Refusal::Pending));
        assert!(r.forget(&format!("agent-{}", MAX_PENDING + 1)).is_err());
        assert!(r.forget("nobody").is_err());
    }

    #[test]
    fn a_taken_name_does_not_reveal_the_holder() {
        let now = Instant::now();
        let mut r = AgentRegistry::new(0, []);
        assert_eq!(r.handle_hello(now, &hello(1, TokenCheck::Valid)), Ok(()));
        let mut thief = hello(2, TokenCheck::Absent);
        thief.name = "agent-1".into();
        let refusal = r.handle_hello(now, &thief).expect_err("taken");
        assert!(!refusal.reason().contains("id-1"), "{}", refusal.reason());
    }
}
