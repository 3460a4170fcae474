//! The server role as one machine: its agents ([`AgentRegistry`]), the pairs it supervises
//! ([`Pair`]) and its hot-standby state ([`HotStandby`]). It decides admissions (AG-4, AG-7,
//! AG-9), answers heartbeats with each member's pair views, and routes operator actions.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Instant;

use crate::agent::{PairView, ProbeResult, Welcome};
use crate::event::{Event, EventCode};
use crate::ha::{HaAction, HotStandby, HotStandbyConfig};
use crate::pair::{Pair, PairAction, PairConfig, PairEpoch, PairState};
use crate::registry::{AgentEntry, AgentRegistry, Hello, Refusal};
use crate::watch::{Thresholds, Watch, WatchConfig};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub name: String,
    pub standby_capacity: u32,
    pub ha: HotStandbyConfig,
    /// The peer's URL, where STANDBY redirects agents (AG-7).
    pub peer_url: Option<String>,
    /// A name shared by both servers of a hot-standby pair: agents compare epochs within it.
    pub cluster: Option<String>,
    /// `server.silent_after` and `alert.group_wait` (AL-3, AL-6).
    pub watch: WatchConfig,
}

/// The answer to an agent's hello.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admission {
    Accepted(Welcome),
    Redirect { to: String, welcome: Welcome },
    Refused(Refusal),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ServerAction {
    /// Push these views to a connected agent now (a handover between heartbeats).
    PushViews {
        agent: String,
        views: Vec<PairView>,
    },
    /// A pair's state changed: persist and replicate it.
    PersistPair {
        name: String,
        state: PairState,
    },
    /// Agent entries changed (enrollment): persist and replicate them.
    PersistAgents(Vec<AgentEntry>),
    /// An operator forgot this agent: delete its entry (and replicate that).
    ForgetAgent {
        id: String,
    },
    /// Tell a connected agent to go back to its home server (AG-6 recall).
    Recall {
        agent: String,
    },
    /// Tell connected agents this server stepped down: they go to the ACTIVE peer (AG-7).
    RedirectAll {
        to: String,
    },
    Ha(HaAction),
}

#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    registry: AgentRegistry,
    pairs: BTreeMap<String, Pair>,
    ha: HotStandby,
    acting: bool,
    actions: VecDeque<ServerAction>,
    events: VecDeque<Event>,
    /// The last refusal each agent reported for each of its checks: told once (CHECK_REFUSED).
    check_refusals: BTreeMap<(String, String), String>,
    /// (code, agent, pair) of the refusals raised as an event (issue 12): each once, and a pair
    /// no site has counts as one (""), so a hostile agent cannot grow this or the event list.
    refusals_raised: BTreeSet<(EventCode, String, String)>,
    /// Check states and silent agents (AL-2, AL-3, AL-6), watched while acting.
    watch: Watch,
}

impl Server {
    pub fn new(
        config: ServerConfig,
        agents: Vec<AgentEntry>,
        pairs: Vec<(PairConfig, PairState)>,
        epoch: u64,
        now: Instant,
    ) -> Server {
        let ha = HotStandby::new(config.ha.clone(), epoch, now);
        let mut server = Server {
            registry: AgentRegistry::new(config.standby_capacity, agents),
            pairs: pairs
                .into_iter()
                .map(|(c, s)| (c.name.clone(), Pair::new(c, s)))
                .collect(),
            ha,
            watch: Watch::new(config.watch),
            config,
            acting: false,
            actions: VecDeque::new(),
            events: VecDeque::new(),
            check_refusals: BTreeMap::new(),
            refusals_raised: BTreeSet::new(),
        };
        server.collect(now);
        server
    }

    // ----- getters -----

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }
    pub fn registry(&self) -> &AgentRegistry {
        &self.registry
    }
    pub fn pairs(&self) -> impl Iterator<Item = &Pair> {
        self.pairs.values()
    }
    pub fn pair(&self, name: &str) -> Option<&Pair> {
        self.pairs.get(name)
    }
    pub fn ha(&self) -> &HotStandby {
        &self.ha
    }
    pub fn is_acting(&self) -> bool {
        self.acting
    }
    pub fn watch(&self) -> &Watch {
        &self.watch
    }
    fn accepted_names(&self) -> Vec<String> {
        self.registry
            .entries()
            .filter(|e| e.status == crate::AgentStatus::Accepted)
            .map(|e| e.name.clone())
            .collect()
    }
    fn welcome(&self) -> Welcome {
        Welcome {
            cluster: self.config.cluster.clone(),
            epoch: self.ha.epoch(),
        }
    }

    /// Every pair view for one agent (carried by each heartbeat answer).
    pub fn views_for(&self, agent: &str) -> Vec<PairView> {
        if !self.acting {
            return Vec::new();
        }
        self.pairs
            .values()
            .filter_map(|p| p.member_of(agent).map(|m| p.view(m)))
            .collect()
    }

    pub fn poll_action(&mut self) -> Option<ServerAction> {
        self.actions.pop_front()
    }
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }
    pub fn poll_timeout(&self) -> Option<Instant> {
        let pairs = self.pairs.values().filter_map(Pair::poll_timeout);
        pairs
            .chain(self.ha.poll_timeout())
            .chain(self.watch.poll_timeout())
            .min()
    }

    // ----- agents -----

    /// An agent introduces itself on a new link. Guards in order, each with its reason.
    pub fn handle_hello(&mut self, now: Instant, hello: &Hello) -> Admission {
        // 1. AG-7: a STANDBY sends agents to the ACTIVE peer while it answers.
        if !self.acting {
            let admission = match (&self.config.peer_url, self.ha.peer_acting(now)) {
                (Some(peer), true) => Admission::Redirect {
                    to: peer.clone(),
                    welcome: self.welcome(),
                },
                _ => Admission::Refused(Refusal::NotActing),
            };
            return admission;
        }
        // 2. Enrollment, identity and standby capacity (AG-4, AG-9).
        let admitted = self.registry.handle_hello(now, hello);
        let result = match admitted {
            Ok(()) => {
                for pair in self.pairs.values_mut() {
                    pair.handle_member_seen(now, &hello.name, None);
                }
                Admission::Accepted(self.welcome())
            }
            Err(refusal) => Admission::Refused(refusal),
        };
        self.collect(now);
        result
    }

    /// AG-6: would this server take the agent back now?
    pub fn handle_probe(&mut self, now: Instant, hello: &Hello) -> ProbeResult {
        if !self.acting {
            return if self.ha.peer_acting(now) {
                ProbeResult::Redirect
            } else {
                ProbeResult::Refused(Refusal::NotActing.reason())
            };
        }
        match self.registry.by_name(&hello.name) {
            Some(e)
                if e.id == hello.id
                    && e.fingerprint == hello.fingerprint
                    && e.status == crate::AgentStatus::Accepted =>
            {
                ProbeResult::Available
            }
            Some(_) => ProbeResult::Refused("not accepted here under this identity".into()),
            None => ProbeResult::Refused(Refusal::Pending.reason()),
        }
    }

    /// A heartbeat from a connected agent, with its pair reports; returns its views.
    pub fn handle_heartbeat(
        &mut self,
        now: Instant,
        agent: &str,
        reports: &[(String, PairEpoch, bool)],
    ) -> Vec<PairView> {
        if self.acting {
            for pair in self.pairs.values_mut() {
                if pair.member_of(agent).is_some() {
                    let report = reports
                        .iter()
                        .find(|r| r.0 == pair.name())
                        .map(|r| (r.1, r.2));
                    pair.handle_member_seen(now, agent, report);
                }
            }
        }
        self.collect(now);
        self.views_for(agent)
    }

    /// The agent left (AG-6) or its link closed: its slot is freed; pairs start counting.
    pub fn handle_agent_gone(&mut self, now: Instant, id: &str, name: &str) {
        self.registry.handle_gone(id);
        for pair in self.pairs.values_mut() {
            pair.handle_member_gone(now, name);
        }
        self.collect(now);
    }

    /// PR-7: a member reported its hook's result.
    pub fn handle_hook_result(
        &mut self,
        now: Instant,
        agent: &str,
        pair: &str,
        hook: &str,
        epoch: u64,
        result: Result<(), String>,
    ) -> Result<(), String> {
        // Issue 12 item 3: only a member of the pair reports its hooks.
        let Some(p) = self.pairs.get_mut(pair) else {
            let why = format!("refused a hook result from {agent} for pair {pair}: no such pair");
            return Err(self.refused(now, EventCode::HookResultRefused, agent, "", why));
        };
        if p.member_of(agent).is_none() {
            let why = format!(
                "refused a hook result from {agent} for pair {pair}: {agent} is not a member"
            );
            return Err(self.refused(now, EventCode::HookResultRefused, agent, pair, why));
        }
        p.handle_hook_result(now, agent, hook, epoch, result);
        self.collect(now);
        Ok(())
    }

    /// Issue 12: records under `pair`'s alias, made under pair counter `epoch`, arrived from
    /// `agent`. [`Server::may_record_under`] decides; a refusal raises RECORDS_REFUSED (once per
    /// agent and pair).
    pub fn handle_records_under(
        &mut self,
        now: Instant,
        agent: &str,
        pair: &str,
        epoch: Option<u64>,
    ) -> Result<(), String> {
        self.may_record_under(agent, pair, epoch)
            .map_err(|why| self.refused(now, EventCode::RecordsRefused, agent, pair, why))
    }

    /// Raises a refusal of an agent's message as an event, once per code, agent and pair, and
    /// hands the sentence back.
    fn refused(
        &mut self,
        now: Instant,
        code: EventCode,
        agent: &str,
        pair: &str,
        why: String,
    ) -> String {
        if self
            .refusals_raised
            .insert((code, agent.to_string(), pair.to_string()))
        {
            self.events.push_back(Event::new(code, agent, why.clone()));
            self.collect(now);
        }
        why
    }

    /// Issue 12 item 3: may `agent` send records it made under the alias of `pair`, under pair
    /// counter `epoch`? Only a member, and only under a counter it held ([`Pair::may_record`]).
    /// An alias no pair of this site has (a pair removed since) speaks for nobody and is let
    /// through.
    pub fn may_record_under(
        &self,
        agent: &str,
        pair: &str,
        epoch: Option<u64>,
    ) -> Result<(), String> {
        match self.pairs.get(pair) {
            Some(p) => p.may_record(agent, epoch),
            None => Ok(()),
        }
    }

    /// CT-2, issue 12 item 3: an accepted agent announced a new certificate over its link. It is
    /// taken into use only when the agent connects with it (proof that it holds the key).
    pub fn handle_agent_cert_rotated(
        &mut self,
        now: Instant,
        id: &str,
        fingerprint: &str,
    ) -> String {
        let why = self.registry.announce_rotation(id, fingerprint);
        self.collect(now);
        why
    }

    /// CK-1, SECURITY.md: a connected agent refused a `command` check its own configuration does
    /// not allow. Raised once per agent, check and reason, so a check refused every interval
    /// makes one event.
    pub fn handle_check_refused(&mut self, now: Instant, agent: &str, check: &str, reason: &str) {
        let key = (agent.to_string(), check.to_string());
        if self.check_refusals.get(&key).map(String::as_str) == Some(reason) {
            return;
        }
        self.check_refusals.insert(key, reason.to_string());
        self.events.push_back(Event::new(
            crate::EventCode::CheckRefused,
            agent,
            format!("{agent} refused check {check}: {reason}"),
        ));
        self.collect(now);
    }

    /// AL-3: an accepted agent was heard (a hello, a heartbeat or a record); `seen` says where
    /// and when, in the runtime's words (the engine has no wall clock).
    pub fn handle_agent_heard(&mut self, now: Instant, agent: &str, seen: &str) {
        self.watch.handle_heard(now, agent, seen);
        self.collect(now);
    }

    /// AL-2: one stored run of a check (each stored record fed once), under the check's name:
    /// a pair's check is one series whichever member ran it.
    pub fn handle_check_result(
        &mut self,
        now: Instant,
        check: &str,
        thresholds: Thresholds,
        up: bool,
        detail: &str,
    ) {
        self.watch
            .handle_check_result(now, check, thresholds, up, detail);
        self.collect(now);
    }

    /// AL-2: a CHECK_DOWN (`down`) or CHECK_UP about `check` was stored here, by this server or
    /// replicated from its peer: where the check's series starts should this server become
    /// acting (after a handover or a crash of the ACTIVE), so a check already told DOWN is
    /// neither raised again nor reset.
    pub fn handle_check_told(&mut self, check: &str, down: bool) {
        self.watch.handle_told(check, down);
    }

    /// A check was removed from the site configuration: its series goes.
    pub fn handle_check_removed(&mut self, check: &str) {
        self.watch.handle_check_removed(check);
    }

    /// `server.silent_after` or `alert.group_wait` changed.
    pub fn handle_watch_config(&mut self, config: WatchConfig) {
        self.config.watch = config;
        self.watch.set_config(config);
    }

    pub fn accept_agent(&mut self, now: Instant, name: &str) -> Result<String, String> {
        self.registry.accept(name)?;
        self.collect(now);
        Ok(format!("{name} accepted"))
    }

    pub fn reject_agent(&mut self, now: Instant, name: &str) -> Result<String, String> {
        self.registry.reject(name)?;
        self.collect(now);
        Ok(format!("{name} rejected"))
    }

    /// Forgets a pending or rejected agent (issue 12 item 5: the way out of an enrollment flood).
    pub fn forget_agent(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let id = self.registry.forget(name)?;
        self.actions.push_back(ServerAction::ForgetAgent { id });
        self.collect(now);
        Ok(format!("{name} forgotten"))
    }

    /// AG-6 with `switchback_interval = 0`: send a foreign agent back to its home server.
    pub fn recall(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let Some(entry) = self.registry.by_name(name).cloned() else {
            return Err(format!("no agent named {name}"));
        };
        match self.registry.connected_is_home(&entry.id) {
            None => Err(format!(
                "{name} is not connected to this server: recall it where it is connected"
            )),
            Some(true) => Err(format!("{name} is already on its home server")),
            Some(false) => {
                self.actions.push_back(ServerAction::Recall {
                    agent: name.to_string(),
                });
                self.collect(now);
                Ok(format!("{name} recalled to its home server"))
            }
        }
    }

    /// Replaces the agent entries with a replicated copy (HS-3).
    pub fn replace_agents(&mut self, agents: Vec<AgentEntry>) {
        self.registry.replace_entries(agents);
    }

    pub fn set_standby_capacity(&mut self, capacity: u32) {
        self.registry.set_standby_capacity(capacity);
    }

    // ----- pairs -----

    /// PR-1: define (or redefine) a pair.
    pub fn put_pair(
        &mut self,
        now: Instant,
        config: PairConfig,
        state: Option<PairState>,
    ) -> Result<String, String> {
        if config.primary == config.secondary {
            return Err("a pair needs two different agents".into());
        }
        if config.failover_after.is_zero() {
            return Err("failover_after must be more than zero".into());
        }
        let name = config.name.clone();
        match self.pairs.get_mut(&name) {
            Some(p) => p.handle_config(now, config, state),
            None => {
                let mut pair = Pair::new(config, state.unwrap_or_default());
                if self.acting {
                    pair.handle_supervising(now, true, self.ha.epoch());
                }
                self.pairs.insert(name.clone(), pair);
                let state = self.pairs[&name].state().clone();
                self.actions.push_back(ServerAction::PersistPair {
                    name: name.clone(),
                    state,
                });
            }
        }
        self.collect(now);
        Ok(format!("pair {name} defined"))
    }

    pub fn remove_pair(&mut self, now: Instant, name: &str) -> Result<String, String> {
        self.pairs
            .remove(name)
            .ok_or_else(|| format!("no pair named {name}"))?;
        self.collect(now);
        Ok(format!("pair {name} removed"))
    }

    pub fn force_failover(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let pair = self
            .pairs
            .get_mut(name)
            .ok_or_else(|| format!("no pair named {name}"))?;
        let r = pair.force_failover(now);
        self.collect(now);
        r
    }

    pub fn revert(&mut self, now: Instant, name: &str) -> Result<String, String> {
        let pair = self
            .pairs
            .get_mut(name)
            .ok_or_else(|| format!("no pair named {name}"))?;
        let r = pair.revert(now);
        self.collect(now);
        r
    }

    // ----- hot standby -----

    pub fn handle_peer_status(&mut self, now: Instant, peer: crate::ha::PeerStatus) {
        self.ha.handle_peer_status(now, peer);
        self.collect(now);
    }

    pub fn handle_peer_unreachable(&mut self, now: Instant) {
        self.ha.handle_peer_unreachable(now);
        self.collect(now);
    }

    /// HS-3, issue 12 item 2: may a site snapshot that came with the peer's reply replace this
    /// server's site configuration? Only on a STANDBY (or a server not acting yet), and only
    /// from a peer that says it is ACTIVE; the ACTIVE keeps its own.
    pub fn may_apply_replicated_site(&self, from: &crate::ha::PeerStatus) -> Result<(), String> {
        if self.acting {
            return Err(format!(
                "ignored a site snapshot from peer {}: this server is ACTIVE and keeps its own site configuration",
                from.name
            ));
        }
        if from.state != "active" {
            return Err(format!(
                "ignored a site snapshot from peer {}: it is {}, not ACTIVE",
                from.name, from.state
            ));
        }
        Ok(())
    }

    /// HS-8: the connection kept open to the peer closed.
    pub fn handle_peer_closed(&mut self, now: Instant) {
        self.ha.handle_peer_closed(now);
        self.collect(now);
    }

    /// HS-3, AL-5: the ACTIVE peer stored something a STANDBY replicates.
    pub fn handle_peer_changed(&mut self, now: Instant) {
        self.ha.handle_peer_changed(now);
        self.collect(now);
    }

    /// HS-8: nothing listens on the peer's port.
    pub fn handle_peer_refused(&mut self, now: Instant, why: String) {
        self.ha.handle_peer_refused(now, why);
        self.collect(now);
    }

    pub fn handle_replicated(&mut self, version: u64) {
        self.ha.handle_replicated(version);
    }

    pub fn operator_standby(&mut self, now: Instant) -> Result<String, String> {
        let r = self.ha.operator_standby(now);
        self.collect(now);
        r
    }

    /// HS-8: a planned stop hands the role to a healthy STANDBY peer first.
    pub fn hand_over(&mut self, now: Instant, why: &str) -> Result<String, String> {
        let r = self.ha.hand_over(now, why);
        self.collect(now);
        r
    }

    /// HS-8: the peer took the role (its epoch) or did not (why). Agents are sent to the peer
    /// only once it acts (break-before-make).
    pub fn handle_handover_result(&mut self, now: Instant, result: Result<u64, String>) {
        let took = result.is_ok();
        self.ha.handle_handover_result(now, result);
        if took && !self.ha.is_acting() {
            if let Some(peer) = self.config.peer_url.clone() {
                self.actions
                    .push_back(ServerAction::RedirectAll { to: peer });
            }
        }
        self.collect(now);
    }

    /// HS-8, on the STANDBY: the ACTIVE peer hands over its role.
    pub fn handle_handover_request(
        &mut self,
        now: Instant,
        from: crate::ha::PeerStatus,
        why: &str,
    ) -> Result<u64, String> {
        let r = self.ha.handle_handover_request(now, from, why);
        self.collect(now);
        r
    }

    /// HS-7: a failover mode or peer changed at run time; `cluster` is the pair's identity
    /// shown to agents (AG-10), `None` without a peer.
    pub fn handle_ha_config(
        &mut self,
        now: Instant,
        config: HotStandbyConfig,
        peer_url: Option<String>,
        cluster: Option<String>,
    ) {
        self.config.ha = config.clone();
        self.config.peer_url = peer_url;
        self.config.cluster = cluster;
        self.ha.handle_config(now, config);
        self.collect(now);
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        self.ha.handle_timeout(now);
        for pair in self.pairs.values_mut() {
            pair.handle_timeout(now);
        }
        self.watch.handle_timeout(now);
        self.collect(now);
    }

    /// Gathers what the parts decided, and follows a change of the acting role.
    fn collect(&mut self, now: Instant) {
        loop {
            let acting = self.ha.is_acting();
            if acting != self.acting {
                self.acting = acting;
                let epoch = self.ha.epoch();
                for pair in self.pairs.values_mut() {
                    pair.handle_supervising(now, acting, epoch);
                }
                let accepted = self.accepted_names();
                self.watch.handle_acting(now, acting, &accepted);
                // A planned handover sends the agents on once the peer acts (HS-8).
                if !acting && !self.ha.handing_over() {
                    if let Some(peer) = self.config.peer_url.clone() {
                        self.actions
                            .push_back(ServerAction::RedirectAll { to: peer });
                    }
                }
            }
            let mut more = false;
            while let Some(a) = self.ha.poll_action() {
                self.actions.push_back(ServerAction::Ha(a));
            }
            while let Some(e) = self.ha.poll_event() {
                self.events.push_back(e);
            }
            for e in self.registry.take_events() {
                self.events.push_back(e);
            }
            let changed = self.registry.take_changed();
            if !changed.is_empty() {
                self.actions.push_back(ServerAction::PersistAgents(changed));
                let accepted = self.accepted_names();
                self.watch.handle_accepted(now, &accepted);
            }
            while let Some(e) = self.watch.poll_event() {
                self.events.push_back(e);
            }
            let names: Vec<String> = self.pairs.keys().cloned().collect();
            for name in names {
                let pair = self.pairs.get_mut(&name).expect("listed");
                while let Some(e) = pair.poll_event() {
                    self.events.push_back(e);
                }
                while let Some(a) = pair.poll_action() {
                    more = true;
                    match a {
                        PairAction::Persist => {
                            let state = pair.state().clone();
                            self.actions.push_back(ServerAction::PersistPair {
                                name: name.clone(),
                                state,
                            });
                        }
                        PairAction::Push { agent } => {
                            let views = vec![pair.view(pair.member_of(&agent).expect("member"))];
                            self.actions
                                .push_back(ServerAction::PushViews { agent, views });
                        }
                    }
                }
            }
            if !more && self.ha.is_acting() == self.acting {
                break;
            }
        }
    }
}
