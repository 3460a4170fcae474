//! The admin vocabulary of Understudy: what a shell may ask a node ([`Request`], with the one
//! route table that maps it to and from `(method, path)`), and what the node answers
//! ([`Status`], [`EventView`], [`Refusal`] …). Only this crate knows the admin API's wire
//! shape; the node decides, the shells (CLI, tray, console, bench, tests) render.
//!
//! Serde only: no tokio, no IO, no SQLite. Durations are [`std::time::Duration`] until the
//! JSON edge, where they are written the way PRODUCT.md writes them (`500ms`, `5s`, `2m`).

pub mod channel;
pub mod defaults;
pub mod duration;
pub mod event;
pub mod invite;
pub mod refusal;
pub mod request;
pub mod series;
pub mod status;

pub use channel::{ChannelEdit, ChannelSpec, Channels, KeptSetting};
pub use event::{EventView, Severity};
pub use invite::{
    Invitation, InvitationView, Invitations, InviteSpec, Invited, InvitedServer, PeerJoin,
    Permission, TokenKind,
};
pub use refusal::{Refusal, RefusalKind};
pub use request::{
    check_labels, AlertQuery, CertRequest, CheckSpec, EventQuery, HttpCall, NewRecord, PairSpec,
    RecordQuery, Request, RoleSpec, Switchback, ROUTES,
};
pub use series::{
    CheckPoint, CheckSeries, HeldSpan, PairSeries, RatePoint, RecordSeries, RoleSeries, RoleSpan,
    ServerRoles, Span, Window,
};
pub use status::{
    Action, AgentView, AlertSummary, AlertView, Alerts, CertView, DeliveryView, Done, FailoverView,
    ForwardView, LinkView, MemberView, NodeView, PairActions, PairStatus, Roles, ServerView,
    Status,
};

/// The console's TypeScript types, generated from these types (`ts` feature): one file,
/// `ui/src/api.gen.ts`, committed. The test fails when the file is stale; run it with
/// `UPDATE_BINDINGS=1` to write it again.
#[cfg(all(test, feature = "ts"))]
mod typescript {
    use ts_rs::{Config, TS};

    use crate::channel::{ChannelEdit, ChannelSpec, Channels, KeptSetting};
    use crate::event::Events;
    use crate::invite::{
        InvitationView, Invitations, InviteSpec, Invited, PeerJoin, Permission, TokenKind,
    };
    use crate::request::{CertRequest, CheckSpec, NewRecord, PairSpec, RoleSpec, Switchback};
    use crate::series::*;
    use crate::status::*;
    use crate::{EventView, Refusal, RefusalKind, Severity};

    const FILE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../ui/src/api.gen.ts");

    fn bindings() -> String {
        let cfg = Config::new().with_large_int("number");
        let decls = [
            Status::decl(&cfg),
            NodeView::decl(&cfg),
            Roles::decl(&cfg),
            FailoverView::decl(&cfg),
            ForwardView::decl(&cfg),
            CertView::decl(&cfg),
            LinkView::decl(&cfg),
            Untrusted::decl(&cfg),
            HeldBy::decl(&cfg),
            ServerView::decl(&cfg),
            MemberView::decl(&cfg),
            PairStatus::decl(&cfg),
            PairActions::decl(&cfg),
            Action::decl(&cfg),
            AgentView::decl(&cfg),
            CheckSpec::decl(&cfg),
            Switchback::decl(&cfg),
            EventView::decl(&cfg),
            Events::decl(&cfg),
            Severity::decl(&cfg),
            RecordView::decl(&cfg),
            Records::decl(&cfg),
            AlertSummary::decl(&cfg),
            Alerts::decl(&cfg),
            AlertView::decl(&cfg),
            DeliveryView::decl(&cfg),
            ChannelSpec::decl(&cfg),
            Channels::decl(&cfg),
            ChannelEdit::decl(&cfg),
            KeptSetting::decl(&cfg),
            CertInfo::decl(&cfg),
            Settings::decl(&cfg),
            Done::decl(&cfg),
            Refusal::decl(&cfg),
            RefusalKind::decl(&cfg),
            PairSpec::decl(&cfg),
            RoleSpec::decl(&cfg),
            CertRequest::decl(&cfg),
            NewRecord::decl(&cfg),
            CheckPoint::decl(&cfg),
            Span::decl(&cfg),
            CheckSeries::decl(&cfg),
            HeldSpan::decl(&cfg),
            PairSeries::decl(&cfg),
            RoleSpan::decl(&cfg),
            ServerRoles::decl(&cfg),
            RoleSeries::decl(&cfg),
            RatePoint::decl(&cfg),
            RecordSeries::decl(&cfg),
            Permission::decl(&cfg),
            TokenKind::decl(&cfg),
            InviteSpec::decl(&cfg),
            Invited::decl(&cfg),
            InvitationView::decl(&cfg),
            Invitations::decl(&cfg),
            PeerJoin::decl(&cfg),
        ];
        let mut out = String::from(
            "// Generated from crates/api by `cargo test -p understudy-api --features ts` \
             (UPDATE_BINDINGS=1 writes it). Do not edit.\n",
        );
        for d in decls {
            out.push_str("\nexport ");
            out.push_str(&d);
            out.push('\n');
        }
        out
    }

    #[test]
    fn typescript_bindings_are_current() {
        let want = bindings();
        if std::env::var_os("UPDATE_BINDINGS").is_some() {
            std::fs::write(FILE, &want).expect("writing ui/src/api.gen.ts");
            return;
        }
        let have = std::fs::read_to_string(FILE).unwrap_or_default();
        assert!(
            have == want,
            "ui/src/api.gen.ts is stale: run `UPDATE_BINDINGS=1 cargo test -p understudy-api --features ts`"
        );
    }
}
