//! `invite` (UI-5, PRODUCT.md §3): one-line invitations carrying a new token, their list and
//! their revocation.

use clap::{Args, Subcommand};
use understudy_api::{Invitations, InviteSpec, Invited, Request, TokenKind};

use crate::api::{print_done, print_json, Api, Failure};
use crate::output::{format_time_ms, table};
use crate::Target;

#[derive(Args)]
#[command(args_conflicts_with_subcommands = true)]
#[command(group(clap::ArgGroup::new("kind").args(["admin", "agent", "peer"])))]
pub struct InviteArgs {
    #[command(subcommand)]
    command: Option<InviteCommand>,
    /// A name for the invitation in `invite list` (e.g. "alice's laptop")
    #[arg(long, value_name = "L")]
    label: Option<String>,
    /// A token with full rights (roles, certificates, invitations, site configuration);
    /// without it an operator token: read and operator actions only
    #[arg(long)]
    admin: bool,
    /// An enrollment credential for agents (`understudy init --join`), single-use unless --uses
    #[arg(long)]
    agent: bool,
    /// How many agents the --agent invitation may enroll
    #[arg(long, value_name = "N", requires = "agent")]
    uses: Option<u32>,
    /// The invitation a second server joins with as this one's hot standby
    #[arg(long)]
    peer: bool,
    /// The host (or HOST:PORT) clients dial for this server, when `node.listen` is a wildcard
    #[arg(long, value_name = "HOST")]
    address: Option<String>,
}

#[derive(Subcommand)]
enum InviteCommand {
    /// The invitations' tokens: id, label, kind, created, last used here (never the secret)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an invitation's token: refused from now on (on the STANDBY from its next poll)
    Revoke {
        #[arg(value_name = "ID")]
        id: String,
    },
}

pub async fn run(target: &Target, args: InviteArgs) -> Result<(), Failure> {
    let api = Api::connect(target)?;
    match args.command {
        Some(InviteCommand::List { json }) => {
            if json {
                print_json(&api.request(&Request::Invitations).await?);
                return Ok(());
            }
            let list: Invitations = api.fetch(&Request::Invitations).await?;
            if list.invitations.is_empty() {
                println!("no invitations");
                return Ok(());
            }
            let rows: Vec<Vec<String>> = list
                .invitations
                .iter()
                .map(|i| {
                    vec![
                        i.id.clone(),
                        i.label.clone(),
                        match i.uses_left {
                            Some(n) => format!("{} ({n} uses left)", i.kind.as_str()),
                            None => i.kind.as_str().to_string(),
                        },
                        format_time_ms(i.created_ms),
                        i.last_used_ms
                            .map(format_time_ms)
                            .unwrap_or_else(|| "never".into()),
                    ]
                })
                .collect();
            table(&["ID", "LABEL", "KIND", "CREATED", "LAST USED"], &rows);
            Ok(())
        }
        Some(InviteCommand::Revoke { id }) => {
            let request = Request::RevokeInvitation { name: id };
            print_done(api.request(&request).await?, "revoked");
            Ok(())
        }
        None => {
            let kind = if args.admin {
                TokenKind::Admin
            } else if args.agent {
                TokenKind::Agent
            } else if args.peer {
                TokenKind::Peer
            } else {
                TokenKind::Operator
            };
            let request = Request::Invite(InviteSpec {
                kind,
                label: args.label,
                address: args.address,
                uses: args.uses,
            });
            let invited: Invited = api.fetch(&request).await?;
            // The line alone on stdout (for a script); the id on stderr.
            println!("{}", invited.invitation);
            eprintln!(
                "invitation {} ({}): give this line to whoever joins; `understudy invite revoke {}` withdraws it",
                invited.id,
                kind.as_str(),
                invited.id
            );
            Ok(())
        }
    }
}
