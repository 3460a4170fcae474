//! The messages of the `understudy/1` wire (agent ↔ server and server ↔ server), one JSON
//! document per frame (see `frame`). Only this module and the shells know these shapes; the
//! engine's types are mapped at the edges.

use serde::{Deserialize, Serialize};
use understudy_engine::{PairEpoch, PairView};

use crate::store::{OutboxRow, Record, SiteSnapshot, StoredEvent, StoredRecord};

/// A pair epoch on the wire: (server epoch, pair counter).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct WireEpoch(pub u64, pub u64);

impl From<PairEpoch> for WireEpoch {
    fn from(e: PairEpoch) -> Self {
        WireEpoch(e.server, e.pair)
    }
}

impl From<WireEpoch> for PairEpoch {
    fn from(e: WireEpoch) -> Self {
        PairEpoch {
            server: e.0,
            pair: e.1,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct WireView {
    pub pair: String,
    pub epoch: WireEpoch,
    pub active: bool,
    pub lease_ms: u64,
}

impl From<&PairView> for WireView {
    fn from(v: &PairView) -> Self {
        WireView {
            pair: v.pair.clone(),
            epoch: v.epoch.into(),
            active: v.active,
            lease_ms: v.lease.as_millis() as u64,
        }
    }
}

impl From<&WireView> for PairView {
    fn from(v: &WireView) -> Self {
        PairView {
            pair: v.pair.clone(),
            epoch: v.epoch.into(),
            active: v.active,
            lease: std::time::Duration::from_millis(v.lease_ms),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct MemberReport {
    pub pair: String,
    pub epoch: WireEpoch,
    pub active: bool,
}

/// The status a server reports to its hot-standby peer.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PeerState {
    pub name: String,
    pub mode: String,
    pub state: String,
    pub epoch: u64,
    pub site_version: u64,
    /// The certificate fingerprint this server uses now (learned across rotations, CT-2).
    pub fingerprint: String,
    /// Where agents reach this server (its `node.listen`): redirects send agents there, not to
    /// whatever address the peer link goes through.
    #[serde(default)]
    pub listen: String,
}

/// What an agent (or a peer server) sends to a server.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToServer {
    /// The first frame of an agent link. The identity is the TLS client certificate.
    Hello {
        id: String,
        name: String,
        home: bool,
        token: String,
        probe: bool,
        /// The fingerprints the agent pins for the first server in its list, its home: a server
        /// whose own or whose hot-standby peer's fingerprint is among them is the agent's home
        /// cluster, also when the agent reaches it first through the peer (home down at the
        /// agent's first start; SECURITY.md "Hello.home").
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        home_fingerprints: Vec<String>,
    },
    Heartbeat {
        id: u64,
        pairs: Vec<MemberReport>,
    },
    Records {
        records: Vec<Record>,
        /// AG-2: the agent's home server, when this server is outside the home cluster and
        /// stores them as taken for it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        taken_for: Option<String>,
    },
    /// AG-6: the agent is leaving this server (it frees the standby slot).
    Leave,
    HookResult {
        pair: String,
        hook: String,
        epoch: u64,
        error: Option<String>,
    },
    /// The agent's own certificate was rotated (CT-2): remember the new fingerprint.
    CertRotated {
        fingerprint: String,
    },
    /// CK-1, SECURITY.md: the agent refuses this `command` check (its `agent.allow_commands`
    /// does not allow it).
    CheckRefused {
        check: String,
        reason: String,
    },
    /// HS-3: a peer server polls; with `replicate`, it wants what changed since its cursors.
    PeerPoll {
        replicate: bool,
        site_version: u64,
        records_after: u64,
        events_after: u64,
        /// AL-5: the outbox rows after this `rev` of the peer's (absent from an older peer).
        #[serde(default)]
        outbox_after: u64,
    },
    /// CT-2: the peer's certificate is about to change; sent over the old one, so it is trusted.
    PeerCertRotated {
        fingerprint: String,
    },
    /// HS-6: a server that stepped down hands over records the acting one may lack.
    Merge {
        records: Vec<StoredRecord>,
    },
    /// HS-8: the peer keeps this connection open, so that it learns at once when this server's
    /// process is gone (its kernel closes the connection).
    PeerWatch,
    /// HS-8 planned handover: the ACTIVE peer has stepped down at `epoch` and asks this server
    /// to promote; `events` are its events this server has not replicated (its records came
    /// first, as `Merge`).
    PeerHandover {
        epoch: u64,
        reason: String,
        events: Vec<StoredEvent>,
        /// AL-5: the alert outbox and its delivery marks past the peer's cursor, so that marks
        /// made just before the stop are not sent again by the new ACTIVE.
        #[serde(default)]
        outbox: Vec<crate::store::OutboxRow>,
        /// MX-2: the last record this server forwarded (its cursor), so that the new ACTIVE does
        /// not send again what was forwarded since its last poll. Its records came first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded: Option<crate::store::ForwardMark>,
    },
}

/// What a server sends to an agent (or to a polling peer).
// Messages live only between a read and a write; boxing the large reply would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ToAgent {
    Welcome {
        cluster: Option<String>,
        epoch: u64,
        checks: serde_json::Value,
        /// The fingerprints of this server's hot-standby peer: the one other server the agent
        /// lets direct it (SECURITY.md). Empty without hot standby.
        #[serde(default)]
        peer: Vec<String>,
    },
    Refused {
        reason: String,
        capacity: bool,
    },
    Redirect {
        to: String,
        fingerprint: Option<String>,
        cluster: Option<String>,
        epoch: u64,
    },
    ProbeResult {
        result: String,
        reason: String,
    },
    HeartbeatAck {
        id: u64,
        views: Vec<WireView>,
    },
    /// Records up to this sequence are durable on the server (AG-2).
    Ack {
        upto: u64,
    },
    Views {
        views: Vec<WireView>,
    },
    Recall,
    /// The server's certificate changed (CT-2): pin this fingerprint too.
    CertRotated {
        fingerprint: String,
    },
    /// The site's checks for this agent changed (CK-2).
    Checks {
        checks: serde_json::Value,
    },
    PeerReply {
        state: PeerState,
        site: Option<SiteSnapshot>,
        records: Vec<StoredRecord>,
        events: Vec<StoredEvent>,
        /// AL-5: the outbox and its delivery marks, for a STANDBY.
        #[serde(default)]
        outbox: Vec<OutboxRow>,
        /// MX-2: the last record the remote-write receiver took, among those the STANDBY
        /// holds (the ones it had and these `records`): its forwarding cursor.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forwarded: Option<crate::store::ForwardMark>,
        /// HS-3: the ACTIVE holds more past these lists than one frame carries (they were cut
        /// at their count or at the frame's size): the STANDBY polls again at once.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        more: bool,
    },
    MergeDone {
        inserted: usize,
    },
    /// HS-8: the answer to a `PeerWatch`, sent again every second while the connection is open.
    PeerWatching,
    /// HS-3, AL-5: on a `PeerWatch` connection, from the acting server: it stored something a
    /// STANDBY replicates (an event, an alert's delivery mark); the STANDBY polls now.
    PeerChanged,
    /// HS-8: the answer to `PeerHandover`: this server now acts, with this epoch.
    PeerHandoverDone {
        epoch: u64,
    },
    /// A protocol error: the connection is closed after this.
    Error {
        reason: String,
    },
}
